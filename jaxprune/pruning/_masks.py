"""Top-k selection, the one implementation behind every "keep the k largest" mask in jaxprune: importance
node pruning, magnitude and random edge pruning, designed masks rounded to a budget, real-data masks."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

__all__ = ["top_k_mask"]


def top_k_mask(scores: Float[ArrayLike, "... n"], k: Int[ArrayLike, "..."]) -> Bool[Array, "... n"]:
    """Boolean mask keeping the `k` largest entries of `scores` along the last axis, ties broken by the lower
    index (a stable sort); `k` may be traced and broadcasts against the leading axes (one `k` per row).

    **Arguments:**

    - `scores`: `Float[..., n]`, the values to rank along the last axis.
    - `k`: number kept per row, an integer scalar or `Int[...]` matching the leading axes of `scores`;
      `k <= 0` keeps nothing and `k >= n` keeps everything.

    **Returns:**

    A boolean mask `Bool[..., n]` of the shape of `scores`, with `min(max(k, 0), n)` entries `True` per row.

    Example: `top_k_mask(jnp.array([0.3, 0.9, 0.3]), 2)` is `[True, True, False]`.
    """
    scores = jnp.asarray(scores)
    order = jnp.argsort(-scores, axis=-1, stable=True)
    ranks = jnp.argsort(order, axis=-1)
    k = jnp.broadcast_to(jnp.asarray(k), scores.shape[:-1])  # explicit: the tests forbid implicit rank promotion
    return ranks < k[..., None]
