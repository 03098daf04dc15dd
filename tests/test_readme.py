"""The README runs as written: its Python tour (slow: it compiles ODE, fixed-point and simulation programs), and
its command lines and command table (fast: they must parse with the real command-line parser)."""

import pathlib
import re
import shlex

import pytest

from jaxprune.cli._main import _COMMANDS, build_parser

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def _subparsers(parser):
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


@pytest.mark.slow
def test_readme_python_tour_runs():
    import jaxprune as jp

    blocks = _blocks(README.read_text(), "python")
    assert blocks, "README has no ```python block"
    namespace = {}
    for i, code in enumerate(blocks):  # the tour's blocks run in order, in one namespace
        exec(compile(code, f"README.md (python block {i + 1})", "exec"), namespace)
    results = [v for v in namespace.values() if isinstance(v, (jp.ODESolution, jp.FixedPointResult))]
    assert results, "the tour computes no ODE solution or fixed point"
    for r in results:  # what the tour shows succeeded
        assert int(r.status) == 0
    if isinstance(namespace.get("sol"), jp.ODESolution) and float(namespace["cfg"].sigma) == 0.1:
        assert abs(float(namespace["sol"].eps_g[-1]) - 0.0011678) < 1e-6  # the published noisy plateau


def test_readme_command_lines_parse():
    """Every `jaxprune ...` line of the README's shell blocks is accepted by the parser (nothing is run)."""
    parser = build_parser()
    lines = []
    for block in _blocks(README.read_text(), "(?:bash|sh|console)"):
        for line in block.splitlines():
            for part in re.split(r"&&|;", line.split("#")[0]):
                words = shlex.split(part.strip().lstrip("$ "))
                if words and words[0] == "jaxprune":
                    lines.append(words[1:])
    assert lines, "README shows no jaxprune command line"
    for argv in lines:
        try:
            parser.parse_args(argv)
        except SystemExit as e:
            pytest.fail(f"README command `jaxprune {' '.join(argv)}` does not parse (exit {e.code})")


def test_readme_command_table_matches_the_parser():
    """The README's command table lists every command, and every option it names exists for that command."""
    text = README.read_text()
    parser = build_parser()
    subs = _subparsers(parser)
    rows = re.findall(r"^\| `jaxprune ([a-z-]+)([^`]*)` \|", text, re.M)
    named = {name for name, _ in rows}
    assert set(_COMMANDS) <= named, f"commands missing from the README table: {set(_COMMANDS) - named}"
    for name, rest in rows:
        assert name in subs, f"README names an unknown command {name!r}"
        known = set(subs[name]._option_string_actions) | set(parser._option_string_actions)
        for flag in re.findall(r"--[a-zA-Z][\w-]*", rest):
            assert flag in known, f"README: `jaxprune {name}` has no option {flag}"
