"""Closed forms at the specialised fixed point (`jaxprune.pruning._bounds`) against the general pruning machinery
(`jaxprune.pruning._node`, `jaxprune.pruning._edge`) on the same state, against finite differences and Monte Carlo."""

import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf as np_erf

from jaxprune.pruning import (
    balanced_node_error,
    bounds_table,
    count_distribution,
    dpp_node_error,
    edge_error,
    specialised_edge_moments,
    group_counts,
    importance_counts,
    node_error_counts,
    node_error_range,
    optimal_reweight_bound,
    random_node_error,
    specialisation,
    specialised_state,
)
from jaxprune.pruning import kdpp_enumerate
from jaxprune.pruning import edge_prune_theory
from jaxprune import generalisation_error
from jaxprune.pruning import expected_node_error, kernel_matrix, prune_nodes
from jaxprune import overlaps_from_weights, validate_overlaps

REWEIGHTS = ("none", "preactivation", "activation", "optimal")


def all_masks(K):
    return np.array(list(itertools.product([False, True], repeat=K)), dtype=bool)


def machinery_errors(state, masks, reweight):
    fn = jax.jit(jax.vmap(lambda m: generalisation_error(prune_nodes(state, m, reweight=reweight)[0])))
    return np.asarray(fn(jnp.asarray(masks)))


@pytest.fixture(scope="module")
def exact_spec():
    return specialisation(6, 2, 4.0)


@pytest.fixture(scope="module")
def imperfect_spec():
    T = np.array([[1.2, 0.3, 0.1], [0.3, 0.9, -0.2], [0.1, -0.2, 1.0]])
    return specialisation(7, 3, jnp.array([1.5, -0.7, 1.0]), rho=0.85, cross=0.2, group_sizes=(2, 2, 3), T=T)


# --------------------------------------------------------------------------------------------------
# the state
# --------------------------------------------------------------------------------------------------


def test_specialised_state_structure(exact_spec, imperfect_spec):
    s = exact_spec.state()
    validate_overlaps(s)
    Q = np.asarray(s.Q)
    assert np.allclose(Q, np.kron(np.eye(2), np.ones((3, 3))))
    assert np.allclose(np.asarray(s.R), np.kron(np.eye(2), np.ones((3, 1))))
    assert np.allclose(np.asarray(s.v), 4.0 / 3.0)
    assert float(generalisation_error(s)) == pytest.approx(0.0, abs=1e-14)

    s = imperfect_spec.state()
    validate_overlaps(s)
    Q, R, T = map(np.asarray, (s.Q, s.R, s.T))
    a, rho, cross = math.sqrt(0.85), 0.85, 0.2
    assert Q[0, 0] == pytest.approx(T[0, 0]) and Q[0, 1] == pytest.approx(rho * T[0, 0])
    assert Q[0, 2] == pytest.approx(a * a * T[0, 1] + cross * (1 - a * a) * math.sqrt(T[0, 0] * T[1, 1]))
    assert np.allclose(R[5], a * T[2])
    assert np.allclose(np.asarray(s.v)[[0, 2, 4]], [1.5 / 2, -0.7 / 2, 1.0 / 3])
    assert group_counts(imperfect_spec, [True, False, True, True, False, False, True]).tolist() == [1, 2, 1]
    # the generic constructor agrees
    assert np.allclose(np.asarray(specialised_state(6, 2, 4.0).Q), np.asarray(exact_spec.state().Q))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(K=5, M=2), "multiple of M"),
        (dict(K=6, M=2, rho=1.5), "rho"),
        (dict(K=6, M=2, cross=-2.0), "cross"),
        (dict(K=6, M=2, rho=0.5, alignment=0.9), "positive semidefinite"),
        (dict(K=6, M=2, group_sizes=(2, 3)), "group_sizes"),
        (dict(K=6, M=2, v_star=[1.0, 2.0, 3.0]), "v_star"),
    ],
)
def test_constructor_errors(kwargs, match):
    K, M = kwargs.pop("K"), kwargs.pop("M")
    with pytest.raises(ValueError, match=match):
        specialisation(K, M, **kwargs)


def test_budget_and_option_errors(exact_spec):
    with pytest.raises(ValueError, match=r"k \(units kept\) must be an integer in \[1, 6\]"):
        random_node_error(exact_spec, 7)
    with pytest.raises(ValueError, match=r"k \(units kept\) must be an integer in \[1, 6\]"):
        dpp_node_error(exact_spec, 0)
    with pytest.raises(ValueError, match="keep fraction"):
        edge_error(exact_spec, 1.5)
    with pytest.raises(ValueError, match="reweight"):
        random_node_error(exact_spec, 2, reweight="bogus")
    with pytest.raises(ValueError, match="method"):
        edge_error(exact_spec, 0.5, method="bogus")
    with pytest.raises(ValueError, match="counts"):
        node_error_counts(exact_spec, [4, 0])


