"""Bounds over node subsets at the specialised state, and importance pruning there (docs/theory.md sections 5,
6.1): the best and worst subset of a size, the optimal-reweighting bound, and the kept counts and error of
importance pruning; the per-group formulas are those of `_bounds`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import check_count
from ._options import AbstractReweight

from ._bounds import (
    Specialised,
    _REWEIGHTS,
    _all_counts,
    _check_reweight,
    _is_concrete,
    _summary,
    node_error_counts,
)

__all__ = ["NodeBounds", "node_error_range", "optimal_reweight_bound", "importance_counts", "importance_node_error"]


class NodeBounds(NamedTuple):
    """Best and worst subset of size `k`, from [`node_error_range`][].

    **Fields:**

    - `best`, `worst`: the smallest and largest `eps_g` over subsets (scalars).
    - `best_counts`, `worst_counts`: the kept counts per group `m` (NumPy `(M,)`) of those subsets.
    """

    best: Array
    worst: Array
    best_counts: np.ndarray
    worst_counts: np.ndarray


def node_error_range(spec: Specialised, k: int, *, reweight: str | AbstractReweight = "none") -> NodeBounds:
    """`min_S eps(S)` and `max_S eps(S)` over all `C(K, k)` subsets, by enumerating count vectors: every
    distribution over size-`k` subsets has expected error between them (docs/theory.md section 6.1).

    **Arguments:**

    - `spec`: the [`Specialised`][] state (see [`specialisation`][]).
    - `k`: units kept, `1 <= k <= K`.
    - `reweight`: the reweighting rule, an [`AbstractReweight`][] or its name `"none"` (default),
      `"preactivation"`, `"activation"`, `"optimal"` (docs/theory.md section 6.1).

    **Returns:**

    A [`NodeBounds`][].
    """
    reweight = _check_reweight(reweight)
    _, best, worst, ib, iw = _summary(spec, k)
    r = _REWEIGHTS.index(reweight)
    counts, _ = _all_counts(spec.group_sizes)
    concrete = _is_concrete(best)
    return NodeBounds(best[r], worst[r], counts[int(ib[r]) if concrete else 0], counts[int(iw[r]) if concrete else 0])


def optimal_reweight_bound(spec: Specialised, k: int) -> Float[Array, ""]:
    """`min_S min_v' eps(S, v') = min_m eps(m, optimal)`: no size-`k` node pruning with any reweighting does
    better (docs/theory.md section 6.1, the optimal rule).

    **Arguments:**

    - `spec`: the [`Specialised`][] state (see [`specialisation`][]).
    - `k`: units kept, `1 <= k <= K`.

    **Returns:**

    The scalar lower bound on `eps_g`.
    """
    return node_error_range(spec, k, reweight="optimal").best


# --------------------------------------------------------------------------------------------------
# Importance (magnitude) node pruning
# --------------------------------------------------------------------------------------------------


def importance_counts(spec: Specialised, k: int) -> np.ndarray:
    """Kept counts of importance pruning (the `k` largest `|v_i| sqrt(Q_ii) = |v*_n| sqrt(T_nn) / K_n`, ties
    to the lower unit index, as [`importance_mask`][]): groups are filled in order of their score.

    **Arguments:**

    - `spec`: the [`Specialised`][] state (see [`specialisation`][]).
    - `k`: units kept, `1 <= k <= K`.

    **Returns:**

    The NumPy integer counts `m`, shape `(M,)`, summing to `k`.
    """
    k = check_count(k, spec.K)
    g = spec.groups()
    score = np.asarray(jnp.abs(g.u) * jnp.sqrt(g.s))
    order = np.lexsort((np.arange(spec.M), -score))  # descending score, then lower group (= lower unit) index
    counts = np.zeros(spec.M, dtype=np.int64)
    left = k
    for n in order:
        counts[n] = min(spec.group_sizes[n], left)
        left -= counts[n]
    return counts


def importance_node_error(spec: Specialised, k: int, *, reweight: str | AbstractReweight = "none") -> Float[Array, ""]:
    """`eps(m)` at the counts of [`importance_counts`][] (a point mass; differentiable at fixed ranking).

    **Arguments:**

    - `spec`: the [`Specialised`][] state (see [`specialisation`][]).
    - `k`: units kept, `1 <= k <= K`.
    - `reweight`: the reweighting rule, an [`AbstractReweight`][] or its name `"none"` (default),
      `"preactivation"`, `"activation"`, `"optimal"` (docs/theory.md section 6.1).

    **Returns:**

    The scalar `eps_g` of importance node pruning.
    """
    return node_error_counts(spec, importance_counts(spec, k), reweight=reweight)


# --------------------------------------------------------------------------------------------------
# The table: closed forms against the general machinery of jaxprune._node / jaxprune._edge
# --------------------------------------------------------------------------------------------------
