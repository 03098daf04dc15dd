"""Pruning a trained MLP's first layer (`jaxprune.realdata`) and the real-data run with claim C8
(`jaxprune.experiments.run_realdata`, `c8_cells`): invariants, formulas against NumPy references, fusing,
reweighting, counts, DPP sampling against enumeration, paired claim cells, resumability and bad outputs."""

import json
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune as jp
import jaxprune.experiments  # the experiments layer is imported explicitly
from jaxprune.cli import main

rd = jp.realdata
ex = jp.experiments


def _layers(key, sizes=(12, 8, 5)):
    model = rd.make_mlp(sizes, "sigmoid", key, dtype=jnp.float64)
    return [(l.weight, l.bias) for l in model.layers]


def _correlated(rng, P, D, rho=0.9):
    """Inputs with equicorrelation `rho` between coordinates."""
    z = rng.normal(size=(P, 1))
    return jnp.asarray(np.sqrt(rho) * z + np.sqrt(1 - rho) * rng.normal(size=(P, D)))


# --------------------------------------------------------------------------------------------------
# Library: formulas against NumPy references
# --------------------------------------------------------------------------------------------------


def test_scores_and_kernels_match_numpy(rng):
    P, H = 40, 6
    a = rng.uniform(size=(P, H))
    W2 = rng.normal(size=(3, H))
    np.testing.assert_allclose(rd.data_importance_scores(a, W2),
                               [np.linalg.norm(W2[:, i]) * np.std(a[:, i]) for i in range(H)], rtol=1e-12)
    d = np.array([[np.mean((a[:, i] - a[:, j]) ** 2) for j in range(H)] for i in range(H)])
    dbar = d[~np.eye(H, dtype=bool)].mean()
    L = np.exp(-0.7 * d / dbar)
    L += 1e-3 * np.mean(np.diag(L)) * np.eye(H)
    np.testing.assert_allclose(rd.data_node_kernel(a, "rbf", beta=0.7, jitter=1e-3), L, rtol=1e-10, atol=1e-12)
    lin = a.T @ a / P
    np.testing.assert_allclose(rd.data_node_kernel(a, "linear", jitter=0.0), lin, rtol=1e-12)
    # the edge kernels' eigendecomposition reproduces diag(w_i) (X^T X / P) diag(w_i) + jitter mean(diag) I
    W = rng.normal(size=(3, 5))
    x = rng.normal(size=(30, 5))
    eig = rd.edge_dpp_eigen(W, x, jitter=1e-2, chunk=2)
    G = x.T @ x / 30
    for i in range(3):
        Li = np.diag(W[i]) @ G @ np.diag(W[i])
        Li += 1e-2 * np.mean(np.diag(Li)) * np.eye(5)
        V, lam = np.asarray(eig.eigenvectors[i]), np.asarray(eig.eigenvalues[i])
        np.testing.assert_allclose(V @ np.diag(lam) @ V.T, Li, atol=1e-12)


def test_fusing_matches_numpy_ridge_least_squares(rng):
    P, H, H2 = 80, 7, 3
    a = rng.uniform(size=(P, H))
    W2, b2 = rng.normal(size=(H2, H)), rng.normal(size=H2)
    mask = np.array([1, 0, 1, 1, 0, 1, 0], bool)
    ridge = 1e-3
    W2f, b2f = rd.fuse_nodes(W2, b2, a, mask, ridge=ridge)
    # reference: min_V (1/P) ||[A_S, 1] V - (A W2^T + b2)||^2 + lam ||V||^2, lam = ridge tr(G~) / (H + 1)
    A1 = np.concatenate([a, np.ones((P, 1))], axis=1)
    lam = ridge * np.trace(A1.T @ A1 / P) / (H + 1)
    X = A1[:, np.append(mask, True)]
    target = a @ W2.T + b2
    V = np.linalg.solve(X.T @ X / P + lam * np.eye(X.shape[1]), X.T @ target / P)
    np.testing.assert_allclose(np.asarray(W2f)[:, mask], V[:-1].T, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b2f, V[-1], rtol=1e-9, atol=1e-12)
    assert np.all(np.asarray(W2f)[:, ~mask] == 0)
    # a batch of masks gives the same as one by one
    both = np.stack([mask, ~mask | np.eye(H, dtype=bool)[0]])
    Wb, bb = rd.fuse_nodes(W2, b2, a, both, ridge=ridge)
    for s in range(2):
        w1, b1 = rd.fuse_nodes(W2, b2, a, both[s], ridge=ridge)
        np.testing.assert_allclose(Wb[s], w1, rtol=1e-12)
        np.testing.assert_allclose(bb[s], b1, rtol=1e-12)


