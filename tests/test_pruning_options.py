"""Pruning choices as objects (`jp.pruning.DPPNodes`, `OptimalReweight`, ...), the one string-to-object map
`pruning_option`, separate budgets `k` / `p`, the node reweighting under jit/vmap/grad, and the CLI's refusal of
options that a method does not take."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune as jp


def _state(rng, K=5, M=2):
    w = rng.normal(size=(K + M, 40))
    C = w @ w.T / 40
    return jp.Overlaps(Q=jnp.asarray(C[:K, :K]), R=jnp.asarray(C[:K, K:]), T=jnp.asarray(C[K:, K:]),
                       v=jnp.asarray(rng.normal(size=K)), v_star=jnp.asarray(rng.normal(size=M) + 1.0))


def test_options_validate_once():
    with pytest.raises(ValueError, match="kernel"):
        jp.pruning.DPPNodes(kernel="B")
    with pytest.raises(ValueError, match="beta"):
        jp.pruning.DPPNodes(kernel="rbf", beta=0.0)
    with pytest.raises(ValueError, match="jitter"):
        jp.pruning.DPPNodes(jitter=-1e-3)
    with pytest.raises(ValueError, match="score"):
        jp.pruning.ImportanceNodes(score="l2")


@pytest.mark.parametrize("kind, names, cls", [
    ("selector", ("random", "random-node"), "RandomNodes"),
    ("selector", ("importance", "importance-node"), "ImportanceNodes"),
    ("selector", ("dpp", "dpp-node"), "DPPNodes"),
    ("reweight", ("activation", "fusing"), "ActivationReweight"),
    ("reweight", ("optimal",), "OptimalReweight"),
    ("edge", ("magnitude", "magnitude-edge"), "MagnitudeEdges"),
    ("rescale", ("inverse-keep", "1/p"), "InverseKeepRescale"),
])
def test_pruning_option_maps_every_vocabulary(kind, names, cls):
    for name in names:
        assert type(jp.pruning.pruning_option(kind, name)) is getattr(jp.pruning, cls)
    obj = getattr(jp.pruning, cls)()
    assert jp.pruning.pruning_option(kind, obj) is obj
    with pytest.raises(ValueError, match="method"):
        jp.pruning.pruning_option(kind, "lottery", name="method")
    opt = jp.pruning.pruning_option("selector", "dpp", kernel="rbf", beta=2.0, score="v")  # score ignored
    assert opt == jp.pruning.DPPNodes(kernel="rbf", beta=2.0)


def test_objects_and_strings_agree(rng):
    state = _state(rng)
    by_name = jp.pruning.expected_node_error(state, 2, method="dpp", reweight="activation", kernel="rbf", beta=0.5)
    by_obj = jp.pruning.expected_node_error(state, 2, method=jp.pruning.DPPNodes(kernel="rbf", beta=0.5),
                                            reweight=jp.pruning.ActivationReweight())
    assert float(by_name.mean) == float(by_obj.mean)
    e1 = jp.pruning.edge_prune_theory(state, 0.4, method="magnitude", rescale="optimal").eps_g
    e2 = jp.pruning.edge_prune_theory(state, 0.4, method=jp.pruning.MagnitudeEdges(),
                                      rescale=jp.pruning.OptimalRescale()).eps_g
    assert float(e1) == float(e2)


def test_importance_scores_seed_paper_v(rng):
    """`ImportanceNodes(score="v")` keeps the largest signed v_i (the seed paper's rule), checked by brute force."""
    state = _state(rng, K=6)
    v = np.asarray(state.v)
    res = jp.pruning.expected_node_error(state, 2, method=jp.pruning.ImportanceNodes(score="v"), return_errors=True)
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(res.masks[0])), np.sort(np.argsort(-v)[:2]))
    rms = np.abs(v) * np.sqrt(np.diag(np.asarray(state.Q)))
    res = jp.pruning.expected_node_error(state, 2, method="importance", return_errors=True)
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(res.masks[0])), np.sort(np.argsort(-rms)[:2]))


