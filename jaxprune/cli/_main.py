"""Entry point: `jaxprune COMMAND ...`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ._common import CLIError

# command name -> module in this package defining `register(subparsers)`; each registers one command
_COMMANDS = {
    "error": "_theory",
    "ode": "_theory",
    "simulate": "_theory",
    "fixed-point": "_fixed_point",
    "sweep": "_sweep",
    "prune": "_prune",
    "compare": "_prune",
    "paper": "_prune",
    "design": "_design",
    "realdata": "_realdata",
    "bounds": "_bounds",
    "reproduce": "_reproduce",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jaxprune",
        description="Statistical mechanics of neural-network pruning (teacher-student order parameters).",
    )
    parser.add_argument("--float32", action="store_true", help="run theory in float32 (default float64)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    seen = set()
    for module_name in dict.fromkeys(_COMMANDS.values()):
        try:
            module = importlib.import_module(f"{__package__}.{module_name}")
        except ModuleNotFoundError as e:
            if e.name and e.name.endswith(module_name):
                continue  # command not built yet
            raise
        module.register(sub)
        seen.add(module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import jax

    if not args.float32:
        jax.config.update("jax_enable_x64", True)
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"jaxprune {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jaxprune {args.command}: interrupted (finished work is saved)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
