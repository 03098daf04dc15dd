"""Test errors of pruned MLPs: a batch of networks that differ from a trained one in the first two layers only,
evaluated as they are (the seed paper's protocol: no fine-tuning) or after masked fine-tuning.

The classification error rate is `mean_mu [argmax_c z_mu,c != y_mu]` on the given split (a fraction, not %).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._checks import check_choice, check_float, check_int
from ._mlp import _MLP_ACTIVATIONS

__all__ = ["first_layer_activations", "masked_test_errors", "finetuned_test_errors"]

Layers = Sequence[tuple[Array, Array]]


def _forward(W1, b1, W2, b2, rest, x, activation: str):
    g = _MLP_ACTIVATIONS[activation]
    h = g(x @ W1.T + b1[None, :])
    z = h @ W2.T + b2[None, :]
    for W, b in rest:
        z = g(z) @ W.T + b[None, :]
    return z


def first_layer_activations(
    layers: Layers, activation: str, x: Float[ArrayLike, "P D"]
) -> Float[Array, "P H"]:
    """Activations `a_mu = g(W1 x_mu + b1)` of the first hidden layer: the data behind the node kernels, scores
    and fusing of `jaxprune.realdata`.

    **Arguments:**

    - `layers`: the network's layers `[(W1, b1), ...]`, `W1` of shape `(H, D)`, `b1` `(H,)`.
    - `activation`: the hidden nonlinearity `g`: `"sigmoid"`, `"relu"`, `"tanh"` or `"erf"`.
    - `x`: inputs, shape `(P, D)` (cast to the dtype of `W1`).

    **Returns:** the activations, shape `(P, H)`, in the dtype of `W1`.
    """
    check_choice("activation", activation, tuple(_MLP_ACTIVATIONS))
    W1, b1 = layers[0]
    return _MLP_ACTIVATIONS[activation](jnp.asarray(x, W1.dtype) @ W1.T + b1[None, :])


def _error_rate(logits, y, dtype):
    return jnp.mean((jnp.argmax(logits, axis=-1).astype(y.dtype) != y).astype(dtype))


@functools.partial(jax.jit, static_argnames=("activation",))
def _errors(W1s, b1, W2s, b2s, rest, x, y, activation):
    def one(t):
        W1, W2, b2 = t
        return _error_rate(_forward(W1, b1, W2, b2, rest, x, activation), y, x.dtype)

    return jax.lax.map(one, (W1s, W2s, b2s))


def masked_test_errors(
    layers: Layers,
    activation: str,
    W1s: Float[ArrayLike, "S H D"],
    W2s: Float[ArrayLike, "S H2 H"],
    b2s: Float[ArrayLike, "S H2"],
    x: Float[ArrayLike, "n D"],
    y: Int[ArrayLike, " n"],
) -> Float[Array, " S"]:
    """Classification error rates `mean_mu [argmax_c z_mu,c != y_mu]` on `(x, y)` of `S` networks equal to
    `layers` except for `W1`, `W2` and `b2` (the pruned networks, evaluated without fine-tuning).

    **Arguments:**

    - `layers`: the trained network's layers `[(W1, b1), (W2, b2), ...]`; `b1` and the layers after the second
      are shared by all `S` networks.
    - `activation`: the hidden nonlinearity: `"sigmoid"`, `"relu"`, `"tanh"` or `"erf"`.
    - `W1s`: first-layer weights of each network, shape `(S, H, D)`.
    - `W2s`: second-layer weights, shape `(S, H2, H)`.
    - `b2s`: second-layer biases, shape `(S, H2)`.
    - `x`: inputs, shape `(n, D)`.
    - `y`: integer labels, shape `(n,)`.

    **Returns:** the error rates (fractions in `[0, 1]`), shape `(S,)`, in the dtype of `layers`.
    """
    check_choice("activation", activation, tuple(_MLP_ACTIVATIONS))
    dtype = layers[0][0].dtype
    return _errors(
        jnp.asarray(W1s, dtype), layers[0][1], jnp.asarray(W2s, dtype), jnp.asarray(b2s, dtype),
        tuple(layers[2:]), jnp.asarray(x, dtype), jnp.asarray(y, jnp.int32), activation,
    )


@functools.partial(jax.jit, static_argnames=("activation",))
def _finetune(W1s, W2s, b2s, M1, M2, b1, rest, x, y, idx, lr, momentum, activation):
    """SGD-momentum fine-tuning of every layer with the masks `M1` (on `W1`) and `M2` (on `W2`) held fixed."""
    opt = optax.sgd(lr, momentum)

    def one(W1, W2, b2, m1, m2):
        params = (W1, b1, W2, b2, rest)

        def loss(p, xb, yb):
            logits = _forward(*p[:4], p[4], xb, activation)
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, yb))

        def step(carry, batch):
            p, st = carry
            grads = jax.grad(loss)(p, x[batch], y[batch])
            upd, st = opt.update(grads, st, p)
            p = optax.apply_updates(p, upd)
            p = (p[0] * m1, p[1], p[2] * m2, p[3], p[4])
            return (p, st), None

        (p, _), _ = jax.lax.scan(step, (params, opt.init(params)), idx)
        return p

    return jax.vmap(one)(W1s, W2s, b2s, M1, M2)


def finetuned_test_errors(
    layers: Layers,
    activation: str,
    W1s: Float[ArrayLike, "S H D"],
    W2s: Float[ArrayLike, "S H2 H"],
    b2s: Float[ArrayLike, "S H2"],
    M1: Bool[ArrayLike, "S H D"],
    M2: Bool[ArrayLike, "S H2 H"],
    data: tuple[ArrayLike, ArrayLike, ArrayLike, ArrayLike],
    epochs: int,
    *,
    batch_size: int,
    learning_rate: float,
    momentum: float,
    seed: int,
) -> Float[Array, " S"]:
    """Test error rates of `S` pruned networks after `epochs` epochs of SGD with momentum on the training split
    (cross-entropy; minibatches in a random order), every layer trained and the pruned weights held at zero.

    **Arguments:**

    - `layers`: the trained network's layers `[(W1, b1), (W2, b2), ...]` (the starting point of the layers that
      `W1s`, `W2s`, `b2s` do not replace).
    - `activation`: the hidden nonlinearity: `"sigmoid"`, `"relu"`, `"tanh"` or `"erf"`.
    - `W1s`, `W2s`, `b2s`: the pruned first-layer weights `(S, H, D)`, second-layer weights `(S, H2, H)` and
      biases `(S, H2)` to start from.
    - `M1`: first-layer masks `(S, H, D)`, `M2`: second-layer masks `(S, H2, H)`; weights where they are
      `False` stay zero.
    - `data`: `(x_train, y_train, x_test, y_test)`.
    - `epochs`: epochs of fine-tuning, `>= 1`.
    - `batch_size`: minibatch size `>= 1` (at most the training-set size; the remainder of an epoch is dropped).
    - `learning_rate`: SGD step size `> 0`.
    - `momentum`: heavy-ball momentum in `[0, 1)`.
    - `seed`: seed of the minibatch order.

    **Returns:** the test error rates after fine-tuning, shape `(S,)`.
    """
    check_choice("activation", activation, tuple(_MLP_ACTIVATIONS))
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    learning_rate = check_float("learning_rate", learning_rate, 0.0, lo_open=True)
    momentum = check_float("momentum", momentum, 0.0, 1.0, hi_open=True)
    x_tr, y_tr, x_te, y_te = data
    n = x_tr.shape[0]
    bsz = min(batch_size, n)
    nb = n // bsz
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.permutation(n)[: nb * bsz].reshape(nb, bsz) for _ in range(epochs)]).reshape(-1, bsz)
    dtype = layers[0][0].dtype
    W1f, b1f, W2f, b2f, restf = _finetune(
        jnp.asarray(W1s, dtype), jnp.asarray(W2s, dtype), jnp.asarray(b2s, dtype), jnp.asarray(M1, dtype),
        jnp.asarray(M2, dtype), layers[0][1], tuple(layers[2:]), x_tr, y_tr, jnp.asarray(idx, jnp.int32),
        jnp.asarray(learning_rate, dtype), jnp.asarray(momentum, dtype), activation,
    )

    def one(t):
        W1, b1, W2, b2, rest = t
        return _error_rate(_forward(W1, b1, W2, b2, rest, x_te, activation), y_te, dtype)

    return jax.lax.map(one, (W1f, b1f, W2f, b2f, restf))
