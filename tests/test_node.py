"""Node pruning as a map on order parameters (docs/theory.md 6.1): reweighting rules, subset distributions,
expected errors by enumeration, Monte Carlo and closed form.

Expected values come from independent computations: the erf closed form of docs/theory.md 3 and the reweighting
formulas written in NumPy on explicitly deleted units, `itertools.combinations`, determinants in NumPy, and
Monte Carlo on concrete finite-N networks.
"""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import erf as sp_erf

from jaxprune import Linear
from jaxprune import generalisation_error as _generalisation_error
from jaxprune.pruning import (
    NodePruningResult,
    expected_node_error,
    expected_node_error_closed_form,
    importance_mask,
    importance_scores,
    kernel_matrix,
    prune_nodes,
)
from jaxprune import Overlaps, overlaps_from_weights
from jaxprune import Status

RULES = ("none", "preactivation", "activation", "optimal")
generalisation_error = eqx.filter_jit(_generalisation_error)  # compiled once per shape (eager is slow)

# ---------------------------------------------------------------------------------------------
# independent NumPy references


def np_i2(ca, cb, cab):
    """Erf `I2 = (2/pi) asin(C_ab / sqrt((1+C_aa)(1+C_bb)))` (docs/theory.md 2), broadcasting."""
    return 2.0 / np.pi * np.arcsin(cab / np.sqrt((1.0 + ca) * (1.0 + cb)))


def np_blocks(Q, R, T):
    q, t = np.diag(Q), np.diag(T)
    A = np_i2(q[:, None], q[None, :], Q)
    B = np_i2(q[:, None], t[None, :], R)
    return A, B


def np_eps(Q, R, T, v, vs):
    """docs/theory.md 3, written out: (1/pi)[sum v v asin(..Q..) + sum v* v* asin(..T..) - 2 sum v v* asin(..R..)]."""
    q, t = np.diag(Q), np.diag(T)
    s_q = np.arcsin(Q / np.sqrt(np.outer(1 + q, 1 + q)))
    s_t = np.arcsin(T / np.sqrt(np.outer(1 + t, 1 + t)))
    s_r = np.arcsin(R / np.sqrt(np.outer(1 + q, 1 + t)))
    return (v @ s_q @ v + vs @ s_t @ vs - 2 * v @ s_r @ vs) / np.pi


def np_state(state):
    return tuple(np.asarray(getattr(state, f)) for f in ("Q", "R", "T", "v", "v_star"))


def np_reweight(Q, R, T, v, vs, S, rule):
    """`v'_S` of docs/theory.md 6.1 with least-squares (min-norm) solves on the deleted network."""
    S = np.asarray(S)
    Sc = np.setdiff1d(np.arange(len(v)), S)
    A, B = np_blocks(Q, R, T)
    if rule == "none":
        return v[S].copy()
    if rule == "optimal":
        return np.linalg.lstsq(A[np.ix_(S, S)], B[S] @ vs, rcond=None)[0]
    G = Q if rule == "preactivation" else A
    return v[S] + np.linalg.lstsq(G[np.ix_(S, S)], G[np.ix_(S, Sc)] @ v[Sc], rcond=None)[0]


def np_pruned_eps(state, S, rule):
    Q, R, T, v, vs = np_state(state)
    S = np.asarray(S)
    vp = np_reweight(Q, R, T, v, vs, S, rule)
    return np_eps(Q[np.ix_(S, S)], R[S], T, vp, vs)


def np_kernel(state, kernel, beta=1.0):
    Q, R, T, v, vs = np_state(state)
    if kernel == "Q":
        return Q
    A, _ = np_blocks(Q, R, T)
    if kernel == "A":
        return A
    d = np.diag(A)
    return np.exp(-beta * (d[:, None] + d[None, :] - 2 * A))


def np_enumeration(state, k, rule, *, method="random", kernel="Q", beta=1.0):
    """Plain loop over itertools.combinations: (mean, std, errors, weights)."""
    K = len(np.asarray(state.v))
    subsets = list(itertools.combinations(range(K), k))
    errors = np.array([np_pruned_eps(state, S, rule) for S in subsets])
    if method == "random":
        w = np.ones(len(subsets))
    else:
        L = np_kernel(state, kernel, beta)
        w = np.array([np.linalg.det(L[np.ix_(S, S)]) for S in subsets])
    w = w / w.sum()
    mean = w @ errors
    return mean, np.sqrt(w @ (errors - mean) ** 2), errors, w