# --------------------------------------------------------------------------------------------------
# node pruning: closed forms == general machinery (all subsets enumerated)
# --------------------------------------------------------------------------------------------------


# the imperfect teacher repeats the exact one's path at a higher cost: slow tier
@pytest.mark.parametrize("which", ["exact", pytest.param("imperfect", marks=pytest.mark.slow)])
def test_node_closed_forms_match_enumeration(which, exact_spec, imperfect_spec):
    spec = exact_spec if which == "exact" else imperfect_spec
    state = spec.state()
    K = spec.K
    masks = all_masks(K)
    sizes = masks.sum(axis=1)
    L = np.asarray(kernel_matrix(state, "Q"))
    rank = np.linalg.matrix_rank(L)
    errs = {r: machinery_errors(state, masks, r) for r in REWEIGHTS}
    for k in range(1, K + 1):
        sel = sizes == k
        # k-DPP weights det(L_S + jitter I) of the machinery's kernel, over the same enumerated masks
        jitter = 0.0 if k <= rank else 1e-4
        Lj = L + jitter * np.eye(K)
        det = np.array([np.linalg.det(Lj[np.ix_(m, m)]) for m in masks[sel]])
        probs = np.clip(det, 0.0, None) / np.clip(det, 0.0, None).sum()
        for r in REWEIGHTS:
            e = errs[r][sel]
            assert float(random_node_error(spec, k, reweight=r)) == pytest.approx(e.mean(), abs=1e-10)
            nb = node_error_range(spec, k, reweight=r)
            assert float(nb.best) == pytest.approx(e.min(), abs=1e-10)
            assert float(nb.worst) == pytest.approx(e.max(), abs=1e-10)
            assert float(dpp_node_error(spec, k, reweight=r, jitter=jitter)) == pytest.approx(probs @ e, abs=1e-10)
        # node_error_counts on the best counts reproduces the best subset
        nb = node_error_range(spec, k, reweight="activation")
        assert float(node_error_counts(spec, nb.best_counts, reweight="activation")) == pytest.approx(
            errs["activation"][sel].min(), abs=1e-10
        )
    # the optimal reweighting bounds every rule, subset by subset
    nonempty = sizes > 0
    for r in REWEIGHTS[:-1]:
        assert np.all(errs["optimal"][nonempty] <= errs[r][nonempty] + 1e-12)
    for k in (2, K - 2):
        assert float(optimal_reweight_bound(spec, k)) <= float(node_error_range(spec, k, reweight="none").best)


def test_node_closed_forms_match_public_entry_points(imperfect_spec):
    """The same comparison through `expected_node_error` itself (enumeration inside the machinery)."""
    spec, state = imperfect_spec, imperfect_spec.state()
    res = expected_node_error(state, 4, method="random", reweight="activation")
    assert float(random_node_error(spec, 4, reweight="activation")) == pytest.approx(float(res.mean), abs=1e-10)
    assert float(node_error_range(spec, 4, reweight="activation").worst) == pytest.approx(float(res.max), abs=1e-10)
    res = expected_node_error(state, 4, method="dpp", kernel="A", reweight="activation")
    got = dpp_node_error(spec, 4, kernel="A", reweight="activation")
    assert float(got) == pytest.approx(float(res.mean), abs=1e-10)
    res = expected_node_error(state, 3, method="importance", reweight="preactivation")
    assert float(node_error_counts(spec, importance_counts(spec, 3), reweight="preactivation")) == pytest.approx(
        float(res.mean), abs=1e-10
    )


def test_rbf_kernel_dpp_matches_enumeration(imperfect_spec):
    spec, state = imperfect_spec, imperfect_spec.state()
    L = np.asarray(kernel_matrix(state, "rbf", beta=2.0))
    masks, probs = kdpp_enumerate(L, 3)
    errs = machinery_errors(state, masks, "none")
    got = dpp_node_error(spec, 3, kernel="rbf", beta=2.0)
    assert float(got) == pytest.approx(float(np.sum(np.asarray(probs) * errs)), abs=1e-10)


