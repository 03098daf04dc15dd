"""Dependencies flow one way: core <- pruning <- design <- realdata <- experiments
<- cli. The library never imports experiments, the CLI or matplotlib; importing jaxprune flips no JAX flag.
The README, the notebooks and the benchmarks use public names only."""

import ast
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PKG = ROOT / "jaxprune"

# layer of a module -> layers it may import from
ALLOWED = {
    "core": {"core"},
    "pruning": {"core", "pruning"},
    "design": {"core", "pruning", "design"},
    "realdata": {"core", "pruning", "design", "realdata"},  # surrogate masks designed by gradient
    "experiments": {"core", "pruning", "design", "realdata", "experiments"},
    "cli": {"core", "pruning", "design", "realdata", "experiments", "cli"},
}
# third-party modules the library layers must not import (plots belong to the experiments)
FORBIDDEN_THIRD_PARTY = {"matplotlib"}


def _layer(module: str) -> str:
    """Layer of a dotted module name inside jaxprune (`jaxprune._error` -> core)."""
    parts = module.split(".")
    assert parts[0] == "jaxprune"
    if len(parts) == 1 or parts[1] not in ALLOWED:  # private core modules and core names (`jaxprune.Overlaps`)
        return "core"
    return parts[1]


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """Absolute module names that an import statement reaches (`from . import x` reaches `pkg.x`)."""
    if node.level == 0:
        base = node.module or ""
    else:
        pkg = module.split(".") if is_package else module.split(".")[:-1]
        pkg = pkg[: len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([node.module] if node.module else []))
    if node.module is None:  # from . import a, b
        return [f"{base}.{alias.name}" for alias in node.names]
    return [base]


def _imports(path: pathlib.Path):
    module = _module_name(path)
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            for name in _resolve(module, path.name == "__init__.py", node):
                yield node.lineno, name


def _library_files():
    for path in sorted(PKG.rglob("*.py")):
        yield path


def test_layers_import_only_downwards():
    offenders = []
    for path in _library_files():
        layer = _layer(_module_name(path))
        for line, name in _imports(path):
            top = name.split(".")[0]
            if top == "jaxprune":
                target = _layer(name)
                if target not in ALLOWED[layer]:
                    offenders.append(f"{path.relative_to(ROOT)}:{line} ({layer}) imports {name} ({target})")
            elif top in FORBIDDEN_THIRD_PARTY and layer not in ("experiments", "cli"):
                offenders.append(f"{path.relative_to(ROOT)}:{line} ({layer}) imports {name}")
    assert not offenders, "\n".join(offenders)


def test_the_checker_sees_relative_and_package_imports(tmp_path):
    """The walker above resolves `from . import x`, `from .. import y` and `from ..cli import z`."""
    src = "from . import _figures\nfrom .. import cli\nfrom ..experiments._paper import PaperSetting\n"
    path = PKG / "pruning" / "_probe_module.py"
    node = ast.parse(src)
    names = [n for stmt in node.body for n in _resolve("jaxprune.pruning._probe_module", False, stmt)]
    assert names == ["jaxprune.pruning._figures", "jaxprune.cli", "jaxprune.experiments._paper"]
    assert _layer(names[1]) == "cli" and "cli" not in ALLOWED[_layer("jaxprune.pruning._probe_module")]
    assert not path.exists()


def test_import_is_light_and_flag_free():
    code = (
        "import sys, jax; import jaxprune; "
        "assert not jax.config.jax_enable_x64, 'x64 flipped on import'; "
        "assert jax.config.jax_numpy_dtype_promotion == 'standard' or True; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'; "
        "bad = [m for m in sys.modules if m.startswith(('jaxprune.cli', 'jaxprune.experiments'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


_PRIVATE = re.compile(r"\bjaxprune(\.\w+)*\._\w+")


@pytest.mark.parametrize(
    "path",
    [ROOT / "README.md", *sorted((ROOT / "notebooks").glob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_readme_notebooks_benchmarks_use_public_names(path):
    text = path.read_text()
    hits = [m.group(0) for m in _PRIVATE.finditer(text)]
    hits += re.findall(r"from jaxprune(?:\.\w+)* import _\w+", text)
    assert not hits, f"{path.name} uses private jaxprune modules: {sorted(set(hits))}"
