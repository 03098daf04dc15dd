"""Fixed points of the SGD ODEs: residual, published value, small-noise asymptote, stability, implicit
gradients against finite differences, duplicated units, padding, and the loss of stability at large eta."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune._dynamics import SGDConfig, solve_ode, vector_field
from jaxprune._fixed_point import (
    fixed_point_from_ode,
    num_unknowns,
    pack_state,
    solve_fixed_point,
    unpack_state,
)
from jaxprune._overlaps import Overlaps
from jaxprune._status import Status

_SOLVE = jax.jit(lambda s, c: solve_fixed_point(s, c, throw=False))


def _specialised(K, M, *, r=0.95, two_layer=False, extra_q=1e-3):
    """Student unit i < M aligned with teacher i; extra units small; v = 1 (scm) or v = v* (two-layer)."""
    Q = np.eye(K)
    Q[M:, M:] *= extra_q
    R = np.zeros((K, M))
    R[np.arange(M), np.arange(M)] = r
    v = np.ones(K)
    return Overlaps(Q=jnp.asarray(Q), R=jnp.asarray(R), T=jnp.eye(M), v=jnp.asarray(v), v_star=jnp.ones(M))


def _reference_init(K, M):
    i, n = np.arange(K)[:, None], np.arange(M)[None, :]
    return Overlaps(Q=jnp.eye(K), R=jnp.asarray(1e-3 * np.sin(1.0 + i * M + n)), T=jnp.eye(M), v=jnp.ones(K),
                    v_star=jnp.ones(M))


def test_pack_unpack_roundtrip(rng):
    K, M = 3, 2
    a = rng.normal(size=(K, K))
    s = Overlaps(Q=jnp.asarray(a @ a.T), R=jnp.asarray(rng.normal(size=(K, M))), T=jnp.eye(M),
                 v=jnp.asarray(rng.normal(size=K)), v_star=jnp.ones(M))
    for mode in ("scm", "two-layer"):
        y = pack_state(s, mode)
        assert y.shape == (num_unknowns(K, M, mode),)
        back = unpack_state(y, s, mode)
        for k in ("Q", "R", "T", "v", "v_star"):
            np.testing.assert_array_equal(getattr(back, k), getattr(s, k))


def test_bad_arguments():
    s = _specialised(2, 2)
    with pytest.raises(ValueError, match="active"):
        solve_fixed_point(s, SGDConfig(eta=0.5), active=jnp.ones(3, bool))
    with pytest.raises(ValueError, match="max_steps"):
        solve_fixed_point(s, SGDConfig(eta=0.5), max_steps=0)
    with pytest.raises(ValueError, match="alpha"):
        fixed_point_from_ode(s, SGDConfig(eta=0.5), alpha=-1.0)


def test_published_value_residual_and_stability():
    """K = M = 2 scm, eta = 0.5, sigma = 0.1: eps_g* = 0.0011678 (reference C++ tool, 5 digits)."""
    res = _SOLVE(_specialised(2, 2), SGDConfig(eta=0.5, sigma=0.1))
    assert int(res.status) == Status.SUCCESS
    np.testing.assert_allclose(float(res.eps_g), 0.0011678, rtol=5e-5)
    # residual recomputed independently from the vector field at the returned state
    d = vector_field(res.state, SGDConfig(eta=0.5, sigma=0.1))
    assert max(float(jnp.max(jnp.abs(d.Q))), float(jnp.max(jnp.abs(d.R)))) < 1e-12
    # eigenvalues against a finite-difference Jacobian of the vector field (numpy eig)
    y0 = np.asarray(pack_state(res.state, "scm"))
    h = 1e-6
    field = jax.jit(jax.vmap(lambda y: pack_state(vector_field(unpack_state(y, res.state, "scm"),
                                                                SGDConfig(eta=0.5, sigma=0.1)), "scm")))
    E = np.eye(y0.size)
    J = (np.asarray(field(y0[None, :] + h * E)) - np.asarray(field(y0[None, :] - h * E))).T / (2 * h)
    ref = np.sort(np.linalg.eigvals(J).real)[::-1]
    np.testing.assert_allclose(np.asarray(res.eigenvalues.real), ref, rtol=1e-5, atol=1e-8)
    assert np.all(ref < 0) and bool(res.stable)
    np.testing.assert_allclose(float(res.slowest_eigenvalue.real), ref[0], rtol=1e-5)


def test_small_noise_asymptote_realisable():
    """eps_g* ~ eta sigma^2 (L + M / sqrt 3) / (2 pi) as eta -> 0 (Goldt et al. 2019), K = M = 2, L = 0."""
    sigma, K, M = 0.01, 2, 2
    ratios = []
    for eta in (0.05, 0.02, 0.01):
        res = _SOLVE(_specialised(K, M), SGDConfig(eta=eta, sigma=sigma))
        assert int(res.status) == Status.SUCCESS
        ratios.append(float(res.eps_g) / (eta * sigma**2 * (K - M + M / np.sqrt(3)) / (2 * np.pi)))
    assert abs(ratios[-1] - 1) < 0.01
    assert abs(ratios[2] - 1) < abs(ratios[1] - 1) < abs(ratios[0] - 1)


def test_large_eta_never_silent_success():
    """Past the stability edge the solver reports a failure code (no stable fixed point near the start)."""
    for s in (_specialised(2, 2), _reference_init(2, 2)):
        for eta in (3.0, 5.0):
            res = _SOLVE(s, SGDConfig(eta=eta, sigma=0.1))
            assert int(res.status) in (Status.UNSTABLE, Status.NOT_CONVERGED, Status.INVALID, Status.DIVERGED)
    # and the unspecialised symmetric stationary point at small eta is a saddle: UNSTABLE, not SUCCESS
    res = _SOLVE(_reference_init(2, 2), SGDConfig(eta=0.5, sigma=0.1))
    assert int(res.status) == Status.UNSTABLE and float(res.slowest_eigenvalue.real) > 0


# ------------------------------------------------------------------------------------------ slow checks


@pytest.mark.slow
def test_throw_raises_on_failure():
    with pytest.raises(Exception, match="fixed-point solve failed"):
        solve_fixed_point(_reference_init(2, 2), SGDConfig(eta=0.5, sigma=0.1))


@pytest.mark.slow
def test_small_noise_asymptote_overrealisable():
    """K = 3, M = 2 (L = 1), scm, from a specialised state with a small third unit."""
    sigma, K, M = 0.01, 3, 2
    ratios = []
    for eta in (0.05, 0.02, 0.01):
        res = solve_fixed_point(_specialised(K, M), SGDConfig(eta=eta, sigma=sigma), throw=False)
        assert int(res.status) in (Status.SUCCESS, Status.SINGULAR), int(res.status)
        ratios.append(float(res.eps_g) / (eta * sigma**2 * (K - M + M / np.sqrt(3)) / (2 * np.pi)))
    print("K=3 M=2 ratios", ratios)
    assert abs(ratios[-1] - 1) < 0.05
    assert abs(ratios[2] - 1) < abs(ratios[0] - 1)


@pytest.mark.slow
def test_matches_long_ode_run():
    """eps_g* equals the long-time limit of the ODE (tsit5, alpha = 1e4) from the reference initial state."""
    cfg = SGDConfig(eta=0.5, sigma=0.1)
    sol = solve_ode(_reference_init(2, 2), cfg, [0.0, 1e4])
    res = solve_fixed_point(sol.final, cfg)
    np.testing.assert_allclose(float(res.eps_g), float(sol.eps_g[-1]), rtol=1e-6)
    np.testing.assert_allclose(float(res.eps_g), 0.0011678, rtol=5e-5)
    res2 = fixed_point_from_ode(_reference_init(2, 2), cfg, alpha=1000.0)
    np.testing.assert_allclose(float(res2.eps_g), float(sol.eps_g[-1]), rtol=1e-6)


def _two_layer_problem():
    base = _specialised(2, 2)
    return Overlaps(Q=base.Q, R=base.R, T=jnp.asarray([[1.0, 0.1], [0.1, 0.9]]), v=jnp.asarray([1.0, 1.0]),
                    v_star=jnp.asarray([1.0, 0.8]))


def _eps_params(p, start):
    cfg = SGDConfig(eta=p["eta"], eta_v=p["eta_v"], sigma=p["sigma"], mode="two-layer")
    s = Overlaps(Q=start.Q, R=start.R, T=p["T"], v=start.v, v_star=p["v_star"])
    return solve_fixed_point(s, cfg, throw=False).eps_g


@pytest.mark.slow
def test_implicit_gradients_match_finite_differences():
    """d eps*/d(eta, eta_v, sigma, v*, T) by the implicit function theorem vs central differences."""
    start = _two_layer_problem()
    p0 = {"eta": jnp.asarray(0.5), "eta_v": jnp.asarray(0.3), "sigma": jnp.asarray(0.1),
          "v_star": start.v_star, "T": start.T}
    fwd = jax.jit(_eps_params)
    res = solve_fixed_point(start, SGDConfig(eta=0.5, eta_v=0.3, sigma=0.1, mode="two-layer"), throw=False)
    assert int(res.status) == Status.SUCCESS
    start = res.state  # start at the fixed point: FD and gradient see the same branch
    g = jax.jit(jax.grad(_eps_params))(p0, start)
    h = 1e-5

    def fd(update):
        plus = jax.tree.map(lambda a: a, p0)
        minus = jax.tree.map(lambda a: a, p0)
        update(plus, h)
        update(minus, -h)
        return (float(fwd(plus, start)) - float(fwd(minus, start))) / (2 * h)

    def set_scalar(k):
        def u(p, d):
            p[k] = p[k] + d
        return u

    for k in ("eta", "eta_v", "sigma"):
        np.testing.assert_allclose(float(g[k]), fd(set_scalar(k)), rtol=1e-5, atol=1e-10)
    for n in range(2):
        def u(p, d, n=n):
            p["v_star"] = p["v_star"].at[n].add(d)
        np.testing.assert_allclose(float(g["v_star"][n]), fd(u), rtol=1e-5, atol=1e-10)
    for a, b in ((0, 0), (1, 1), (0, 1)):
        def u(p, d, a=a, b=b):
            p["T"] = p["T"].at[a, b].add(d) if a == b else p["T"].at[a, b].add(d).at[b, a].add(d)
        want = float(g["T"][a, b]) if a == b else float(g["T"][a, b] + g["T"][b, a])
        np.testing.assert_allclose(want, fd(u), rtol=1e-5, atol=1e-10)


@pytest.mark.slow
def test_gradient_matches_long_ode_finite_difference():
    """d eps*/d sigma against a central difference of the long-time (alpha = 2e4) ODE error."""
    s0 = _specialised(2, 2)
    grad = jax.grad(lambda sg: solve_fixed_point(s0, SGDConfig(eta=0.5, sigma=sg)).eps_g)(0.1)
    run = jax.jit(lambda sg: solve_ode(s0, SGDConfig(eta=0.5, sigma=sg), np.asarray([0.0, 2e4]), rtol=1e-11,
                                       atol=1e-13, max_steps=400_000).eps_g[-1])
    h = 1e-3
    fd = (float(run(0.1 + h)) - float(run(0.1 - h))) / (2 * h)
    np.testing.assert_allclose(float(grad), fd, rtol=1e-4)
    # the exact value is quadratic-ish in sigma: eps ~ c sigma^2 => d eps / d sigma ~ 2 eps / sigma
    np.testing.assert_allclose(float(grad), 2 * 0.0011678 / 0.1, rtol=0.05)


@pytest.mark.slow
@pytest.mark.xfail(reason="open (issue 3): the solver reports UNSTABLE at the duplicated-unit state; whether a "
                          "positive eigenvalue there is physical (copies splitting) or a tolerance artefact "
                          "is not yet settled", strict=False)
def test_duplicated_units_handled_by_fallback():
    """K = 4, M = 2, two-layer, each teacher unit copied twice (v = v*/2 each): singular Jacobian."""
    r, q = 0.95, 1.0
    Rd = np.zeros((4, 2))
    Rd[[0, 1], 0] = r
    Rd[[2, 3], 1] = r
    Q = np.zeros((4, 4))
    Q[:2, :2] = q
    Q[2:, 2:] = q
    s = Overlaps(Q=jnp.asarray(Q), R=jnp.asarray(Rd), T=jnp.eye(2), v=jnp.full(4, 0.5), v_star=jnp.ones(2))
    res = solve_fixed_point(s, SGDConfig(eta=0.5, eta_v=0.5, sigma=0.1, mode="two-layer"), throw=False)
    assert np.isfinite(float(res.eps_g)) and np.all(np.isfinite(np.asarray(res.state.Q)))
    assert bool(res.used_fallback)
    assert int(res.status) in (Status.SINGULAR, Status.SUCCESS)
    d = vector_field(res.state, SGDConfig(eta=0.5, eta_v=0.5, sigma=0.1, mode="two-layer"))
    assert max(float(jnp.max(jnp.abs(x))) for x in (d.Q, d.R, d.v)) < 1e-8
    # the copies stay copies and their second layers sum to about v*
    v = np.asarray(res.state.v)
    np.testing.assert_allclose([v[0] + v[1], v[2] + v[3]], [1.0, 1.0], atol=0.05)


@pytest.mark.slow
def test_padding_gives_the_same_fixed_point():
    """A K = 2, M = 2 problem padded to K = 4, M = 3 with zero units has the same fixed point and spectrum."""
    cfg = SGDConfig(eta=0.5, eta_v=0.5, sigma=0.1, mode="two-layer")
    s = _specialised(2, 2)
    ref = solve_fixed_point(s, cfg)
    Q = jnp.zeros((4, 4)).at[:2, :2].set(s.Q)
    R = jnp.zeros((4, 3)).at[:2, :2].set(s.R)
    T = jnp.zeros((3, 3)).at[:2, :2].set(s.T)
    padded = Overlaps(Q=Q, R=R, T=T, v=jnp.zeros(4).at[:2].set(1.0), v_star=jnp.zeros(3).at[:2].set(1.0))
    res = solve_fixed_point(padded, cfg, active=jnp.asarray([True, True, False, False]),
                            teacher_active=jnp.asarray([True, True, False]))
    np.testing.assert_allclose(float(res.eps_g), float(ref.eps_g), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(res.state.Q[:2, :2]), np.asarray(ref.state.Q), atol=1e-12)
    n = ref.eigenvalues.shape[0]
    np.testing.assert_allclose(np.asarray(res.eigenvalues[:n]), np.asarray(ref.eigenvalues), atol=1e-10)
    assert np.all(np.isnan(np.asarray(res.eigenvalues[n:]).real))


@pytest.mark.slow
def test_stability_edge_in_eta():
    """Scan eta (K = M = 2, sigma = 0.1): below the edge a stable fixed point; above it, no silent SUCCESS."""
    run = jax.jit(jax.vmap(lambda eta: fixed_point_from_ode(_reference_init(2, 2), SGDConfig(eta=eta, sigma=0.1),
                                                            alpha=1000.0, throw=False)))
    etas = jnp.asarray([0.5, 1.0, 2.0, 3.0, 5.0])
    res = run(etas)
    status = np.asarray(res.status)
    print("eta scan", list(zip(np.asarray(etas), status, np.asarray(res.slowest_eigenvalue.real), np.asarray(res.eps_g))))
    assert np.all(status[:2] == Status.SUCCESS)
    assert status[-1] != Status.SUCCESS
    ok = status == Status.SUCCESS
    assert np.all(np.isfinite(np.asarray(res.eps_g))[ok])
    assert np.all(np.asarray(res.slowest_eigenvalue.real)[ok] < 0)
