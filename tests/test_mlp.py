"""MLP model, first-layer surgery, training on digits, and checkpoints."""

import dataclasses
import math
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune.realdata._checkpoint as checkpoint_module  # only to stub out training in test_train_or_load
from jaxprune.realdata import Dataset, load_digits
from jaxprune.realdata import (
    MLP,
    TrainConfig,
    accuracy,
    evaluate,
    first_layer,
    hidden_activations,
    load_checkpoint,
    make_mlp,
    num_first_layer_params,
    preset_sizes,
    read_checkpoint_meta,
    replace_first_layer,
    replace_second_layer_weights,
    save_checkpoint,
    train,
    train_or_load,
)

# ---------------------------------------------------------------------------------------------
# an independent NumPy reference

_erf = np.vectorize(math.erf)
NP_ACT = {
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "erf": lambda z: _erf(z / math.sqrt(2.0)),
}


def np_params(model):
    return [(np.asarray(l.weight, np.float64), np.asarray(l.bias, np.float64)) for l in model.layers]


def np_forward(params, activation, x):
    h = np.asarray(x, np.float64)
    for w, b in params[:-1]:
        h = NP_ACT[activation](h @ w.T + b)
    w, b = params[-1]
    return h @ w.T + b


def np_loss_and_error(logits, y):
    m = logits.max(axis=1, keepdims=True)
    log_z = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
    ce = log_z - logits[np.arange(len(y)), y]
    return ce.mean(), np.mean(logits.argmax(axis=1) != y)


def leaves_equal(a, b):
    la, lb = jax.tree.leaves(eqx.filter(a, eqx.is_array)), jax.tree.leaves(eqx.filter(b, eqx.is_array))
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


@pytest.fixture(scope="module")
def digits():
    return load_digits()


# One architecture and optimiser for most tests, so that the jitted step compiles once.
# 1347 digits training examples = 21 * 64 + 3: every epoch ends in a padded minibatch.
SIZES = (64, 32, 10)
FAST = TrainConfig(
    optimizer="sgd-momentum",
    learning_rate=0.05,
    momentum=0.9,
    batch_size=64,
    max_epochs=8,
    stop_train_accuracy=None,
    seed=0,
)


@pytest.fixture(scope="module")
def trained(digits):
    model = make_mlp(SIZES, "sigmoid", jax.random.key(1))
    return model, *train(model, digits, FAST, progress=False)


# ---------------------------------------------------------------------------------------------
# model


def test_make_mlp_and_presets(key):
    m = make_mlp((6, 5, 3), "relu", key)
    assert m.sizes == (6, 5, 3) and len(m.layers) == 2 and m.dtype == jnp.float32
    assert m.layers[0].weight.shape == (5, 6) and m.layers[1].weight.shape == (3, 5)
    assert preset_sizes("one-hidden", input_dim=64, num_classes=10) == (64, 100, 10)
    assert preset_sizes("one-hidden", input_dim=64, num_classes=10, hidden=20) == (64, 20, 10)
    assert preset_sizes("mnist-paper", input_dim=784, num_classes=10) == (784, 500, 500, 10)
    assert preset_sizes("cifar-paper", input_dim=3072, num_classes=10) == (3072, 1000, 1000, 1000, 10)
    with pytest.raises(ValueError, match="one-hidden"):
        preset_sizes("resnet", input_dim=1, num_classes=2)


def test_mlp_validation(key):
    with pytest.raises(ValueError, match="activation"):
        make_mlp((6, 5, 3), "swish", key)
    with pytest.raises(ValueError, match="at least 3"):
        make_mlp((6, 5), "relu", key)
    m = make_mlp((6, 5, 3), "relu", key)
    deeper = make_mlp((6, 5, 4, 3), "relu", key)
    with pytest.raises(ValueError, match="expects"):
        MLP((m.layers[0], deeper.layers[2]), "relu")  # 5 outputs feeding 4 inputs
    with pytest.raises(ValueError, match="vmap"):
        m(jnp.zeros((2, 6), jnp.float32))