def test_prune_expected_separate_budgets(rng):
    state = _state(rng, K=4)
    a = jp.pruning.prune_expected(state, "random-node", k=2)
    b = jp.pruning.prune_expected(state, jp.pruning.RandomNodes(), p=0.5)
    c = jp.pruning.prune_expected(state, "random-node", 2)  # older `keep`
    assert a["k"] == b["k"] == c["k"] == 2 and a["mean"] == b["mean"] == c["mean"]
    e = jp.pruning.prune_expected(state, "random-edge", k=1)  # matched fraction p = k/K
    assert e["p"] == 0.25
    with pytest.raises(ValueError, match="exactly one budget"):
        jp.pruning.prune_expected(state, "random-node", k=2, p=0.5)
    with pytest.raises(ValueError, match="multiple of 1/K"):
        jp.pruning.prune_expected(state, "random-node", p=0.3)
    with pytest.raises(ValueError, match="reweight applies to node methods only"):
        jp.pruning.prune_expected(state, "random-edge", p=0.5, reweight="optimal")
    with pytest.raises(ValueError, match="rescale applies to edge methods only"):
        jp.pruning.prune_expected(state, "dpp-node", k=2, rescale="1/p")


def test_expected_node_error_under_jit_is_a_clear_error(rng):
    state = _state(rng)
    with pytest.raises(ValueError, match="state.*concrete"):
        jax.jit(lambda s: jp.pruning.expected_node_error(s, 2).mean)(state)


def _np_reweight(state, mask, rule):
    """NumPy reference of docs/theory.md 6.1 on the kept block (erf activation):
    I2 = (2/pi) asin(C / sqrt((1+a)(1+b)))."""
    Q, R, T = (np.asarray(x) for x in (state.Q, state.R, state.T))
    v, vs = np.asarray(state.v), np.asarray(state.v_star)
    S, Sc = np.flatnonzero(mask), np.flatnonzero(~mask)
    d = np.diag(Q)
    A = 2 / np.pi * np.arcsin(Q / np.sqrt(np.outer(1 + d, 1 + d)))
    B = 2 / np.pi * np.arcsin(R / np.sqrt(np.outer(1 + d, 1 + np.diag(T))))
    if rule == "preactivation":
        return v[S] + np.linalg.solve(Q[np.ix_(S, S)], Q[np.ix_(S, Sc)] @ v[Sc])
    if rule == "activation":
        return v[S] + np.linalg.solve(A[np.ix_(S, S)], A[np.ix_(S, Sc)] @ v[Sc])
    return np.linalg.solve(A[np.ix_(S, S)], B[S] @ vs)


@pytest.mark.parametrize("rule", ["preactivation", "activation", "optimal"])
def test_reweighting_jit_vmap_grad(rng, rule):
    """One reweighting function: equal to a NumPy reference, the same under vmap over masks, and its jacfwd in
    the state equals central finite differences (non-singular kept block)."""
    state = _state(rng, K=5)
    masks = np.array([m for m in itertools.product([False, True], repeat=5) if sum(m) == 3])
    fn = jax.jit(jax.vmap(lambda m: jp.pruning.reweighted_output_weights(state, m, reweight=rule)[0]))
    out = np.asarray(fn(jnp.asarray(masks)))
    for m, o in zip(masks, out):
        np.testing.assert_allclose(o[m], _np_reweight(state, m, rule), rtol=1e-8, atol=1e-10)
        assert np.all(o[~m] == 0)
    mask = jnp.asarray(masks[3])
    dQ = jnp.asarray(_state(rng, K=5).Q) * 0.1

    def f(t):
        s = jp.Overlaps(Q=state.Q + t * dQ, R=state.R, T=state.T, v=state.v, v_star=state.v_star)
        return jp.pruning.reweighted_output_weights(s, mask, reweight=rule)[0]

    h = 1e-6
    fd = (f(h) - f(-h)) / (2 * h)
    np.testing.assert_allclose(np.asarray(jax.jacfwd(f)(0.0)), np.asarray(fd), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(np.asarray(jax.jacrev(f)(0.0)), np.asarray(jax.jacfwd(f)(0.0)), rtol=1e-9,
                               atol=1e-12)


def test_cli_refuses_options_a_method_does_not_take(tmp_path, capsys):
    from jaxprune.cli import main

    path = tmp_path / "s.json"
    jp.save_state(path, _state(np.random.default_rng(0), K=4))
    assert main(["prune", str(path), "--method", "random-edge", "--p", "0.5", "--reweight", "optimal"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--reweight applies to node methods only" in err[0]
    assert main(["prune", str(path), "--method", "dpp-node", "--k", "2", "--rescale", "optimal"]) == 2
    assert main(["prune", str(path), "--method", "importance-node", "--k", "1", "--importance-score", "v",
                 "--reweight", "optimal"]) == 0
    out = capsys.readouterr().out
    lib = jp.pruning.prune_expected(jp.load_state(path), jp.pruning.ImportanceNodes(score="v"), k=1,
                                    reweight="optimal")
    assert f"{lib['mean']:.8g}" in out
