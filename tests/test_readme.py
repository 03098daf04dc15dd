"""The README's Python tour runs as written (slow: it compiles ODE, fixed-point and simulation programs)."""

import pathlib
import re

import pytest


@pytest.mark.slow
def test_readme_python_tour_runs():
    text = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert abs(float(namespace["sol"].eps_g[-1]) - 0.0011678) < 1e-6  # the published noisy plateau
    assert int(namespace["fp"].status) == 0
