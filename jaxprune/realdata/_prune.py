"""Pruning the first hidden layer of a trained MLP (`H` units, `D` inputs) by every node and edge method, with
or without least-squares reweighting, at matched first-layer parameter counts (docs/theory.md, sections 6.1,
6.2 and 6.3, last item: the seed paper's real-data protocol, no fine-tuning).

**Node pruning** keeps `k` units (boolean mask `m`, length `H`); a removed unit's first-layer row and its
column of the next layer `W2` are zeroed. Selectors ([`node_masks`][]): `random` (uniform over the `C(H, k)`
subsets), `importance` (the `k` largest [`data_importance_scores`][]), `dpp-rbf` (DIVNET) and `dpp-linear`
(k-DPPs with the kernels of [`data_node_kernel`][]), `designed` ([`surrogate_node_mask`][]).

Reweighting `ls` of nodes ([`fuse_nodes`][], the fusing step of Mariet & Sra): with `a~ = [a, 1]` and
`W~2 = [W2, b2]`, the next layer of the kept units and its bias are refit by ridge least squares so that the
kept units reproduce the FULL layer's next pre-activations on the training set,
`V = argmin (1/P) ||A~_S V - A~ W~2^T||^2 + lam ||V||^2`, i.e. `W2'[:, S] = W2[:, S] + W2[:, Sc] G~_{Sc,S}
G~_{S,S}^{-1}` (constant column inside `S`), `lam = ridge tr(G~) / (H + 1)`, `G~ = A~^T A~ / P`. This is the
data version of the `activation` rule of docs/theory.md 6.1 (`jaxprune.pruning.reweighted_output_weights`),
with `H2` outputs, a bias and the sample (uncentred) Gram matrix in place of `A = I2`.

**Edge pruning** keeps `c` incoming weights of every unit (all `H` biases kept). Selectors ([`edge_masks`][]):
`random` and `magnitude` ([`jaxprune.pruning.random_edge_mask`][], [`jaxprune.pruning.magnitude_edge_mask`][]),
`dpp` (per-unit k-DPP with the seed paper's data kernel, [`edge_dpp_eigen`][]), `designed`
([`surrogate_edge_mask`][]). Reweighting `ls`: [`jaxprune.pruning.reweight_edges`][] (each unit's kept incoming
weights refit to reproduce its pre-activations on the training inputs; the seed paper's `reweight_edge`).

**Parameter matching** (the seed paper's rule, `jaxprune.pruning.matched_keep_fraction(rule="seed-paper")`):
first-layer parameters are weights plus biases, `H (D + 1)`. Node pruning to `k` units keeps `k (D + 1)`; the
matched edge budget keeps the same count spread over all `H` units, `H c + H = k (D + 1)`, with
`c = round((k (D + 1) - H) / H)` (at least 1) ([`first_layer_params`][], [`edge_count`][]).

References: Acharyya et al., UAI 2021; Mariet & Sra, "Diversity Networks", ICLR 2016.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from .._checks import check_choice, check_float, check_int
from ..pruning import (
    KDPPEigen,
    kdpp_eigen,
    magnitude_edge_mask,
    matched_keep_fraction,
    random_edge_mask,
    reweight_edges,
    top_k_mask,
)
from ._kernels import data_importance_scores, data_node_kernel, edge_dpp_eigen, sample_kdpp_masks
from ._surrogate import surrogate_edge_mask, surrogate_node_mask

__all__ = [
    "NODE_METHODS",
    "EDGE_METHODS",
    "REWEIGHTS",
    "RANDOMISED",
    "node_masks",
    "fuse_nodes",
    "augmented_gram",
    "prune_nodes_network",
    "first_layer_params",
    "edge_count",
    "edge_masks",
    "prune_edges_network",
]

#: node selectors
NODE_METHODS: tuple[str, ...] = ("random", "importance", "dpp-rbf", "dpp-linear", "designed")
#: edge selectors
EDGE_METHODS: tuple[str, ...] = ("random", "magnitude", "dpp", "designed")
#: reweighting rules: `none`, or least squares (`ls`: fusing for nodes, `reweight_edges` for edges)
REWEIGHTS: tuple[str, ...] = ("none", "ls")
#: the (kind, method) pairs whose masks are random draws (several masks per budget)
RANDOMISED: frozenset[tuple[str, str]] = frozenset(
    {("node", "random"), ("node", "dpp-rbf"), ("node", "dpp-linear"), ("edge", "random"), ("edge", "dpp")})

Layers = Sequence[tuple[Array, Array]]


# --------------------------------------------------------------------------------------------------
# Node pruning
# --------------------------------------------------------------------------------------------------


def node_masks(
    key: PRNGKeyArray,
    method: str,
    k: int,
    num_masks: int,
    *,
    acts: Float[ArrayLike, "P H"],
    W2: Float[ArrayLike, "H2 H"],
    beta: float = 1.0,
    jitter: float = 1e-6,
    eig: KDPPEigen | None = None,
    design_steps: int = 300,
) -> Bool[Array, "S H"]:
    """`num_masks` node masks keeping exactly `k` of `H` units (deterministic methods return one mask).

    `acts`: training-set activations of the layer; `W2`: the next layer's weights; `eig`: a precomputed
    `kdpp_eigen` of the method's kernel (computed here when `None`); `beta`, `jitter`: kernel options of
    [`data_node_kernel`][]; `design_steps`: descent steps of `designed`.
    """
    check_choice("node method", method, NODE_METHODS)
    acts = jnp.asarray(acts)
    H = acts.shape[1]
    k = check_int("k", k, 1, H)
    num_masks = check_int("num_masks", num_masks, 1)
    if method == "random":
        return top_k_mask(jax.random.uniform(key, (num_masks, H)), jnp.full((num_masks,), k))
    if method == "importance":
        return top_k_mask(data_importance_scores(acts, W2), k)[None]
    if method == "designed":
        return surrogate_node_mask(acts, W2, k, steps=design_steps)[None]
    if eig is None:
        eig = kdpp_eigen(data_node_kernel(acts, method.removeprefix("dpp-"), beta=beta, jitter=jitter))
    return sample_kdpp_masks(key, eig, k, num_masks)


def augmented_gram(acts: Float[ArrayLike, "P H"]) -> Float[Array, "H+1 H+1"]:
    """`G~ = A~^T A~ / P` with `A~ = [A, 1]` (the Gram matrix of [`fuse_nodes`][]; compute once per network)."""
    acts = jnp.asarray(acts)
    aug = jnp.concatenate([acts, jnp.ones((acts.shape[0], 1), acts.dtype)], axis=1)
    return aug.T @ aug / acts.shape[0]


@jax.jit
def _fuse(W2, b2, gram, mask, ridge):
    H = W2.shape[1]
    m = jnp.concatenate([mask, jnp.ones((1,), bool)])
    d = m.astype(gram.dtype)
    lam = ridge * jnp.trace(gram) / (H + 1)
    Wt = jnp.concatenate([W2, b2[:, None]], axis=1)  # (H2, H+1)
    A = d[:, None] * gram * d[None, :] + lam * jnp.eye(H + 1, dtype=gram.dtype)
    V = jnp.linalg.solve(A, d[:, None] * (gram @ Wt.T))  # (H+1, H2)
    V = jnp.where(m[:, None], V, 0.0)
    return V[:H].T, V[H]


@jax.jit
def _fuse_batch(W2, b2, gram, masks, ridge):
    # One solve per mask in sequence (lax.map, not vmap): no batched LAPACK call (see issue 16, item 5).
    return jax.lax.map(lambda m: _fuse(W2, b2, gram, m, ridge), masks)


def fuse_nodes(
    W2: Float[ArrayLike, "H2 H"],
    b2: Float[ArrayLike, " H2"],
    acts: Float[ArrayLike, "P H"],
    mask: Bool[ArrayLike, "... H"],
    *,
    ridge: float = 1e-6,
    gram: Float[ArrayLike, "H+1 H+1"] | None = None,
) -> tuple[Float[Array, "... H2 H"], Float[Array, "... H2"]]:
    """Least-squares fusing (Mariet & Sra): the next layer of the kept units and its bias refit so that
    `[A_S, 1] V` reproduces the full `A W2^T + b2` on the training set; removed columns become zero.

    `V = (D G~ D + lam I)^{-1} D G~ [W2, b2]^T`, `D = diag([m, 1])`, `G~ = [A,1]^T [A,1] / P`
    ([`augmented_gram`][], pass it as `gram` to reuse it), `lam = ridge tr(G~) / (H + 1)`. Leading axes of
    `mask` are a batch.
    """
    ridge = check_float("ridge", ridge, 0.0, lo_open=True)
    acts = jnp.asarray(acts)
    W2 = jnp.asarray(W2, acts.dtype)
    b2 = jnp.asarray(b2, acts.dtype)
    mask = jnp.asarray(mask, bool)
    if mask.shape[-1] != W2.shape[1] or acts.shape[1] != W2.shape[1]:
        raise ValueError(f"mask and acts must have H={W2.shape[1]} columns, got shapes {mask.shape}, {acts.shape}")
    gram = augmented_gram(acts) if gram is None else jnp.asarray(gram, acts.dtype)
    r = jnp.asarray(ridge, acts.dtype)
    if mask.ndim == 1:
        return _fuse(W2, b2, gram, mask, r)
    w, b = _fuse_batch(W2, b2, gram, mask.reshape(-1, mask.shape[-1]), r)
    return w.reshape(mask.shape[:-1] + w.shape[1:]), b.reshape(mask.shape[:-1] + b.shape[1:])


def prune_nodes_network(
    layers: Layers,
    masks: Bool[ArrayLike, "S H"],
    reweight: str,
    *,
    acts: Float[ArrayLike, "P H"] | None = None,
    ridge: float = 1e-6,
    gram: Float[ArrayLike, "H+1 H+1"] | None = None,
) -> tuple[Float[Array, "S H D"], Float[Array, "S H2 H"], Float[Array, "S H2"]]:
    """Node-pruned first two layers `(W1', W2', b2')` for a batch of masks; removed rows / columns are zero.
    `layers`: `[(W1, b1), (W2, b2), ...]`; `reweight="ls"` fuses ([`fuse_nodes`][], needs `acts`)."""
    check_choice("reweight", reweight, REWEIGHTS)
    (W1, _), (W2, b2) = layers[0], layers[1]
    masks = jnp.asarray(masks, bool)
    W1s = jnp.where(masks[:, :, None], W1[None], 0.0)
    if reweight == "none":
        return W1s, jnp.where(masks[:, None, :], W2[None], 0.0), jnp.broadcast_to(b2, (masks.shape[0],) + b2.shape)
    if acts is None:
        raise ValueError("acts (training-set activations) are required for reweight='ls'")
    W2s, b2s = fuse_nodes(W2, b2, acts, masks, ridge=ridge, gram=gram)
    return W1s, W2s, b2s


# --------------------------------------------------------------------------------------------------
# Parameter counts
# --------------------------------------------------------------------------------------------------


def first_layer_params(H: int, D: int, *, k: int | None = None, c: int | None = None) -> int:
    """First-layer parameters kept (weights + biases): node pruning to `k` units keeps `k (D + 1)`; edge
    pruning keeping `c` weights per unit keeps `H c + H`; neither given: `H (D + 1)`."""
    H = check_int("H", H, 1)
    D = check_int("D", D, 1)
    if k is not None and c is not None:
        raise ValueError("give k (node pruning) or c (edge pruning), not both")
    if k is not None:
        return check_int("k", k, 1, H) * (D + 1)
    if c is not None:
        return H * check_int("c", c, 0, D) + H
    return H * (D + 1)


def edge_count(H: int, D: int, k: int) -> int:
    """Per-unit edge count matched to node pruning to `k` units: `c = round(p D)`,
    `p = (k (D + 1) - H) / (H D)` (`matched_keep_fraction(rule="seed-paper")`), at least 1, at most `D`."""
    try:
        p = matched_keep_fraction(H, D, k, rule="seed-paper")
    except ValueError:
        return 1
    return int(max(1, min(D, math.floor(p * D + 0.5))))


# --------------------------------------------------------------------------------------------------
# Edge pruning
# --------------------------------------------------------------------------------------------------


def edge_masks(
    key: PRNGKeyArray,
    method: str,
    c: int,
    num_masks: int,
    *,
    W: Float[ArrayLike, "H D"],
    x: Float[ArrayLike, "P D"] | None = None,
    jitter: float = 1e-6,
    eig: KDPPEigen | None = None,
    design_steps: int = 300,
) -> Bool[Array, "S H D"]:
    """`num_masks` edge masks keeping exactly `c` incoming weights of every unit (deterministic methods: one).

    `W`: first-layer weights; `x`: training inputs (for `dpp` without `eig`, and `designed`); `eig`: a
    precomputed [`edge_dpp_eigen`][] (reuse it across budgets and masks).
    """
    check_choice("edge method", method, EDGE_METHODS)
    W = jnp.asarray(W)
    H, D = W.shape
    c = check_int("c", c, 1, D)
    num_masks = check_int("num_masks", num_masks, 1)
    p = c / D  # random_edge_mask / magnitude_edge_mask keep floor(p D + 1/2) = c per unit
    if method == "random":
        return jax.vmap(lambda kk: random_edge_mask(kk, W, p))(jax.random.split(key, num_masks))
    if method == "magnitude":
        return magnitude_edge_mask(W, p)[None]
    if x is None and (method == "designed" or eig is None):
        raise ValueError(f"x (training inputs) is required for edge method {method!r}")
    if method == "designed":
        return surrogate_edge_mask(W, x, c, steps=design_steps)[None]
    if eig is None:
        eig = edge_dpp_eigen(W, x, jitter=jitter)
    # Chunks of units bound the sampler's working set (a k x D basis per unit and mask) for D ~ 1e3.
    chunk = max(1, min(H, (1 << 27) // (8 * D * D * num_masks)))
    parts = [
        sample_kdpp_masks(jax.random.fold_in(key, s), jax.tree.map(lambda a: a[s : s + chunk], eig), c, num_masks)
        for s in range(0, H, chunk)
    ]
    return jnp.concatenate(parts, axis=1)


def prune_edges_network(
    layers: Layers,
    masks: Bool[ArrayLike, "S H D"],
    reweight: str,
    *,
    x: Float[ArrayLike, "P D"] | None = None,
    ridge: float = 1e-6,
) -> tuple[Float[Array, "S H D"], Float[Array, "S H2 H"], Float[Array, "S H2"]]:
    """Edge-pruned first layer for a batch of masks, next layer unchanged: `(W1', W2', b2')`;
    `reweight="ls"` refits the kept weights ([`jaxprune.pruning.reweight_edges`][] on the training inputs `x`)."""
    check_choice("reweight", reweight, REWEIGHTS)
    ridge = check_float("ridge", ridge, 0.0, lo_open=True)
    (W1, _), (W2, b2) = layers[0], layers[1]
    masks = jnp.asarray(masks, bool)
    S = masks.shape[0]
    if reweight == "none":
        W1s = jnp.where(masks, W1[None], 0.0)
    else:
        if x is None:
            raise ValueError("x (training inputs) is required for reweight='ls'")
        x = jnp.asarray(x, W1.dtype)
        W1s = jnp.stack([reweight_edges(W1, m, x, ridge=ridge) for m in masks])
    return W1s, jnp.broadcast_to(W2, (S,) + W2.shape), jnp.broadcast_to(b2, (S,) + b2.shape)