def random_state(rng, K, M, *, N=None, correlated=True, v_scale=1.0):
    """Overlaps of random weights; with `correlated`, student units lean on the teachers (as after training)."""
    N = N or K + M + 3
    ws = rng.normal(size=(M, N))
    w = rng.normal(size=(K, N))
    if correlated:
        w = w + 1.5 * rng.normal(size=(K, M)) @ ws
    v = v_scale * rng.normal(size=K)
    vs = 1.0 + 0.5 * rng.normal(size=M)
    return overlaps_from_weights(w, ws, v, vs)


def specialised_state(K=6, M=2, v_star=4.0):
    """Students are copies of orthogonal teachers (T = I), K / M per teacher, v_i = v*_n / (K / M)."""
    group = np.arange(K) // (K // M)
    R = (group[:, None] == np.arange(M)[None, :]).astype(float)
    Q = R @ R.T
    v = np.full(K, v_star / (K // M))
    return Overlaps(Q=jnp.asarray(Q), R=jnp.asarray(R), T=jnp.eye(M), v=jnp.asarray(v), v_star=jnp.full(M, v_star))


def subset_mask(K, S):
    m = np.zeros(K, bool)
    m[list(S)] = True
    return jnp.asarray(m)


# ---------------------------------------------------------------------------------------------
# prune_nodes


@pytest.mark.parametrize("rule", ["none", "preactivation", "activation"])
def test_all_ones_mask_changes_nothing(rng, rule):
    state = random_state(rng, 5, 2)
    pruned, status = prune_nodes(state, jnp.ones(5, bool), reweight=rule)
    assert int(status) == Status.SUCCESS
    for f in ("Q", "R", "T", "v", "v_star"):
        np.testing.assert_allclose(getattr(pruned, f), getattr(state, f), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(generalisation_error(pruned), np_eps(*np_state(state)), rtol=1e-10)


def test_optimal_with_all_units_is_the_second_layer_regression(rng):
    state = random_state(rng, 4, 2)
    pruned, _ = prune_nodes(state, jnp.ones(4, bool), reweight="optimal")
    Q, R, T, v, vs = np_state(state)
    A, B = np_blocks(Q, R, T)
    np.testing.assert_allclose(pruned.v, np.linalg.solve(A, B @ vs), rtol=1e-8)


@pytest.mark.parametrize("rule", RULES)
def test_inactive_slots_equal_deleting_units(rng, rule):
    K, M = 6, 3
    state = random_state(rng, K, M)
    for S in [(0,), (1, 4), (0, 2, 5), (1, 2, 3, 5)]:
        mask = subset_mask(K, S)
        pruned, status = prune_nodes(state, mask, reweight=rule)
        assert int(status) == Status.SUCCESS
        idx = np.asarray(S)
        # removed slots are inactive
        off = ~np.asarray(mask)
        assert np.all(np.asarray(pruned.Q)[off] == 0) and np.all(np.asarray(pruned.Q)[:, off] == 0)
        assert np.all(np.asarray(pruned.R)[off] == 0) and np.all(np.asarray(pruned.v)[off] == 0)
        # the same student with the units deleted (numpy indexing), error through the library...
        Q, R, T, v, vs = np_state(state)
        small = Overlaps(
            Q=jnp.asarray(Q[np.ix_(idx, idx)]), R=jnp.asarray(R[idx]), T=jnp.asarray(T),
            v=pruned.v[idx], v_star=jnp.asarray(vs),
        )
        eps = float(generalisation_error(pruned))
        np.testing.assert_allclose(eps, float(generalisation_error(small)), rtol=1e-12)
        # ...and the independent NumPy formula and reweighting
        np.testing.assert_allclose(np.asarray(pruned.v)[idx], np_reweight(Q, R, T, v, vs, idx, rule), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(eps, np_pruned_eps(state, idx, rule), rtol=1e-9)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_optimal_reweighting_is_never_worse(seed):
    rng = np.random.default_rng(seed)
    K, M = 5, 2
    state = random_state(rng, K, M, correlated=bool(rng.integers(2)), v_scale=float(rng.uniform(0.2, 2)))
    mask = rng.random(K) < 0.6
    mask[rng.integers(K)] = True
    mask = jnp.asarray(mask)
    errs = {r: float(generalisation_error(prune_nodes(state, mask, reweight=r)[0])) for r in RULES}
    for r in RULES:
        assert errs["optimal"] <= errs[r] + 1e-10, errs


def test_prune_nodes_vmaps_over_masks(rng):
    K = 5
    state = random_state(rng, K, 2)
    masks = rng.random((7, K)) < 0.5
    masks[:, 0] = True
    f = jax.jit(jax.vmap(lambda m: generalisation_error(prune_nodes(state, m, reweight="activation")[0])))
    got = np.asarray(f(jnp.asarray(masks)))
    want = [np_pruned_eps(state, np.flatnonzero(m), "activation") for m in masks]
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_linear_activation_makes_activation_rule_the_preactivation_rule(rng):
    state = random_state(rng, 5, 2)
    mask = subset_mask(5, (0, 3, 4))
    a, _ = prune_nodes(state, mask, reweight="activation", activation=Linear())
    p, _ = prune_nodes(state, mask, reweight="preactivation", activation=Linear())
    np.testing.assert_allclose(a.v, p.v, rtol=1e-10)


def test_prune_nodes_validation(rng, no_typecheck):  # bad dtype / name: the library's ValueError
    state = random_state(rng, 4, 2)
    with pytest.raises(ValueError, match="mask"):
        prune_nodes(state, jnp.ones(3, bool))
    with pytest.raises(ValueError, match="boolean"):
        prune_nodes(state, jnp.ones(4))
    with pytest.raises(ValueError, match="reweight"):
        prune_nodes(state, jnp.ones(4, bool), reweight="fused")


# ---------------------------------------------------------------------------------------------
# singular blocks (duplicated units)


@pytest.mark.parametrize("rule", ["preactivation", "activation"])
def test_duplicate_units_singular_but_finite_and_function_preserving(rng, rule):
    K, M = 5, 2
    N = 40
    ws = rng.normal(size=(M, N))
    w = rng.normal(size=(K, N)) + ws[rng.integers(M, size=K)]
    w[1] = w[0]
    w[2] = w[0]  # units 0, 1, 2 identical
    state = overlaps_from_weights(w, ws, rng.normal(size=K), np.ones(M))
    full = np_eps(*np_state(state))

    # keep two of the three copies and drop the third: Q_SS / A_SS singular, merging preserves the function
    pruned, status = prune_nodes(state, subset_mask(K, (0, 1, 3, 4)), reweight=rule)
    assert int(status) == Status.SINGULAR
    assert np.all(np.isfinite(np.asarray(pruned.v)))
    np.testing.assert_allclose(float(generalisation_error(pruned)), full, rtol=1e-8, atol=1e-10)

    # keep one copy: not singular, still exact
    pruned, status = prune_nodes(state, subset_mask(K, (2, 3, 4)), reweight=rule)
    assert int(status) == Status.SUCCESS
    np.testing.assert_allclose(float(generalisation_error(pruned)), full, rtol=1e-8, atol=1e-10)

    # keep two copies, drop another unit: singular, error equals the least-squares (pseudo-inverse) answer
    pruned, status = prune_nodes(state, subset_mask(K, (0, 1, 3)), reweight=rule)
    assert int(status) == Status.SINGULAR
    np.testing.assert_allclose(float(generalisation_error(pruned)), np_pruned_eps(state, (0, 1, 3), rule), rtol=1e-8)

    # the enumeration reports singular subsets instead of NaN
    res = expected_node_error(state, 3, method="random", reweight=rule)
    assert np.isfinite(float(res.mean)) and int(res.status) == Status.SINGULAR and int(res.num_singular) > 0
    np.testing.assert_allclose(float(res.mean), np_enumeration(state, 3, rule)[0], rtol=1e-8)


# ---------------------------------------------------------------------------------------------
# reweighting against a concrete finite-N network


def fields_of_network(w, ws, rng, P):
    """Local fields `(w.x, w*.x)/sqrt(N)` for `P` Gaussian inputs `x ~ N(0, I_N)`, drawn exactly by sampling
    the component of `x` in the span of the weights (the orthogonal part does not enter the fields)."""
    W = np.concatenate([w, ws], axis=0)
    U, _ = np.linalg.qr(W.T)  # N x (K+M), orthonormal
    proj = W @ U / np.sqrt(W.shape[1])
    g = rng.normal(size=(P, U.shape[1]))
    f = g @ proj.T
    return f[:, : w.shape[0]], f[:, w.shape[0] :]


def concrete_network(rng, K=5, M=2, N=2000):
    ws = rng.normal(size=(M, N))
    w = rng.normal(size=(K, N)) + 1.2 * rng.normal(size=(K, M)) @ ws
    w /= np.sqrt(np.mean(w**2, axis=1, keepdims=True)) / 1.3
    v = rng.normal(size=K)
    vs = np.array([1.0, -0.7])[:M]
    return w, ws, v, vs


def test_preactivation_rule_is_least_squares_on_preactivations(rng):
    w, ws, v, vs = concrete_network(rng)
    state = overlaps_from_weights(w, ws, v, vs)
    S, Sc = np.array([0, 2, 3]), np.array([1, 4])
    P, N = 20000, w.shape[1]
    x = rng.normal(size=(P, N))  # real inputs, full dimension
    lam = x @ w.T / np.sqrt(N)
    c = np.linalg.lstsq(lam[:, S], lam[:, Sc] @ v[Sc], rcond=None)[0]
    pruned, status = prune_nodes(state, subset_mask(5, S), reweight="preactivation")
    assert int(status) == Status.SUCCESS
    np.testing.assert_allclose(np.asarray(pruned.v)[S], v[S] + c, atol=0.03)


def test_optimal_rule_and_pruned_error_match_monte_carlo(rng):
    w, ws, v, vs = concrete_network(rng)
    state = overlaps_from_weights(w, ws, v, vs)
    S = np.array([1, 2, 4])
    lam, nu = fields_of_network(w, ws, rng, 1_000_000)
    g_s = sp_erf(lam[:, S] / np.sqrt(2))
    y = sp_erf(nu / np.sqrt(2)) @ vs
    v_mc = np.linalg.lstsq(g_s, y, rcond=None)[0]  # regression of the teacher on the kept activations
    pruned, _ = prune_nodes(state, subset_mask(5, S), reweight="optimal")
    np.testing.assert_allclose(np.asarray(pruned.v)[S], v_mc, atol=0.01)
    for rule in RULES:
        pruned, _ = prune_nodes(state, subset_mask(5, S), reweight=rule)
        sq = 0.5 * (g_s @ np.asarray(pruned.v)[S] - y) ** 2
        se = sq.std() / np.sqrt(sq.size)
        assert abs(float(generalisation_error(pruned)) - sq.mean()) < 4 * se + 1e-12, rule


# ---------------------------------------------------------------------------------------------
# expected errors by enumeration


@pytest.mark.parametrize("rule", RULES)
def test_random_enumeration_equals_itertools_average(rng, rule):
    state = random_state(rng, 6, 2)
    res = expected_node_error(state, 3, method="random", reweight=rule, return_errors=True)
    mean, std, errors, _ = np_enumeration(state, 3, rule)
    assert isinstance(res, NodePruningResult) and res.exact and res.num_subsets == 20
    assert float(res.stderr) == 0.0
    np.testing.assert_allclose(float(res.mean), mean, rtol=1e-9)
    np.testing.assert_allclose(float(res.std), std, rtol=1e-7)
    np.testing.assert_allclose(float(res.min), errors.min(), rtol=1e-9)
    np.testing.assert_allclose(float(res.max), errors.max(), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(res.errors), errors, rtol=1e-8)  # lexicographic order
    # the per-subset errors are those of prune_nodes + generalisation_error
    m = jnp.asarray(res.masks[7])
    np.testing.assert_allclose(res.errors[7], generalisation_error(prune_nodes(state, m, reweight=rule)[0]), rtol=1e-9)


@pytest.mark.parametrize("kernel", ["Q", "A", "rbf"])
@pytest.mark.parametrize("rule", ["none", "activation"])
def test_dpp_enumeration_equals_det_weighted_average(rng, kernel, rule):
    state = random_state(rng, 6, 2)
    res = expected_node_error(state, 3, method="dpp", reweight=rule, kernel=kernel, beta=2.0)
    mean, std, _, _ = np_enumeration(state, 3, rule, method="dpp", kernel=kernel, beta=2.0)
    np.testing.assert_allclose(float(res.mean), mean, rtol=1e-9)
    np.testing.assert_allclose(float(res.std), std, rtol=1e-6)


def test_kernel_matrix_matches_numpy(rng):
    state = random_state(rng, 5, 2)
    for kernel in ("Q", "A", "rbf"):
        L = kernel_matrix(state, kernel, beta=0.7, jitter=0.1)
        np.testing.assert_allclose(L, np_kernel(state, kernel, 0.7) + 0.1 * np.eye(5), rtol=1e-10, atol=1e-14)


def test_kernel_matrix_rejects_unknown_kernel(rng, no_typecheck):  # outside the Literal: the library's ValueError
    with pytest.raises(ValueError, match="kernel"):
        kernel_matrix(random_state(rng, 5, 2), "cosine")


def test_importance_is_a_point_mass_on_the_largest_scores(rng):
    state = random_state(rng, 6, 2)
    Q, R, T, v, vs = np_state(state)
    score = np.abs(v) * np.sqrt(np.diag(Q))
    np.testing.assert_allclose(importance_scores(state), score, rtol=1e-12)
    top = np.sort(np.argsort(-score)[:3])
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(importance_mask(state, 3))), top)
    res = expected_node_error(state, 3, method="importance", reweight="activation")
    assert res.exact and res.num_subsets == 1 and float(res.std) == 0.0
    np.testing.assert_allclose(float(res.mean), np_pruned_eps(state, top, "activation"), rtol=1e-9)
    # ties are broken by index: all scores equal -> the first k units
    tied = specialised_state()
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(importance_mask(tied, 2))), [0, 1])


