"""Designed masks for a trained MLP's first layer: a relaxed mask, an exact quadratic surrogate of the
pruning error on the training set, projected descent, then rounding to the budget (docs/theory.md, section 7,
on a concrete network with data).

- Nodes: `m in [0,1]^H`, `sum m = k`, against the next layer's pre-activation error without reweighting,
  `E(m) = (1/P) sum_mu ||W2 diag(1 - m) a_mu||^2 = (1-m)^T Qn (1-m)`, `Qn = (W2^T W2) o (A^T A / P)`.
- Edges, per unit: `m_i in [0,1]^D`, `sum m_i = c`, against the unit's pre-activation error
  `(1-m_i)^T diag(w_i) (X^T X / P) diag(w_i) (1-m_i)` (the seed paper's edge kernel as a quadratic form).

Both are averaged over independent Bernoulli(`m`) masks, which adds `sum_i Q_ii m_i (1 - m_i)`: exact at 0/1
masks and a penalty on fractional ones, without which rounding loses the optimum. The descent is optax SGD
with heavy-ball momentum, preconditioned by a Gershgorin bound of each block's curvature and projected onto
the capped simplex ([`jaxprune.design.project_capped_simplex`][]); the result is the top-`k` mask
([`jaxprune.pruning.top_k_mask`][]), ties broken by importance (nodes) or `|w_ij|` (edges).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Bool, Float

from .._checks import check_float, check_int
from ..design import project_capped_simplex
from ..pruning import top_k_mask
from ._kernels import data_importance_scores

__all__ = ["surrogate_node_mask", "surrogate_edge_mask"]


def _projected_descent(loss, m0, total, scale, lr, steps, momentum=0.9):
    """Projected heavy-ball descent on `m` in `{0 <= m <= 1, sum m = total}` along the last axis, gradients
    preconditioned by `scale`."""
    opt = optax.sgd(lr, momentum=momentum)
    proj = project_capped_simplex
    for _ in range(m0.ndim - 1):
        proj = jax.vmap(proj, in_axes=(0, None))

    def step(carry, _):
        m, st = carry
        g = jax.grad(loss)(m) * scale
        upd, st = opt.update(g, st, m)
        return (proj(optax.apply_updates(m, upd), total), st), None

    (m, _), _ = jax.lax.scan(step, (m0, opt.init(m0)), None, length=steps)
    return m


@functools.partial(jax.jit, static_argnames=("steps",))
def _design_node(Qn, k, lr, steps):
    H = Qn.shape[0]
    loss = lambda m: (1.0 - m) @ Qn @ (1.0 - m) + jnp.sum(jnp.diag(Qn) * m * (1.0 - m))
    scale = 1.0 / (2.0 * jnp.max(jnp.sum(jnp.abs(Qn), axis=1)))
    return _projected_descent(loss, jnp.full((H,), k / H, Qn.dtype), k, scale, lr, steps)


def surrogate_node_mask(
    acts: Float[ArrayLike, "P H"], W2: Float[ArrayLike, "H2 H"], k: int, *, steps: int = 300,
    learning_rate: float = 0.5,
) -> Bool[Array, " H"]:
    """Designed node mask keeping `k` units: projected descent on `m in [0,1]^H`, `sum m = k`, against
    `E(m) = (1-m)^T [(W2^T W2) o (A^T A / P)] (1-m)` averaged over Bernoulli(`m`) masks, then the `k` largest
    entries (ties by importance score); docs/theory.md section 7 on data.

    **Arguments:**

    - `acts`: training-set activations of the layer, shape `(P, H)`.
    - `W2`: the next layer's weights, shape `(H2, H)`.
    - `k`: units kept, `1 <= k <= H`.
    - `steps`: descent steps, `>= 1` (default 300).
    - `learning_rate`: step size `> 0` of the preconditioned descent (default 0.5).

    **Returns:** a boolean mask of shape `(H,)` with `k` entries `True`.
    """
    acts = jnp.asarray(acts)
    W2 = jnp.asarray(W2, acts.dtype)
    H = acts.shape[1]
    k = check_int("k", k, 1, H)
    steps = check_int("steps", steps, 1)
    learning_rate = check_float("learning_rate", learning_rate, 0.0, lo_open=True)
    Qn = (W2.T @ W2) * (acts.T @ acts / acts.shape[0])
    m = _design_node(Qn, jnp.asarray(float(k), acts.dtype), jnp.asarray(learning_rate, acts.dtype), steps)
    s = data_importance_scores(acts, W2)
    return top_k_mask(m + 1e-9 * s / jnp.maximum(jnp.max(s), 1e-300), k)


@functools.partial(jax.jit, static_argnames=("steps",))
def _design_edge(W, G, c, lr, steps):
    H, D = W.shape

    def loss(m):
        r = W * (1.0 - m)
        return jnp.sum((r @ G) * r) + jnp.sum(jnp.diag(G)[None, :] * W * W * m * (1.0 - m))

    # Gershgorin bound of each unit's kernel diag(w_i) G diag(w_i): max_j |w_ij| sum_l |G_jl| |w_il|.
    rows = jnp.abs(W) * (jnp.abs(W) @ jnp.abs(G))
    scale = 1.0 / (2.0 * jnp.maximum(jnp.max(rows, axis=1, keepdims=True), 1e-300))
    return _projected_descent(loss, jnp.full((H, D), c / D, W.dtype), c, scale, lr, steps)


def surrogate_edge_mask(
    W: Float[ArrayLike, "H D"], x: Float[ArrayLike, "P D"], c: int, *, steps: int = 300, learning_rate: float = 0.5
) -> Bool[Array, "H D"]:
    """Designed edge mask keeping `c` incoming weights per unit: per unit, projected descent on `m_i in [0,1]^D`,
    `sum m_i = c`, against `(1-m_i)^T diag(w_i) (X^T X / P) diag(w_i) (1-m_i)` averaged over Bernoulli(`m_i`)
    masks, then the `c` largest entries (ties by `|w_ij|`); docs/theory.md section 7 on data.

    **Arguments:**

    - `W`: first-layer weights, shape `(H, D)`.
    - `x`: training inputs, shape `(P, D)`.
    - `c`: weights kept per unit, `1 <= c <= D`.
    - `steps`: descent steps, `>= 1` (default 300).
    - `learning_rate`: step size `> 0` of the preconditioned descent (default 0.5).

    **Returns:** a boolean mask of shape `(H, D)` with `c` entries `True` in every row.
    """
    W = jnp.asarray(W)
    x = jnp.asarray(x, W.dtype)
    H, D = W.shape
    c = check_int("c", c, 1, D)
    steps = check_int("steps", steps, 1)
    learning_rate = check_float("learning_rate", learning_rate, 0.0, lo_open=True)
    G = x.T @ x / x.shape[0]
    m = _design_edge(W, G, jnp.asarray(float(c), W.dtype), jnp.asarray(learning_rate, W.dtype), steps)
    a = jnp.abs(W)
    return top_k_mask(m + 1e-9 * a / jnp.maximum(jnp.max(a), 1e-300), jnp.full((H,), c))