def test_closed_forms_at_the_exact_state(exact_spec):
    """Hand formulas for K = 6, M = 2, v* = 4, T = I: every arcsin is asin(1/2) = pi/6, so a kept-count vector
    m without reweighting has eps = sum_n v*^2 (1 - m_n/3)^2 / 6, and reweighting restores every present group."""
    spec = exact_spec
    for m in itertools.product(range(4), repeat=2):
        if sum(m) == 0:
            continue
        want = sum(16.0 * (1 - mn / 3) ** 2 / 6 for mn in m)
        assert float(node_error_counts(spec, m)) == pytest.approx(want, abs=1e-12)
        want_rw = sum(16.0 / 6 for mn in m if mn == 0)
        for r in REWEIGHTS[1:]:
            assert float(node_error_counts(spec, m, reweight=r)) == pytest.approx(want_rw, abs=1e-12)
    # hypergeometric average for k = 2: P(1,1) = 9/15, P(2,0) = P(0,2) = 3/15
    want = 9 / 15 * 2 * 16 * (2 / 3) ** 2 / 6 + 6 / 15 * (16 * (1 / 3) ** 2 / 6 + 16 / 6)
    assert float(random_node_error(spec, 2)) == pytest.approx(want, abs=1e-12)


def test_dpp_rank_deficient_kernel_limit_is_not_balanced(exact_spec):
    """Kernel Q of the exact state has rank M = 2. For k <= M the k-DPP picks one unit per group (balanced);
    for k = 4 > M it exists only with a jitter, and as jitter -> 0 it tends to P(m) ∝ prod C(3, m_n) m_n over
    m with every group present: P(2,2) = 2/3, P(1,3) = P(3,1) = 1/6, not the balanced point mass."""
    spec = exact_spec
    counts, probs = count_distribution(spec, 2, method="dpp")
    assert dict(zip(map(tuple, counts.tolist()), np.asarray(probs))) [(1, 1)] == pytest.approx(1.0)
    counts, probs = count_distribution(spec, 4, method="dpp")
    got = dict(zip(map(tuple, counts.tolist()), np.asarray(probs).tolist()))
    assert got[(2, 2)] == pytest.approx(2 / 3, abs=1e-12)
    assert got[(1, 3)] == pytest.approx(1 / 6, abs=1e-12)
    limit = float(dpp_node_error(spec, 4))
    assert limit == pytest.approx(2 / 3 * 2 * 16 / 54 + 1 / 3 * (16 * 4 / 54 + 0.0), abs=1e-12)
    balanced = float(balanced_node_error(spec, 4))
    assert balanced == pytest.approx(2 * 16 / 54, abs=1e-12)
    assert limit - balanced > 0.1
    # the jittered k-DPP converges to the limit linearly in the jitter
    d = [abs(float(dpp_node_error(spec, 4, jitter=j)) - limit) for j in (1e-3, 1e-4, 1e-5)]
    assert d[0] > d[1] > d[2] and d[2] < 1e-5
    assert d[0] / d[1] == pytest.approx(10.0, rel=0.05)


# --------------------------------------------------------------------------------------------------
# edge pruning
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["random", "magnitude", "dpp"])
def test_edge_closed_forms_match_edge_prune_theory(method, exact_spec):
    """Exact state (correlations 0 or 1 only: closed forms everywhere) and an imperfect state of the same shape
    (correlations strictly inside (-1, 1): one-dimensional integrals against the machinery's closed forms)."""
    imperfect = specialisation(6, 2, jnp.array([2.0, -1.0]), rho=0.8, cross=0.3, T=[[1.0, 0.25], [0.25, 1.3]])
    for spec, tol in ((exact_spec, 1e-10), (imperfect, 1e-10)):
        if method == "magnitude" and spec is exact_spec:
            # jaxprune.pruning._edge clips rho to 1 - 1e-15 in Rosenbaum's formula, which costs ~1e-7 at rho = 1 exactly;
            # copies share their magnitude masks, so E[m_i m_k w_i w_k] = E[m w^2] (our closed form) is exact.
            tol = 1e-6
        state = spec.state()
        for p in (0.15, 0.5, 0.9, 1.0):
            res = edge_prune_theory(state, p, method=method, rescale="none")
            for rescale, c in (("none", 1.0), ("inverse-keep", 1.0 / p)):
                from jaxprune.pruning import apply_edge_moments

                want = float(generalisation_error(apply_edge_moments(state, res.moments, c)))
                assert float(edge_error(spec, p, method=method, rescale=rescale)) == pytest.approx(want, abs=tol)