def test_expected_node_error_validation(rng, no_typecheck):  # k = 2.5, bad names: the library's ValueError
    state = random_state(rng, 5, 2)
    for bad_k in (0, 6, 2.5, True):
        with pytest.raises(ValueError, match="k"):
            expected_node_error(state, bad_k)
    with pytest.raises(ValueError, match="method"):
        expected_node_error(state, 2, method="magnitude")
    with pytest.raises(ValueError, match="reweight"):
        expected_node_error(state, 2, reweight="fuse")
    with pytest.raises(ValueError, match="beta"):
        expected_node_error(state, 2, method="dpp", kernel="rbf", beta=0.0)
    with pytest.raises(ValueError, match="jitter"):
        expected_node_error(state, 2, method="dpp", jitter=-1.0)
    with pytest.raises(ValueError, match="samples"):
        expected_node_error(state, 2, samples=1)
    bad = Overlaps(Q=state.Q.at[0, 0].set(jnp.nan), R=state.R, T=state.T, v=state.v, v_star=state.v_star)
    with pytest.raises(ValueError, match="NaN"):
        expected_node_error(bad, 2)
    with pytest.raises(ValueError, match="method"):
        expected_node_error_closed_form(state, 2, method="importance")


def test_rank_deficient_kernel_asks_for_jitter(rng):
    K, M = 6, 2
    w = rng.normal(size=(K, 2))  # N = 2: Q has rank 2
    state = overlaps_from_weights(w, rng.normal(size=(M, 2)), rng.normal(size=K), np.ones(M))
    with pytest.raises(ValueError, match="jitter"):
        expected_node_error(state, 3, method="dpp", kernel="Q")
    with pytest.raises(ValueError, match="jitter"):
        expected_node_error_closed_form(state, 3, method="dpp", kernel="Q")
    res = expected_node_error(state, 3, method="dpp", kernel="Q", jitter=1e-3)
    assert np.isfinite(float(res.mean))
    # k <= rank is fine without jitter
    assert np.isfinite(float(expected_node_error(state, 2, method="dpp", kernel="Q").mean))


