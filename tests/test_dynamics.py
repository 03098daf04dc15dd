"""ODEs of online SGD: published reference values, an independent vector field, scipy, autodiff, status."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from jaxprune import Overlaps, SGDConfig, Status, alpha_grid, solve_ode, vector_field


def reference_state(K, M, v_star=1.0):
    """The reference C++ tool's initial condition: Q0 = I, T = I, R0[i,n] = 1e-3 sin(1 + i M + n)."""
    return Overlaps.reference(K, M, v_star=v_star)


def test_reference_state_formula():
    """`Overlaps.reference` against the formula written out here."""
    s = Overlaps.reference(3, 2, v_star=[1.0, 2.0], q_scale=0.5)
    R = np.array([[1e-3 * np.sin(1.0 + i * 2 + n) for n in range(2)] for i in range(3)])
    np.testing.assert_array_equal(np.asarray(s.R), R)
    np.testing.assert_array_equal(np.asarray(s.Q), 0.5 * np.eye(3))
    np.testing.assert_array_equal(np.asarray(s.v_star), [1.0, 2.0])


# ---- an independent numpy implementation of docs/theory.md section 4, loops over the sums as written ----

def _np_integrals(kind):
    if kind == "linear":
        return (lambda C, a, b: C[a, b], lambda C, a, b: 1.0,
                lambda C, a, b, c: C[b, c], lambda C, a, b, c, d: C[c, d])

    def I2(C, a, b):
        return 2 / np.pi * np.arcsin(C[a, b] / np.sqrt((1 + C[a, a]) * (1 + C[b, b])))

    def J2(C, a, b):
        return 2 / np.pi / np.sqrt((1 + C[a, a]) * (1 + C[b, b]) - C[a, b] ** 2)

    def I3(C, a, b, c):
        L3 = (1 + C[a, a]) * (1 + C[c, c]) - C[a, c] ** 2
        return 2 / np.pi / np.sqrt(L3) * (C[b, c] * (1 + C[a, a]) - C[a, b] * C[a, c]) / (1 + C[a, a])

    def I4(C, a, b, c, d):
        L4 = (1 + C[a, a]) * (1 + C[b, b]) - C[a, b] ** 2
        L0 = (L4 * C[c, d] - C[b, c] * C[b, d] * (1 + C[a, a]) - C[a, c] * C[a, d] * (1 + C[b, b])
              + C[a, b] * C[a, c] * C[b, d] + C[a, b] * C[a, d] * C[b, c])
        L1 = (L4 * (1 + C[c, c]) - C[b, c] ** 2 * (1 + C[a, a]) - C[a, c] ** 2 * (1 + C[b, b])
              + 2 * C[a, b] * C[a, c] * C[b, c])
        L2 = (L4 * (1 + C[d, d]) - C[b, d] ** 2 * (1 + C[a, a]) - C[a, d] ** 2 * (1 + C[b, b])
              + 2 * C[a, b] * C[a, d] * C[b, d])
        return 4 / np.pi**2 / np.sqrt(L4) * np.arcsin(L0 / np.sqrt(L1 * L2))

    return I2, J2, I3, I4


def numpy_field(Q, R, T, v, vs, eta, eta_v, sigma, two_layer, kind="erf"):
    I2, J2, I3, I4 = _np_integrals(kind)
    K, M = R.shape
    C = np.block([[Q, R], [R.T, T]])
    s = lambda i: i  # student field index
    t = lambda n: K + n  # teacher field index
    dR = np.zeros((K, M))
    dQ = np.zeros((K, K))
    dv = np.zeros(K)
    for i in range(K):
        for n in range(M):
            dR[i, n] = eta * v[i] * (sum(vs[m] * I3(C, s(i), t(n), t(m)) for m in range(M))
                                     - sum(v[j] * I3(C, s(i), t(n), s(j)) for j in range(K)))
    for i in range(K):
        for k in range(K):
            lin = lambda i, k: eta * v[i] * (sum(vs[m] * I3(C, s(i), s(k), t(m)) for m in range(M))
                                             - sum(v[j] * I3(C, s(i), s(k), s(j)) for j in range(K)))
            quad = (sum(vs[n] * vs[m] * I4(C, s(i), s(k), t(n), t(m)) for n in range(M) for m in range(M))
                    - 2 * sum(v[j] * vs[n] * I4(C, s(i), s(k), s(j), t(n)) for j in range(K) for n in range(M))
                    + sum(v[j] * v[l] * I4(C, s(i), s(k), s(j), s(l)) for j in range(K) for l in range(K))
                    + sigma**2 * J2(C, s(i), s(k)))
            dQ[i, k] = lin(i, k) + lin(k, i) + eta**2 * v[i] * v[k] * quad
    if two_layer:
        for i in range(K):
            dv[i] = eta_v * (sum(vs[n] * I2(C, s(i), t(n)) for n in range(M))
                             - sum(v[j] * I2(C, s(i), s(j)) for j in range(K)))
    return dQ, dR, dv


