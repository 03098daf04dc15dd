"""Edge pruning (docs/theory.md 6.2): theory moments vs independent quadrature, theory vs concrete networks,
the concrete k-DPP edge samplers, rescaling, reweighting and parameter counting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_covariance
from scipy import integrate, optimize
from scipy.stats import norm

from jaxprune.pruning import kdpp_marginals
from jaxprune.pruning import (
    apply_edge_mask,
    apply_edge_moments,
    dpp_edge_mask,
    dpp_keep_prob,
    dpp_moments,
    dpp_mu,
    edge_moments,
    edge_params,
    edge_prune_theory,
    magnitude_edge_mask,
    magnitude_moments,
    matched_keep_fraction,
    node_params,
    random_edge_mask,
    random_moments,
    reweight_edges,
)
from jaxprune import generalisation_error
from jaxprune import Overlaps, overlaps_from_weights
from jaxprune import Status

K, M = 3, 2


def _state(rng, *, corr_boost=0.0):
    om = random_covariance(rng, K + M)
    if corr_boost:  # make student units strongly correlated
        a = rng.normal(size=(K + M, K + M + 2))
        a[1] = a[0] + corr_boost * a[1]
        om = a @ a.T / (K + M + 2)
    return Overlaps(
        Q=jnp.asarray(om[:K, :K]),
        R=jnp.asarray(om[:K, K:]),
        T=jnp.asarray(om[K:, K:]),
        v=jnp.asarray(rng.normal(size=K)),
        v_star=jnp.ones(M),
    ), om


def _composite_gl(breaks, order=40):
    """Composite Gauss-Legendre nodes/weights over consecutive breakpoints (numpy, independent reference)."""
    g, gw = np.polynomial.legendre.leggauss(order)
    xs, ws = [], []
    for a, b in zip(breaks[:-1], breaks[1:]):
        xs.append(a + 0.5 * (b - a) * (g + 1))
        ws.append(0.5 * (b - a) * gw)
    return np.concatenate(xs), np.concatenate(ws)


def _sym_grid(scale, fine=0.0):
    """Nodes on [-13 scale, 13 scale], refined geometrically towards 0 when `fine` > 0."""
    pos = [0.0] + ([fine * 3.0**j for j in range(8) if fine * 3.0**j < 4 * scale] if fine else [])
    pos += [x * scale for x in (1.0, 2.0, 4.0, 7.0, 10.0, 13.0) if x * scale > pos[-1]]
    return _composite_gl(np.concatenate([-np.asarray(pos[:0:-1]), np.asarray(pos)]))


def _pdf2(cov):
    inv = np.linalg.inv(cov)
    norm_c = 1.0 / (2 * np.pi * np.sqrt(np.linalg.det(cov)))
    return lambda a, b: norm_c * np.exp(-0.5 * (inv[0, 0] * a * a + 2 * inv[0, 1] * a * b + inv[1, 1] * b * b))


# --------------------------------------------------------------------------------------------------
# Theory moments against independent numerical integration
# --------------------------------------------------------------------------------------------------


def test_magnitude_moments_vs_quadrature(rng):
    state, om = _state(rng, corr_boost=0.5)
    p = np.array([0.3, 0.65, 0.9])
    mom = magnitude_moments(state, jnp.asarray(p))
    sd = np.sqrt(np.diag(om))
    t = sd[:K] * norm.ppf(1 - p / 2)  # thresholds on w itself
    for i in range(K):
        ref = 2 * integrate.quad(lambda w: w * w * norm.pdf(w, scale=sd[i]), t[i], np.inf, epsabs=1e-13)[0]
        assert abs(float(mom.Q[i, i]) - ref) < 1e-9
        assert abs(float(mom.keep[i]) - p[i]) < 1e-12
    # off-diagonal and R: tensor composite Gauss-Legendre on the kept region {|w_i| > t_i} (x {|w_k| > t_k})
    def tail(i):
        a, wa = _composite_gl([t[i], t[i] + sd[i], t[i] + 3 * sd[i], t[i] + 6 * sd[i], 13 * sd[i]])
        return np.concatenate([-a, a]), np.concatenate([wa, wa])

    for i, k in [(0, 1), (0, 2), (1, 2)]:
        pdf = _pdf2(om[np.ix_([i, k], [i, k])])
        (a, wa), (b, wb) = tail(i), tail(k)
        ref = np.einsum("a,b,a,b,ab->", wa, wb, a, b, pdf(a[:, None], b[None, :]))
        assert abs(float(mom.Q[i, k]) - ref) < 1e-9, (i, k)
        assert abs(float(mom.Q[k, i]) - ref) < 1e-9
    for i, n in [(0, 0), (2, 1)]:
        pdf = _pdf2(om[np.ix_([i, K + n], [i, K + n])])
        (a, wa), (b, wb) = tail(i), _sym_grid(sd[K + n])
        ref = np.einsum("a,b,a,b,ab->", wa, wb, a, b, pdf(a[:, None], b[None, :]))
        assert abs(float(mom.R[i, n]) - ref) < 1e-9


def _mu_reference(p):
    """Solve E[mu z^2/(1 + mu z^2)] = p by scipy quad + brentq (independent of jaxprune)."""

    def keep(log_mu):
        mu = np.exp(log_mu)
        return integrate.quad(lambda z: mu * z * z / (1 + mu * z * z) * norm.pdf(z), -np.inf, np.inf,
                              epsabs=1e-14, epsrel=1e-13, limit=200)[0] - p

    return np.exp(optimize.brentq(keep, -30, 30, xtol=1e-14))


@pytest.mark.parametrize("ps", [(0.05, 0.4, 0.95), (0.7, 0.2, 0.5)])
def test_dpp_moments_vs_quadrature(rng, ps):
    state, om = _state(rng, corr_boost=0.3)
    p = np.array(ps)
    mom = dpp_moments(state, jnp.asarray(p))
    mus = np.array([_mu_reference(pi) for pi in p])
    np.testing.assert_allclose(np.asarray(dpp_mu(jnp.asarray(p))), mus, rtol=1e-9)
    sd = np.sqrt(np.diag(om))
    keep_fn = [lambda w, i=i: mus[i] * (w / sd[i]) ** 2 / (1 + mus[i] * (w / sd[i]) ** 2) for i in range(K)]
    for i in range(K):
        ref = integrate.quad(lambda w: keep_fn[i](w) * w * w * norm.pdf(w, scale=sd[i]), -np.inf, np.inf,
                             epsabs=1e-13, limit=200)[0]
        assert abs(float(mom.Q[i, i]) - ref) < 1e-9
    # off-diagonal and R: tensor composite Gauss-Legendre on the bivariate density, refined near w = 0
    # at the scale 1/sqrt(mu) of the keep rule's dip
    grids = [_sym_grid(sd[i], fine=0.01 * sd[i] / np.sqrt(1 + mus[i])) for i in range(K)]
    for i, k in [(0, 1), (0, 2), (1, 2)]:
        pdf = _pdf2(om[np.ix_([i, k], [i, k])])
        (a, wa), (b, wb) = grids[i], grids[k]
        ref = np.einsum("a,b,a,b,ab->", wa * keep_fn[i](a), wb * keep_fn[k](b), a, b, pdf(a[:, None], b[None, :]))
        assert abs(float(mom.Q[i, k]) - ref) < 1e-8, (i, k)
    for i, n in [(1, 0), (2, 1)]:
        pdf = _pdf2(om[np.ix_([i, K + n], [i, K + n])])
        (a, wa), (b, wb) = grids[i], _sym_grid(sd[K + n])
        ref = np.einsum("a,b,a,b,ab->", wa * keep_fn[i](a), wb, a, b, pdf(a[:, None], b[None, :]))
        assert abs(float(mom.R[i, n]) - ref) < 1e-8


def test_generic_edge_moments(rng):
    state, om = _state(rng)
    # a smooth rule: the dpp rule at moderate keep fractions (poles far from the axis), quadrature vs closed form
    p = jnp.array([0.2, 0.35, 0.3])
    gen = edge_moments(state, dpp_keep_prob, dpp_mu(p), nodes=160)
    ded = dpp_moments(state, p)
    np.testing.assert_allclose(np.asarray(gen.keep), np.asarray(p), atol=1e-7)
    np.testing.assert_allclose(np.asarray(gen.Q), np.asarray(ded.Q), atol=1e-7)
    np.testing.assert_allclose(np.asarray(gen.R), np.asarray(ded.R), atol=1e-7)
    # a constant keep probability is random pruning
    const = edge_moments(state, lambda z, q: q + 0.0 * z, p, nodes=8)
    rnd = random_moments(state, p)
    for a, b in [(const.Q, rnd.Q), (const.R, rnd.R), (const.keep, rnd.keep)]:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-12)
    # a logistic soft-magnitude rule against scipy quad (diagonal and keep fraction)
    theta = jnp.array([[1.0, 1.0], [1.0, 0.5], [0.7, 1.5]])
    rule = lambda z, th: jax.nn.sigmoid(th[0] * (z * z - th[1]))  # noqa: E731
    mom = edge_moments(state, rule, theta, nodes=160)
    for i in range(K):
        th = np.asarray(theta[i])
        f = lambda z: 1 / (1 + np.exp(-th[0] * (z * z - th[1]))) * norm.pdf(z)  # noqa: E731
        keep = integrate.quad(f, -np.inf, np.inf, epsabs=1e-13)[0]
        d = integrate.quad(lambda z: f(z) * z * z, -np.inf, np.inf, epsabs=1e-13)[0]
        assert abs(float(mom.keep[i]) - keep) < 1e-7
        assert abs(float(mom.Q[i, i]) - om[i, i] * d) < 1e-7
    # gradients with respect to rule parameters against finite differences
    f = lambda th: generalisation_error(apply_edge_moments(state, edge_moments(state, rule, th, nodes=64)))  # noqa: E731
    g_rev = jax.grad(f)(theta)
    h = 1e-6
    e = jnp.zeros_like(theta).at[1, 0].set(h)
    fd = (f(theta + e) - f(theta - e)) / (2 * h)
    assert abs(float(g_rev[1, 0]) - float(fd)) < 1e-6


# --------------------------------------------------------------------------------------------------
# Theory against concrete networks (per-coordinate vectors iid N(0, Omega))
# --------------------------------------------------------------------------------------------------


def _concrete(rng, om, n):
    chol = np.linalg.cholesky(om + 1e-12 * np.eye(K + M))
    z = chol @ rng.normal(size=(K + M, n))
    return z[:K], z[K:]


def _compare(pruned, theory, scale, n, nsig=5.0):
    tol = nsig * scale / np.sqrt(n)
    np.testing.assert_allclose(np.asarray(pruned.Q), np.asarray(theory.Q), atol=tol)
    np.testing.assert_allclose(np.asarray(pruned.R), np.asarray(theory.R), atol=tol)


def test_theory_vs_concrete(rng, key):
    state0, om = _state(rng, corr_boost=0.5)
    n = 30000
    w, ws = _concrete(rng, om, n)
    v, vs = np.asarray(state0.v), np.ones(M)
    st = overlaps_from_weights(w, ws, v, vs)  # finite-N overlaps as the theory's input
    p = 0.4
    scale = 2.0 * float(np.max(np.diag(om)))
    k_keys = jax.random.split(key, 3)
    cases = [
        (magnitude_edge_mask(w, p), magnitude_moments(st, p)),
        (random_edge_mask(k_keys[0], w, p, exact=False), random_moments(st, p)),
        (random_edge_mask(k_keys[1], w, p), random_moments(st, p)),
        (dpp_edge_mask(k_keys[2], w, p, kernel="diagonal"), dpp_moments(st, p)),
    ]
    for mask, mom in cases:
        c = 1.0 / p
        pruned = overlaps_from_weights(apply_edge_mask(w, mask, c), ws, v, vs)
        theory = apply_edge_moments(st, mom, c)
        _compare(pruned, theory, scale, n)
    # the magnitude mask is deterministic: its moments are closer than sampling noise would allow
    pruned = overlaps_from_weights(apply_edge_mask(w, cases[0][0]), ws, v, vs)
    np.testing.assert_allclose(np.asarray(pruned.Q), np.asarray(cases[0][1].Q), atol=1.5 * scale / np.sqrt(n))


def test_diagonal_dpp_sampler_exact(rng, key):
    # exact: the rejection sampler's frequencies equal the exact k-DPP marginals of diag(w^2) (small N)
    n, k = 12, 5
    w = rng.normal(size=(1, n))
    masks = dpp_edge_mask(key, w, k / n, kernel="diagonal", num_samples=3000)
    assert masks.shape == (3000, 1, n)
    assert np.all(np.asarray(masks.sum(-1)) == k)
    p1, _ = kdpp_marginals(jnp.diag(jnp.asarray(w[0] ** 2)), k)
    freq = np.asarray(masks[:, 0, :].mean(0))
    np.testing.assert_allclose(freq, np.asarray(p1), atol=5 * 0.5 / np.sqrt(3000))


@pytest.mark.slow
def test_diagonal_dpp_inclusion_large_n(rng, key):
    # large N: inclusion frequencies match mu w^2 / (1 + mu w^2), mu from sum_j pi_j = k (scipy brentq)
    n, k, S = 600, 210, 250
    w = rng.normal(size=(2, n))
    masks = dpp_edge_mask(jax.random.fold_in(key, 1), w, k / n, kernel="diagonal", num_samples=S)
    for i in range(2):
        w2 = w[i] ** 2
        log_mu = optimize.brentq(lambda lm: np.sum(np.exp(lm) * w2 / (1 + np.exp(lm) * w2)) - k, -20, 20)
        pi = np.exp(log_mu) * w2 / (1 + np.exp(log_mu) * w2)
        freq = np.asarray(masks[:, i, :].mean(0))
        assert np.max(np.abs(freq - pi)) < 6 * 0.5 / np.sqrt(S)
        # binned (averaged) agreement is much tighter
        order = np.argsort(pi)
        bins_f = freq[order].reshape(6, -1).mean(1)
        bins_p = pi[order].reshape(6, -1).mean(1)
        assert np.max(np.abs(bins_f - bins_p)) < 0.015


def test_data_kernel_dpp_approaches_diagonal(rng, key):
    n, k = 40, 16
    w = rng.normal(size=(2, n))
    diag_p1 = np.asarray(kdpp_marginals(jnp.diag(jnp.asarray(w[0] ** 2)), k)[0])
    errs = []
    for P in (100, 20000):
        x = rng.normal(size=(P, n))
        L = (x * w[0]).T @ (x * w[0]) / P
        errs.append(np.max(np.abs(np.asarray(kdpp_marginals(jnp.asarray(L), k)[0]) - diag_p1)))
    assert errs[1] < 0.3 * errs[0] and errs[1] < 0.03
    with pytest.raises(ValueError, match="rank"):
        dpp_edge_mask(key, w, k / n, x=rng.normal(size=(5, n)))  # P = 5 < k
    with pytest.raises(ValueError, match="x"):
        dpp_edge_mask(key, w, 0.5, kernel="data")


@pytest.mark.slow
def test_data_kernel_dpp_sampler_frequencies(rng, key):
    # the concrete sampler: exactly k per unit, frequencies near the data kernel's exact marginals
    n, k = 40, 16
    w = rng.normal(size=(2, n))
    x = rng.normal(size=(20000, n))
    masks = dpp_edge_mask(key, w, k / n, x=x, num_samples=800)
    assert masks.shape == (800, 2, n)
    assert np.all(np.asarray(masks.sum(-1)) == k)
    L = (x * w[0]).T @ (x * w[0]) / x.shape[0]
    p1 = np.asarray(kdpp_marginals(jnp.asarray(L), k)[0])
    np.testing.assert_allclose(np.asarray(masks[:, 0, :].mean(0)), p1, atol=5 * 0.5 / np.sqrt(800))


def test_concrete_masks_counts(rng, key):
    w = rng.normal(size=(4, 101))
    p = np.array([0.1, 0.5, 0.77, 1.0])
    k = np.floor(p * 101 + 0.5)
    m = np.asarray(magnitude_edge_mask(w, p))
    np.testing.assert_array_equal(m.sum(1), k)
    for i in range(4):  # the kept ones are the largest |w|
        kept, dropped = np.abs(w[i][m[i]]), np.abs(w[i][~m[i]])
        assert dropped.size == 0 or kept.min() > dropped.max()
    np.testing.assert_array_equal(np.asarray(random_edge_mask(key, w, p)).sum(1), k)
    np.testing.assert_array_equal(np.asarray(dpp_edge_mask(key, w, p)).sum(1), k)
    assert np.all(np.asarray(random_edge_mask(key, w, 1.0, exact=False)))
    np.testing.assert_array_equal(np.asarray(apply_edge_mask(w, m, 2.0)), 2.0 * np.where(m, w, 0.0))


# --------------------------------------------------------------------------------------------------
# Invariants, rescaling, validation, gradients
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["random", "magnitude", "dpp"])
def test_keep_all_and_optimal_rescale(rng, method):
    state, _ = _state(rng)
    for rescale in ("none", "inverse-keep"):
        r = edge_prune_theory(state, jnp.ones(K), method=method, rescale=rescale)
        np.testing.assert_allclose(np.asarray(r.state.Q), np.asarray(state.Q), atol=1e-13)
        np.testing.assert_allclose(np.asarray(r.state.R), np.asarray(state.R), atol=1e-13)
        np.testing.assert_allclose(np.asarray(r.state.T), np.asarray(state.T), atol=0)
    p = jnp.array([0.3, 0.5, 0.8])
    eps = {rs: edge_prune_theory(state, p, method=method, rescale=rs) for rs in ("none", "inverse-keep", "optimal")}
    opt = eps["optimal"]
    assert int(opt.status) == Status.SUCCESS
    assert float(opt.eps_g) <= min(float(eps["none"].eps_g), float(eps["inverse-keep"].eps_g)) + 1e-14
    np.testing.assert_allclose(np.asarray(eps["inverse-keep"].c), 1 / np.asarray(p))
    # stationarity: finite-difference gradient in c vanishes
    f = lambda c: generalisation_error(apply_edge_moments(state, opt.moments, c))  # noqa: E731
    for i in range(K):
        e = jnp.zeros(K).at[i].set(1e-5)
        assert abs(float(f(opt.c + e) - f(opt.c - e)) / 2e-5) < 1e-6
    if method == "random":
        # gradient in p through the optimum (envelope theorem) vs finite differences
        g = jax.grad(lambda q: edge_prune_theory(state, q, method=method, rescale="optimal").eps_g)(p)
        h = 1e-5
        e = jnp.zeros(K).at[1].set(h)
        fd = (edge_prune_theory(state, p + e, method=method, rescale="optimal").eps_g
              - edge_prune_theory(state, p - e, method=method, rescale="optimal").eps_g) / (2 * h)
        assert abs(float(g[1]) - float(fd)) < 1e-5


def test_optimal_rescale_linear_closed_form(rng):
    # linear activation: eps_g is quadratic in c, minimiser solves (v v^T * Q_m) c = v * (R_m v*)
    state, _ = _state(rng)
    r = edge_prune_theory(state, jnp.array([0.45, 0.6, 0.3]), method="random", rescale="optimal",
                          activation="linear")
    v, vs = np.asarray(state.v), np.asarray(state.v_star)
    qm, rm = np.asarray(r.moments.Q), np.asarray(r.moments.R)
    c = np.linalg.solve(np.outer(v, v) * qm, v * (rm @ vs))
    np.testing.assert_allclose(np.asarray(r.c), c, rtol=1e-8)
    assert isinstance(r.state.Q, jax.Array) and r.eps_g.shape == ()


def test_p_validation(rng):
    state, _ = _state(rng)
    for bad in (0.0, -0.2, 1.5, float("nan"), [0.5, 0.5, 1.2]):
        with pytest.raises(ValueError, match=r"`p`.*\(0, 1\]"):
            edge_prune_theory(state, bad, method="random")
    with pytest.raises(ValueError, match="`p`"):
        edge_prune_theory(state, jnp.ones(K + 1) * 0.5)
    with pytest.raises(ValueError, match="method"):
        edge_prune_theory(state, 0.5, method="foo")
    with pytest.raises(ValueError, match="rescale"):
        edge_prune_theory(state, 0.5, rescale="foo")
    with pytest.raises(ValueError, match="`p`"):
        magnitude_edge_mask(np.ones((2, 5)), 0.0)


@pytest.mark.parametrize("method", ["magnitude"])
@pytest.mark.slow
def test_gradients_in_p_slow(rng, method):
    state, _ = _state(rng)
    p = jnp.array([0.6, 0.4, 0.75])
    f = lambda q: edge_prune_theory(state, q, method=method).eps_g  # noqa: E731
    g = jax.grad(f)(p)
    np.testing.assert_allclose(np.asarray(jax.jacfwd(f)(p)), np.asarray(g), rtol=1e-8)
    for i in range(K):
        e = jnp.zeros(K).at[i].set(1e-6)
        assert abs(float(g[i]) - float((f(p + e) - f(p - e)) / 2e-6)) < 1e-6


def test_gradients_in_p(rng):
    state, _ = _state(rng)
    p = jnp.array([0.6, 0.4, 0.75])
    h = 1e-6
    e = jnp.zeros(K).at[0].set(h)
    for method in ("dpp",):  # magnitude: see the slow test below
        f = lambda q, m=method: edge_prune_theory(state, q, method=m).eps_g  # noqa: E731
        g = jax.grad(f)(p)
        fd = (f(p + e) - f(p - e)) / (2 * h)
        assert abs(float(g[0]) - float(fd)) < 1e-6, method
        assert np.all(np.isfinite(np.asarray(g)))


# --------------------------------------------------------------------------------------------------
# Reweighting and counting
# --------------------------------------------------------------------------------------------------


def test_reweight_edges(rng, key):
    n, P = 60, 30000
    w = rng.normal(size=(3, n))
    mask = np.asarray(magnitude_edge_mask(w, 0.5))
    # iid data: ~no effect on the kept weights
    x = rng.normal(size=(P, n))
    w2 = np.asarray(reweight_edges(w, mask, x))
    assert np.all(w2[~mask] == 0)
    rel = np.linalg.norm(w2 - np.where(mask, w, 0)) / np.linalg.norm(np.where(mask, w, 0))
    assert rel < 0.1
    # correlated data (AR(1), correlation 0.9): reweighting reduces the pre-activation error on fresh data
    cov = 0.9 ** np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    chol = np.linalg.cholesky(cov)
    xc = rng.normal(size=(2000, n)) @ chol.T
    xt = rng.normal(size=(2000, n)) @ chol.T
    w3 = np.asarray(reweight_edges(w, mask, xc))
    err_plain = np.mean((xt @ (np.where(mask, w, 0) - w).T) ** 2)
    err_rw = np.mean((xt @ (w3 - w).T) ** 2)
    assert err_rw < 0.5 * err_plain


def test_parameter_counting():
    N, Kn, k = 500, 6, 3
    assert node_params(Kn, N, k) == 3 * 500 + 3 == 1503
    assert edge_params(Kn, N, 0.5) == 0.5 * 6 * 500 + 6 == 1506
    assert matched_keep_fraction(Kn, N, k) == 0.5
    p = matched_keep_fraction(Kn, N, k, rule="seed-paper")
    assert p == pytest.approx(1497 / 3000)  # (kN + k - K) / (K N); 249.5 edges per unit
    assert edge_params(Kn, N, p) == pytest.approx(node_params(Kn, N, k))
    with pytest.raises(ValueError, match="rule"):
        matched_keep_fraction(Kn, N, k, rule="foo")
    with pytest.raises(ValueError, match="k"):
        node_params(Kn, N, 7)


@pytest.mark.slow
def test_data_kernel_dpp_theory_vs_concrete(rng, key):
    """Seed-paper data-kernel edge DPP on a concrete N = 400 network with iid data approaches the theory."""
    om = random_covariance(rng, K + M)
    n, P, p, S = 400, 40000, 0.5, 40
    w, ws = _concrete(rng, om, n)
    x = rng.normal(size=(P, n))
    v, vs = np.ones(K), np.ones(M)
    st = overlaps_from_weights(w, ws, v, vs)
    masks = dpp_edge_mask(key, w, p, x=x, num_samples=S)
    ov = [overlaps_from_weights(apply_edge_mask(w, masks[s]), ws, v, vs) for s in range(S)]
    q = np.mean([np.asarray(o.Q) for o in ov], 0)
    r = np.mean([np.asarray(o.R) for o in ov], 0)
    theory = apply_edge_moments(st, dpp_moments(st, p))
    tol = 5 * 2 * np.max(np.diag(om)) / np.sqrt(n)
    np.testing.assert_allclose(q, np.asarray(theory.Q), atol=tol)
    np.testing.assert_allclose(r, np.asarray(theory.R), atol=tol)
