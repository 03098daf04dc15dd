"""Pruning the first hidden layer of a trained MLP (`H` units, `D` inputs) by every node and edge method, with
or without least-squares reweighting, at matched first-layer parameter counts (docs/theory.md, sections 6.1,
6.2 and 6.3, last item: the seed paper's real-data protocol, no fine-tuning).

**Node pruning** keeps `k` units (boolean mask `m`, length `H`); a removed unit's first-layer row and its
column of the next layer `W2` are zeroed. Selectors ([`node_masks`][]; objects, or the names of
[`realdata_option`][]): `RandomNodes` / `random` (uniform over the `C(H, k)` subsets), `ImportanceNodes` /
`importance` (the `k` largest [`data_importance_scores`][]), `DPPNodes(kernel="rbf")` / `dpp-rbf` (DIVNET) and
`DPPNodes(kernel="A")` / `dpp-linear` (k-DPPs with the kernels of [`data_node_kernel`][]), [`DesignedNodes`][] /
`designed` ([`surrogate_node_mask`][]).

Reweighting `ActivationReweight` / `ls` of nodes ([`fuse_nodes`][], the fusing step of Mariet & Sra): with
`a~ = [a, 1]` and `W~2 = [W2, b2]`, the next layer of the kept units and its bias are refit by ridge least
squares so that the kept units reproduce the FULL layer's next pre-activations on the training set,
`V = argmin (1/P) ||A~_S V - A~ W~2^T||^2 + lam ||V||^2`, i.e. `W2'[:, S] = W2[:, S] + W2[:, Sc] G~_{Sc,S}
G~_{S,S}^{-1}` (constant column inside `S`), `lam = ridge tr(G~) / (H + 1)`, `G~ = A~^T A~ / P`. This is the
data version of the `activation` rule of docs/theory.md 6.1 (`jaxprune.pruning.reweighted_output_weights`),
with `H2` outputs, a bias and the sample (uncentred) Gram matrix in place of `A = I2`.

**Edge pruning** keeps `c` incoming weights of every unit (all `H` biases kept). Rules ([`edge_masks`][]):
`RandomEdges` / `random` and `MagnitudeEdges` / `magnitude` ([`jaxprune.pruning.random_edge_mask`][],
[`jaxprune.pruning.magnitude_edge_mask`][]), `DPPEdges` / `dpp` (per-unit k-DPP with the seed paper's data
kernel, [`edge_dpp_eigen`][]), [`DesignedEdges`][] / `designed` ([`surrogate_edge_mask`][]). Reweighting
[`RefitEdges`][] / `ls`: [`jaxprune.pruning.reweight_edges`][] (each unit's kept incoming
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

import equinox as eqx

from .._checks import check_float, check_int
from ..pruning import (
    DPPNodes,
    ImportanceNodes,
    KDPPEigen,
    MagnitudeEdges,
    NoRescale,
    NoReweight,
    RandomEdges,
    RandomNodes,
    kdpp_eigen,
    magnitude_edge_mask,
    matched_keep_fraction,
    random_edge_mask,
    reweight_edges,
    top_k_mask,
)
from ._kernels import data_importance_scores, data_node_kernel, edge_dpp_eigen, sample_kdpp_masks
from ._options import DesignedEdges, DesignedNodes, realdata_option
from ._surrogate import surrogate_edge_mask, surrogate_node_mask

__all__ = [
    "node_masks",
    "fuse_nodes",
    "augmented_gram",
    "prune_nodes_network",
    "first_layer_params",
    "edge_count",
    "edge_masks",
    "prune_edges_network",
]

Layers = Sequence[tuple[Array, Array]]


# --------------------------------------------------------------------------------------------------
# Node pruning
# --------------------------------------------------------------------------------------------------


def node_masks(
    key: PRNGKeyArray,
    method: str | eqx.Module,
    k: int,
    num_masks: int,
    *,
    acts: Float[ArrayLike, "P H"],
    W2: Float[ArrayLike, "H2 _H"],
    beta: float = 1.0,
    jitter: float = 1e-6,
    eig: KDPPEigen | None = None,
    design_steps: int = 300,
) -> Bool[Array, "S H"]:
    """Node masks keeping exactly `k` of the layer's `H` units (docs/theory.md 6.1, on data).

    **Arguments:**

    - `key`: PRNG key of the random draws.
    - `method`: the node selector: [`jaxprune.pruning.RandomNodes`][] (uniform over the `C(H, k)` subsets),
      [`jaxprune.pruning.ImportanceNodes`][] (the `k` largest [`data_importance_scores`][]),
      [`jaxprune.pruning.DPPNodes`][] (k-DPP with the kernel of [`data_node_kernel`][]: `rbf` is DIVNET, `A`
      the linear kernel), [`DesignedNodes`][] ([`surrogate_node_mask`][]), or a name of [`NODE_METHODS`][]
      (mapped by [`realdata_option`][]).
    - `k`: units kept, `1 <= k <= H`.
    - `num_masks`: masks drawn by a randomised method (`>= 1`); deterministic methods return one mask.
    - `acts`: training-set activations of the layer, shape `(P, H)`.
    - `W2`: the next layer's weights, shape `(H2, H)`.
    - `beta`, `jitter`, `design_steps`: options of the names `dpp-rbf`, `dpp-linear` and `designed` (an object
      carries its own).
    - `eig`: a precomputed [`jaxprune.pruning.kdpp_eigen`][] of a `DPPNodes` kernel (computed here when `None`;
      reuse it across budgets).

    **Returns:** boolean masks of shape `(S, H)` with `k` entries `True` each; `S = num_masks` for random and
    DPP selectors, `S = 1` otherwise.
    """
    method = realdata_option("node", method, beta=beta, jitter=jitter, design_steps=design_steps)
    acts = jnp.asarray(acts)
    H = acts.shape[1]
    k = check_int("k", k, 1, H)
    num_masks = check_int("num_masks", num_masks, 1)
    if isinstance(method, RandomNodes):
        return top_k_mask(jax.random.uniform(key, (num_masks, H)), jnp.full((num_masks,), k))
    if isinstance(method, ImportanceNodes):
        return top_k_mask(data_importance_scores(acts, W2), k)[None]
    if isinstance(method, DesignedNodes):
        return surrogate_node_mask(acts, W2, k, steps=method.steps, learning_rate=method.learning_rate)[None]
    assert isinstance(method, DPPNodes)
    if eig is None:
        eig = kdpp_eigen(data_node_kernel(acts, method))
    return sample_kdpp_masks(key, eig, k, num_masks)


def augmented_gram(acts: Float[ArrayLike, "P H"]) -> Float[Array, "H+1 H+1"]:
    """The augmented Gram matrix `G~ = A~^T A~ / P`, `A~ = [A, 1]`, of [`fuse_nodes`][] (compute it once per
    network and pass it as `gram`).

    **Arguments:**

    - `acts`: training-set activations `A`, shape `(P, H)`.

    **Returns:** `G~`, shape `(H + 1, H + 1)`, symmetric positive semidefinite; the last row and column hold the
    activation means and `1`.
    """
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
    acts: Float[ArrayLike, "P _H"],
    mask: Bool[ArrayLike, "... _H"],
    *,
    ridge: float = 1e-6,
    gram: Float[ArrayLike, "H+1 H+1"] | None = None,
) -> tuple[Float[Array, "... H2 H"], Float[Array, "... H2"]]:
    """Least-squares fusing (Mariet & Sra; the data version of the `activation` rule, docs/theory.md 6.1): the
    next layer of the kept units and its bias refit so that `[A_S, 1] V` reproduces the full `A W2^T + b2` on the
    training set; removed columns become zero.

    `V = (D G~ D + lam I)^{-1} D G~ [W2, b2]^T`, `D = diag([m, 1])`, `G~ = [A,1]^T [A,1] / P`,
    `lam = ridge tr(G~) / (H + 1)`.

    **Arguments:**

    - `W2`: the next layer's weights, shape `(H2, H)`.
    - `b2`: the next layer's biases, shape `(H2,)`.
    - `acts`: training-set activations of the layer, shape `(P, H)`.
    - `mask`: node mask(s), shape `(..., H)`; leading axes are a batch.
    - `ridge`: ridge `> 0`, relative to the mean diagonal of `G~` (default `1e-6`).
    - `gram`: a precomputed [`augmented_gram`][] of `acts` (optional; reuse it across masks).

    **Returns:** `(W2', b2')` of shapes `(..., H2, H)` and `(..., H2)`.
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
    reweight: str | eqx.Module,
    *,
    acts: Float[ArrayLike, "P _H"] | None = None,
    ridge: float = 1e-6,
    gram: Float[ArrayLike, "H+1 H+1"] | None = None,
) -> tuple[Float[Array, "S H D"], Float[Array, "S H2 H"], Float[Array, "S H2"]]:
    """Node-pruned first two layers for a batch of masks: removed units' rows of `W1` and columns of `W2` are
    zero (docs/theory.md 6.1 and 6.3).

    **Arguments:**

    - `layers`: the network's layers `[(W1, b1), (W2, b2), ...]`, `W1` of shape `(H, D)`, `W2` `(H2, H)`.
    - `masks`: node masks, shape `(S, H)`.
    - `reweight`: [`jaxprune.pruning.NoReweight`][] (`"none"`: the kept columns of `W2` unchanged) or
      [`jaxprune.pruning.ActivationReweight`][] (`"ls"`: least-squares fusing, [`fuse_nodes`][]).
    - `acts`: training-set activations `(P, H)`, required for fusing.
    - `ridge`: relative ridge `> 0` of fusing.
    - `gram`: a precomputed [`augmented_gram`][] of `acts` (optional).

    **Returns:** `(W1', W2', b2')` of shapes `(S, H, D)`, `(S, H2, H)`, `(S, H2)`.
    """
    reweight = realdata_option("node-reweight", reweight)
    (W1, _), (W2, b2) = layers[0], layers[1]
    masks = jnp.asarray(masks, bool)
    W1s = jnp.where(masks[:, :, None], W1[None], 0.0)
    if isinstance(reweight, NoReweight):
        return W1s, jnp.where(masks[:, None, :], W2[None], 0.0), jnp.broadcast_to(b2, (masks.shape[0],) + b2.shape)
    if acts is None:
        raise ValueError("acts (training-set activations) are required for reweight='ls'")
    W2s, b2s = fuse_nodes(W2, b2, acts, masks, ridge=ridge, gram=gram)
    return W1s, W2s, b2s


