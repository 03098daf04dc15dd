"""Entry point: `jaxprune COMMAND ...`."""

from __future__ import annotations

import argparse
import importlib
import sys

from pathlib import Path

from ._common import CLIError, CommandFailed, check_input_file, check_output_dir, check_output_file

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


# argument attributes that name files or folders, checked before any work so that a bad path is one line with
# exit code 2 and nothing is computed or written: (attribute, how the message names it, kind)
_PATHS = (
    ("state", "state file", "in-text"),
    ("init", "--init", "in-text"),
    ("spec", "spec file", "in-text"),
    ("weights", "--weights", "in-binary"),
    ("json", "--json", "out-file"),
    ("plot", "--plot", "out-plot"),
    ("plot_path", "--plot-path", "out-plot"),
    ("out", "--out", "out-dir"),
)


def check_paths(args) -> None:
    """Check every input and output path of a parsed command line (see `_PATHS`); raise `CLIError`."""
    for attr, what, kind in _PATHS:
        value = getattr(args, attr, None)
        if not isinstance(value, (str, Path)):  # absent, None, or not a path (sweep's --plot names axes)
            continue
        if kind == "in-text":
            check_input_file(value, what)
        elif kind == "in-binary":
            check_input_file(value, what, text=False)
        elif kind == "out-dir":
            check_output_dir(value, what)
        else:
            check_output_file(value, what, plot=kind == "out-plot")
    data_dir = getattr(args, "data_dir", None)
    if isinstance(data_dir, Path) and not data_dir.is_dir():
        raise CLIError(f"--data-dir {data_dir}: {'is not a folder' if data_dir.exists() else 'does not exist'}")


def _os_error_line(e: OSError) -> str:
    """One line for an OSError met while reading or writing a file, naming the file."""
    what = e.strerror or type(e).__name__
    names = [str(f) for f in (e.filename, e.filename2) if f is not None]
    return f"{' -> '.join(names)}: {what}" if names else " ".join(str(e).split())


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


# global options that take a value (to find the command word in argv without parsing)
_VALUE_OPTIONS = ("--compile-cache",)


def command_word(argv: list[str]) -> str | None:
    """The command named in `argv` (the first word that is not a global option or its value), or `None`."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in _VALUE_OPTIONS:
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser. With a known `command`, only the module that defines it is imported and registered
    (start-up: the other commands' modules import the experiments); otherwise every command is."""
    parser = _Parser(
        prog="jaxprune",
        description="Statistical mechanics of neural-network pruning (teacher-student order parameters).",
        epilog="Exit codes: 0 success; 1 the command ran but its numerical result failed (a solver's status, a "
               "non-finite error): the status is printed, outputs are still written with it, and one line on "
               "stderr says why; 2 a bad argument, input file or output path: one line on stderr naming it, "
               "checked before any work, nothing written.",
    )
    parser.add_argument("--float32", action="store_true", help="run theory in float32 (default float64)")
    cache = parser.add_mutually_exclusive_group()  # compile cache (jaxprune._cache)
    cache.add_argument("--compile-cache", dest="cache_dir", type=Path, default=None, metavar="DIR",
                       help="keep compiled programs in DIR (default: $JAXPRUNE_CACHE_DIR, else "
                            "~/.cache/jaxprune; JAXPRUNE_CACHE_DIR=off disables it)")
    cache.add_argument("--no-compile-cache", dest="no_cache", action="store_true",
                       help="compile everything afresh (no persistent compilation cache)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    seen = set()
    modules = [_COMMANDS[command]] if command in _COMMANDS else list(dict.fromkeys(_COMMANDS.values()))
    for module_name in modules:
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
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_word(argv))
    args = parser.parse_args(argv)
    import jax

    from .. import disable_compile_cache, enable_compile_cache

    if not args.float32:
        jax.config.update("jax_enable_x64", True)
    if args.no_cache:  # before the first compilation; exported to worker processes
        disable_compile_cache()
    else:
        enable_compile_cache(args.cache_dir)
    try:
        check_paths(args)
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"jaxprune {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except CommandFailed as e:
        print(f"jaxprune {args.command}: failed: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except OSError as e:  # a file that could not be read or written after the checks (disk full, raced, ...)
        print(f"jaxprune {args.command}: error: {_os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jaxprune {args.command}: interrupted (finished work is saved)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