def test_keep_everything_leaves_error_unchanged(key, rng):
    layers = _layers(key)
    x = jnp.asarray(rng.normal(size=(200, 12)))
    y = jnp.asarray(rng.integers(0, 5, size=200))
    acts = rd.first_layer_activations(layers, "sigmoid", x)
    np.testing.assert_allclose(acts, jax.nn.sigmoid(x @ layers[0][0].T + layers[0][1][None, :]), rtol=1e-14)
    W1, b1 = layers[0]
    W2, b2 = layers[1]
    base = rd.masked_test_errors(layers, "sigmoid", W1[None], W2[None], b2[None], x, y)
    # the error rate against a NumPy forward pass
    h = 1 / (1 + np.exp(-(np.asarray(x) @ np.asarray(W1).T + np.asarray(b1))))
    logits = h @ np.asarray(W2).T + np.asarray(b2)  # sizes (12, 8, 5): one hidden layer
    assert float(base[0]) == pytest.approx(np.mean(np.argmax(logits, 1) != np.asarray(y)))
    full_nodes = jnp.ones((1, 8), bool)
    for rw in rd.REWEIGHTS:
        W1s, W2s, b2s = rd.prune_nodes_network(layers, full_nodes, rw, acts=acts, ridge=1e-12)
        np.testing.assert_array_equal(rd.masked_test_errors(layers, "sigmoid", W1s, W2s, b2s, x, y), base)
        np.testing.assert_allclose(W2s[0], W2, atol=1e-6)
    edge = rd.edge_masks(key, "random", 12, 2, W=W1)  # c = D: everything kept
    assert bool(jnp.all(edge))
    for rw in rd.REWEIGHTS:
        W1s, W2s, b2s = rd.prune_edges_network(layers, edge, rw, x=x, ridge=1e-12)
        np.testing.assert_allclose(W1s[0], W1, atol=1e-6)
        np.testing.assert_array_equal(rd.masked_test_errors(layers, "sigmoid", W1s, W2s, b2s, x, y),
                                      jnp.stack([base[0]] * 2))


@pytest.mark.parametrize("affine", [False, True])
def test_fusing_duplicated_unit_reproduces_outputs(rng, affine):
    P, H = 300, 6
    acts = rng.uniform(size=(P, H))
    acts[:, 1] = 2.0 * acts[:, 0] + 0.5 if affine else acts[:, 0]  # unit 1 duplicates unit 0
    acts = jnp.asarray(acts)
    W2 = jnp.asarray(rng.normal(size=(4, H)))
    b2 = jnp.asarray(rng.normal(size=4))
    mask = jnp.ones(H, bool).at[1].set(False)
    W2f, b2f = rd.fuse_nodes(W2, b2, acts, mask, ridge=1e-12)
    assert float(jnp.abs(W2f[:, 1]).max()) == 0.0
    np.testing.assert_allclose(acts @ W2f.T + b2f[None, :], acts @ W2.T + b2[None, :], atol=1e-7)
    # without fusing, dropping the unit changes the outputs
    assert float(jnp.abs(acts[:, 1:2] @ W2[:, 1:2].T).max()) > 1e-2


def test_edge_reweighting_reduces_preactivation_error(key, rng):
    x = _correlated(rng, 400, 20)
    layers = _layers(key, (20, 6, 3))
    W1 = layers[0][0]
    masks = rd.edge_masks(key, "random", 10, 3, W=W1)
    pre = x @ W1.T
    errs = {}
    for rw in rd.REWEIGHTS:
        W1s, _, _ = rd.prune_edges_network(layers, masks, rw, x=x, ridge=1e-10)
        errs[rw] = np.asarray(jnp.mean((jnp.einsum("pd,shd->sph", x, W1s) - pre[None]) ** 2, axis=(1, 2)))
    assert np.all(errs["ls"] < 0.5 * errs["none"]), errs


