"""The LAPACK-free small-matrix helpers of jaxprune.pruning (private module `_linalg`), and the hang they fix:
the K = 20, M = 5 closed forms used to hang intermittently inside batched LAPACK getrf (issues 16 and 17)."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune.pruning._linalg import logdet_psd, solve_psd, solve_small


def _psd(rng, n, rank=None):
    a = rng.normal(size=(n, n if rank is None else rank))
    return a @ a.T


@pytest.mark.parametrize("n", [1, 3, 7, 20])
def test_solve_and_logdet_match_numpy(rng, n):
    G = _psd(rng, n) + 0.1 * np.eye(n)
    b = rng.normal(size=n)
    x, singular = solve_psd(jnp.asarray(G), jnp.asarray(b))
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(G, b), rtol=1e-9, atol=1e-12)
    assert not bool(singular)
    sign, ref = np.linalg.slogdet(G)
    assert sign > 0
    np.testing.assert_allclose(float(logdet_psd(jnp.asarray(G))), ref, rtol=1e-11, atol=1e-11)
    A = rng.normal(size=(n, n))  # general, indefinite
    np.testing.assert_allclose(np.asarray(solve_small(jnp.asarray(A), jnp.asarray(b))), np.linalg.solve(A, b),
                               rtol=1e-8, atol=1e-10)


def test_singular_block_rule(rng):
    """Two identical units: the later one is dropped (x_j = 0), the solution is an exact least-squares one and
    the determinant is zero (-inf log)."""
    a = rng.normal(size=(4, 6))
    a[2] = a[0]
    G = a @ a.T
    b = G @ rng.normal(size=4)  # consistent right side (in the range of G)
    x, singular = solve_psd(jnp.asarray(G), jnp.asarray(b))
    x = np.asarray(x)
    assert bool(singular) and x[2] == 0.0
    np.testing.assert_allclose(G @ x, b, rtol=1e-9, atol=1e-9)
    assert float(logdet_psd(jnp.asarray(G))) == -np.inf


def test_jacfwd_matches_finite_differences(rng):
    G0 = _psd(rng, 5) + 0.5 * np.eye(5)
    b = jnp.asarray(rng.normal(size=5))
    dG = _psd(rng, 5)

    def f(t):
        return solve_psd(jnp.asarray(G0) + t * jnp.asarray(dG), b)[0]

    def g(t):
        return logdet_psd(jnp.asarray(G0) + t * jnp.asarray(dG))

    h = 1e-6
    for fn in (f, g):
        fd = (fn(h) - fn(-h)) / (2 * h)
        np.testing.assert_allclose(np.asarray(jax.jacfwd(fn)(0.0)), np.asarray(fd), rtol=1e-6, atol=1e-8)
    # closed form: d logdet = tr(G^-1 dG)
    np.testing.assert_allclose(float(jax.grad(g)(0.0)), np.trace(np.linalg.solve(G0, dG)), rtol=1e-10)


def test_vmapped_helpers_match_numpy(rng):
    Gs = np.stack([_psd(rng, 5) + 0.01 * np.eye(5) for _ in range(300)])
    bs = rng.normal(size=(300, 5))
    x, _ = jax.jit(jax.vmap(solve_psd))(jnp.asarray(Gs), jnp.asarray(bs))
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(Gs, bs[..., None])[..., 0], rtol=1e-7, atol=1e-9)
    ld = jax.jit(jax.vmap(logdet_psd))(jnp.asarray(Gs))
    np.testing.assert_allclose(np.asarray(ld), np.linalg.slogdet(Gs)[1], rtol=1e-10, atol=1e-10)


_HANG_SCRIPT = textwrap.dedent(
    """
    import jax
    jax.config.update("jax_enable_x64", True)
    import jaxprune as jp
    spec = jp.pruning.specialisation(20, 5, 4.0)
    e = float(jp.pruning.balanced_node_error(spec, 1))
    lo = jp.pruning.node_error_range(spec, 3, reweight="optimal")
    d = float(jp.pruning.dpp_node_error(spec, 4, reweight="preactivation"))
    print("ok", e, float(lo.best), d)
    """
)


@pytest.mark.slow
def test_k20_m5_closed_forms_never_hang():
    """Repeat the once-hanging K = 20, M = 5 node summaries (balanced, bounds with the optimal second layer,
    the DPP with reweighting) in fresh processes, each under a time limit. Before the fix about half of the
    fresh processes hung in batched getrf."""
    env = dict(os.environ)
    runs, limit = 4, 120
    for i in range(runs):
        try:
            out = subprocess.run([sys.executable, "-c", _HANG_SCRIPT], capture_output=True, text=True,
                                 timeout=limit, env=env)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run {i + 1} of {runs} did not finish within {limit} s (hang)")
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.startswith("ok"), out.stdout
        e = float(out.stdout.split()[1])
        # independent value: at k = 1 the balanced choice keeps one unit of weight v*/z = 1 aligned with one
        # teacher: eps = 1/2 [u^2 I2(1,1,1) - 2 u v* I2(1,1,1) + M v*^2 I2(1,1,1)], I2(1,1,1) = (2/pi) asin(1/2) = 1/3
        u, vs = 4.0 / 4, 4.0
        ref = 0.5 * (u * u / 3 - 2 * u * vs / 3 + 5 * vs * vs / 3)
        assert abs(e - ref) < 1e-10