def test_edge_moments_monte_carlo(rng):
    x = rng.normal(size=1_000_000)
    for rho in (0.6, 1.0):
        y = rho * x + math.sqrt(max(1 - rho * rho, 0.0)) * rng.normal(size=x.size)
        for p in (0.15, 0.6):
            z = -float(jax.scipy.special.ndtri(p / 2))
            e1, pair = specialised_edge_moments(p, rho, method="magnitude")
            keep_x, keep_y = np.abs(x) > z, np.abs(y) > z
            for got, sample in ((e1, keep_x * x * x), (pair, keep_x * keep_y * x * y)):
                assert abs(float(got) - sample.mean()) < 5 * sample.std() / math.sqrt(x.size)
            e1, pair = specialised_edge_moments(p, rho, method="dpp")
            from jaxprune.pruning._bounds_edge import _dpp_scale

            a = float(_dpp_scale(jnp.asarray(p)))
            pi = lambda w: a * w * w / (1 + a * w * w)  # noqa: E731
            assert abs(pi(x).mean() - p) < 5 * pi(x).std() / math.sqrt(x.size)
            for got, sample in ((e1, pi(x) * x * x), (pair, pi(x) * pi(y) * x * y)):
                assert abs(float(got) - sample.mean()) < 5 * sample.std() / math.sqrt(x.size)
    # the 1-d integral of the k-DPP pair moment agrees with its closed form at rho = 1
    from jaxprune.pruning._bounds_edge import _dpp_pair, _dpp_pair_copy

    for p in (0.05, 0.5, 0.95):
        a = _dpp_scale(jnp.asarray(p))
        assert float(_dpp_pair(1.0, a, p)) == pytest.approx(float(_dpp_pair_copy(a, p)), rel=1e-11)


# --------------------------------------------------------------------------------------------------
# gradients against finite differences
# --------------------------------------------------------------------------------------------------


def _fd(f, x, h=1e-5):
    return (f(x + h) - f(x - h)) / (2 * h)


# magnitude in the slow tier (suite time): its moments are checked against quadrature in test_edge
@pytest.mark.parametrize("method", ["random", pytest.param("magnitude", marks=pytest.mark.slow), "dpp"])
def test_edge_gradients(method):
    def f(p, rho, vs):
        return edge_error(specialisation(6, 2, jnp.stack([vs, 1.0]), rho=rho), p, method=method,
                          rescale="inverse-keep")

    args = (jnp.asarray(0.37), jnp.asarray(0.9), jnp.asarray(2.0))
    grads = jax.grad(f, argnums=(0, 1, 2))(*args)
    for i, g in enumerate(grads):
        def fi(x, i=i):
            a = list(args)
            a[i] = x
            return float(f(*a))

        assert float(g) == pytest.approx(_fd(fi, float(args[i])), rel=1e-6, abs=1e-8)


def test_node_gradients():
    def rand(vs, rho):
        return random_node_error(specialisation(6, 2, jnp.stack([vs, 1.5]), rho=rho), 3, reweight="activation")

    def dpp(vs, rho):
        return dpp_node_error(specialisation(6, 2, jnp.stack([vs, 1.5]), rho=rho), 4, reweight="none")

    def bal(vs, rho):
        return balanced_node_error(specialisation(6, 2, jnp.stack([vs, 1.5]), rho=rho), 4, reweight="preactivation")

    x = (jnp.asarray(2.5), jnp.asarray(0.9))
    for f in (rand, dpp, bal):
        g = jax.grad(f, argnums=(0, 1))(*x)
        assert float(g[0]) == pytest.approx(_fd(lambda v: float(f(v, x[1])), 2.5), rel=1e-6, abs=1e-8)
        assert float(g[1]) == pytest.approx(_fd(lambda r: float(f(x[0], r)), 0.9), rel=1e-6, abs=1e-8)
        assert np.all(np.isfinite(np.asarray(g)))


# --------------------------------------------------------------------------------------------------
# independent numpy Monte Carlo on concrete networks
# --------------------------------------------------------------------------------------------------


