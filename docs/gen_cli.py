"""Write docs/cli.md from the `jaxprune` argument parser (every command and its flags), with example outputs.

    python3 docs/gen_cli.py            # regenerate the flags from the parser, keep the stored example outputs
    python3 docs/gen_cli.py --examples # also rerun the example commands and store their outputs

The docs test regenerates the flags part in memory and fails when docs/cli.md is out of date.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "cli.md"
EXAMPLES_FILE = HERE / "cli_examples.json"

# command -> an example invocation with small sizes (run by --examples)
EXAMPLES = {
    "error": None,  # needs a state file: shown in the text instead
    "ode": "jaxprune ode --K 2 --M 2 --eta 0.5 --sigma 0.1 --alpha 200",
    "simulate": "jaxprune simulate --N 200 --K 2 --M 2 --alpha 20",
    "fixed-point": "jaxprune fixed-point --K 2 --M 2 --mode two-layer --eta 0.5 --sigma 0.3 --alpha 300",
    "bounds": "jaxprune bounds --K 6 --M 2 --v-star 4",
    "sweep": None,
    "prune": None,
    "compare": None,
    "paper": None,
    "design": None,
    "realdata": None,
    "reproduce": None,
}

HEADER = """# Command line

`jaxprune COMMAND [options]`. Every command checks its arguments first: a bad value or file gives one line
naming it and the allowed range, with exit code 2. Theory runs in float64 unless `--float32` is given. Long
runs write their results atomically and resume when rerun. `--json PATH` writes the numbers a command prints.

This page is generated from the argument parser by `python3 docs/gen_cli.py` (the docs test checks that it is
up to date).
"""


def _parser() -> argparse.ArgumentParser:
    import os

    os.environ["COLUMNS"] = "100"  # usage lines wrap at the terminal width: fix it so the page is reproducible
    from jaxprune.cli import build_parser

    return build_parser()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise RuntimeError("the jaxprune parser has no subcommands")


def _flags_table(sub: argparse.ArgumentParser) -> list[str]:
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest.upper()}`"
        if action.metavar and action.option_strings and action.nargs != 0:
            name += f" `{action.metavar if isinstance(action.metavar, str) else ' '.join(action.metavar)}`"
        default = "" if action.default in (None, argparse.SUPPRESS, False) or action.nargs == 0 else f"`{action.default}`"
        text = (action.help or "").replace("|", "\\|").replace("\n", " ")
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            text += f" (one of {', '.join(f'`{c}`' for c in action.choices)})"
        rows.append(f"| {name} | {default} | {text} |")
    return rows


def render(examples: dict[str, str] | None = None) -> str:
    parser = _parser()
    lines = [HEADER, "## Global options", "", *_flags_table(parser)[:-0 or None], ""]
    # the global table lists the subcommand positional too: drop it
    lines = [ln for ln in lines if not ln.startswith("| `COMMAND`")]
    for name, sub in _subparsers(parser).items():
        lines += [f"## `jaxprune {name}`", "", (sub.description or "").strip(), "", f"    {sub.format_usage().strip()}", ""]
        lines += _flags_table(sub)
        if examples and examples.get(name):
            cmd, out = examples[name]["command"], examples[name]["output"]
            lines += ["", "Example:", "", "```console", f"$ {cmd}", out.rstrip(), "```"]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def run_examples() -> dict[str, dict[str, str]]:
    found = {}
    for name, cmd in EXAMPLES.items():
        if not cmd:
            continue
        proc = subprocess.run(cmd.split(), capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"example for {name} failed ({proc.returncode}): {proc.stderr.strip()}")
        found[name] = {"command": cmd, "output": proc.stdout}
    return found


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", action="store_true", help="rerun the example commands")
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md is out of date")
    args = ap.parse_args(argv)
    examples = json.loads(EXAMPLES_FILE.read_text()) if EXAMPLES_FILE.exists() else {}
    if args.examples:
        examples = run_examples()
        EXAMPLES_FILE.write_text(json.dumps(examples, indent=1) + "\n")
    text = render(examples)
    if args.check:
        return 0 if OUT.exists() and OUT.read_text() == text else 1
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