def random_state(rng, K, M):
    w = rng.normal(size=(K, 40)) * 0.8
    ws = rng.normal(size=(M, 40))
    return Overlaps(Q=jnp.asarray(w @ w.T / 40), R=jnp.asarray(w @ ws.T / 40), T=jnp.asarray(ws @ ws.T / 40),
                    v=jnp.asarray(rng.normal(size=K)), v_star=jnp.asarray(rng.normal(size=M) + 1))


@pytest.mark.parametrize("kind", ["erf", "linear"])
@pytest.mark.parametrize("mode", ["scm", "two-layer"])
def test_vector_field_matches_independent_numpy(rng, kind, mode):
    s = random_state(rng, 3, 2)
    cfg = SGDConfig(eta=0.7, eta_v=0.3, sigma=0.4, mode=mode, activation=kind)
    d = vector_field(s, cfg)
    dQ, dR, dv = numpy_field(*(np.asarray(a) for a in (s.Q, s.R, s.T, s.v, s.v_star)), 0.7, 0.3, 0.4,
                             mode == "two-layer", kind)
    np.testing.assert_allclose(np.asarray(d.Q), dQ, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(np.asarray(d.R), dR, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(np.asarray(d.v), dv, rtol=1e-11, atol=1e-13)
    assert np.all(np.asarray(d.T) == 0) and np.all(np.asarray(d.v_star) == 0)


def test_weight_decay_terms(rng):
    s = random_state(rng, 2, 2)
    base = vector_field(s, SGDConfig(eta=0.5))
    wd = vector_field(s, SGDConfig(eta=0.5, weight_decay=0.1))
    np.testing.assert_allclose(np.asarray(wd.Q - base.Q), -2 * 0.5 * 0.1 * np.asarray(s.Q), atol=1e-14)
    np.testing.assert_allclose(np.asarray(wd.R - base.R), -0.5 * 0.1 * np.asarray(s.R), atol=1e-14)


def test_published_reference_values_euler():
    """The original C++ tool (Euler, dt = 0.01, eta = 0.5, erf, SCM, M = K = 2): 5 digits."""
    s = reference_state(2, 2)
    sol = solve_ode(s, SGDConfig(eta=0.5), [0.0, 0.99, 9.91, 100.26], integrator="euler", dt=0.01)
    np.testing.assert_allclose(np.asarray(sol.eps_g), [0.666305, 0.422838, 0.0283799, 0.0152056], rtol=1e-5)
    assert int(sol.status) == Status.SUCCESS


@pytest.mark.parametrize("integrator", ["euler", "tsit5"])
def test_published_noisy_plateau(integrator):
    s = reference_state(2, 2)
    sol = solve_ode(s, SGDConfig(eta=0.5, sigma=0.1), [0.0, 2000.0], integrator=integrator)
    assert float(sol.eps_g[-1]) == pytest.approx(0.0011678, abs=5e-8)


def test_linear_activation_against_scipy(rng):
    s = random_state(rng, 3, 2)
    cfg = SGDConfig(eta=0.3, eta_v=0.2, sigma=0.2, mode="two-layer", activation="linear")
    K, M = 3, 2
    T = np.asarray(s.T)
    vs = np.asarray(s.v_star)

    def f(t, y):
        Q = y[: K * K].reshape(K, K)
        R = y[K * K: K * K + K * M].reshape(K, M)
        v = y[K * K + K * M:]
        dQ, dR, dv = numpy_field(Q, R, T, v, vs, 0.3, 0.2, 0.2, True, "linear")
        return np.concatenate([dQ.ravel(), dR.ravel(), dv])

    y0 = np.concatenate([np.asarray(s.Q).ravel(), np.asarray(s.R).ravel(), np.asarray(s.v)])
    ts = np.linspace(0, 5, 6)
    ref = solve_ivp(f, (0, 5), y0, t_eval=ts, rtol=1e-11, atol=1e-12, method="DOP853")
    sol = solve_ode(s, cfg, ts, integrator="tsit5", rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(sol.states.Q).reshape(6, -1), ref.y[: K * K].T, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(np.asarray(sol.states.v), ref.y[K * K + K * M:].T, rtol=1e-7, atol=1e-9)


def test_euler_converges_first_order_to_adaptive():
    s = reference_state(2, 2)
    cfg = SGDConfig(eta=0.5)
    ref = solve_ode(s, cfg, [0.0, 5.0], integrator="dopri8", rtol=1e-12, atol=1e-14).eps_g[-1]
    errs = [abs(float(solve_ode(s, cfg, [0.0, 5.0], integrator="euler", dt=dt).eps_g[-1] - ref))
            for dt in (0.04, 0.02, 0.01)]
    orders = np.log2(np.asarray(errs[:-1]) / np.asarray(errs[1:]))
    np.testing.assert_allclose(orders, 1.0, atol=0.15)


def test_q_stays_symmetric_and_psd(rng):
    s = random_state(rng, 4, 2)
    sol = solve_ode(s, SGDConfig(eta=0.8, sigma=0.3, mode="two-layer", eta_v=0.5), alpha_grid(50.0, 12))
    Q = np.asarray(sol.states.Q)
    np.testing.assert_allclose(Q, np.swapaxes(Q, -1, -2), atol=1e-12)
    for t in range(Q.shape[0]):
        omega = np.asarray(jax.tree.map(lambda x: x[t], sol.states).covariance())
        assert np.linalg.eigvalsh(omega)[0] > -1e-9


@pytest.mark.slow
def test_permuting_students_permutes_trajectory(rng):
    s = random_state(rng, 3, 2)
    perm = np.array([2, 0, 1])
    sp = Overlaps(Q=s.Q[perm][:, perm], R=s.R[perm], T=s.T, v=s.v[perm], v_star=s.v_star)
    cfg = SGDConfig(eta=0.5, sigma=0.1, mode="two-layer", eta_v=0.5)
    a = solve_ode(s, cfg, [0.0, 3.0])
    b = solve_ode(sp, cfg, [0.0, 3.0])
    np.testing.assert_allclose(np.asarray(b.states.Q[-1]), np.asarray(a.states.Q[-1])[perm][:, perm], rtol=1e-7)
    np.testing.assert_allclose(np.asarray(b.eps_g), np.asarray(a.eps_g), rtol=1e-8)


@pytest.mark.slow
def test_inactive_padded_units_change_nothing(rng):
    s = random_state(rng, 2, 2)
    pad = Overlaps(Q=jnp.zeros((4, 4)).at[:2, :2].set(s.Q), R=jnp.zeros((4, 2)).at[:2].set(s.R), T=s.T,
                   v=jnp.zeros(4).at[:2].set(s.v), v_star=s.v_star)
    cfg = SGDConfig(eta=0.5, eta_v=0.5, sigma=0.2, mode="two-layer")
    a = solve_ode(s, cfg, [0.0, 4.0])
    b = solve_ode(pad, cfg, [0.0, 4.0])
    np.testing.assert_allclose(np.asarray(b.eps_g), np.asarray(a.eps_g), rtol=1e-9)
    assert np.all(np.asarray(b.states.Q[-1, 2:, :]) == 0) and np.all(np.asarray(b.states.v[-1, 2:]) == 0)


def test_jit_vmap_with_per_element_status():
    s = reference_state(2, 2)
    etas = jnp.asarray([0.2, 0.5, 8.0])  # the last one diverges (linear network: exponential blow-up)

    @jax.jit
    def run(eta):
        return solve_ode(s, SGDConfig(eta=eta, sigma=0.1, activation="linear"), [0.0, 10.0, 200.0], throw=False)

    sols = jax.vmap(run)(etas)
    status = np.asarray(sols.status)
    assert list(status[:2]) == [Status.SUCCESS, Status.SUCCESS]
    assert status[2] == Status.DIVERGED
    assert np.all(np.isfinite(np.asarray(sols.eps_g[:2])))
    assert np.isnan(np.asarray(sols.eps_g[2, -1]))  # reported with a status, not silently
    # each element equals its own single run
    one = solve_ode(s, SGDConfig(eta=0.5, sigma=0.1, activation="linear"), [0.0, 10.0, 200.0])
    np.testing.assert_allclose(np.asarray(sols.eps_g[1]), np.asarray(one.eps_g), rtol=1e-7)


@pytest.mark.parametrize("integrator", ["euler", pytest.param("tsit5", marks=pytest.mark.slow)])
def test_divergence_is_reported(integrator):
    s = reference_state(2, 2)
    cfg = SGDConfig(eta=8.0, sigma=0.1, activation="linear")
    sol = solve_ode(s, cfg, [0.0, 50.0, 100.0], integrator=integrator, throw=False)
    assert int(sol.status) == Status.DIVERGED
    assert float(sol.alpha_end) < 100.0
    assert np.isnan(np.asarray(sol.eps_g[-1])) and np.all(np.isfinite(np.asarray(sol.states.Q)))
    with pytest.raises(Exception, match="diverged"):
        solve_ode(s, cfg, [0.0, 50.0, 100.0], integrator=integrator, throw=True)
    # erf students do not blow up exponentially; their norms grow without bound, caught by the threshold
    slow = solve_ode(s, SGDConfig(eta=20.0, sigma=0.1), [0.0, 1000.0], integrator=integrator,
                     divergence_threshold=1e3, throw=False)
    assert int(slow.status) == Status.DIVERGED


@pytest.mark.parametrize("integrator", [pytest.param("tsit5", marks=pytest.mark.slow), "euler"])
def test_grad_through_trajectory_matches_finite_differences(integrator):
    s = reference_state(2, 2)
    grid = np.linspace(0.0, 3.0, 4)

    def final_error(eta, sigma):
        sol = solve_ode(s, SGDConfig(eta=eta, sigma=sigma), grid, integrator=integrator, dt=0.01,
                        rtol=1e-10, atol=1e-12)
        return sol.eps_g[-1]

    g = jax.grad(final_error, argnums=(0, 1))(0.5, 0.3)
    h = 1e-5
    fd_eta = (final_error(0.5 + h, 0.3) - final_error(0.5 - h, 0.3)) / (2 * h)
    fd_sigma = (final_error(0.5, 0.3 + h) - final_error(0.5, 0.3 - h)) / (2 * h)
    assert float(g[0]) == pytest.approx(float(fd_eta), rel=1e-5)
    assert float(g[1]) == pytest.approx(float(fd_sigma), rel=1e-5)


def test_no_recompilation_for_new_hyperparameters():
    s = reference_state(2, 2)
    traces = []

    @jax.jit
    def run(cfg):
        traces.append(1)
        return solve_ode(s, cfg, [0.0, 1.0], throw=False).eps_g

    run(SGDConfig(eta=0.5, sigma=0.1))
    run(SGDConfig(eta=0.7, sigma=0.2))
    assert len(traces) == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="eta must be > 0"):
        SGDConfig(eta=-0.1)
    with pytest.raises(ValueError, match="sigma must be finite"):
        SGDConfig(eta=0.1, sigma=float("nan"))
    with pytest.raises(ValueError, match="mode must be one of"):
        SGDConfig(eta=0.1, mode="three-layer")
    s = reference_state(2, 2)
    with pytest.raises(ValueError, match="integrator must be one of"):
        solve_ode(s, SGDConfig(eta=0.1), [0.0, 1.0], integrator="rk99")
    with pytest.raises(ValueError, match="non-decreasing"):
        solve_ode(s, SGDConfig(eta=0.1), [0.0, 2.0, 1.0])
    with pytest.raises(ValueError, match=r"dt must be a finite number in \(0"):
        solve_ode(s, SGDConfig(eta=0.1), [0.0, 1.0], integrator="euler", dt=0.0)


def test_alpha_grid():
    g = alpha_grid(1000.0, 5)
    assert g[0] == 0 and g[-1] == pytest.approx(1000.0) and np.all(np.diff(g) > 0)
    np.testing.assert_allclose(alpha_grid(10.0, 3, spacing="linear"), [0, 5, 10])
    with pytest.raises(ValueError, match="final time"):
        alpha_grid(-1.0)


@pytest.mark.parametrize("integrator", ["euler", "tsit5"])
def test_repeated_solves_do_not_retrace(integrator, monkeypatch, tmp_path):
    """A second `solve_ode` with a new state and configuration (same shapes) reuses the compiled solver:
    the vector field is traced during the first call only. The program store starts empty here (else a program
    stored by an earlier run would serve the first call untraced, and the count would say nothing)."""
    import jaxprune._ode as dyn
    import jaxprune._program_store as store

    old = store.program_dir()
    store.set_program_dir(None if old is None else tmp_path / "programs")
    try:
        _count_traces(dyn, integrator, monkeypatch)
    finally:
        store.set_program_dir(old)


def _count_traces(dyn, integrator, monkeypatch):
    traces = []
    original = dyn.vector_field

    def counting(state, config):
        traces.append(1)
        return original(state, config)

    monkeypatch.setattr(dyn, "vector_field", counting)
    s0 = reference_state(2, 2)
    first = solve_ode(s0, SGDConfig(eta=0.5, sigma=0.1), [0.0, 0.5, 1.0], integrator=integrator)
    n_first = len(traces)
    assert n_first > 0
    s1 = Overlaps(Q=1.1 * s0.Q, R=s0.R, T=s0.T, v=s0.v, v_star=s0.v_star)
    second = solve_ode(s1, SGDConfig(eta=0.7, sigma=0.2), [0.0, 0.5, 1.0], integrator=integrator)
    assert len(traces) == n_first
    assert not np.allclose(np.asarray(first.eps_g), np.asarray(second.eps_g))  # it really is a new problem


# ---- a batch of configurations: vmap of solve_ode (each member with its own step sizes) ----

_BATCH_GRID = np.array([0.0, 0.5, 2.0, 10.0, 30.0])


def test_vmapped_divergence_is_per_member():
    """Under `vmap`, one member diverges (erf student with a huge learning rate: its norms run past the
    threshold): it alone is DIVERGED, held with NaN errors after its divergence, and the others equal their own
    solves to rounding (each member keeps its own step sizes)."""
    s = reference_state(2, 2)
    etas, sigmas = [0.2, 20.0, 0.6], [0.0, 0.3, 0.1]
    run = jax.vmap(lambda e, sg: solve_ode(s, SGDConfig(eta=e, sigma=sg), _BATCH_GRID, divergence_threshold=50.0,
                                           throw=False))
    sol = run(jnp.asarray(etas), jnp.asarray(sigmas))
    assert np.asarray(sol.status).tolist() == [Status.SUCCESS, Status.DIVERGED, Status.SUCCESS]
    assert 0.5 <= float(sol.alpha_end[1]) < 10.0  # the last output time it reached
    assert float(sol.alpha_end[0]) == float(sol.alpha_end[2]) == 30.0
    eps = np.asarray(sol.eps_g)
    assert np.all(np.isfinite(eps[[0, 2]])) and np.isnan(eps[1, -1])
    for j in (0, 2):
        one = solve_ode(s, SGDConfig(eta=etas[j], sigma=sigmas[j]), _BATCH_GRID)
        np.testing.assert_allclose(eps[j], np.asarray(one.eps_g), rtol=1e-10)
        assert int(sol.num_steps[j]) == int(one.num_steps)


# ---- issue 17: no silent success, dtypes, tolerances, throw under jit ----

def test_euler_that_takes_no_step_is_refused():
    """dt = 100 to alpha = 10 rounds to zero Euler steps: a one-line ValueError naming dt, not 'success'."""
    s = reference_state(2, 2)
    with pytest.raises(ValueError, match=r"^dt must be in \(0, 20\) so that Euler takes at least one step") as e:
        solve_ode(s, SGDConfig(eta=0.5), [0.0, 10.0], integrator="euler", dt=100.0)
    assert "\n" not in str(e.value)
    # one step is a step: dt = 15 to alpha 10 rounds to one step (output time 15), and succeeds
    one = solve_ode(s, SGDConfig(eta=0.5), [0.0, 10.0], integrator="euler", dt=15.0, throw=False)
    assert int(one.num_steps) == 1 and float(one.alphas[-1]) == 15.0


def test_no_success_without_a_step_or_with_a_non_finite_state():
    """The success guard: SUCCESS with a non-finite output becomes DIVERGED, SUCCESS without a step INVALID."""
    from jaxprune._ode import guard_success

    ok = jnp.asarray(Status.SUCCESS)
    assert int(guard_success(ok, jnp.asarray(False), jnp.asarray(True))) == Status.DIVERGED
    assert int(guard_success(ok, jnp.asarray(True), jnp.asarray(False))) == Status.INVALID
    assert int(guard_success(ok, jnp.asarray(True), jnp.asarray(True))) == Status.SUCCESS
    assert int(guard_success(jnp.asarray(Status.MAX_STEPS), jnp.asarray(False), jnp.asarray(False))) == Status.MAX_STEPS
    # a state whose first record is already non-finite never reports success
    s = reference_state(2, 2)
    bad = Overlaps(Q=s.Q.at[0, 0].set(jnp.nan), R=s.R, T=s.T, v=s.v, v_star=s.v_star)
    for integrator in ("euler", "tsit5"):
        sol = solve_ode(bad, SGDConfig(eta=0.5), [0.0, 1.0], integrator=integrator, throw=False)
        assert int(sol.status) != Status.SUCCESS, integrator


def test_float32_inputs_with_x64_stay_float32_and_take_few_steps():
    """x64 on, float32 state: solve_ode works in float32 (dtype in = dtype out), and its default tolerances
    follow the dtype, so the step count is of the order of the float64 run's (a float64 tolerance in float32
    took 61x more steps). The result agrees with float64 to float32 accuracy."""
    s64 = reference_state(2, 2)
    s32 = jax.tree.map(lambda x: x.astype(jnp.float32), s64)
    cfg = SGDConfig(eta=0.5, sigma=0.1)
    grid = [0.0, 5.0, 50.0]
    a = solve_ode(s64, cfg, grid)
    b = solve_ode(s32, cfg, grid)
    assert b.eps_g.dtype == jnp.float32 and b.states.Q.dtype == jnp.float32
    assert int(b.status) == Status.SUCCESS
    assert int(b.num_steps) <= 2 * int(a.num_steps)
    np.testing.assert_allclose(np.asarray(b.eps_g), np.asarray(a.eps_g), rtol=1e-3)
    e = solve_ode(s32, cfg, grid, integrator="euler", dt=0.05)
    assert e.eps_g.dtype == jnp.float32 and int(e.status) == Status.SUCCESS
    # mixed float32 / float64 leaves promote to float64
    mixed = Overlaps(Q=s32.Q, R=s64.R, T=s32.T, v=s32.v, v_star=s32.v_star)
    assert solve_ode(mixed, cfg, grid).eps_g.dtype == jnp.float64


def test_complex_state_is_a_one_line_error():
    s = reference_state(2, 2)
    c = Overlaps(Q=s.Q.astype(jnp.complex128), R=s.R, T=s.T, v=s.v, v_star=s.v_star)
    with pytest.raises(ValueError, match=r"state0\.Q must hold real floating-point numbers .* got dtype complex128"):
        solve_ode(c, SGDConfig(eta=0.5), [0.0, 1.0])


def test_throw_reason_is_readable_eagerly_under_filter_jit_and_under_jit():
    """throw=True: eagerly and under equinox.filter_jit an EquinoxRuntimeError carries the reason; under a plain
    jax.jit JAX wraps it (INTERNAL CpuCallback), and the reason and the advice are still in the message."""
    import equinox as eqx

    s = reference_state(2, 2)
    cfg = SGDConfig(eta=8.0, activation="linear")
    grid = [0.0, 100.0]
    with pytest.raises(eqx.EquinoxRuntimeError, match="ODE integration failed"):
        solve_ode(s, cfg, grid)
    with pytest.raises(eqx.EquinoxRuntimeError, match="ODE integration failed"):
        eqx.filter_jit(lambda c: solve_ode(s, c, grid).eps_g)(cfg)
    with pytest.raises(Exception) as e:
        jax.block_until_ready(jax.jit(lambda c: solve_ode(s, c, grid).eps_g)(cfg))
    assert "ODE integration failed" in str(e.value) and "filter_jit" in str(e.value)