def test_parameter_matching_hand_checked():
    # H = 100 units, D = 64 inputs, node pruning to k = 10 units keeps 10 * 65 = 650 first-layer parameters;
    # the matched edge budget spreads 650 - 100 (biases) = 550 weights over 100 units: 5.5 -> 6 per unit.
    assert rd.first_layer_params(100, 64) == 6500
    assert rd.first_layer_params(100, 64, k=10) == 650
    assert rd.edge_count(100, 64, 10) == 6
    assert rd.first_layer_params(100, 64, c=6) == 700
    # H = 4, D = 3, k = 2: node 2 * 4 = 8, edge 4 * 1 + 4 = 8 exactly.
    assert rd.edge_count(4, 3, 2) == 1
    assert rd.first_layer_params(4, 3, k=2) == rd.first_layer_params(4, 3, c=1) == 8
    assert rd.edge_count(4, 3, 4) == 3  # everything kept
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 4\], got 5"):
        rd.first_layer_params(4, 3, k=5)


def test_masks_have_exactly_the_budgeted_count_and_bad_input_is_one_line(key, rng):
    P, H, D = 150, 10, 8
    x = _correlated(rng, P, D)
    W = jnp.asarray(rng.normal(size=(H, D)))
    acts = jax.nn.sigmoid(x @ W.T)
    W2 = jnp.asarray(rng.normal(size=(3, H)))
    for method in rd.NODE_METHODS:
        for k in (1, 10):
            m = rd.node_masks(key, method, k, 3, acts=acts, W2=W2, design_steps=20)
            assert m.shape[1] == H and np.all(np.asarray(m.sum(axis=1)) == k), (method, k)
    for method in rd.EDGE_METHODS:
        for c in (3, 8):
            m = rd.edge_masks(key, method, c, 3, W=W, x=x, design_steps=20)
            assert m.shape[1:] == (H, D) and np.all(np.asarray(m.sum(axis=2)) == c), (method, c)
    for call, words in (
        (lambda: rd.node_masks(key, "bogus", 2, 1, acts=acts, W2=W2), "node method must be one of"),
        (lambda: rd.node_masks(key, "random", 11, 1, acts=acts, W2=W2), r"k must be an integer in \[1, 10\]"),
        (lambda: rd.edge_masks(key, "random", 0, 1, W=W), r"c must be an integer in \[1, 8\]"),
        (lambda: rd.data_node_kernel(acts, "rbf", beta=-1.0), "beta must be a finite number"),
        (lambda: rd.fuse_nodes(W2, jnp.zeros(3), acts, jnp.ones(H, bool), ridge=0.0), "ridge must be"),
        (lambda: ex.run_realdata("unused", budgets=(0.5, 1.5)), "budgets must be fractions"),
        (lambda: ex.run_realdata("unused", seeds=0), r"seeds must be an integer in \[1, inf\)"),
    ):
        with pytest.raises(ValueError, match=words) as e:
            call()
        assert "\n" not in str(e.value)


# --------------------------------------------------------------------------------------------------
# Methods as objects (`jaxprune.pruning` options and `realdata_option`)
# --------------------------------------------------------------------------------------------------

P_ = jp.pruning


