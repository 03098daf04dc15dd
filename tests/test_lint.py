"""Static check of every Python file in the project (package, tests, benchmarks, notebooks, docs scripts):
undefined names, unused imports and variables, syntax errors (ruff's `F` and `E9` rules, configured in
pyproject.toml). Benchmarks and notebook sources are not imported by the other tests, so a name that a
refactor removed would otherwise only show when a user runs them."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    try:
        import ruff  # noqa: F401  (the PyPI package ships the binary)
    except ImportError:
        exe = shutil.which("ruff")
        if exe is None:
            pytest.skip("ruff is not installed (it is in the test extra: pip install -e '.[test]')")
        return [exe]
    return [sys.executable, "-m", "ruff"]


def test_ruff_finds_nothing():
    out = subprocess.run(_ruff() + ["check", "--no-cache", "--output-format", "concise", "."], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_ruff_would_catch_an_undefined_name(tmp_path):
    (tmp_path / "bad.py").write_text("def f():\n    return _NOT_DEFINED\n")
    out = subprocess.run(_ruff() + ["check", "--no-cache", "--config", str(ROOT / "pyproject.toml"),
                                    str(tmp_path / "bad.py")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "F821" in out.stdout, out.stdout + out.stderr


def test_every_module_imports():
    """A name moved between modules breaks `from ._x import name` only at import time, which static checks
    miss: import every module of the package (the CLI's `__main__` aside, which runs the command line)."""
    import importlib
    import pkgutil

    import jaxprune

    failed = []
    for mod in pkgutil.walk_packages(jaxprune.__path__, prefix="jaxprune."):
        if mod.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(mod.name)
        except Exception as e:  # noqa: BLE001 - every failure is reported below
            failed.append(f"{mod.name}: {type(e).__name__}: {e}")
    assert not failed, "\n".join(failed)
