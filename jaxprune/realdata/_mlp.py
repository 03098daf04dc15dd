"""Multi-layer perceptrons for the real-data pruning experiments: model, training, checkpoints.

The pruning experiments of the seed paper train a fully connected network on a real dataset
until its training accuracy reaches a threshold, then prune the FIRST hidden layer without
fine-tuning. This module supplies the network ([`MLP`][]), accessors for the first layer and
for the layer that reads it (what a pruning method rewrites), a deterministic minibatch
trainer built around one jitted optimiser step, and evaluation (checkpoints: `_checkpoint`).

References: Acharyya et al., "Statistical Mechanical Analysis of Neural Network Pruning",
UAI 2021 (MNIST 784-500-500-10 and CIFAR-10 3072-1000-1000-1000-10 networks).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray
from tqdm.auto import tqdm

from ._data import Dataset

#: hidden nonlinearity: "sigmoid", "relu", "tanh" or "erf" (a plain `str`: checked with a message naming them)
Activation = str

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_MLP_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    # erf(x / sqrt(2)), the soft-committee-machine convention of the theory modules.
    "erf": lambda x: jax.scipy.special.erf(x * _INV_SQRT2),
}
ACTIVATIONS: tuple[str, ...] = tuple(_MLP_ACTIVATIONS)

PRESETS: tuple[str, ...] = ("one-hidden", "mnist-paper", "cifar-paper")


# ---------------------------------------------------------------------------------------------
# Model


class MLP(eqx.Module):
    """A fully connected network `x -> W_L g(... g(W_1 x + b_1) ...) + b_L` returning logits.

    **Fields:**

    - `layers`: the `eqx.nn.Linear` layers, input side first; at least two, so that there is a
        first hidden layer (`layers[0]`, weights `W` of shape `(H, D)`) and a layer consuming
        it (`layers[1]`).
    - `activation`: the hidden nonlinearity `g`, one of `"sigmoid"`, `"relu"`, `"tanh"`,
        `"erf"` (meaning `erf(x / sqrt(2))`). The output layer is linear.

    `__call__` takes ONE example of shape `(D,)`; use `jax.vmap(model)` for batches.
    """

    layers: tuple[eqx.nn.Linear, ...]
    activation: str = eqx.field(static=True)

    def __check_init__(self):
        if self.activation not in _MLP_ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {ACTIVATIONS}, got {self.activation!r}."
            )
        if len(self.layers) < 2:
            raise ValueError(
                f"An MLP needs at least 2 layers (one hidden), got {len(self.layers)}."
            )
        for i, (a, b) in enumerate(zip(self.layers[:-1], self.layers[1:])):
            if a.out_features != b.in_features:
                raise ValueError(
                    f"layers[{i}] has {a.out_features} outputs but layers[{i + 1}] expects "
                    f"{b.in_features} inputs."
                )

    @property
    def sizes(self) -> tuple[int, ...]:
        """Layer widths `(D, H_1, ..., C)`."""
        return (int(self.layers[0].in_features),) + tuple(int(l.out_features) for l in self.layers)

    @property
    def dtype(self) -> jnp.dtype:
        return self.layers[0].weight.dtype

    def __call__(self, x: Float[Array, "..."]) -> Float[Array, " c"]:
        """The logits `z` (shape `(C,)`) of one example `x` (shape `(D,)`); `jax.vmap(model)` for batches.
        (`x` is annotated `...` so that a batch meets the check below, which names `vmap`.)"""
        if x.ndim != 1:
            raise ValueError(
                f"MLP takes one example of shape ({self.sizes[0]},), got {x.shape}; "
                "use jax.vmap(model) for batches."
            )
        g = _MLP_ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = g(layer(x))
        return self.layers[-1](x)


def make_mlp(
    sizes: Sequence[int],
    activation: Activation,
    key: PRNGKeyArray,
    *,
    dtype: Any = jnp.float32,
) -> MLP:
    """Build an [`MLP`][] with widths `sizes = (D, H_1, ..., C)`.

    Weights and biases are drawn from equinox's default distribution for `Linear`, uniform on
    `[-1/sqrt(fan_in), 1/sqrt(fan_in)]` (as one draw, so the values differ from
    `eqx.nn.Linear(..., key=key)`).

    **Arguments:**

    - `sizes`: layer widths, at least three (input, one hidden, output).
    - `activation`: hidden nonlinearity, see [`MLP`][].
    - `key`: PRNG key for the initialisation.
    - `dtype`: parameter dtype (float32 by default, also when x64 is enabled).

    **Returns:** the [`MLP`][] with `len(sizes) - 1` linear layers.
    """
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 3 or min(sizes) < 1:
        raise ValueError(
            f"sizes must list at least 3 positive widths (input, hidden..., output), got {sizes}."
        )
    dtype = jnp.dtype(dtype)
    params = _uniform_init(key, sizes, dtype)
    layers = []
    for n_in, n_out, (w, b) in zip(sizes[:-1], sizes[1:], params):
        # A shape-only skeleton avoids equinox drawing (and compiling) its own initialisation.
        skeleton = eqx.filter_eval_shape(eqx.nn.Linear, n_in, n_out, key=key, dtype=dtype)
        layers.append(eqx.tree_at(lambda l: (l.weight, l.bias), skeleton, (w, b)))
    return MLP(tuple(layers), activation)


@functools.partial(jax.jit, static_argnames=("sizes", "dtype"))
def _uniform_init(
    key: PRNGKeyArray, sizes: tuple[int, ...], dtype: jnp.dtype
) -> list[tuple[Array, Array]]:
    """Weights and biases `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` for every layer, drawn as one
    uniform vector so that a new architecture costs one compilation, not one per array."""
    counts = [n_out * (n_in + 1) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    u = jax.random.uniform(key, (sum(counts),), dtype, minval=-1.0, maxval=1.0)
    params, start = [], 0
    for n_in, n_out, count in zip(sizes[:-1], sizes[1:], counts):
        block = u[start : start + count].reshape(n_out, n_in + 1) * (1.0 / math.sqrt(n_in))
        params.append((block[:, :n_in], block[:, n_in]))
        start += count
    return params


def preset_sizes(
    preset: str, *, input_dim: int, num_classes: int, hidden: int = 100
) -> tuple[int, ...]:
    """Layer widths of a named architecture (the seed paper's sizes for MNIST and CIFAR-10).

    **Arguments:**

    - `preset`: `"one-hidden"` (`(input_dim, hidden, num_classes)`), `"mnist-paper"`
      (`(input_dim, 500, 500, num_classes)`, i.e. 784-500-500-10 on MNIST) or `"cifar-paper"`
      (`(input_dim, 1000, 1000, 1000, num_classes)`, i.e. 3072-1000-1000-1000-10 on CIFAR-10).
    - `input_dim`: `D`, the length of one flattened example.
    - `num_classes`: `C`, the number of outputs.
    - `hidden`: the hidden width of `"one-hidden"` (ignored by the others; default 100).

    **Returns:** the widths `(D, H_1, ..., C)`, ready for [`make_mlp`][].
    """
    if preset == "one-hidden":
        hidden_sizes: tuple[int, ...] = (hidden,)
    elif preset == "mnist-paper":
        hidden_sizes = (500, 500)
    elif preset == "cifar-paper":
        hidden_sizes = (1000, 1000, 1000)
    else:
        raise ValueError(f"Unknown preset {preset!r}; allowed presets are {', '.join(PRESETS)}.")
    return (int(input_dim),) + hidden_sizes + (int(num_classes),)


# ---------------------------------------------------------------------------------------------
# First-layer access (what pruning reads and rewrites)


def first_layer(model: MLP) -> tuple[Float[Array, "h d"], Float[Array, " h"]]:
    """The first hidden layer's weights `W` (shape `(H, D)`) and biases `b` (shape `(H,)`) of `model`
    (what pruning reads and rewrites)."""
    return model.layers[0].weight, model.layers[0].bias


@eqx.filter_jit
def hidden_activations(model: MLP, x_batch: Float[ArrayLike, "b d"]) -> Float[Array, "b h"]:
    """First-hidden-layer outputs `g(x W^T + b)` of a trained MLP for a batch of inputs.

    **Arguments:**

    - `model`: the [`MLP`][jaxprune.realdata.MLP] (its first layer `W: (H, D)`, `b: (H,)` and activation `g`).
    - `x_batch`: inputs of shape `(B, D)`.

    **Returns:** the activations, shape `(B, H)`, in the model's dtype.
    """
    x_batch = jnp.asarray(x_batch, dtype=model.dtype)
    if x_batch.ndim != 2 or x_batch.shape[1] != model.sizes[0]:
        raise ValueError(f"x_batch must have shape (B, {model.sizes[0]}), got {x_batch.shape}.")
    w, b = first_layer(model)
    return _MLP_ACTIVATIONS[model.activation](x_batch @ w.T + b[None, :])


def _checked(name: str, new: ArrayLike, old: Array) -> Array:
    new = jnp.asarray(new, dtype=old.dtype)
    if new.shape != old.shape:
        raise ValueError(f"{name} must have shape {old.shape}, got {new.shape}.")
    return new


def replace_first_layer(
    model: MLP, W: Float[ArrayLike, "_h _d"], b: Float[ArrayLike, " _h"] | None = None
) -> MLP:
    """A copy of `model` whose first layer has weights `W` and biases `b` (kept if `None`).

    Shapes must match the current layer; values are cast to the model's dtype.
    """
    w_old, b_old = first_layer(model)
    new_w = _checked("W", W, w_old)
    if b is None:
        return eqx.tree_at(lambda m: m.layers[0].weight, model, new_w)
    new_b = _checked("b", b, b_old)
    return eqx.tree_at(lambda m: (m.layers[0].weight, m.layers[0].bias), model, (new_w, new_b))


def replace_second_layer_weights(model: MLP, W2: Float[ArrayLike, "_h2 _h"]) -> MLP:
    """A copy of `model` whose second layer (the one reading the first hidden layer) has
    weights `W2` of shape `(H_2, H)`; its biases are kept. Used to reweight surviving units
    after node pruning."""
    new = _checked("W2", W2, model.layers[1].weight)
    return eqx.tree_at(lambda m: m.layers[1].weight, model, new)


def num_first_layer_params(model: MLP, *, include_bias: bool = True) -> int:
    """Number of first-layer parameters of `model`: `H * D` weights plus `H` biases unless
    `include_bias=False` (the unpruned count of [`first_layer_params`][])."""
    d, h = model.sizes[0], model.sizes[1]
    return h * d + (h if include_bias else 0)


# ---------------------------------------------------------------------------------------------
# Evaluation


def _example_terms(model: MLP, x: Array, y: Array) -> tuple[Array, Array]:
    logits = jax.vmap(model)(x)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    correct = jnp.argmax(logits, axis=-1).astype(y.dtype) == y
    return ce, correct


@eqx.filter_jit
def _eval_sums(model: MLP, x: Array, y: Array, chunk: int) -> tuple[Array, Array]:
    """Summed cross-entropy and number correct, `chunk` examples at a time (bounded memory)."""
    n = x.shape[0]
    k, r = divmod(n, chunk)
    loss = jnp.zeros((), model.dtype)
    correct = jnp.zeros((), jnp.int32)

    def one(xy):
        ce, ok = _example_terms(model, *xy)
        return jnp.sum(ce), jnp.sum(ok, dtype=jnp.int32)

    if k:
        xs = x[: k * chunk].reshape(k, chunk, x.shape[1])
        ys = y[: k * chunk].reshape(k, chunk)
        ls, cs = jax.lax.map(one, (xs, ys))
        loss, correct = loss + jnp.sum(ls), correct + jnp.sum(cs, dtype=jnp.int32)
    if r:
        l_r, c_r = one((x[k * chunk :], y[k * chunk :]))
        loss, correct = loss + l_r, correct + c_r
    return loss, correct


def evaluate(
    model: MLP,
    x: Float[ArrayLike, "_n _d"],
    y: Int[ArrayLike, " _n"],
    *,
    batch_size: int = 4096,
) -> tuple[float, float]:
    """Mean cross-entropy and error rate of `model` on `(x, y)`.

    **Arguments:**

    - `model`: the network.
    - `x`: inputs, shape `(n, D)`; cast to the model's dtype.
    - `y`: integer labels, shape `(n,)`.
    - `batch_size`: examples per forward pass (memory bound only; the result does not depend
        on it beyond float rounding).

    **Returns:** `(loss, error_rate)` as Python floats, with
    `loss = mean_i -log softmax(f(x_i))[y_i]` and `error_rate = mean_i [argmax f(x_i) != y_i]`.
    """
    x = jnp.asarray(x, dtype=model.dtype)
    y = jnp.asarray(y, dtype=jnp.int32)
    if x.ndim != 2 or x.shape[1] != model.sizes[0]:
        raise ValueError(f"x must have shape (n, {model.sizes[0]}), got {x.shape}.")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape ({x.shape[0]},), got {y.shape}.")
    n = x.shape[0]
    if n == 0:
        raise ValueError("evaluate needs at least one example.")
    loss, correct = _eval_sums(model, x, y, max(1, min(int(batch_size), n)))
    return float(loss) / n, 1.0 - int(correct) / n


def accuracy(model: MLP, x: Float[ArrayLike, "_n _d"], y: Int[ArrayLike, " _n"]) -> float:
    """The fraction of the examples `(x, y)` that `model` classifies correctly, `1 - error_rate` of
    [`evaluate`][] (inputs `x` of shape `(n, D)`, integer labels `y` of shape `(n,)`)."""
    return 1.0 - evaluate(model, x, y)[1]


# ---------------------------------------------------------------------------------------------
# Training


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of [`train`][].

    **Fields:**

    - `optimizer`: `"sgd-momentum"` (heavy-ball SGD) or `"adam"`.
    - `learning_rate`: step size.
    - `momentum`: heavy-ball coefficient (SGD only).
    - `batch_size`: minibatch size; every epoch visits each training example exactly once (the
        last minibatch is padded with zero-weight examples, so every step has the same shape).
    - `max_epochs`: epoch budget.
    - `stop_train_accuracy`: the paper's stopping rule: stop after the first epoch whose
        training accuracy (full training set) is `>=` this value; `None` trains `max_epochs`.
    - `seed`: seed of the minibatch order (and, in [`train_or_load`][], of the initialisation).
    """

    optimizer: str = "sgd-momentum"
    learning_rate: float = 0.01
    momentum: float = 0.9
    batch_size: int = 64
    max_epochs: int = 100
    stop_train_accuracy: float | None = 0.99
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in ("sgd-momentum", "adam"):
            raise ValueError(f"optimizer must be 'sgd-momentum' or 'adam', got {self.optimizer!r}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}.")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}.")
        if self.batch_size < 1 or self.max_epochs < 1:
            raise ValueError(
                "batch_size and max_epochs must be positive, got "
                f"{self.batch_size}, {self.max_epochs}."
            )
        if self.stop_train_accuracy is not None and not 0 < self.stop_train_accuracy <= 1:
            raise ValueError(
                "stop_train_accuracy must lie in (0, 1] or be None, got "
                f"{self.stop_train_accuracy}."
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TrainHistory:
    """Per-epoch statistics from [`train`][], measured on the full sets after each epoch.

    **Fields:**

    - `train_loss`, `train_accuracy`: mean cross-entropy and accuracy on the training split, one per epoch.
    - `test_loss`, `test_accuracy`: the same on the test split.
    - `epoch_seconds`: wall time of each epoch.
    - `stopped_early`: whether the stopping rule (`TrainConfig.stop_train_accuracy`) ended training before
      `max_epochs`.
    - `num_step_traces`: how often the jitted step was traced during this call: 1 for a new
      architecture/shape, 0 when an earlier call already compiled it.
    """

    train_loss: tuple[float, ...]
    train_accuracy: tuple[float, ...]
    test_loss: tuple[float, ...]
    test_accuracy: tuple[float, ...]
    epoch_seconds: tuple[float, ...]
    stopped_early: bool
    num_step_traces: int

    @property
    def num_epochs(self) -> int:
        return len(self.train_loss)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainHistory:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@functools.cache
def _optimizer(name: str, dtype: str) -> optax.GradientTransformation:
    """One optimiser object per (kind, dtype), with its hyperparameters held in the state as
    arrays, so that the jitted step compiles once across calls with different learning rates."""
    inject = functools.partial(optax.inject_hyperparams, hyperparam_dtype=jnp.dtype(dtype))
    if name == "sgd-momentum":
        return inject(optax.sgd)(learning_rate=0.0, momentum=0.0)
    return inject(optax.adam)(learning_rate=0.0)


_STEP_TRACES = [0]


def _batch_loss(model: MLP, x: Array, y: Array, w: Array) -> Array:
    ce, _ = _example_terms(model, x, y)
    return jnp.sum(w * ce) / jnp.sum(w)


@eqx.filter_jit
def _train_step(model, opt_state, optim, x_all, y_all, idx_all, w_all, i):
    """One optimiser step on minibatch `i` (rows `idx_all[i]`, weights `w_all[i]`)."""
    _STEP_TRACES[0] += 1  # Python side effect: runs only while tracing
    idx, w = idx_all[i], w_all[i]
    loss, grads = eqx.filter_value_and_grad(_batch_loss)(model, x_all[idx], y_all[idx], w)
    params = eqx.filter(model, eqx.is_inexact_array)
    # optax's Adam raises its decay rates to the int32 step count (bias correction `1 - b1**t`), a mixed
    # promotion that `jax_numpy_dtype_promotion="strict"` refuses: optax's own arithmetic runs under standard.
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = optim.update(grads, opt_state, params)
    return eqx.apply_updates(model, updates), opt_state, loss


def train(
    model: MLP,
    dataset: Dataset,
    config: TrainConfig = TrainConfig(),
    *,
    progress: bool = True,
) -> tuple[MLP, TrainHistory]:
    """Minibatch training with cross-entropy loss.

    Epoch `e` visits the training set in the order of the `e`-th
    `np.random.default_rng(config.seed).permutation(n_train)`, in consecutive minibatches of
    `config.batch_size` (the last one may be smaller; it is padded with zero-weight rows so that
    one jitted step, forward + gradient + optimiser update, serves every minibatch). Each step
    minimises the mean cross-entropy over the minibatch's real examples. After each epoch the
    loss and accuracy on the full training and test sets are recorded; training stops after the
    first epoch with training accuracy `>= config.stop_train_accuracy`. The result is a
    deterministic function of `model`, `dataset` and `config`.

    **Arguments:**

    - `model`: the initial network; data are cast to its dtype.
    - `dataset`: a [`Dataset`][] whose input dimension and class count match `model`.
    - `config`: a [`TrainConfig`][].
    - `progress`: show a tqdm bar over epochs.

    **Returns:** `(trained_model, history)`, a [`TrainHistory`][].
    """
    d, c = model.sizes[0], model.sizes[-1]
    if dataset.input_dim != d or dataset.num_classes != c:
        raise ValueError(
            f"model maps {d} inputs to {c} classes but dataset {dataset.name!r} has "
            f"{dataset.input_dim} inputs and {dataset.num_classes} classes."
        )
    dtype = model.dtype
    x_all = jnp.asarray(dataset.x_train, dtype=dtype)
    y_all = jnp.asarray(dataset.y_train, dtype=jnp.int32)
    x_test = jnp.asarray(dataset.x_test, dtype=dtype)
    y_test = jnp.asarray(dataset.y_test, dtype=jnp.int32)
    n = dataset.num_train
    bsz = min(config.batch_size, n)
    num_batches = -(-n // bsz)
    pad = num_batches * bsz - n

    optim = _optimizer(config.optimizer, jnp.dtype(dtype).name)
    opt_state = optim.init(eqx.filter(model, eqx.is_inexact_array))
    opt_state.hyperparams["learning_rate"] = jnp.asarray(config.learning_rate, dtype)
    if "momentum" in opt_state.hyperparams:
        opt_state.hyperparams["momentum"] = jnp.asarray(config.momentum, dtype)

    rng = np.random.default_rng(config.seed)
    weights = np.ones(num_batches * bsz, dtype=np.dtype(dtype.name))
    weights[n:] = 0.0
    w_all = jnp.asarray(weights.reshape(num_batches, bsz))
    batch_ids = [jnp.asarray(i, dtype=jnp.int32) for i in range(num_batches)]

    fields = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "epoch_seconds")
    stats: dict[str, list[float]] = {k: [] for k in fields}
    stopped_early = False
    traces_before = _STEP_TRACES[0]
    epochs = tqdm(
        range(config.max_epochs), disable=not progress, desc=f"train {dataset.name}", leave=False
    )
    for _ in epochs:
        t0 = time.perf_counter()
        perm = np.concatenate([rng.permutation(n), np.zeros(pad, dtype=np.int64)])
        idx_all = jnp.asarray(perm.reshape(num_batches, bsz), dtype=jnp.int32)
        for i in batch_ids:
            model, opt_state, _ = _train_step(
                model, opt_state, optim, x_all, y_all, idx_all, w_all, i
            )
        train_loss, train_err = evaluate(model, x_all, y_all)
        test_loss, test_err = evaluate(model, x_test, y_test)
        row = (train_loss, 1 - train_err, test_loss, 1 - test_err, time.perf_counter() - t0)
        for k, v in zip(fields, row):
            stats[k].append(v)
        epochs.set_postfix(
            loss=f"{train_loss:.4f}",
            train_acc=f"{1 - train_err:.4f}",
            test_acc=f"{1 - test_err:.4f}",
        )
        if config.stop_train_accuracy is not None and 1 - train_err >= config.stop_train_accuracy:
            stopped_early = True
            break
    epochs.close()
    history = TrainHistory(
        **{k: tuple(v) for k, v in stats.items()},
        stopped_early=stopped_early,
        num_step_traces=_STEP_TRACES[0] - traces_before,
    )
    return model, history