# --------------------------------------------------------------------------------------------------
# Parameter counts
# --------------------------------------------------------------------------------------------------


def first_layer_params(H: int, D: int, *, k: int | None = None, c: int | None = None) -> int:
    """First-layer parameters kept, weights plus biases (the seed paper's count, docs/theory.md 6.3).

    **Arguments:**

    - `H`: hidden units, `>= 1`.
    - `D`: inputs, `>= 1`.
    - `k`: units kept by node pruning, `1 <= k <= H` (not with `c`).
    - `c`: weights kept per unit by edge pruning, `0 <= c <= D` (not with `k`).

    **Returns:** `k (D + 1)` for node pruning, `H c + H` for edge pruning, `H (D + 1)` when neither is given.
    """
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
    """The per-unit edge count matched to node pruning to `k` units (docs/theory.md 6.3): `c = round(p D)` with
    `p = (k (D + 1) - H) / (H D)` ([`jaxprune.pruning.matched_keep_fraction`][], `rule="seed-paper"`).

    **Arguments:**

    - `H`: hidden units.
    - `D`: inputs.
    - `k`: units kept by the matched node pruning, `1 <= k <= H`.

    **Returns:** `c`, an integer in `[1, D]` (1 where the node budget is below one weight per unit).
    """
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
    method: str | eqx.Module,
    c: int,
    num_masks: int,
    *,
    W: Float[ArrayLike, "H D"],
    x: Float[ArrayLike, "P _D"] | None = None,
    jitter: float = 1e-6,
    eig: KDPPEigen | None = None,
    design_steps: int = 300,
) -> Bool[Array, "S H D"]:
    """Edge masks keeping exactly `c` incoming weights of every unit (docs/theory.md 6.2, on data).

    **Arguments:**

    - `key`: PRNG key of the random draws.
    - `method`: the edge rule: [`jaxprune.pruning.RandomEdges`][] (`c` uniform weights per unit),
      [`jaxprune.pruning.MagnitudeEdges`][] (the `c` largest `|w_ij|`), [`jaxprune.pruning.DPPEdges`][] (per-unit
      k-DPP with the seed paper's data kernel, [`edge_dpp_eigen`][]), [`DesignedEdges`][]
      ([`surrogate_edge_mask`][]), or a name of [`EDGE_METHODS`][] (mapped by [`realdata_option`][]).
    - `c`: weights kept per unit, `1 <= c <= D`.
    - `num_masks`: masks drawn by a randomised rule (`>= 1`); deterministic rules return one mask.
    - `W`: first-layer weights, shape `(H, D)`.
    - `x`: training inputs, shape `(P, D)`; required by `DPPEdges` without `eig` and by `DesignedEdges`.
    - `jitter`: relative jitter `>= 0` of the edge kernels (when `eig` is computed here).
    - `eig`: a precomputed [`edge_dpp_eigen`][] (reuse it across budgets and masks).
    - `design_steps`: descent steps of the name `designed` (a `DesignedEdges` carries its own).

    **Returns:** boolean masks of shape `(S, H, D)` with `c` entries `True` in every row; `S = num_masks` for
    random and DPP rules, `S = 1` otherwise.
    """
    method = realdata_option("edge", method, design_steps=design_steps)
    W = jnp.asarray(W)
    H, D = W.shape
    c = check_int("c", c, 1, D)
    num_masks = check_int("num_masks", num_masks, 1)
    p = c / D  # random_edge_mask / magnitude_edge_mask keep floor(p D + 1/2) = c per unit
    if isinstance(method, RandomEdges):
        return jax.vmap(lambda kk: random_edge_mask(kk, W, p))(jax.random.split(key, num_masks))
    if isinstance(method, MagnitudeEdges):
        return magnitude_edge_mask(W, p)[None]
    if x is None and (isinstance(method, DesignedEdges) or eig is None):
        raise ValueError(f"x (training inputs) is required for edge method {method.name!r}")
    if isinstance(method, DesignedEdges):
        return surrogate_edge_mask(W, x, c, steps=method.steps, learning_rate=method.learning_rate)[None]
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
    reweight: str | eqx.Module,
    *,
    x: Float[ArrayLike, "P _D"] | None = None,
    ridge: float = 1e-6,
) -> tuple[Float[Array, "S H D"], Float[Array, "S H2 H"], Float[Array, "S H2"]]:
    """Edge-pruned first layer for a batch of masks, the next layer unchanged (docs/theory.md 6.2 and 6.3).

    **Arguments:**

    - `layers`: the network's layers `[(W1, b1), (W2, b2), ...]`, `W1` of shape `(H, D)`, `W2` `(H2, H)`.
    - `masks`: edge masks, shape `(S, H, D)`.
    - `reweight`: [`jaxprune.pruning.NoRescale`][] (`"none"`: kept weights unchanged) or [`RefitEdges`][]
      (`"ls"`: each unit's kept weights refit by [`jaxprune.pruning.reweight_edges`][] on `x`).
    - `x`: training inputs `(P, D)`, required for `RefitEdges`.
    - `ridge`: relative ridge `> 0` of the refit.

    **Returns:** `(W1', W2', b2')` of shapes `(S, H, D)`, `(S, H2, H)`, `(S, H2)` (the last two the unchanged
    `W2`, `b2` repeated).
    """
    reweight = realdata_option("edge-reweight", reweight)
    ridge = check_float("ridge", ridge, 0.0, lo_open=True)
    (W1, _), (W2, b2) = layers[0], layers[1]
    masks = jnp.asarray(masks, bool)
    S = masks.shape[0]
    if isinstance(reweight, NoRescale):
        W1s = jnp.where(masks, W1[None], 0.0)
    else:
        if x is None:
            raise ValueError("x (training inputs) is required for reweight='ls'")
        x = jnp.asarray(x, W1.dtype)
        W1s = jnp.stack([reweight_edges(W1, m, x, ridge=ridge) for m in masks])
    return W1s, jnp.broadcast_to(W2, (S,) + W2.shape), jnp.broadcast_to(b2, (S,) + b2.shape)
