"""Parameter budgets (docs/theory.md, section 6): node pruning to `k` of `K` units keeps `k N + k` parameters, edge
pruning with keep fraction `p` keeps `p K N + K`; methods are compared at equal count (`p = k/K`). Also the one
check of a keep fraction `p`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import check_choice, check_int, is_concrete

__all__ = ["edge_params", "matched_keep_fraction", "node_params"]


def _check_p(p, K: int | None = None, name: str = "p"):
    """`p` as an array of shape `()` or `(K,)`; a ValueError naming it if a concrete value leaves (0, 1]."""
    p_arr = jnp.asarray(p, dtype=float) if not hasattr(p, "dtype") else jnp.asarray(p)
    if not jnp.issubdtype(p_arr.dtype, jnp.floating):
        p_arr = p_arr.astype(float)
    if p_arr.ndim > 1 or (p_arr.ndim == 1 and K is not None and p_arr.shape[0] != K):
        raise ValueError(
            f"`{name}` must be a scalar or a per-unit vector of length K={K}, got shape {p_arr.shape}"
        )
    if is_concrete(p_arr):
        vals = np.asarray(p_arr)
        if not np.all(np.isfinite(vals)) or np.any(vals <= 0) or np.any(vals > 1):
            raise ValueError(f"`{name}` (keep fraction) must lie in (0, 1], got {vals}")
    return p_arr


def _per_unit(p: Array, K: int) -> Float[Array, " K"]:
    return jnp.broadcast_to(p, (K,)) if p.ndim == 0 else p


def node_params(K: int, N: int, k: int) -> int:
    """Number of parameters kept by node pruning to `k` of `K` units: `k N + k` (first layer plus second layer;
    docs/theory.md section 6).

    **Arguments:**

    - `K`: number of student units before pruning.
    - `N`: input dimension.
    - `k`: units kept, `1 <= k <= K` (`ValueError` otherwise).

    **Returns:**

    The integer `k N + k`. Example: `node_params(6, 500, 2) == 1002`.
    """
    k = check_int("k (units kept)", k, 1, K)
    return k * N + k


def edge_params(K: int, N: int, p: float) -> float:
    """Number of parameters kept by edge pruning with keep fraction `p`: `p K N + K` (all `K` second-layer
    weights stay; docs/theory.md section 6).

    **Arguments:**

    - `K`: number of student units.
    - `N`: input dimension.
    - `p`: keep fraction of the first-layer weights, in `(0, 1]` (`ValueError` otherwise).

    **Returns:**

    The (not rounded) float `p K N + K`. Example: `edge_params(6, 500, 1/3) == 1006.0`.
    """
    _check_p(p)
    return float(p) * K * N + K


def matched_keep_fraction(K: int, N: int, k: int, *, rule: str = "theory") -> float:
    """The edge keep fraction `p` matched to node pruning to `k` of `K` units (docs/theory.md section 6).

    **Arguments:**

    - `K`: number of student units.
    - `N`: input dimension, `N >= 1`.
    - `k`: units kept by the node method, `1 <= k <= K`.
    - `rule`: `"theory"` (default): `p = k / K`, equal numbers of first-layer weights, `p K N = k N`;
      `"seed-paper"`: equal total parameter counts including second layers, `p K N + K = k N + k`, so
      `p = (k N + k - K) / (K N)` (not rounded; the concrete masks keep `round(p N)` per unit).

    **Returns:**

    The keep fraction `p` in `(0, 1]`; `ValueError` if no positive `p` matches. Example:
    `matched_keep_fraction(6, 500, 2) == 1/3`.
    """
    check_choice("rule", rule, ("theory", "seed-paper"))
    if not (1 <= k <= K) or N < 1:
        raise ValueError(f"need 1 <= k <= K and N >= 1, got K={K}, N={N}, k={k}")
    if rule == "theory":
        return k / K
    p = (k * N + k - K) / (K * N)
    if p <= 0:
        raise ValueError(f"no positive keep fraction matches k={k} units (k N + k - K = {k * N + k - K} <= 0)")
    return p