def test_method_objects_give_the_masks_of_their_names(key, rng):
    """Every name maps onto an object (`realdata_option`), and the object gives bit for bit the masks and the
    pruned layers of the name; an object's own options (kernel, beta, jitter, steps, learning rate) are used."""
    P, H, D = 120, 9, 7
    x = _correlated(rng, P, D)
    W = jnp.asarray(rng.normal(size=(H, D)))
    acts = jax.nn.sigmoid(x @ W.T)
    W2 = jnp.asarray(rng.normal(size=(3, H)))
    layers = [(W, jnp.zeros(H)), (W2, jnp.zeros(3))]
    node_objects = {"random": P_.RandomNodes(), "importance": P_.ImportanceNodes(),
                    "dpp-rbf": P_.DPPNodes(kernel="rbf", beta=0.4, jitter=1e-3),
                    "dpp-linear": P_.DPPNodes(kernel="A", beta=0.4, jitter=1e-3),
                    "designed": rd.DesignedNodes(steps=15)}
    edge_objects = {"random": P_.RandomEdges(), "magnitude": P_.MagnitudeEdges(), "dpp": P_.DPPEdges(),
                    "designed": rd.DesignedEdges(steps=15)}
    assert set(node_objects) == set(rd.NODE_METHODS) and set(edge_objects) == set(rd.EDGE_METHODS)
    for name, obj in node_objects.items():
        assert rd.realdata_option("node", name, beta=0.4, jitter=1e-3, design_steps=15) == obj
        by_name = rd.node_masks(key, name, 4, 3, acts=acts, W2=W2, beta=0.4, jitter=1e-3, design_steps=15)
        by_obj = rd.node_masks(key, obj, 4, 3, acts=acts, W2=W2)
        np.testing.assert_array_equal(by_obj, by_name)
        assert by_obj.shape[0] == (3 if rd.is_randomised(obj) else 1)
        assert ((("node", name) in rd.RANDOMISED) == rd.is_randomised(obj))
    for name, obj in edge_objects.items():
        assert rd.realdata_option("edge", name, design_steps=15) == obj
        by_name = rd.edge_masks(key, name, 3, 2, W=W, x=x, design_steps=15)
        np.testing.assert_array_equal(rd.edge_masks(key, obj, 3, 2, W=W, x=x), by_name)
        assert ((("edge", name) in rd.RANDOMISED) == rd.is_randomised(obj))
    # the object's kernel options reach the kernel: the same draws as from that kernel's eigendecomposition
    obj = node_objects["dpp-rbf"]
    eig = P_.kdpp_eigen(rd.data_node_kernel(acts, "rbf", beta=0.4, jitter=1e-3))
    np.testing.assert_array_equal(rd.node_masks(key, obj, 4, 5, acts=acts, W2=W2),
                                  rd.node_masks(key, "dpp-rbf", 4, 5, acts=acts, W2=W2, eig=eig))
    np.testing.assert_array_equal(rd.data_node_kernel(acts, node_objects["dpp-linear"]),
                                  rd.data_node_kernel(acts, "linear", beta=0.4, jitter=1e-3))
    designed = rd.DesignedNodes(steps=15, learning_rate=0.1)
    np.testing.assert_array_equal(rd.node_masks(key, designed, 4, 1, acts=acts, W2=W2)[0],
                                  rd.surrogate_node_mask(acts, W2, 4, steps=15, learning_rate=0.1))
    # reweighting: names and objects give the same layers
    nm = rd.node_masks(key, "random", 5, 2, acts=acts, W2=W2)
    em = rd.edge_masks(key, "random", 4, 2, W=W)
    for name, nobj, eobj in (("none", P_.NoReweight(), P_.NoRescale()),
                             ("ls", P_.ActivationReweight(), rd.RefitEdges())):
        assert rd.realdata_option("node-reweight", name) == nobj and rd.realdata_option("edge-reweight", name) == eobj
        for a, b in zip(rd.prune_nodes_network(layers, nm, nobj, acts=acts),
                        rd.prune_nodes_network(layers, nm, name, acts=acts)):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(rd.prune_edges_network(layers, em, eobj, x=x), rd.prune_edges_network(layers, em, name, x=x)):
            np.testing.assert_array_equal(a, b)