def _concrete_specialised(rng, K, M, N, rho):
    """Exact finite-N weights of the specialised state with T = I, cross = 0: orthogonal teacher rows and
    orthogonal per-unit noise, all of squared norm N."""
    basis = np.linalg.qr(rng.normal(size=(N, M + K)))[0].T * math.sqrt(N)
    w_star, noise = basis[:M], basis[M:]
    group = np.repeat(np.arange(M), K // M)
    w = math.sqrt(rho) * w_star[group] + math.sqrt(1 - rho) * noise
    return w, w_star, group


def test_node_pruning_monte_carlo(rng):
    K, M, N, rho = 6, 2, 40, 0.7
    vs = np.array([2.0, -1.0])
    spec = specialisation(K, M, jnp.asarray(vs), rho=rho)
    w, w_star, group = _concrete_specialised(rng, K, M, N, rho)
    s = overlaps_from_weights(w, w_star, vs[group] / 3, vs)
    assert np.allclose(np.asarray(s.Q), np.asarray(spec.state().Q), atol=1e-12)
    keep = np.array([True, False, False, True, True, False])  # m = (1, 2)
    Q = w @ w.T / N
    # preactivation reweighting by an independent least-squares fit: v'_S = v_S + Q_SS^+ Q_S,Sc v_Sc
    v = vs[group] / 3
    vp = v[keep] + np.linalg.lstsq(Q[np.ix_(keep, keep)], Q[np.ix_(keep, ~keep)] @ v[~keep], rcond=None)[0]
    g = lambda z: np_erf(z / math.sqrt(2))  # noqa: E731
    total, sq, n = 0.0, 0.0, 0
    for _ in range(10):
        x = rng.normal(size=(200_000, N))
        d = 0.5 * (g(x @ w[keep].T / math.sqrt(N)) @ vp - g(x @ w_star.T / math.sqrt(N)) @ vs) ** 2
        total, sq, n = total + d.sum(), sq + (d**2).sum(), n + d.size
    mean = total / n
    se = math.sqrt((sq / n - mean**2) / n)
    want = float(node_error_counts(spec, [1, 2], reweight="preactivation"))
    assert abs(mean - want) < 5 * se


def test_edge_pruning_concrete_network(rng):
    """A wide concrete network pruned edge-by-edge approaches the Gaussian-equivalent closed form."""
    K, M, N, rho, p = 6, 2, 20_000, 0.8, 0.4
    vs = np.array([1.5, 1.0])
    spec = specialisation(K, M, jnp.asarray(vs), rho=rho)
    w, w_star, group = _concrete_specialised(rng, K, M, N, rho)
    v = vs[group] / 3
    for method in ("random", "magnitude"):
        if method == "random":
            mask = rng.random(size=w.shape) < p
        else:
            t = np.quantile(np.abs(w), 1 - p, axis=1, keepdims=True)
            mask = np.abs(w) > t
        s = overlaps_from_weights(w * mask / p, w_star, v, vs)
        want = float(edge_error(spec, p, method=method, rescale="inverse-keep"))
        assert float(generalisation_error(s)) == pytest.approx(want, rel=0.03)


# --------------------------------------------------------------------------------------------------
# table and CLI
# --------------------------------------------------------------------------------------------------


def test_bounds_table_agrees_with_machinery(exact_spec):
    table = bounds_table(exact_spec, ks=[2, 4], jitter=1e-6)
    for row in table["rows"]:
        for e in row["node"]:
            if e["closed_form_is_exact"]:
                assert e["abs_diff"] < 1e-10, e
        assert all(b["abs_diff"] < 1e-10 for b in row["bounds"])
        for e in row["edge"]:
            assert e["abs_diff"] < (1e-6 if e["method"] == "magnitude" else 1e-10), e
    row4 = table["rows"][1]
    bal = next(e for e in row4["node"] if e["method"] == "balanced" and e["reweight"] == "none")
    assert abs(bal["closed_form"] - bal["exact"]) > 0.1  # the idealisation is not the k-DPP
    assert row4["dpp_limit_balanced_mass"] == pytest.approx(2 / 3)


def test_cli(tmp_path, capsys):
    from jaxprune.cli import main

    out = tmp_path / "b.json"
    assert main(["bounds", "--K", "4", "--M", "2", "--v-star", "2", "--k", "1,3", "--exact", "none",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "random" in text and "dpp-lim" in text
    data = json.loads(out.read_text())
    assert [r["k"] for r in data["rows"]] == [1, 3]
    assert data["rows"][0]["edge"][0]["exact"] is None
    assert main(["bounds", "--K", "5", "--M", "2", "--exact", "none"]) == 2
    assert main(["bounds", "--K", "4", "--M", "2", "--k", "9", "--exact", "none"]) == 2
    assert main(["bounds", "--K", "4", "--M", "2", "--rho", "0.5", "--alignment", "0.9", "--exact", "none"]) == 2
    with pytest.raises(SystemExit) as e:
        main(["bounds", "--rho", "2"])
    assert e.value.code == 2


@pytest.mark.slow
def test_bounds_table_K20_M5_fast_and_exact():
    import time

    t = time.perf_counter()
    table = bounds_table(specialisation(20, 5, 1.0))
    assert time.perf_counter() - t < 300
    for row in table["rows"]:
        for e in row["node"]:
            if e["closed_form_is_exact"]:
                assert e["abs_diff"] < 1e-10, (row["k"], e)
        for e in row["edge"]:
            assert e["abs_diff"] < (1e-6 if e["method"] == "magnitude" else 1e-10)