@pytest.mark.parametrize("activation", ["sigmoid", "relu", "tanh", "erf"])
def test_forward_and_hidden_activations_match_numpy(key, rng, activation):
    m = make_mlp((6, 5, 4, 3), activation, key)
    x = rng.normal(size=(11, 6)).astype(np.float32)
    params = np_params(m)
    want = np_forward(params, activation, x)
    np.testing.assert_allclose(jax.vmap(m)(jnp.asarray(x)), want, rtol=1e-5, atol=1e-5)
    w, b = params[0]
    h = hidden_activations(m, x)
    assert h.shape == (11, 5)
    np.testing.assert_allclose(h, NP_ACT[activation](x @ w.T + b), rtol=1e-5, atol=1e-6)


def test_replace_first_layer(key, rng):
    m = make_mlp((6, 5, 3), "tanh", key)
    w_new = rng.normal(size=(5, 6))
    b_new = rng.normal(size=5)
    m2 = replace_first_layer(m, w_new, b_new)
    w, b = first_layer(m2)
    np.testing.assert_allclose(w, w_new, rtol=1e-6)
    np.testing.assert_allclose(b, b_new, rtol=1e-6)
    assert w.dtype == jnp.float32  # cast to the model's dtype
    assert np.array_equal(m2.layers[1].weight, m.layers[1].weight)
    x = rng.normal(size=(4, 6))
    np.testing.assert_allclose(hidden_activations(m2, x), np.tanh(x @ w_new.T + b_new), rtol=1e-5, atol=1e-6)
    # pruning-style zeroing: a masked first layer equals a forward pass with zeroed weights
    mask = rng.random(size=(5, 6)) < 0.5
    m3 = replace_first_layer(m, np.asarray(first_layer(m)[0]) * mask)
    assert np.array_equal(first_layer(m3)[1], first_layer(m)[1])  # bias kept
    params = np_params(m)
    params[0] = (params[0][0] * mask, params[0][1])
    got = jax.vmap(m3)(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, np_forward(params, "tanh", x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"W must have shape \(5, 6\)"):
        replace_first_layer(m, np.zeros((6, 5)))
    with pytest.raises(ValueError, match="b must have shape"):
        replace_first_layer(m, w_new, np.zeros(4))


def test_replace_second_layer_weights(key, rng):
    m = make_mlp((6, 5, 4, 3), "sigmoid", key)
    w2 = rng.normal(size=(4, 5))
    m2 = replace_second_layer_weights(m, w2)
    params = np_params(m)
    params[1] = (w2, params[1][1])
    x = rng.normal(size=(3, 6))
    got = jax.vmap(m2)(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, np_forward(params, "sigmoid", x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="W2"):
        replace_second_layer_weights(m, np.zeros((5, 4)))


def test_num_first_layer_params(key):
    m = make_mlp((6, 5, 3), "relu", key)
    assert num_first_layer_params(m) == 6 * 5 + 5
    assert num_first_layer_params(m, include_bias=False) == 30


def test_evaluate_matches_numpy(key, rng):
    m = make_mlp((6, 5, 4, 3), "erf", key)
    x = rng.normal(size=(23, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=23)
    want_loss, want_err = np_loss_and_error(np_forward(np_params(m), "erf", x), y)
    for bs in (4096, 7):  # chunking (3 chunks of 7 plus a remainder of 2) must not matter
        loss, err = evaluate(m, x, y, batch_size=bs)
        assert loss == pytest.approx(want_loss, rel=1e-5)
        assert err == pytest.approx(want_err, abs=1e-12)
    assert accuracy(m, x, y) == pytest.approx(1 - want_err, abs=1e-12)
    with pytest.raises(ValueError, match="shape"):
        evaluate(m, x[:, :4], y)


# ---------------------------------------------------------------------------------------------
# training


def test_training_on_digits_reaches_90_percent(trained, digits):
    init, model, history = trained
    assert history.num_epochs == FAST.max_epochs and not history.stopped_early
    assert history.test_accuracy[-1] > 0.9
    # the recorded accuracies agree with an independent NumPy forward pass
    logits = np_forward(np_params(model), "sigmoid", digits.x_test)
    test_acc = np.mean(logits.argmax(axis=1) == digits.y_test)
    assert test_acc == pytest.approx(history.test_accuracy[-1], abs=1e-12)
    logits0 = np_forward(np_params(init), "sigmoid", digits.x_train)
    loss0, _ = np_loss_and_error(logits0, digits.y_train)
    assert history.train_loss[-1] < 0.5 * loss0
    assert model.dtype == jnp.float32


def test_training_is_deterministic_and_seeded(trained, digits):
    init, model, history = trained
    model2, history2 = train(init, digits, FAST, progress=False)
    assert leaves_equal(model, model2)
    assert history2.train_loss == history.train_loss
    model3, _ = train(init, digits, dataclasses.replace(FAST, seed=1, max_epochs=1), progress=False)
    model4, _ = train(init, digits, dataclasses.replace(FAST, max_epochs=1), progress=False)
    assert not leaves_equal(model3, model4)


def test_epochs_match_reference_heavy_ball_sgd(key, rng):
    """Two epochs on 5 examples in minibatches of 2 (the third padded) against NumPy backprop:
    minibatches follow `np.random.default_rng(seed).permutation` per epoch, each step uses the
    mean loss over its REAL examples, `v <- momentum * v + grad`, `p <- p - lr * v`."""
    x = rng.normal(size=(5, 4)).astype(np.float32)
    y = np.array([0, 1, 1, 0, 1], np.int32)
    data = Dataset(x, y, x[:2], y[:2], num_classes=2, name="tiny", input_shape=(4,))
    m = make_mlp((4, 3, 2), "sigmoid", key)
    cfg = TrainConfig(
        learning_rate=0.5, momentum=0.7, batch_size=2, max_epochs=2, stop_train_accuracy=None, seed=3
    )
    trained_model, _ = train(m, data, cfg, progress=False)

    def grads(params, xb, yb):  # hand-written backprop of the mean cross-entropy
        (w1, b1), (w2, b2) = params
        h = NP_ACT["sigmoid"](xb @ w1.T + b1)
        logits = h @ w2.T + b2
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        d_logits = (p - np.eye(2)[yb]) / len(yb)
        d_z = (d_logits @ w2) * h * (1 - h)
        return [(d_z.T @ xb, d_z.sum(axis=0)), (d_logits.T @ h, d_logits.sum(axis=0))]

    params = np_params(m)
    velocity = [(np.zeros_like(w), np.zeros_like(b)) for w, b in params]
    order = np.random.default_rng(3)
    for _ in range(2):
        perm = order.permutation(5)
        for batch in (perm[0:2], perm[2:4], perm[4:5]):
            g = grads(params, x[batch].astype(np.float64), y[batch])
            velocity = [(0.7 * vw + gw, 0.7 * vb + gb) for (vw, vb), (gw, gb) in zip(velocity, g)]
            params = [(w - 0.5 * vw, b - 0.5 * vb) for (w, b), (vw, vb) in zip(params, velocity)]
    for (w, b), (w_ref, b_ref) in zip(np_params(trained_model), params):
        np.testing.assert_allclose(w, w_ref, atol=2e-6)
        np.testing.assert_allclose(b, b_ref, atol=2e-6)


def test_step_compiles_once(trained, digits, key):
    # 8 epochs of 22 steps, the last one padded, traced at most once (zero if already compiled)
    _, _, history = trained
    assert history.num_step_traces <= 1
    # new weights, learning rate and momentum reuse the compiled step
    m = make_mlp(SIZES, "sigmoid", key)
    cfg = dataclasses.replace(FAST, max_epochs=1, learning_rate=0.2, momentum=0.5)
    _, h2 = train(m, digits, cfg, progress=False)
    assert h2.num_step_traces == 0


def test_adam_trains(digits, key):
    m = make_mlp(SIZES, "sigmoid", key)
    cfg = dataclasses.replace(FAST, optimizer="adam", learning_rate=1e-2, max_epochs=3)
    _, h = train(m, digits, cfg, progress=False)
    assert h.test_accuracy[-1] > 0.85


def test_stopping_rule(digits, key):
    m = make_mlp(SIZES, "sigmoid", key)
    cfg = dataclasses.replace(FAST, max_epochs=40, stop_train_accuracy=0.9)
    model, h = train(m, digits, cfg, progress=False)
    assert h.stopped_early and 1 < h.num_epochs < 40
    assert h.train_accuracy[-1] >= 0.9 and max(h.train_accuracy[:-1]) < 0.9
    logits = np_forward(np_params(model), "sigmoid", digits.x_train)
    assert np.mean(logits.argmax(axis=1) == digits.y_train) == pytest.approx(h.train_accuracy[-1], abs=1e-12)
    no_rule = dataclasses.replace(cfg, stop_train_accuracy=None, max_epochs=3)
    _, h_none = train(m, digits, no_rule, progress=False)
    assert h_none.num_epochs == 3 and not h_none.stopped_early


def test_train_rejects_mismatched_dataset(digits, key):
    with pytest.raises(ValueError, match="64 inputs"):
        train(make_mlp((6, 5, 3), "relu", key), digits, FAST, progress=False)


def test_train_config_validation():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="stop_train_accuracy"):
        TrainConfig(stop_train_accuracy=1.5)


# ---------------------------------------------------------------------------------------------
# checkpoints


def test_checkpoint_round_trip(tmp_path, key, rng):
    m = make_mlp((6, 5, 4, 3), "erf", key)
    meta = {"note": "hello", "values": [1, 2.5], "nested": {"a": None}}
    path = tmp_path / "sub" / "model.eqx"
    save_checkpoint(path, m, meta)
    assert os.listdir(tmp_path / "sub") == ["model.eqx"]  # no temporary files left
    loaded, meta2 = load_checkpoint(path)
    assert meta2 == meta and read_checkpoint_meta(path) == meta
    assert loaded.sizes == m.sizes and loaded.activation == "erf"
    assert leaves_equal(m, loaded)
    x = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
    assert np.array_equal(jax.vmap(loaded)(x), jax.vmap(m)(x))
    # overwrite in place with another model
    m2 = make_mlp((6, 5, 3), "relu", jax.random.key(9))
    save_checkpoint(path, m2, {})
    assert load_checkpoint(path)[0].sizes == (6, 5, 3)
    assert os.listdir(tmp_path / "sub") == ["model.eqx"]


def test_checkpoint_failures_leave_nothing_behind(tmp_path, key, monkeypatch):
    m = make_mlp((6, 5, 3), "relu", key)
    path = tmp_path / "m.eqx"
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(path, m, {"bad": object()})
    assert os.listdir(tmp_path) == []
    save_checkpoint(path, m, {"v": 1})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(eqx, "tree_serialise_leaves", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, make_mlp((6, 5, 3), "relu", jax.random.key(5)), {"v": 2})
    assert os.listdir(tmp_path) == ["m.eqx"] and path.read_bytes() == before


def test_corrupt_checkpoint_names_file(tmp_path, key):
    path = tmp_path / "m.eqx"
    save_checkpoint(path, make_mlp((6, 5, 3), "relu", key), {})
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    with pytest.raises(ValueError, match="m.eqx"):
        load_checkpoint(path)
    path.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="not a jaxprune MLP checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.eqx")


def test_train_or_load(tmp_path, digits, monkeypatch):
    path = tmp_path / "digits.eqx"
    cfg = dataclasses.replace(FAST, max_epochs=2)
    first = train_or_load(path, SIZES, "sigmoid", digits, cfg, progress=False)
    assert not first.loaded and path.exists() and first.history.num_epochs == 2

    calls = []

    def no_training(*args, **kwargs):
        calls.append(1)
        raise AssertionError("train must not be called when the checkpoint matches")

    monkeypatch.setattr(checkpoint_module, "train", no_training)
    second = train_or_load(path, SIZES, "sigmoid", digits, cfg, progress=False)
    assert second.loaded and not calls
    assert leaves_equal(first.model, second.model)
    assert second.history == first.history
    # a different config, architecture or dataset must retrain
    for args in [
        (SIZES, "sigmoid", digits, dataclasses.replace(cfg, seed=1)),
        ((64, 8, 10), "sigmoid", digits, cfg),
        (SIZES, "tanh", digits, cfg),
        (SIZES, "sigmoid", load_digits(seed=1), cfg),
    ]:
        with pytest.raises(AssertionError, match="must not be called"):
            train_or_load(path, *args, progress=False)
    assert len(calls) == 4
    monkeypatch.undo()
    third = train_or_load(path, SIZES, "sigmoid", digits, cfg, extra_meta={"tag": "x"}, progress=False)
    assert not third.loaded
    assert read_checkpoint_meta(path)["run"]["extra"] == {"tag": "x"}
    path.write_bytes(path.read_bytes()[:-8])  # damaged weights: warn and retrain
    with pytest.warns(UserWarning, match="digits.eqx"):
        fourth = train_or_load(
            path, SIZES, "sigmoid", digits, cfg, extra_meta={"tag": "x"}, progress=False
        )
    assert not fourth.loaded and leaves_equal(fourth.model, first.model)