def test_method_objects_without_a_data_version_are_one_line_errors(key, rng):
    acts = jnp.asarray(rng.uniform(size=(30, 6)))
    W2 = jnp.asarray(rng.normal(size=(2, 6)))
    W = jnp.asarray(rng.normal(size=(6, 5)))
    layers = [(W, jnp.zeros(6)), (W2, jnp.zeros(2))]
    masks = jnp.ones((1, 6), bool)
    for call, words in (
        (lambda: rd.node_masks(key, P_.DPPNodes(kernel="Q"), 2, 1, acts=acts, W2=W2), "kernel 'Q' has no data"),
        (lambda: rd.node_masks(key, P_.ImportanceNodes(score="v"), 2, 1, acts=acts, W2=W2), "score 'v' has no data"),
        (lambda: rd.node_masks(key, P_.RandomEdges(), 2, 1, acts=acts, W2=W2),
         "node method must be a RandomNodes, .*; got RandomEdges"),
        (lambda: rd.edge_masks(key, rd.DesignedNodes(), 2, 1, W=W), "edge method must be a .*; got DesignedNodes"),
        (lambda: rd.edge_masks(key, "dpp-edge", 2, 1, W=W), "edge method must be one of 'random'"),
        (lambda: rd.prune_nodes_network(layers, masks, P_.OptimalReweight()), "reweight must be a NoReweight"),
        (lambda: rd.prune_nodes_network(layers, masks, "fusing"), "reweight must be one of 'none', 'ls'"),
        (lambda: rd.prune_edges_network(layers, jnp.ones((1, 6, 5), bool), P_.OptimalRescale()),
         "reweight must be a NoRescale, RefitEdges"),
        (lambda: rd.realdata_option("node", 3), "node method must be one of .* or a method object; got 3"),
        (lambda: rd.realdata_option("layer", "random"), "kind must be one of 'node'"),
        (lambda: rd.DesignedNodes(steps=0), r"steps must be an integer in \[1, inf\)"),
        (lambda: rd.DesignedEdges(learning_rate=-1.0), "learning_rate must be"),
        (lambda: rd.data_node_kernel(acts, P_.DPPNodes(kernel="rbf"), beta=2.0), "come from the DPPNodes"),
        (lambda: rd.is_randomised("random"), "method must be a node or edge method object"),
        (lambda: rd.data_importance_scores(acts, W2[:, :5]), "must share H"),
        (lambda: rd.edge_dpp_eigen(W, acts[:, :4]), "must share D"),
        (lambda: rd.fuse_nodes(W2, jnp.zeros(2), acts, jnp.ones(5, bool)), "must have H=6 columns"),
        (lambda: rd.edge_masks(key, "designed", 2, 1, W=W), "x .* is required for edge method 'designed'"),
    ):
        with pytest.raises(ValueError, match=words) as e:
            call()
        assert "\n" not in str(e.value)


def test_kdpp_masks_match_enumeration_single_and_batched_kernels(key, rng):
    """Empirical subset frequencies of the one real-data route to the k-DPP sampler against exact
    probabilities `det(L_S) / e_k` by enumeration, for one kernel and for a batch of two kernels."""
    mats = []
    for _ in range(2):
        a = rng.normal(size=(6, 4))
        mats.append(a @ a.T + 0.05 * np.eye(6))
    codes_of = lambda m: np.asarray(m) @ (1 << np.arange(6))
    for k in (2, 3):
        one = np.asarray(rd.sample_kdpp_masks(jax.random.fold_in(key, k), jp.pruning.kdpp_eigen(mats[0]), k, 4000))
        batched_eig = jax.vmap(jp.pruning.kdpp_eigen)(jnp.asarray(np.stack(mats)))
        two = np.asarray(rd.sample_kdpp_masks(jax.random.fold_in(key, 10 + k), batched_eig, k, 4000))
        assert one.shape == (4000, 6) and two.shape == (4000, 2, 6)
        for samples, L in ((one, mats[0]), (two[:, 0], mats[0]), (two[:, 1], mats[1])):
            assert np.all(samples.sum(axis=1) == k)
            subsets = [s for s in range(64) if bin(s).count("1") == k]
            dets = np.array([np.linalg.det(L[np.ix_(idx, idx)]) for idx in
                             ([i for i in range(6) if s >> i & 1] for s in subsets)])
            probs = dets / dets.sum()
            codes = codes_of(samples)
            emp = np.array([(codes == s).mean() for s in subsets])
            assert 0.5 * np.abs(emp - probs).sum() < 0.05


def test_dpp_avoids_duplicated_units_more_than_random(key, rng):
    P, H, k, S = 200, 8, 3, 600
    acts = rng.uniform(size=(P, H))
    acts[:, 1] = acts[:, 0]
    acts = jnp.asarray(acts)
    W2 = jnp.ones((2, H))

    def both(method):
        m = np.asarray(rd.node_masks(key, method, k, S, acts=acts, W2=W2))
        return np.mean(m[:, 0] & m[:, 1])

    # random picks both with probability k (k-1) / (H (H-1)) = 6/56
    assert both("random") > 0.05
    assert both("dpp-rbf") < 0.01
    assert both("dpp-linear") < 0.01


