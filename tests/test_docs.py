"""The documentation site: `__all__` of every public namespace lists exactly its re-exports, the site builds with
`mkdocs build --strict` (warnings are errors, so a renamed function or a broken cross-reference fails), every
public name has a documented entry, the notebooks carry their outputs, and the command-line page is current."""

import ast
import json
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NAMESPACES = {
    "jaxprune": ROOT / "jaxprune" / "__init__.py",
    "jaxprune.pruning": ROOT / "jaxprune" / "pruning" / "__init__.py",
    "jaxprune.design": ROOT / "jaxprune" / "design" / "__init__.py",
    "jaxprune.realdata": ROOT / "jaxprune" / "realdata" / "__init__.py",
    "jaxprune.experiments": ROOT / "jaxprune" / "experiments" / "__init__.py",
}
API_PAGE = {"jaxprune": "core", "jaxprune.pruning": "pruning", "jaxprune.design": "design",
            "jaxprune.realdata": "realdata", "jaxprune.experiments": "experiments"}
NOT_DOCUMENTED = {"__version__", "pruning", "design", "realdata", "experiments"}  # a string and the subpackages


def _static_all(path: pathlib.Path) -> tuple[list[str], set[str]]:
    tree = ast.parse(path.read_text())
    declared, exported = [], set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            declared = ast.literal_eval(node.value)
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            exported |= {a.asname for a in node.names if a.asname and a.asname == a.name}
    return declared, exported


@pytest.mark.parametrize("name", sorted(NAMESPACES))
def test_all_lists_exactly_the_reexports(name):
    declared, exported = _static_all(NAMESPACES[name])
    assert len(declared) == len(set(declared)), f"{name}.__all__ has duplicates"
    missing = exported - set(declared)
    extra = set(declared) - exported - NOT_DOCUMENTED
    assert not missing and not extra, f"{name}.__all__: missing {sorted(missing)}, not exported {sorted(extra)}"


def test_cli_page_is_current():
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_cli.py"), "--check"], cwd=ROOT)
    assert proc.returncode == 0, "docs/cli.md is out of date: run `python3 docs/gen_cli.py`"


@pytest.mark.parametrize("stem", ["01_dynamics", "02_compare_pruning", "03_design_mask"])
def test_notebooks_are_paired_and_carry_outputs(stem):
    src = (ROOT / "notebooks" / f"{stem}.py").read_text()
    nb = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("outputs") is not None for c in code)
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in code for o in c["outputs"]), f"{stem}.ipynb shows no figure"
    # the .ipynb was made from the current source: every code cell of the source is in it, in order
    py_cells = [c.strip() for c in re.split(r"^# %%.*$", src, flags=re.M)[1:]]
    py_code = [c for c in py_cells if c and not all(line.startswith("#") for line in c.splitlines())]
    nb_code = ["".join(c["source"]).strip() for c in code]
    assert nb_code == py_code, f"{stem}.ipynb is stale: run `jupytext --to ipynb --execute notebooks/{stem}.py`"


def test_site_builds_strictly_and_documents_every_public_name(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    missing = []
    for name, path in NAMESPACES.items():
        html = (site / "api" / API_PAGE[name] / "index.html").read_text()
        declared, _ = _static_all(path)
        for public in declared:
            if public not in NOT_DOCUMENTED and f'id="{name}.{public}"' not in html:
                missing.append(f"{name}.{public}")
    assert not missing, f"public names without a documented entry: {missing}"
    for stem in ("01_dynamics", "02_compare_pruning", "03_design_mask"):
        page = (site / "notebooks" / stem / "index.html").read_text()
        # the page is the executed .ipynb, not its jupytext .py source: it carries the figures (base64 PNGs
        # of more than 10 kB; the theme's own inline icons are a few hundred bytes)
        figures = [m for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page) if len(m) > 10_000]
        assert figures, f"the site's page of {stem} shows no figure (was the .py source rendered?)"
