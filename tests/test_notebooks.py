"""The notebooks in `notebooks/` (jupytext percent format) run as scripts in their small mode and convert to
`.ipynb`.

Each notebook asserts on the science itself (ODE against simulation, implicit against finite-difference
gradients, predictions against concrete pruned networks, designed masks against baselines), so running it is a
check. The runs are started together, one subprocess per selected notebook, because their cost is mostly
single-threaded compilation; each test then waits for its own run.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
TIMEOUT_S = 900


def test_the_three_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["01_dynamics.py", "02_compare_pruning.py", "03_design_mask.py"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["JAXPRUNE_NOTEBOOK_SMALL"] = "1"
    env["MPLBACKEND"] = "Agg"
    # the notebooks import the jaxprune of this source tree
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


@pytest.fixture(scope="module")
def notebook_runs(request, tmp_path_factory):
    """Start every selected notebook at once (`python notebooks/NAME.py` in an empty temporary directory);
    map its path to `(process, cwd, log file)`."""
    selected = sorted(
        {item.callspec.params["path"] for item in request.session.items
         if getattr(item, "originalname", None) == "test_notebook_runs" and hasattr(item, "callspec")},
        key=str,
    )
    runs = {}
    env = _env()
    for path in selected:
        cwd = tmp_path_factory.mktemp(path.stem)
        log = tmp_path_factory.mktemp(path.stem + "_log") / "output.txt"
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, str(path)], cwd=cwd, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        runs[path] = (proc, cwd, log)
    yield runs
    for proc, _, _ in runs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.xdist_group("notebook_runs")  # one worker starts all three runs (the fixture above)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, notebook_runs):
    proc, cwd, log = notebook_runs[path]
    try:
        code = proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{path.name} did not finish within {TIMEOUT_S} s:\n{log.read_text()[-4000:]}")
    output = log.read_text()
    assert code == 0, f"{path.name} exited with {code}:\n{output[-6000:]}"
    assert "notebook ran in" in output
    assert list(cwd.iterdir()) == [], f"{path.name} wrote files into its working directory"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_converts_to_ipynb(path):
    import jupytext
    import nbformat

    nb = jupytext.read(path)
    kinds = [cell.cell_type for cell in nb.cells]
    assert kinds.count("markdown") >= 3 and kinds.count("code") >= 3, kinds
    assert kinds[0] == "markdown" and nb.cells[0].source.startswith("# "), "the notebook opens with a title"
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    assert 'jax.config.update("jax_enable_x64", True)' in code
    assert "JAXPRUNE_NOTEBOOK_SMALL" in code
    assert "assert" in code

    text = jupytext.writes(nb, fmt="ipynb")
    as_ipynb = nbformat.reads(text, as_version=4)
    nbformat.validate(as_ipynb)
    assert [c.cell_type for c in as_ipynb.cells] == kinds
    # and back: the percent script survives the round trip cell for cell
    again = jupytext.reads(jupytext.writes(as_ipynb, fmt="py:percent"), fmt="py:percent")
    assert [c.source for c in again.cells] == [c.source for c in nb.cells]