def test_designed_masks_beat_simple_rules_on_their_surrogates(rng):
    x = _correlated(rng, 300, 16, rho=0.8)
    W = jnp.asarray(rng.normal(size=(5, 16)))
    G = np.asarray(x.T @ x / x.shape[0])

    def err(m):
        r = np.asarray(W) * (1 - np.asarray(m))
        return float(np.sum((r @ G) * r))

    designed = rd.surrogate_edge_mask(W, x, 4, steps=150)
    magnitude = rd.edge_masks(jax.random.key(0), "magnitude", 4, 1, W=W)[0]
    assert err(designed) <= err(magnitude) + 1e-9
    # nodes: the designed subset against the best of all C(8, 3) subsets (brute force) and importance
    acts = np.asarray(jax.nn.sigmoid(x[:, :8] @ jnp.asarray(rng.normal(size=(8, 8)))))
    W2 = rng.normal(size=(3, 8))
    Qn = (W2.T @ W2) * (acts.T @ acts / acts.shape[0])
    node_err = lambda m: float((1 - m) @ Qn @ (1 - m))
    m = np.asarray(rd.surrogate_node_mask(acts, W2, 3, steps=200), float)
    best = min(node_err(np.asarray(s, float)) for s in jp.pruning.enumerate_subsets(8, 3))
    imp = node_err(np.asarray(rd.node_masks(jax.random.key(0), "importance", 3, 1, acts=acts, W2=W2)[0], float))
    assert m.sum() == 3 and node_err(m) <= imp + 1e-12
    assert node_err(m) <= best * 1.05 + 1e-12


# --------------------------------------------------------------------------------------------------
# Claim C8: paired cells
# --------------------------------------------------------------------------------------------------


def _row(variant, budget, per_seed, params=100):
    vals = np.concatenate([np.asarray(v, float) for v in per_seed])
    kind = variant.split("-")[0]
    return {"variant": variant, "kind": kind, "method": variant.split("-", 1)[1].removesuffix("+ls"),
            "reweight": "ls" if variant.endswith("+ls") else "none", "budget": budget, "k": 1, "c": 1,
            "params_kept": params, "mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if vals.size > 1 else 0.0,
            "n": vals.size,
            "per_seed_mean": [float(np.mean(v)) for v in per_seed], "per_seed_values": per_seed}


def test_c8_cells_tie_win_and_loss_on_constructed_rows():
    a_side, b_side = ex.C8_SIDES
    assert (a_side, b_side) == ("edge-random+ls", "node-dpp-rbf+ls")
    r = np.random.default_rng(7)
    b_vals = [list(0.20 + 0.01 * r.normal(size=4)) for _ in range(3)]  # 3 seeds x 4 masks
    noise = [list(0.01 * r.normal(size=4)) for _ in range(3)]
    shifted = lambda dlt: [list(np.asarray(b) + dlt + np.asarray(n)) for b, n in zip(b_vals, noise)]
    tie = [list(np.asarray(b)[::-1]) for b in b_vals]  # same values, other order: mean difference 0
    rows = [_row(b_side, f, b_vals) for f in (0.25, 0.5, 0.75)]
    rows += [_row(a_side, 0.25, tie), _row(a_side, 0.5, shifted(-0.05)), _row(a_side, 0.75, shifted(+0.05))]
    rows += [_row("node-random", 0.5, b_vals), _row(a_side, 1.0, b_vals), _row(b_side, 1.0, b_vals)]
    cells = ex.c8_cells(rows)
    assert [c["k"] for c in cells] == [0.25, 0.5, 0.75]  # budget 1 (nothing pruned) is no cell
    for c, a_vals in zip(cells, (tie, shifted(-0.05), shifted(+0.05))):
        d = np.asarray(a_vals) - np.asarray(b_vals)  # (seed, mask) pairs
        se_pairs = d.std(ddof=1) / np.sqrt(d.size)
        se_seeds = d.mean(axis=1).std(ddof=1) / np.sqrt(3)
        assert c["sigma"] is None and c["n"] == 12
        assert c["a"] == pytest.approx(np.mean(a_vals)) and c["b"] == pytest.approx(np.mean(b_vals))
        assert c["diff"] == pytest.approx(d.mean(), abs=1e-15)
        assert c["stderr"] == pytest.approx(max(se_pairs, se_seeds), rel=1e-12)
    assert abs(cells[0]["diff"]) < 1e-15 and cells[0]["stderr"] > 0
    v = ex.realdata_verdicts(rows, (0.25, 0.5, 0.75))["random_edge_beats_dpp_node"]
    assert [c["outcome"] for c in v["cells"]] == ["tie", "better", "worse"]
    assert v["verdict"] == "does not hold" and v["holds"] is False and v["paper_claim"] == "C8"
    # every budget significantly better: holds; wins and ties: holds in part
    rows_win = [x for x in rows if x["variant"] != a_side] + [_row(a_side, f, shifted(-0.05)) for f in (0.25, 0.5)]
    assert ex.realdata_verdicts(rows_win, (0.25, 0.5))["random_edge_beats_dpp_node"]["verdict"] == "holds"
    rows_part = [x for x in rows if x["variant"] != a_side] + [_row(a_side, 0.25, tie), _row(a_side, 0.5, shifted(-0.05))]
    assert ex.realdata_verdicts(rows_part, (0.25, 0.5))["random_edge_beats_dpp_node"]["verdict"] == "holds in part"
    # one pair: no standard error; a deterministic side pairs on seed means
    one = ex.paired_cells([_row(a_side, 0.5, [[0.1]]), _row(b_side, 0.5, [[0.2]])], a_side, b_side)
    assert one[0]["stderr"] is None and one[0]["diff"] == pytest.approx(-0.1)
    det = ex.paired_cells([_row("node-importance", 0.5, [[0.1], [0.3]]), _row(b_side, 0.5, [[0.2, 0.4], [0.2, 0.2]])],
                          "node-importance", b_side)
    assert det[0]["n"] == 2 and det[0]["diff"] == pytest.approx(((0.1 - 0.3) + (0.3 - 0.2)) / 2)
    with pytest.raises(ValueError, match="rows"):
        ex.c8_cells({"no": 1})


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def _tiny_run(out, **kw):
    return ex.run_realdata(
        out, hidden=(8,), budgets=(0.5,), seeds=1, masks=2, design_steps=10,
        node_methods=("random", "importance", "dpp-rbf"), edge_methods=("random",),
        train_config=lambda s: rd.TrainConfig(learning_rate=0.05, batch_size=128, max_epochs=1,
                                              stop_train_accuracy=None, seed=s),
        progress=False, **kw,
    )