# ---------------------------------------------------------------------------------------------
# Monte Carlo path


@pytest.mark.parametrize("method", ["random", "dpp"])
def test_monte_carlo_within_stderr_of_exact(rng, key, method):
    state = random_state(rng, 6, 2)  # shapes shared with the enumeration tests (one compilation)
    exact = expected_node_error(state, 3, method=method, reweight="activation", kernel="A")
    mc = expected_node_error(state, 3, method=method, reweight="activation", kernel="A", samples=4000, key=key)
    assert exact.exact and not mc.exact and mc.num_subsets == 4000
    assert float(mc.stderr) > 0
    assert abs(float(mc.mean) - float(exact.mean)) < 4 * float(mc.stderr)
    np.testing.assert_allclose(float(mc.std), float(exact.std), rtol=0.1)
    assert float(exact.min) <= float(mc.min) and float(mc.max) <= float(exact.max) + 1e-12


# ---------------------------------------------------------------------------------------------
# closed form from inclusion probabilities


@pytest.mark.parametrize(
    "K, ks",
    [(6, range(1, 7)), (9, (4,))]
    + [pytest.param(K, range(1, K + 1), marks=pytest.mark.slow) for K in (7, 8, 9)],
)
def test_closed_form_equals_enumeration(rng, K, ks):
    state = random_state(rng, K, 2)
    for k in ks:
        for method, kernel in (("random", "Q"), ("dpp", "Q"), ("dpp", "rbf")):
            cf = expected_node_error_closed_form(state, k, method=method, kernel=kernel)
            ref = np_enumeration(state, k, "none", method=method, kernel=kernel)[0]
            np.testing.assert_allclose(float(cf.mean), ref, rtol=1e-8, err_msg=f"{method} {kernel} k={k}")
    k0 = list(ks)[len(ks) // 2]  # and against the library's own enumeration (kernel A)
    cf = expected_node_error_closed_form(state, k0, method="dpp", kernel="A")
    en = expected_node_error(state, k0, method="dpp", kernel="A")
    np.testing.assert_allclose(float(cf.mean), float(en.mean), rtol=1e-9)


@pytest.mark.parametrize("method", ["random", "dpp"])
def test_closed_form_large_K_matches_monte_carlo(rng, key, method):
    K, M, k = 200, 3, 20
    state = random_state(rng, K, M, N=300, v_scale=0.1)
    cf = expected_node_error_closed_form(state, k, method=method, kernel="Q")
    mc = expected_node_error(state, k, method=method, kernel="Q", samples=3000, key=key)
    assert np.isfinite(float(cf.mean))
    assert float(mc.min) <= float(cf.mean) <= float(mc.max)
    assert abs(float(cf.mean) - float(mc.mean)) < 4 * float(mc.stderr), (float(cf.mean), float(mc.mean), float(mc.stderr))


# ---------------------------------------------------------------------------------------------
# seed paper sanity check


@pytest.mark.parametrize("kernel", ["Q", "A"])
def test_dpp_beats_random_at_a_specialised_state(kernel):
    """K=6, M=2, three copies of each (orthogonal) teacher unit, v_i = v*/3, v* = 4.

    A k-DPP with k=2 on Q (or A, both of rank 2) never keeps two copies of the same teacher, so with
    reweighting the pruned student is exact; random pruning keeps one group twice with probability
    2 C(3,2) / C(6,2) = 2/5, and then misses a teacher: error (1/2) v*^2 (2/pi) asin(1/2) = 8/3.
    """
    state = specialised_state()
    assert float(generalisation_error(state)) < 1e-12
    out = {}
    for method in ("random", "dpp", "importance"):
        for rule in ("none", "preactivation", "activation"):
            out[method, rule] = float(expected_node_error(state, 2, method=method, reweight=rule, kernel=kernel).mean)
    print(f"\nK=6 specialised state, k=2, kernel {kernel}: " + ", ".join(f"{m}/{r}={e:.4f}" for (m, r), e in out.items()))
    for rule in ("preactivation", "activation"):
        assert out["dpp", rule] <= out["random", rule]
        np.testing.assert_allclose(out["random", rule], 0.4 * 8 / 3, rtol=1e-9)
        np.testing.assert_allclose(out["dpp", rule], 0.0, atol=1e-9)
        np.testing.assert_allclose(out["importance", rule], 8 / 3, rtol=1e-9)  # units 0, 1: one group
    # without reweighting DPP keeps one unit per teacher with weight 4/3: error 2 * 1/2 (8/3)^2 (1/3)
    np.testing.assert_allclose(out["dpp", "none"], 64 / 27, rtol=1e-9)
    assert out["dpp", "none"] <= out["random", "none"]
