"""Dependencies flow one way: the library never imports the CLI or the plots; importing flips no JAX flag."""

import ast
import pathlib
import subprocess
import sys

PKG = pathlib.Path(__file__).resolve().parent.parent / "jaxprune"


def test_library_modules_do_not_import_cli_or_plots():
    offenders = []
    for path in PKG.glob("_*.py"):
        if path.name == "__main__.py":  # the `python -m jaxprune` entry point is the CLI itself
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and (
                node.module.split(".")[0] in ("cli", "plots") or ".cli" in f".{node.module}"
            ):
                offenders.append(f"{path.name}: from {node.module}")
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("jaxprune.cli") or alias.name == "jaxprune.experiments._figures":
                        offenders.append(f"{path.name}: import {alias.name}")
    assert not offenders, offenders


def test_import_is_light_and_flag_free():
    code = (
        "import sys, jax; import jaxprune; "
        "assert not jax.config.jax_enable_x64, 'x64 flipped on import'; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'; "
        "assert not any(m.startswith('jaxprune.cli') for m in sys.modules), 'cli imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