def test_run_is_resumable_reports_c8_and_recomputes_corrupt_parts(tmp_path):
    first = _tiny_run(tmp_path, plot=False)
    assert first.computed == 4 and first.reused == 0
    files = sorted((tmp_path / "seed0").glob("*-*.json"))
    assert len(files) == 4
    mtimes = {f: os.stat(f).st_mtime_ns for f in files}
    second = _tiny_run(tmp_path, plot=False)
    assert second.computed == 0 and second.reused == 4
    assert {f: os.stat(f).st_mtime_ns for f in files} == mtimes
    assert second.rows == first.rows
    payload = json.loads((tmp_path / "results.json").read_text())
    assert {"rows", "verdicts", "unpruned", "per_seed", "config"} <= set(payload)
    assert {"dpp_node_beats_random_and_importance", "random_edge_beats_dpp_node",
            "unreweighted_random_edge_beats_dpp_node"} <= set(payload["verdicts"])
    table = (tmp_path / "table.md").read_text()
    assert "node-dpp-rbf+ls" in table and "paper claim C8" in table
    # C8 cells from the stored per-mask errors, computed here independently
    per = {(r["kind"], r["method"]): r for r in payload["per_seed"]}
    a = np.asarray(per[("edge", "random")]["errors"]["ls"][0])
    b = np.asarray(per[("node", "dpp-rbf")]["errors"]["ls"][0])
    for cells in (ex.c8_cells(first), ex.c8_cells(payload), ex.c8_cells(payload["rows"])):
        (cell,) = cells
        assert cell["k"] == 0.5 and cell["n"] == 2
        assert cell["a"] == pytest.approx(a.mean()) and cell["b"] == pytest.approx(b.mean())
        assert cell["diff"] == pytest.approx((a - b).mean())
        assert cell["stderr"] == pytest.approx((a - b).std(ddof=1) / np.sqrt(2))
        assert cell["params_a"] == cell["params_b"] or abs(cell["params_a"] - cell["params_b"]) <= 8
    # corrupt parts (truncated JSON, a list, a malformed object) are recomputed with a warning naming them
    bad = {files[0]: files[0].read_text()[:20], files[1]: "[]", tmp_path / "seed0" / "unpruned.json": '{"hash": 1}'}
    bad[files[2]] = json.dumps({**json.loads(files[2].read_text()), "errors": {"none": []}})
    for f, text in bad.items():
        f.write_text(text)
    with pytest.warns(UserWarning) as rec:
        third = _tiny_run(tmp_path, plot=False)
    named = " ".join(str(w.message) for w in rec)
    for f in (files[0], files[1], files[2]):
        assert str(f) in named
    assert third.computed == 3 and third.reused == 1
    assert third.rows == first.rows and third.unpruned == first.unpruned
    # a changed setting is recomputed, silently
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fourth = _tiny_run(tmp_path, plot=False, ridge=1e-4)
    assert fourth.computed == 4
    assert not [w for w in rec if "corrupt" in str(w.message)]


