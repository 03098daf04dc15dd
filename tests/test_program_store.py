"""The program store (`jaxprune._program_store`): exported solves are written once, loaded by later calls and
processes, give the same numbers as the ordinary path, and are never used under a transformation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import diffrax
import jax
import numpy as np
import pytest

import jaxprune as jp
from jaxprune import _program_store

GRID = np.array([0.0, 1.0, 10.0, 50.0])


@pytest.fixture
def store(tmp_path):
    old = _program_store.program_dir()
    _program_store.set_program_dir(tmp_path / "programs")
    yield tmp_path / "programs"
    _program_store.set_program_dir(old)


def _problem():
    return jp.Overlaps.reference(3, 2), jp.SGDConfig(eta=0.5)


def _files(folder):
    return sorted(folder.glob("*.jaxexport")) if folder.exists() else []


def _assert_same(a: jp.ODESolution, b: jp.ODESolution):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_store_writes_once_then_loads_and_matches_the_ordinary_path(store):
    state, config = _problem()
    _program_store.set_program_dir(None)
    plain = jp.solve_ode(state, config, GRID)
    _program_store.set_program_dir(store)
    first = jp.solve_ode(state, config, GRID)
    files = _files(store)
    assert len(files) == 1  # the adaptive solve exported: it carries no host callback
    assert "callback" not in jax.export.deserialize(bytearray(files[0].read_bytes())).mlir_module()
    _program_store.set_program_dir(store)  # forget what this process loaded: read it back from disk
    again = jp.solve_ode(state, config, GRID)
    assert _files(store) == files
    _assert_same(plain, first)
    _assert_same(plain, again)
    other = jp.solve_ode(state, jp.SGDConfig(eta=0.3), GRID)  # new values, same program
    assert _files(store) == files
    assert not np.allclose(np.asarray(other.eps_g[1:]), np.asarray(plain.eps_g[1:]))


def test_each_static_option_gets_its_own_program(store):
    state, config = _problem()
    jp.solve_ode(state, config, GRID)
    jp.solve_ode(state, config, GRID, rtol=1e-6)
    jp.solve_ode(state, config, GRID, integrator="euler", dt=0.01)
    jp.solve_ode(jp.Overlaps.reference(4, 2), config, GRID)
    assert len(_files(store)) == 4


def test_unreadable_entry_is_replaced_with_a_warning(store):
    state, config = _problem()
    ref = jp.solve_ode(state, config, GRID)
    (path,) = _files(store)
    path.write_bytes(b"not an export")
    _program_store.set_program_dir(store)
    with pytest.warns(UserWarning, match="unreadable"):
        again = jp.solve_ode(state, config, GRID)
    _assert_same(ref, again)
    assert path.read_bytes() != b"not an export"


def test_transformed_calls_bypass_the_store(store):
    state, config = _problem()
    f = jax.jit(lambda eta: jp.solve_ode(state, jp.SGDConfig(eta=eta), GRID, throw=False).eps_g[-1])
    g = jax.grad(lambda eta: jp.solve_ode(state, jp.SGDConfig(eta=eta), GRID, throw=False).eps_g[-1])
    assert np.isfinite(float(f(0.5))) and np.isfinite(float(g(0.5)))
    assert _files(store) == []


def test_a_new_process_loads_the_stored_program(tmp_path):
    """Two processes with one cache folder: the first exports, the second only loads (and traces no solve),
    and both print the same numbers."""
    script = textwrap.dedent("""
        import jax
        jax.config.update("jax_enable_x64", True)
        import jaxprune as jp
        jp.enable_compile_cache()
        sol = jp.solve_ode(jp.Overlaps.reference(3, 2), jp.SGDConfig(eta=0.5), [0.0, 1.0, 10.0, 50.0])
        print(repr(float(sol.eps_g[-1])), "diffrax" in __import__("sys").modules)
    """)
    env = dict(os.environ, JAXPRUNE_CACHE_DIR=str(tmp_path))
    run = lambda: subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,  # noqa: E731
                                 timeout=300, check=True).stdout.split()
    first, second = run(), run()
    assert first[0] == second[0]
    assert first[1] == "True" and second[1] == "False"  # the second process never imported diffrax
    assert len(list(tmp_path.glob("xla-*/programs/*.jaxexport"))) == 1


@pytest.mark.parametrize("obj,name", [(diffrax.Tsit5(), "tsit5"), (diffrax.Dopri5(), "dopri5"),
                                      (diffrax.Euler(), "euler")])
def test_integrator_objects_match_their_names(obj, name):
    state, config = _problem()
    a = jp.solve_ode(state, config, GRID, integrator=obj, dt=0.01)
    b = jp.solve_ode(state, config, GRID, integrator=name, dt=0.01)
    _assert_same(a, b)


@pytest.mark.parametrize("bad", ["rk4", 3, diffrax.ImplicitEuler()])
def test_unknown_integrator_is_a_one_line_error(bad):
    state, config = _problem()
    with pytest.raises(ValueError, match="integrator must be"):
        jp.solve_ode(state, config, GRID, integrator=bad)
