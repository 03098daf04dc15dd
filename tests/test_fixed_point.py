"""Fixed points of the SGD ODEs: residual, published value, small-noise asymptote, stability, implicit
gradients against finite differences, duplicated units, padding, and the loss of stability at large eta."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune as jp
from jaxprune import Overlaps, SGDConfig, Status, fixed_point_from_ode, solve_fixed_point, solve_ode, vector_field
from jaxprune._fixed_point import num_unknowns, pack_state, unpack_state

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
    return Overlaps.reference(K, M)


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
            # a failure carries no error a caller could print as the fixed point's (issue 17, item 8)
            if int(res.status) not in (Status.UNSTABLE,):
                assert np.isnan(float(res.eps_g))
    # and the unspecialised symmetric stationary point at small eta is a saddle: UNSTABLE, not SUCCESS; a
    # stationary point all the same, so its error is given
    res = _SOLVE(_reference_init(2, 2), SGDConfig(eta=0.5, sigma=0.1))
    assert int(res.status) == Status.UNSTABLE and float(res.slowest_eigenvalue.real) > 0
    assert np.isfinite(float(res.eps_g))


def test_diverged_warm_up_gives_nan_error_not_a_number_to_print():
    """eta = 1e9, alpha = 10: the warm-up ODE diverges; the result is DIVERGED with eps_g NaN (the CLI printed
    0.03996 beside DIVERGED)."""
    res = fixed_point_from_ode(_reference_init(2, 2), SGDConfig(eta=1e9), alpha=10.0, throw=False)
    assert int(res.status) == Status.DIVERGED
    assert np.isnan(float(res.eps_g))
    assert np.isfinite(float(jp.generalisation_error(res.state)))  # the last iterate's error, on request


def test_float32_state_with_x64_promotes():
    """x64 on, float32 state: the fixed point is solved in float64 (optimistix's damping terms are in the
    default float); the same root as from the float64 state."""
    s64 = _specialised(2, 2)
    s32 = jax.tree.map(lambda x: x.astype(jnp.float32), s64)
    cfg = SGDConfig(eta=0.5, sigma=0.1)
    a, b = _SOLVE(s64, cfg), _SOLVE(s32, cfg)
    assert b.eps_g.dtype == jnp.float64 and int(b.status) == int(a.status) == Status.SUCCESS
    assert float(b.eps_g) == pytest.approx(float(a.eps_g), rel=1e-6)


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


def _split_copies(state: Overlaps, size: float, groups) -> Overlaps:
    """Realise `state` as weight vectors and move each pair `(i, k)` of `groups` apart by `w_i += size e`,
    `w_k -= size e` along a fresh direction `e` orthogonal to everything (one per pair): a physical state with
    `D = Q_ii + Q_kk - 2 Q_ik = 4 size^2` and unchanged `R`."""
    C = np.asarray(state.covariance())
    lam, U = np.linalg.eigh(C)
    keep = lam > 1e-12 * lam.max()
    X = np.concatenate([U[:, keep] * np.sqrt(lam[keep]), np.zeros((C.shape[0], len(groups)))], axis=1)
    for j, (i, k) in enumerate(groups):
        X[i, keep.sum() + j] += size
        X[k, keep.sum() + j] -= size
    G = X @ X.T
    K = state.K
    return Overlaps(Q=jnp.asarray(G[:K, :K]), R=jnp.asarray(G[:K, K:]), T=state.T, v=state.v, v_star=state.v_star)


@pytest.mark.slow
def test_duplicated_units_are_a_saddle_copies_split():
    """K = 4, M = 2, two-layer, each teacher unit copied twice (v = v*/2 each), eta = eta_v = 0.5, sigma = 0.1.

    The stationary state with exact copies exists (found by the Levenberg-Marquardt fallback: it lies on the
    boundary of the PSD cone, and Newton's full steps leave it), but it is a saddle: its largest eigenvalue
    (about +3.1e-4, some 7e-4 of the spectral scale, far outside the marginal band) belongs to the
    copy-splitting mode D = Q_00 + Q_11 - 2 Q_01 = |w_0 - w_1|^2. So the status is UNSTABLE (not SINGULAR: there
    is no zero mode; the v_0 - v_1 imbalance is damped at eta > 0). The ODEs from a small physical split confirm
    it: D grows at that rate, and the nearby split state (D ~ 0.022) is a stable fixed point with a lower error.
    """
    r, q = 0.95, 1.0
    Rd = np.zeros((4, 2))
    Rd[[0, 1], 0] = r
    Rd[[2, 3], 1] = r
    Q = np.zeros((4, 4))
    Q[:2, :2] = q
    Q[2:, 2:] = q
    cfg = SGDConfig(eta=0.5, eta_v=0.5, sigma=0.1, mode="two-layer")
    s = Overlaps(Q=jnp.asarray(Q), R=jnp.asarray(Rd), T=jnp.eye(2), v=jnp.full(4, 0.5), v_star=jnp.ones(2))
    solve = jax.jit(lambda s: solve_fixed_point(s, cfg, throw=False))
    res = solve(s)
    assert np.isfinite(float(res.eps_g)) and np.all(np.isfinite(np.asarray(res.state.Q)))
    assert bool(res.used_fallback)
    d = vector_field(res.state, cfg)
    assert max(float(jnp.max(jnp.abs(x))) for x in (d.Q, d.R, d.v)) < 1e-8
    # the copies stay exact copies (an invariant manifold) and their second layers sum to about v*
    Qs, Rs, v = np.asarray(res.state.Q), np.asarray(res.state.R), np.asarray(res.state.v)
    np.testing.assert_allclose([Qs[0, 1], Qs[2, 3]], [Qs[0, 0], Qs[2, 2]], rtol=1e-10)
    np.testing.assert_allclose(Rs[[1, 3]], Rs[[0, 2]], rtol=1e-10)
    np.testing.assert_allclose([v[0] + v[1], v[2] + v[3]], [1.0, 1.0], atol=0.05)

    # the spectrum: a genuine positive eigenvalue, well outside the marginal band, so UNSTABLE
    lam = np.asarray(res.eigenvalues)
    scale = np.max(np.abs(lam))
    lead = float(res.slowest_eigenvalue.real)
    assert int(res.status) == Status.UNSTABLE and not bool(res.stable)
    assert lead > 1e-4 * scale and abs(float(res.slowest_eigenvalue.imag)) < 1e-12
    assert np.min(np.abs(lam)) > 1e-5 * scale  # no zero mode: not a continuum of fixed points
    # its eigenvector (independent Jacobian: jacfwd of the vector field, numpy eig) is the copy-splitting mode
    y = pack_state(res.state, "two-layer")
    J = np.asarray(jax.jacfwd(lambda y: pack_state(vector_field(unpack_state(y, res.state, "two-layer"), cfg),
                                                   "two-layer"))(y))
    w, V = np.linalg.eig(J)
    j = int(np.argmax(w.real))
    np.testing.assert_allclose(w[j].real, lead, rtol=1e-6)
    xi = V[:, j].real / np.linalg.norm(V[:, j].real)
    iq = {(a, b): n for n, (a, b) in enumerate(zip(*np.triu_indices(4)))}
    split = [xi[iq[0, 0]] + xi[iq[1, 1]] - 2 * xi[iq[0, 1]], xi[iq[2, 2]] + xi[iq[3, 3]] - 2 * xi[iq[2, 3]]]
    assert max(abs(x) for x in split) > 0.5  # D dominates the eigenvector ...
    np.testing.assert_allclose(xi[iq[0, 0]], xi[iq[1, 1]], atol=1e-8)  # ... which keeps the copies' symmetry

    # ODE from a physical split of the first pair, |w_0 - w_1|^2 = 1e-4: D grows at the eigenvalue's rate
    split0 = _split_copies(res.state, 5e-3, [(0, 1)])
    sol = solve_ode(split0, cfg, [0.0, 1000.0, 3000.0])
    Qt = np.asarray(sol.states.Q)
    D = Qt[:, 0, 0] + Qt[:, 1, 1] - 2 * Qt[:, 0, 1]
    np.testing.assert_allclose(D[0], 1e-4, rtol=1e-6)
    rate = np.log(D[2] / D[1]) / 2000.0
    print("duplicated units: eigenvalues", lam.real[:6], "D(alpha)", D, "growth rate", rate)
    assert D[2] > 2 * D[0]
    np.testing.assert_allclose(rate, lead, rtol=0.05)

    # the split state the copies flow to (D ~ 0.022 for both pairs) is a stable fixed point with a lower error
    split_fp = solve(_split_copies(res.state, 0.074, [(0, 1), (2, 3)]))
    Qf = np.asarray(split_fp.state.Q)
    assert int(split_fp.status) == Status.SUCCESS and float(split_fp.slowest_eigenvalue.real) < 0
    assert float(split_fp.eps_g) < float(res.eps_g)
    np.testing.assert_allclose(Qf[0, 0] + Qf[1, 1] - 2 * Qf[0, 1], 0.0219, rtol=0.02)
    np.testing.assert_allclose(np.asarray(split_fp.state.R)[1], np.asarray(split_fp.state.R)[0], rtol=1e-8)


@pytest.mark.slow
def test_zero_mode_is_marginal_singular():
    """Two-layer mode with eta_v = 0: the second layer is frozen (dv = 0), so every v is a fixed point (a
    continuum, K zero eigenvalues). The status is SINGULAR, the documented marginal case; the root found (the
    root finder may slide along the continuum) is the scm fixed point at its own v, and the other eigenvalues
    are that scm problem's spectrum."""
    res = solve_fixed_point(_specialised(2, 2), SGDConfig(eta=0.5, eta_v=0.0, sigma=0.1, mode="two-layer"),
                            throw=False)
    assert int(res.status) == Status.SINGULAR and bool(res.stable)
    scm = _SOLVE(res.state, SGDConfig(eta=0.5, sigma=0.1))  # scm mode: v fixed at the returned value
    assert int(scm.status) == Status.SUCCESS
    np.testing.assert_allclose(float(res.eps_g), float(scm.eps_g), rtol=1e-9)
    lam = np.asarray(res.eigenvalues)
    scale = np.max(np.abs(lam))
    assert np.sum(np.abs(lam) <= 1e-7 * scale) == 2
    np.testing.assert_allclose(np.sort(lam.real)[:-2], np.sort(np.asarray(scm.eigenvalues.real)), rtol=1e-6)
    # eta_v > 0 lifts the zero modes (v relaxes towards v*): no longer marginal
    res2 = solve_fixed_point(res.state, SGDConfig(eta=0.5, eta_v=0.1, sigma=0.1, mode="two-layer"), throw=False)
    assert int(res2.status) == Status.SUCCESS and float(res2.slowest_eigenvalue.real) < 0


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


def test_without_fallback_newton_only():
    """`fallback=False` (Newton only): the root and its implicit gradient where Newton succeeds (gradient against
    central differences); where only Levenberg-Marquardt finds the root (exactly duplicated units, on the
    boundary of the PSD cone; see the saddle test, slow), a failure status instead of a root."""
    def eps(e, s):
        return solve_fixed_point(s, SGDConfig(eta=e, sigma=0.1), fallback=False, throw=False)

    root = eps(0.5, _specialised(2, 2))
    assert int(root.status) == Status.SUCCESS and not bool(root.used_fallback)
    start = root.state
    g = float(jax.jit(jax.grad(lambda e: eps(e, start).eps_g))(0.5))
    h = 1e-5
    fd = (float(eps(0.5 + h, start).eps_g) - float(eps(0.5 - h, start).eps_g)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-5)

    Q = np.kron(np.eye(2), np.ones((2, 2)))
    R = np.kron(np.eye(2), 0.95 * np.ones((2, 1)))
    dup = Overlaps(Q=jnp.asarray(Q), R=jnp.asarray(R), T=jnp.eye(2), v=jnp.full(4, 0.5), v_star=jnp.ones(2))
    newton_only = solve_fixed_point(dup, SGDConfig(eta=0.5, eta_v=0.5, sigma=0.1, mode="two-layer"),
                                    fallback=False, throw=False)
    assert int(newton_only.status) in (Status.NOT_CONVERGED, Status.DIVERGED)


def test_describe_status_codes():
    """Every status code has its own phrase; ints and 0-d arrays are accepted, unknown codes are named."""
    phrases = {jp.describe(s) for s in jp.Status}
    assert len(phrases) == len(jp.Status)
    assert jp.describe(jnp.asarray(jp.Status.MAX_STEPS, dtype=jnp.int32)) == "step budget exhausted"
    assert jp.describe(1).startswith("diverged")
    assert jp.describe(99) == "unknown status 99"