def test_bad_output_folder_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("keep")
    with pytest.raises(ValueError, match="out_dir .*afile.*not a folder"):
        _tiny_run(target)
    assert main(["realdata", "--out", str(target), "--quick", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "afile" in err and target.read_text() == "keep"
    assert main(["realdata", "--out", str(target / "below"), "--quick", "--no-progress"]) == 2
    assert "\n" not in capsys.readouterr().err.strip()
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(ValueError, match="not writable|cannot create"):
                _tiny_run(locked / "out")
            assert main(["realdata", "--out", str(locked / "out"), "--quick", "--no-progress"]) == 2
            assert "\n" not in capsys.readouterr().err.strip()
            assert list(locked.iterdir()) == []
        finally:
            locked.chmod(0o700)


@pytest.mark.slow
def test_quick_default_run(tmp_path):
    res = ex.run_realdata(tmp_path, quick=True, progress=False)
    assert {"dpp_node_beats_random_and_importance", "random_edge_beats_dpp_node", "best_per_budget"} <= set(res.verdicts)
    for name in ("results.json", "table.md", "test_error_vs_params.png"):
        assert (tmp_path / name).exists()
    variants = {r["variant"] for r in res.rows}
    assert len(variants) == 2 * (len(rd.NODE_METHODS) + len(rd.EDGE_METHODS))
    assert [c["k"] for c in ex.c8_cells(res)] == [0.25, 0.5, 0.75]


def test_traced_and_static_size_sampling_routes_agree(key, rng):
    """The real-data route draws with a traced size up to 256 items and a static size above: the same subsets
    for the same key (private helpers of `jaxprune.realdata._kernels`)."""
    from jaxprune.realdata import _kernels

    W, x = rng.normal(size=(3, 20)), rng.normal(size=(50, 20))
    eig = rd.edge_dpp_eigen(W, x)
    for k in (1, 5, 20):
        traced = _kernels._sample_traced(key, eig, jnp.asarray(k, jnp.int32), num_masks=4, cap=20)
        static = _kernels._sample_static(key, eig, k=k, num_masks=4)
        np.testing.assert_array_equal(traced, static)
        assert np.all(np.asarray(traced).sum(axis=-1) == k)
    # a ground set above the traced limit takes the static route and keeps exact counts
    a = rng.normal(size=(300, 40))
    big = jp.pruning.kdpp_eigen(a @ a.T / 40 + 0.1 * np.eye(300))
    m = np.asarray(rd.sample_kdpp_masks(key, big, 7, 3))
    assert m.shape == (3, 300) and np.all(m.sum(axis=1) == 7)


def test_finetuning_with_a_vanishing_step_keeps_the_pruned_error(key, rng):
    layers = _layers(key)
    x = jnp.asarray(rng.normal(size=(64, 12)))
    y = jnp.asarray(rng.integers(0, 5, size=64))
    masks = rd.node_masks(key, "random", 4, 2, acts=rd.first_layer_activations(layers, "sigmoid", x),
                          W2=layers[1][0])
    W1s, W2s, b2s = rd.prune_nodes_network(layers, masks, "none")
    before = rd.masked_test_errors(layers, "sigmoid", W1s, W2s, b2s, x, y)
    M1 = jnp.broadcast_to(masks[:, :, None], W1s.shape)
    M2 = jnp.broadcast_to(masks[:, None, :], W2s.shape)
    after = rd.finetuned_test_errors(layers, "sigmoid", W1s, W2s, b2s, M1, M2, (x, y, x, y), 1, batch_size=16,
                                     learning_rate=1e-12, momentum=0.9, seed=0)
    np.testing.assert_array_equal(after, before)
    with pytest.raises(ValueError, match="momentum must be"):
        rd.finetuned_test_errors(layers, "sigmoid", W1s, W2s, b2s, M1, M2, (x, y, x, y), 1, batch_size=16,
                                 learning_rate=0.1, momentum=1.0, seed=0)
