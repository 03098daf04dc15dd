"""Real-data pruning (`jaxprune.experiments._realdata`): invariants, fusing, reweighting, counts, DPP diversity, resumability."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune.experiments import _realdata as rd
from jaxprune.pruning._dpp import kdpp_eigen, kdpp_enumerate
from jaxprune.realdata._mlp import TrainConfig, make_mlp


def _layers(key, sizes=(12, 8, 5)):
    model = make_mlp(sizes, "sigmoid", key, dtype=jnp.float64)
    return [(l.weight, l.bias) for l in model.layers]


def _correlated(rng, P, D, rho=0.9):
    """Inputs with equicorrelation `rho` between coordinates."""
    z = rng.normal(size=(P, 1))
    return jnp.asarray(np.sqrt(rho) * z + np.sqrt(1 - rho) * rng.normal(size=(P, D)))


def test_keep_everything_leaves_error_unchanged(key, rng):
    layers = _layers(key)
    x = jnp.asarray(rng.normal(size=(200, 12)))
    y = jnp.asarray(rng.integers(0, 5, size=200))
    acts = jax.nn.sigmoid(x @ layers[0][0].T + layers[0][1][None, :])
    W1, b1 = layers[0]
    W2, b2 = layers[1]
    base = rd.masked_test_errors(layers, "sigmoid", W1[None], W2[None], b2[None], x, y)
    full_nodes = jnp.ones((1, 8), bool)
    for rw in ("none", "ls"):
        W1s, W2s, b2s = rd.prune_nodes_network(layers, full_nodes, rw, acts=acts, ridge=1e-12)
        np.testing.assert_array_equal(rd.masked_test_errors(layers, "sigmoid", W1s, W2s, b2s, x, y), base)
        np.testing.assert_allclose(W2s[0], W2, atol=1e-6)
    edge = rd.edge_masks(key, "random", 12, 2, W=W1)  # p = 1: c = D
    assert bool(jnp.all(edge))
    for rw in ("none", "ls"):
        W1s, W2s, b2s = rd.prune_edges_network(layers, edge, rw, x=x, ridge=1e-12)
        np.testing.assert_allclose(W1s[0], W1, atol=1e-6)
        np.testing.assert_array_equal(rd.masked_test_errors(layers, "sigmoid", W1s, W2s, b2s, x, y), jnp.stack([base[0]] * 2))


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
    for rw in ("none", "ls"):
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
    with pytest.raises(ValueError, match="k must satisfy"):
        rd.first_layer_params(4, 3, k=5)


def test_masks_have_exactly_the_budgeted_count(key, rng):
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
    with pytest.raises(ValueError, match="Unknown node method"):
        rd.node_masks(key, "bogus", 2, 1, acts=acts, W2=W2)
    with pytest.raises(ValueError, match="budgets"):
        rd.run_realdata("unused", budgets=(0.5, 1.5))


def test_traced_size_kdpp_sampler_matches_enumeration(key, rng):
    a = rng.normal(size=(6, 4))
    L = a @ a.T + 0.05 * np.eye(6)
    eig = kdpp_eigen(jnp.asarray(L))
    for k in (2, 3):
        masks, probs = kdpp_enumerate(L, k)
        s = np.asarray(rd.sample_kdpp_masks(jax.random.fold_in(key, k), eig, k, 6000))
        assert np.all(s.sum(axis=1) == k)
        codes = s @ (1 << np.arange(6))
        emp = np.array([(codes == c).mean() for c in masks @ (1 << np.arange(6))])
        assert 0.5 * np.abs(emp - np.asarray(probs)).sum() < 0.04


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


def test_designed_edge_mask_beats_magnitude_on_its_surrogate(rng):
    x = _correlated(rng, 300, 16, rho=0.8)
    W = jnp.asarray(rng.normal(size=(5, 16)))
    G = x.T @ x / x.shape[0]

    def err(m):
        r = W * (1 - m)
        return float(jnp.sum((r @ G) * r))

    designed = rd.surrogate_edge_mask(W, x, 4, steps=150)
    magnitude = rd.edge_masks(jax.random.key(0), "magnitude", 4, 1, W=W)[0]
    assert err(designed) <= err(magnitude) + 1e-9


def _tiny_run(out, **kw):
    return rd.run_realdata(
        out, hidden=(8,), budgets=(0.5,), seeds=1, masks=2, design_steps=10,
        node_methods=("random", "importance", "dpp-rbf"), edge_methods=("random",),
        train_config=lambda s: TrainConfig(learning_rate=0.05, batch_size=128, max_epochs=1,
                                           stop_train_accuracy=None, seed=s),
        progress=False, **kw,
    )


def test_run_is_resumable_and_reports_verdicts(tmp_path):
    before = rd.COMPUTE_COUNT[0]
    first = _tiny_run(tmp_path, plot=False)
    assert first.computed == 4 and first.reused == 0
    assert rd.COMPUTE_COUNT[0] == before + 4
    files = sorted((tmp_path / "seed0").glob("*-*.json"))
    assert len(files) == 4
    mtimes = {f: os.stat(f).st_mtime_ns for f in files}
    second = _tiny_run(tmp_path, plot=False)
    assert second.computed == 0 and second.reused == 4
    assert rd.COMPUTE_COUNT[0] == before + 4
    assert {f: os.stat(f).st_mtime_ns for f in files} == mtimes
    assert second.rows == first.rows
    payload = json.loads((tmp_path / "results.json").read_text())
    assert {"rows", "verdicts", "unpruned", "per_seed", "config"} <= set(payload)
    assert {"dpp_node_beats_random_and_importance", "random_edge_beats_dpp_node"} <= set(payload["verdicts"])
    assert "node-dpp-rbf+ls" in (tmp_path / "table.md").read_text()
    # a changed setting is recomputed, not reused
    third = _tiny_run(tmp_path, plot=False, ridge=1e-4)
    assert third.computed == 4


@pytest.mark.slow
def test_quick_default_run(tmp_path):
    res = rd.run_realdata(tmp_path, quick=True, progress=False)
    assert {"dpp_node_beats_random_and_importance", "random_edge_beats_dpp_node", "best_per_budget"} <= set(res.verdicts)
    for name in ("results.json", "table.md", "test_error_vs_params.png"):
        assert (tmp_path / name).exists()
    variants = {r["variant"] for r in res.rows}
    assert len(variants) == 2 * (len(rd.NODE_METHODS) + len(rd.EDGE_METHODS))
