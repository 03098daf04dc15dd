"""Pruning the first hidden layer of MLPs trained on real data, with every method (docs/theory.md 6.3, last item).

The seed paper checks its teacher-student claims on MNIST and CIFAR-10: train an MLP, prune its FIRST hidden
layer (`H` units, `D` inputs) without fine-tuning, and compare test errors at equal parameter counts. This
module does that for every node and edge method of the package, on any [`Dataset`][]:

**Node pruning** keeps `k = round(f H)` units (boolean mask `m`, length `H`); a removed unit's first-layer
row and its column of the next layer `W2` are zeroed. Selectors:

- `random`: uniform over the `C(H, k)` subsets.
- `importance`: the `k` largest `s_i = ||W2[:, i]||_2 std_mu(a_mu,i)` (outgoing weight norm times the
  unit's activation standard deviation on the training set: the size of its contribution to the next layer).
- `dpp-rbf` (DIVNET, Mariet & Sra 2016): k-DPP with `L_ij = exp(-beta d_ij / dbar)`,
  `d_ij = ||a_i - a_j||^2 / P` over the `P` training examples and `dbar` the mean of `d_ij` over `i != j`
  (so `beta` is dimensionless), plus `jitter * mean(diag L) I`.
- `dpp-linear`: k-DPP with `L = A^T A / P` (uncentred activations), plus the same relative jitter.
- `designed`: a relaxed mask `m in [0,1]^H`, `sum m = k`, optimised by projected heavy-ball descent (optax
  SGD, projection onto the capped simplex of `jaxprune._design`) against the exact quadratic training error
  of the next layer's pre-activations without reweighting,
  `E(m) = (1/P) sum_mu ||W2 diag(1 - m) a_mu||^2 = (1-m)^T Qn (1-m)`, `Qn = (W2^T W2) o (A^T A / P)`,
  averaged over independent Bernoulli(`m`) masks (adds `sum_i Qn_ii m_i (1 - m_i)`: exact at 0/1 masks and
  a penalty on fractional ones, without which rounding loses the optimum), then rounded to the `k` largest.

Reweighting `ls` (the fusing step of Mariet & Sra): with `a~ = [a, 1]` and `W~2 = [W2, b2]`, the next layer
of the kept units (and its bias, absorbing means) is refit by ridge least squares so that the kept units
reproduce the FULL layer's next pre-activations on the training set,
`V = argmin (1/P) ||A~_S V - A~ W~2^T||^2 + lam ||V||^2`, i.e.
`W2'[:, S] = W2[:, S] + W2[:, Sc] A~_{Sc,S} A~_{S,S}^{-1}` (with the constant column inside `S`),
`lam = ridge * tr(G~) / (H + 1)`, `G~ = A~^T A~ / P`.

**Edge pruning** keeps `c` incoming weights of every unit (all `H` biases kept). Selectors (from
`jaxprune._edge` where they exist): `random` (uniform `c` of `D` per unit), `magnitude` (per-unit top-`c`
`|w_ij|`), `dpp` (per-unit k-DPP with the seed paper's data kernel `L^(i) = diag(w_i) (X^T X / P) diag(w_i)`
+ `jitter * mean(diag L^(i)) I`, each unit's kernel eigendecomposed ONCE per network and reused for every
budget and mask), `designed` (the same relaxation per unit against the unit's exact pre-activation error
`(1-m_i)^T L^(i) (1-m_i)`, Bernoulli-averaged, rounded to the top `c`). Reweighting `ls`: `jaxprune._edge.reweight_edges`
(each unit's kept incoming weights refit to reproduce its pre-activations on the training inputs).

**Parameter matching** (the seed paper's rule, `jaxprune._edge.matched_keep_fraction(rule="seed-paper")`):
first-layer parameters are weights plus biases, `H (D + 1)` in all. Node pruning to `k` units keeps
`k (D + 1)`; the matched edge budget keeps the same count spread over all `H` units, `H c + H = k (D + 1)`,
with the per-unit count rounded, `c = round((k (D + 1) - H) / H)` (at least 1). Every result records the
exact count kept. Budgets are fractions `f` of `H (D + 1)`.

Test errors are classification error rates on the test split, as mean and standard deviation over training
seeds and masks. Results are written atomically per (seed, method) under the output folder and reused when
their configuration matches, so a rerun only computes what is missing.

References: Acharyya et al., "Statistical Mechanical Analysis of Neural Network Pruning", UAI 2021;
Mariet & Sra, "Diversity Networks", ICLR 2016; Kulesza & Taskar 2012 (k-DPP sampling).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from ..realdata._data import Dataset, load_dataset
from ..pruning._dpp import KDPPEigen, kdpp_eigen
from ..pruning._edge import magnitude_edge_mask, matched_keep_fraction, random_edge_mask, reweight_edges
from .._io import atomic_write_json, atomic_write_text
from ..realdata._mlp import MLP, TrainConfig, first_layer, preset_sizes, train_or_load

__all__ = [
    "NODE_METHODS",
    "EDGE_METHODS",
    "REWEIGHTS",
    "DEFAULT_BUDGETS",
    "node_kernel",
    "importance_scores",
    "node_masks",
    "fuse_nodes",
    "prune_nodes_network",
    "edge_count",
    "edge_dpp_eigen",
    "sample_kdpp_masks",
    "edge_masks",
    "prune_edges_network",
    "surrogate_node_mask",
    "surrogate_edge_mask",
    "first_layer_params",
    "masked_test_errors",
    "RealDataResult",
    "run_realdata",
    "summarise",
    "realdata_verdicts",
    "format_table",
    "plot_realdata",
]

NODE_METHODS: tuple[str, ...] = ("random", "importance", "dpp-rbf", "dpp-linear", "designed")
EDGE_METHODS: tuple[str, ...] = ("random", "magnitude", "dpp", "designed")
REWEIGHTS: tuple[str, ...] = ("none", "ls")
DEFAULT_BUDGETS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_RANDOMISED = {("node", "random"), ("node", "dpp-rbf"), ("node", "dpp-linear"), ("edge", "random"), ("edge", "dpp")}
_FORMAT_VERSION = 1

# Mutable counter of (seed, method) units computed (not reused) in this process: tests read it.
COMPUTE_COUNT = [0]


def _work_dtype():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _g(activation: str) -> Callable[[Array], Array]:
    from ..realdata._mlp import _ACTIVATIONS

    return _ACTIVATIONS[activation]


def _check_budgets(budgets) -> tuple[float, ...]:
    out = tuple(float(b) for b in np.atleast_1d(np.asarray(budgets, dtype=float)))
    if not out:
        raise ValueError("budgets must list at least one fraction in (0, 1], got none.")
    for b in out:
        if not (math.isfinite(b) and 0 < b <= 1):
            raise ValueError(f"budgets must be fractions in (0, 1] of the first layer's parameters, got {b}.")
    return out


def _check_method(kind: str, method: str) -> None:
    allowed = NODE_METHODS if kind == "node" else EDGE_METHODS
    if kind not in ("node", "edge"):
        raise ValueError(f"kind must be 'node' or 'edge', got {kind!r}.")
    if method not in allowed:
        raise ValueError(f"Unknown {kind} method {method!r}; allowed: {', '.join(allowed)}.")


def _check_reweight(reweight: str) -> None:
    if reweight not in REWEIGHTS:
        raise ValueError(f"reweight must be one of {', '.join(REWEIGHTS)}, got {reweight!r}.")


# --------------------------------------------------------------------------------------------------
# k-DPP sampling with a traced size (one compilation for every budget)
# --------------------------------------------------------------------------------------------------


def _log_esp_full(log_lam: Float[Array, " K"]) -> Float[Array, "K+1 K+1"]:
    """`T[n, j] = log e_j(lambda_1..lambda_n)` for all `0 <= n, j <= K` (recursion over eigenvalues)."""
    K = log_lam.shape[0]
    row0 = jnp.full((K + 1,), -jnp.inf, log_lam.dtype).at[0].set(0.0)

    def step(prev, ll):
        shifted = jnp.concatenate([jnp.full((1,), -jnp.inf, prev.dtype), prev[:-1]])
        new = jnp.logaddexp(prev, ll + shifted)
        return new, new

    _, rows = jax.lax.scan(step, row0, log_lam)
    return jnp.concatenate([row0[None], rows])


def _kdpp_mask_one(
    key: PRNGKeyArray, lam: Float[Array, " K"], vec: Float[Array, "K K"], T: Float[Array, "K+1 K+1"],
    k: Int[Array, ""], cap: int,
) -> Bool[Array, " K"]:
    """One exact k-DPP sample with `k` a traced integer (Kulesza & Taskar 2012, Alg. 8).

    Phase 1 keeps eigenvector `n` (backwards from `n = K`, `r` still to choose) with probability
    `lambda_n e_{r-1}(lambda_1..lambda_{n-1}) / e_r(lambda_1..lambda_n)`; phase 2 samples the projection DPP
    with marginal kernel `K_J = V_J V_J^T` item by item, `P(i | C) prop. to K_ii - K_iC K_CC^{-1} K_Ci`, the
    conditional variances kept by an incremental Cholesky factor (`k` steps of `O(K cap)`; the selected
    eigenvectors are moved to the first `cap >= k` columns, `cap` static)."""
    K = lam.shape[0]
    dtype = lam.dtype
    k1, k2 = jax.random.split(key)
    log_lam = jnp.log(jnp.maximum(lam, jnp.finfo(dtype).tiny))
    u1 = jax.random.uniform(k1, (K,), dtype)

    def select(r, xs):
        n, u = xs  # n = K-1 .. 0 (eigenvalue index), uses rows n and n+1 of T
        logp = log_lam[n] + T[n, jnp.maximum(r - 1, 0)] - T[n + 1, r]
        take = (r > 0) & (jnp.log(u) < logp)
        return r - take.astype(r.dtype), take

    _, taken = jax.lax.scan(select, jnp.asarray(k, jnp.int32), (jnp.arange(K - 1, -1, -1), u1[::-1]))
    sel = taken[::-1].astype(dtype)
    order = jnp.argsort(1.0 - sel, stable=True)[:cap]  # selected eigenvectors first
    vs = (vec * sel[None, :])[:, order]  # V_J padded with zero columns; K_J = V_J V_J^T is never formed
    u2 = jax.random.uniform(k2, (K,), dtype)

    def body(t, carry):
        d, C, mask = carry
        w = jnp.where(mask, 0.0, jnp.maximum(d, 0.0))
        cdf = jnp.cumsum(w)
        i = jnp.argmax(cdf > u2[t] * cdf[-1])
        col = (vs @ vs[i] - C @ C[i]) / jnp.sqrt(jnp.maximum(w[i], jnp.finfo(dtype).tiny))
        C = C.at[:, t].set(col)
        return d - col * col, C, mask.at[i].set(True)

    init = (jnp.sum(vs * vs, axis=1), jnp.zeros((K, cap), dtype), jnp.zeros((K,), bool))
    _, _, mask = jax.lax.fori_loop(0, jnp.asarray(k, jnp.int32), body, init)
    return mask


@functools.partial(jax.jit, static_argnames=("cap",))
def _kdpp_masks(
    keys: PRNGKeyArray, lam: Float[Array, "U K"], vec: Float[Array, "U K K"], k: Int[Array, " U"], cap: int
) -> Bool[Array, "S U K"]:
    """Masks `(S, U, K)`: for every key and every one of `U` kernels (eigendecomposed once), an exact
    `k_u`-DPP sample; sizes are traced, so one compilation serves every budget below `cap`."""
    U = lam.shape[0]
    # Elementary symmetric polynomial tables, once per kernel (shared by all keys).
    T = jax.vmap(lambda l: _log_esp_full(jnp.log(jnp.maximum(l, jnp.finfo(l.dtype).tiny))))(lam)

    def one(key):
        unit_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(U))
        return jax.vmap(lambda *a: _kdpp_mask_one(*a, cap))(unit_keys, lam, vec, T, k)

    return jax.lax.map(one, keys)


def sample_kdpp_masks(
    key: PRNGKeyArray, eig: KDPPEigen, k: Int[ArrayLike, "..."], num_masks: int
) -> Bool[Array, "S ... K"]:
    """`num_masks` exact k-DPP samples as boolean masks from a precomputed (optionally batched over a leading
    unit axis) [`KDPPEigen`][]; `k` a scalar or one size per unit, traced (no recompilation across sizes)."""
    lam, vec = eig.eigenvalues, eig.eigenvectors
    batched = lam.ndim == 2
    lam2, vec2 = (lam, vec) if batched else (lam[None], vec[None])
    U, K = lam2.shape
    k = jnp.broadcast_to(jnp.asarray(k, jnp.int32), (U,))
    kc = np.asarray(k)
    if np.any(kc < 0) or np.any(kc > K):
        raise ValueError(f"k must satisfy 0 <= k <= K={K}, got {np.unique(kc).tolist()}.")
    # Work arrays have `cap` columns: `K` for small ground sets (one compilation for all sizes), else the
    # next multiple of `K / 4` above the largest size (at most four compilations, 4x less work at small k).
    q = K if K <= 256 else -(-K // 4)
    cap = int(min(K, q * max(1, -(-int(kc.max()) // q))))
    out = _kdpp_masks(jax.random.split(key, int(num_masks)), lam2, vec2, k, cap)
    return out if batched else out[:, 0]


# --------------------------------------------------------------------------------------------------
# Node pruning
# --------------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("kind",))
def _node_kernel(acts, beta, jitter, kind):
    P, H = acts.shape
    if kind == "linear":
        L = acts.T @ acts / P
    else:
        sq = jnp.sum(acts * acts, axis=0)
        d = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * (acts.T @ acts), 0.0) / P
        off = 1.0 - jnp.eye(H, dtype=acts.dtype)
        dbar = jnp.sum(d * off) / jnp.maximum(H * (H - 1), 1)
        L = jnp.exp(-beta * d / jnp.where(dbar > 0, dbar, 1.0))
    return L + jitter * jnp.mean(jnp.diag(L)) * jnp.eye(H, dtype=acts.dtype)


def node_kernel(
    acts: Float[ArrayLike, "P H"], kind: str = "rbf", *, beta: float = 1.0, jitter: float = 1e-6
) -> Float[Array, "H H"]:
    """DPP kernel over hidden units from their training-set activations `A` (`P x H`).

    `kind="rbf"`: `L_ij = exp(-beta d_ij / dbar)`, `d_ij = ||a_i - a_j||^2 / P`, `dbar = mean_{i!=j} d_ij`;
    `kind="linear"`: `L = A^T A / P`. Both plus `jitter * mean(diag L) I`. References: Mariet & Sra 2016.
    """
    if kind not in ("rbf", "linear"):
        raise ValueError(f"kind must be 'rbf' or 'linear', got {kind!r}.")
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}.")
    if not (math.isfinite(jitter) and jitter >= 0):
        raise ValueError(f"jitter must be a finite number >= 0, got {jitter!r}.")
    acts = jnp.asarray(acts)
    return _node_kernel(acts, jnp.asarray(beta, acts.dtype), jnp.asarray(jitter, acts.dtype), kind)


def importance_scores(acts: Float[ArrayLike, "P H"], W2: Float[ArrayLike, "H2 H"]) -> Float[Array, " H"]:
    """`s_i = ||W2[:, i]||_2 * std_mu(a_mu,i)`: the size of unit `i`'s contribution to the next layer."""
    acts = jnp.asarray(acts)
    W2 = jnp.asarray(W2, acts.dtype)
    return jnp.linalg.norm(W2, axis=0) * jnp.std(acts, axis=0)


def _top_k_mask(scores: Float[Array, "... n"], k) -> Bool[Array, "... n"]:
    """Keep the `k` largest scores along the last axis (ties by index); `k` may be an array (no recompiles)."""
    order = jnp.argsort(-scores, axis=-1, stable=True)
    ranks = jnp.argsort(order, axis=-1)
    return ranks < jnp.asarray(k)[..., None] if jnp.ndim(k) else ranks < k


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
    eig=None,
    design_steps: int = 300,
) -> Bool[Array, "S H"]:
    """`num_masks` node masks keeping exactly `k` of `H` units (deterministic methods return one mask).

    `eig`: a precomputed `kdpp_eigen` of the method's kernel (computed here when `None`).
    """
    _check_method("node", method)
    acts = jnp.asarray(acts)
    H = acts.shape[1]
    if not (1 <= int(k) <= H):
        raise ValueError(f"k must satisfy 1 <= k <= H={H}, got {k}.")
    k = int(k)
    if method == "random":
        return _top_k_mask(jax.random.uniform(key, (int(num_masks), H)), jnp.full((int(num_masks),), k))
    if method == "importance":
        return _top_k_mask(importance_scores(acts, W2), k)[None]
    if method == "designed":
        return surrogate_node_mask(acts, W2, k, steps=design_steps)[None]
    if eig is None:
        eig = kdpp_eigen(node_kernel(acts, method.removeprefix("dpp-"), beta=beta, jitter=jitter))
    return sample_kdpp_masks(key, eig, k, int(num_masks))


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


def _augmented_gram(acts: Float[Array, "P H"]) -> Float[Array, "H+1 H+1"]:
    """`G~ = A~^T A~ / P` with `A~ = [A, 1]`."""
    P = acts.shape[0]
    aug = jnp.concatenate([acts, jnp.ones((P, 1), acts.dtype)], axis=1)
    return aug.T @ aug / P


def fuse_nodes(
    W2: Float[ArrayLike, "H2 H"],
    b2: Float[ArrayLike, " H2"],
    acts: Float[ArrayLike, "P H"],
    mask: Bool[ArrayLike, "... H"],
    *,
    ridge: float = 1e-6,
    gram: Float[ArrayLike, "H+1 H+1"] | None = None,
) -> tuple[Float[Array, "... H2 H"], Float[Array, "... H2"]]:
    """Least-squares fusing (Mariet & Sra): next-layer weights of the kept units and the bias refit so that
    `[A_S, 1] V` reproduces the full `A W2^T + b2` on the training set; removed columns become zero.

    `V = (D G~ D + lam I)^{-1} D G~ [W2, b2]^T`, `D = diag([m, 1])`, `G~ = [A,1]^T [A,1] / P`,
    `lam = ridge tr(G~) / (H + 1)`; i.e. `W2'[:, S] = W2[:, S] + W2[:, Sc] A~_{Sc,S} A~_{S,S}^{-1}`.
    A leading batch of masks is vmapped.
    """
    if not (math.isfinite(ridge) and ridge > 0):
        raise ValueError(f"ridge must be a finite number > 0, got {ridge!r}.")
    acts = jnp.asarray(acts)
    W2 = jnp.asarray(W2, acts.dtype)
    b2 = jnp.asarray(b2, acts.dtype)
    mask = jnp.asarray(mask, bool)
    if mask.shape[-1] != W2.shape[1] or acts.shape[1] != W2.shape[1]:
        raise ValueError(f"mask and acts must have H={W2.shape[1]} columns, got {mask.shape}, {acts.shape}.")
    gram = _augmented_gram(acts) if gram is None else jnp.asarray(gram, acts.dtype)
    r = jnp.asarray(ridge, acts.dtype)
    fn = lambda m: _fuse(W2, b2, gram, m, r)
    if mask.ndim == 1:
        return fn(mask)
    flat = mask.reshape(-1, mask.shape[-1])
    w, b = jax.vmap(fn)(flat)
    return w.reshape(mask.shape[:-1] + w.shape[1:]), b.reshape(mask.shape[:-1] + b.shape[1:])


def prune_nodes_network(
    layers: Sequence[tuple[Array, Array]],
    masks: Bool[ArrayLike, "S H"],
    reweight: str,
    *,
    acts: Float[ArrayLike, "P H"] | None = None,
    ridge: float = 1e-6,
    gram=None,
) -> tuple[Float[Array, "S H D"], Float[Array, "S H2 H"], Float[Array, "S H2"]]:
    """Node-pruned first two layers for a batch of masks: `(W1', W2', b2')`, removed rows/columns zero."""
    _check_reweight(reweight)
    (W1, _), (W2, b2) = layers[0], layers[1]
    masks = jnp.asarray(masks, bool)
    W1s = jnp.where(masks[:, :, None], W1[None], 0.0)
    if reweight == "none":
        return W1s, jnp.where(masks[:, None, :], W2[None], 0.0), jnp.broadcast_to(b2, (masks.shape[0],) + b2.shape)
    if acts is None:
        raise ValueError("acts (training-set activations) are required for reweight='ls'.")
    W2s, b2s = fuse_nodes(W2, b2, acts, masks, ridge=ridge, gram=gram)
    return W1s, W2s, b2s


# --------------------------------------------------------------------------------------------------
# Edge pruning
# --------------------------------------------------------------------------------------------------


def first_layer_params(H: int, D: int, *, k: int | None = None, c: int | None = None) -> int:
    """First-layer parameters kept (weights + biases): node pruning to `k` units keeps `k (D + 1)`; edge
    pruning keeping `c` weights per unit keeps `H c + H`; nothing given: `H (D + 1)`."""
    if k is not None and c is not None:
        raise ValueError("give k (node pruning) or c (edge pruning), not both.")
    if k is not None:
        if not 1 <= k <= H:
            raise ValueError(f"k must satisfy 1 <= k <= H={H}, got {k}.")
        return int(k) * (D + 1)
    if c is not None:
        if not 0 <= c <= D:
            raise ValueError(f"c must satisfy 0 <= c <= D={D}, got {c}.")
        return H * int(c) + H
    return H * (D + 1)


def edge_count(H: int, D: int, k: int) -> int:
    """Per-unit edge count matched to node pruning to `k` units: `c = round(p D)`,
    `p = (k (D + 1) - H) / (H D)` (`matched_keep_fraction(rule="seed-paper")`), at least 1."""
    try:
        p = matched_keep_fraction(H, D, k, rule="seed-paper")
    except ValueError:
        return 1
    return int(max(1, min(D, math.floor(p * D + 0.5))))


@jax.jit
def _edge_eigen_chunk(W, G, jitter):
    L = W[:, :, None] * G[None] * W[:, None, :]
    jit = jitter * jnp.mean(jnp.diagonal(L, axis1=1, axis2=2), axis=1)
    return jax.vmap(kdpp_eigen)(L, jit)


def edge_dpp_eigen(
    W: Float[ArrayLike, "H D"], x: Float[ArrayLike, "P D"], *, jitter: float = 1e-6, chunk: int | None = None
):
    """Eigendecompositions of the seed paper's per-unit edge kernels `L^(i) = diag(w_i) G diag(w_i)`,
    `G = X^T X / P`, plus `jitter * mean(diag L^(i)) I`, computed once (vmapped over units in chunks)."""
    W = jnp.asarray(W)
    x = jnp.asarray(x, W.dtype)
    H, D = W.shape
    G = x.T @ x / x.shape[0]
    chunk = chunk or max(1, min(H, (1 << 25) // (D * D)))
    parts = [_edge_eigen_chunk(W[s : s + chunk], G, jnp.asarray(jitter, W.dtype)) for s in range(0, H, chunk)]
    return jax.tree.map(lambda *a: jnp.concatenate(a), *parts)


def edge_masks(
    key: PRNGKeyArray,
    method: str,
    c: int,
    num_masks: int,
    *,
    W: Float[ArrayLike, "H D"],
    x: Float[ArrayLike, "P D"] | None = None,
    jitter: float = 1e-6,
    eig=None,
    design_steps: int = 300,
) -> Bool[Array, "S H D"]:
    """`num_masks` edge masks keeping exactly `c` incoming weights of every unit (deterministic methods: one).

    `eig`: precomputed [`edge_dpp_eigen`][] (reused across budgets and masks); `x` training inputs (for
    `dpp` without `eig`, and `designed`).
    """
    _check_method("edge", method)
    W = jnp.asarray(W)
    H, D = W.shape
    c = int(c)
    if not 1 <= c <= D:
        raise ValueError(f"c must satisfy 1 <= c <= D={D}, got {c}.")
    p = c / D  # random_edge_mask / magnitude_edge_mask keep floor(p D + 1/2) = c per unit
    keys = jax.random.split(key, int(num_masks))
    if method == "random":
        return jax.vmap(lambda kk: random_edge_mask(kk, W, p))(keys)
    if method == "magnitude":
        return magnitude_edge_mask(W, p)[None]
    if x is None and (method == "designed" or eig is None):
        raise ValueError(f"x (training inputs) is required for edge method {method!r}.")
    if method == "designed":
        return surrogate_edge_mask(W, x, c, steps=design_steps)[None]
    if eig is None:
        eig = edge_dpp_eigen(W, x, jitter=jitter)
    # Chunks of units bound the sampler's working set (K x K Cholesky factor per unit and key) for D ~ 1e3.
    chunk = max(1, min(H, (1 << 27) // (8 * D * D * max(1, int(num_masks)))))
    parts = [
        sample_kdpp_masks(jax.random.fold_in(key, s), jax.tree.map(lambda a: a[s : s + chunk], eig), c, num_masks)
        for s in range(0, H, chunk)
    ]
    return jnp.concatenate(parts, axis=1)


def prune_edges_network(
    layers: Sequence[tuple[Array, Array]],
    masks: Bool[ArrayLike, "S H D"],
    reweight: str,
    *,
    x: Float[ArrayLike, "P D"] | None = None,
    ridge: float = 1e-6,
) -> tuple[Float[Array, "S H D"], Float[Array, "S H2 H"], Float[Array, "S H2"]]:
    """Edge-pruned first layer for a batch of masks (`reweight="ls"`: `reweight_edges` on the training
    inputs), next layer unchanged: `(W1', W2', b2')`."""
    _check_reweight(reweight)
    (W1, _), (W2, b2) = layers[0], layers[1]
    masks = jnp.asarray(masks, bool)
    S = masks.shape[0]
    if reweight == "none":
        W1s = jnp.where(masks, W1[None], 0.0)
    else:
        if x is None:
            raise ValueError("x (training inputs) is required for reweight='ls'.")
        x = jnp.asarray(x, W1.dtype)
        W1s = jnp.stack([reweight_edges(W1, m, x, ridge=ridge) for m in masks])
    return W1s, jnp.broadcast_to(W2, (S,) + W2.shape), jnp.broadcast_to(b2, (S,) + b2.shape)


# --------------------------------------------------------------------------------------------------
# Designed masks (relaxed mask, quadratic surrogate, projected descent, rounding)
# --------------------------------------------------------------------------------------------------


def _project(m, total):
    from ..design._design import project_capped_simplex

    return project_capped_simplex(m, total)


def _projected_descent(loss, m0, total, scale, lr, steps, momentum=0.9):
    """Projected heavy-ball descent (optax SGD) on `m` in `{0 <= m <= 1, sum m = total}` along the last axis,
    gradients preconditioned by `scale` (the inverse of a Gershgorin bound on each block's curvature)."""
    opt = optax.sgd(lr, momentum=momentum)
    proj = _project
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
    # Expectation over independent Bernoulli(m) masks: exact at 0/1, penalises fractional entries.
    loss = lambda m: (1.0 - m) @ Qn @ (1.0 - m) + jnp.sum(jnp.diag(Qn) * m * (1.0 - m))
    scale = 1.0 / (2.0 * jnp.max(jnp.sum(jnp.abs(Qn), axis=1)))
    return _projected_descent(loss, jnp.full((H,), k / H, Qn.dtype), k, scale, lr, steps)


def surrogate_node_mask(
    acts: Float[ArrayLike, "P H"], W2: Float[ArrayLike, "H2 H"], k: int, *, steps: int = 300, learning_rate: float = 0.5
) -> Bool[Array, " H"]:
    """Designed node mask: projected descent on `m in [0,1]^H`, `sum m = k`, minimising the exact training error
    of the next layer's pre-activations (no reweighting) `E(m) = (1-m)^T [(W2^T W2) o (A^T A / P)] (1-m)`
    averaged over Bernoulli(`m`) masks,
    then the `k` largest entries (ties broken by importance score)."""
    acts = jnp.asarray(acts)
    W2 = jnp.asarray(W2, acts.dtype)
    H = acts.shape[1]
    if not 1 <= int(k) <= H:
        raise ValueError(f"k must satisfy 1 <= k <= H={H}, got {k}.")
    Qn = (W2.T @ W2) * (acts.T @ acts / acts.shape[0])
    m = _design_node(Qn, jnp.asarray(float(k), acts.dtype), jnp.asarray(learning_rate, acts.dtype), int(steps))
    s = importance_scores(acts, W2)
    return _top_k_mask(m + 1e-9 * s / jnp.maximum(jnp.max(s), 1e-300), int(k))


@functools.partial(jax.jit, static_argnames=("steps",))
def _design_edge(W, G, c, lr, steps):
    H, D = W.shape

    def loss(m):
        # Expectation over independent Bernoulli(m) masks: exact at 0/1, penalises fractional entries.
        r = W * (1.0 - m)
        return jnp.sum((r @ G) * r) + jnp.sum(jnp.diag(G)[None, :] * W * W * m * (1.0 - m))

    # Gershgorin bound of each unit's kernel diag(w_i) G diag(w_i): max_j |w_ij| sum_l |G_jl| |w_il|.
    rows = jnp.abs(W) * (jnp.abs(W) @ jnp.abs(G))
    scale = 1.0 / (2.0 * jnp.maximum(jnp.max(rows, axis=1, keepdims=True), 1e-300))
    return _projected_descent(loss, jnp.full((H, D), c / D, W.dtype), c, scale, lr, steps)


def surrogate_edge_mask(
    W: Float[ArrayLike, "H D"], x: Float[ArrayLike, "P D"], c: int, *, steps: int = 300, learning_rate: float = 0.5
) -> Bool[Array, "H D"]:
    """Designed edge mask: per unit, projected descent on `m_i in [0,1]^D`, `sum m_i = c`, minimising the unit's
    exact training pre-activation error `(1-m_i)^T diag(w_i) (X^T X / P) diag(w_i) (1-m_i)` (the seed paper's
    edge kernel as a quadratic form, averaged over Bernoulli(`m_i`) masks), then the `c` largest entries (ties broken by `|w_ij|`)."""
    W = jnp.asarray(W)
    x = jnp.asarray(x, W.dtype)
    H, D = W.shape
    if not 1 <= int(c) <= D:
        raise ValueError(f"c must satisfy 1 <= c <= D={D}, got {c}.")
    G = x.T @ x / x.shape[0]
    m = _design_edge(W, G, jnp.asarray(float(c), W.dtype), jnp.asarray(learning_rate, W.dtype), int(steps))
    a = jnp.abs(W)
    return _top_k_mask(m + 1e-9 * a / jnp.maximum(jnp.max(a), 1e-300), int(c))


# --------------------------------------------------------------------------------------------------
# Evaluation and fine-tuning
# --------------------------------------------------------------------------------------------------


def _forward(W1, b1, W2, b2, rest, x, activation: str):
    g = _g(activation)
    h = g(x @ W1.T + b1[None, :])
    z = h @ W2.T + b2[None, :]
    for W, b in rest:
        z = g(z) @ W.T + b[None, :]
    return z


@functools.partial(jax.jit, static_argnames=("activation",))
def _errors(W1s, b1, W2s, b2s, rest, x, y, activation):
    def one(W1, W2, b2):
        logits = _forward(W1, b1, W2, b2, rest, x, activation)
        return jnp.mean((jnp.argmax(logits, axis=-1) != y).astype(x.dtype))

    return jax.lax.map(lambda t: one(*t), (W1s, W2s, b2s))


def masked_test_errors(
    layers: Sequence[tuple[Array, Array]],
    activation: str,
    W1s: Float[ArrayLike, "S H D"],
    W2s: Float[ArrayLike, "S H2 H"],
    b2s: Float[ArrayLike, "S H2"],
    x: Float[ArrayLike, "n D"],
    y: Int[ArrayLike, " n"],
) -> Float[Array, " S"]:
    """Classification error rates of `S` networks that differ from `layers` in `W1`, `W2`, `b2` only."""
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
        return p[0], p[1], p[2], p[3], p[4]

    return jax.vmap(one, in_axes=(0, 0, 0, 0, 0))(W1s, W2s, b2s, M1, M2)


def _finetuned_errors(layers, activation, W1s, W2s, b2s, M1, M2, ds_arrays, epochs, config, seed):
    x_tr, y_tr, x_te, y_te = ds_arrays
    n = x_tr.shape[0]
    bsz = min(config.batch_size, n)
    nb = n // bsz
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.permutation(n)[: nb * bsz].reshape(nb, bsz) for _ in range(epochs)]).reshape(-1, bsz)
    dtype = layers[0][0].dtype
    W1f, b1f, W2f, b2f, restf = _finetune(
        W1s, W2s, b2s, M1.astype(dtype), M2.astype(dtype), layers[0][1], tuple(layers[2:]), x_tr, y_tr,
        jnp.asarray(idx, jnp.int32), jnp.asarray(config.learning_rate, dtype), jnp.asarray(config.momentum, dtype),
        activation,
    )

    def one(t):
        W1, b1, W2, b2, rest = t
        logits = _forward(W1, b1, W2, b2, rest, x_te, activation)
        return jnp.mean((jnp.argmax(logits, axis=-1) != y_te).astype(dtype))

    return jax.lax.map(one, (W1f, b1f, W2f, b2f, restf))


# --------------------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RealDataResult:
    """Everything [`run_realdata`][] computed.

    **Fields:** `config` (the settings), `unpruned` (per-seed test error of the trained networks), `rows`
    (tidy summary: one dict per method variant and budget), `verdicts`, `table` (markdown), `paths` (files
    written), `seconds` (wall time), `computed` / `reused` (numbers of (seed, method) units).
    """

    config: dict
    unpruned: list
    rows: list
    verdicts: dict
    table: str
    paths: dict
    seconds: float
    computed: int
    reused: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _default_train_config(dataset: str, seed: int, quick: bool) -> TrainConfig:
    return TrainConfig(
        optimizer="sgd-momentum", learning_rate=0.05, momentum=0.9, batch_size=32 if dataset == "digits" else 64,
        max_epochs=100, stop_train_accuracy=0.97 if quick else 0.99, seed=seed,
    )


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _SeedContext:
    """Lazily computed per-network quantities shared by all methods of one training seed."""

    def __init__(self, model: MLP, dataset: Dataset, beta: float, jitter: float):
        dt = _work_dtype()
        self.layers = [(l.weight.astype(dt), l.bias.astype(dt)) for l in model.layers]
        self.activation = model.activation
        self.x_tr = jnp.asarray(dataset.x_train, dt)
        self.y_tr = jnp.asarray(dataset.y_train, jnp.int32)
        self.x_te = jnp.asarray(dataset.x_test, dt)
        self.y_te = jnp.asarray(dataset.y_test, jnp.int32)
        self.beta, self.jitter = beta, jitter
        W1, b1 = self.layers[0]
        self.acts = _g(self.activation)(self.x_tr @ W1.T + b1[None, :])
        self.H, self.D = W1.shape

    @functools.cached_property
    def gram(self):
        return _augmented_gram(self.acts)

    @functools.cached_property
    def node_eig(self):
        return {
            kind: kdpp_eigen(node_kernel(self.acts, kind, beta=self.beta, jitter=self.jitter))
            for kind in ("rbf", "linear")
        }

    @functools.cached_property
    def edge_eig(self):
        return edge_dpp_eigen(self.layers[0][0], self.x_tr, jitter=self.jitter)

    def errors(self, W1s, W2s, b2s):
        return np.asarray(masked_test_errors(self.layers, self.activation, W1s, W2s, b2s, self.x_te, self.y_te))


def _run_method(ctx: _SeedContext, kind, method, budgets, num_masks, key, ridge, design_steps, finetune, tcfg, seed):
    H, D = ctx.H, ctx.D
    S = num_masks if (kind, method) in _RANDOMISED else 1
    out = {"k": [], "c": [], "params_kept": [], "errors": {r: [] for r in REWEIGHTS}}
    if finetune:
        out["finetuned"] = {r: [] for r in REWEIGHTS}
    for bi, f in enumerate(budgets):
        k = int(min(H, max(1, math.floor(f * H + 0.5))))
        kb = jax.random.fold_in(key, bi)
        if kind == "node":
            eig = ctx.node_eig[method.removeprefix("dpp-")] if method.startswith("dpp") else None
            masks = node_masks(kb, method, k, S, acts=ctx.acts, W2=ctx.layers[1][0], beta=ctx.beta,
                               jitter=ctx.jitter, eig=eig, design_steps=design_steps)
            counts = np.asarray(jnp.sum(masks, axis=1))
            if not np.all(counts == k):
                raise RuntimeError(f"node {method} mask kept {counts.tolist()} units, expected {k}")
            c, params = None, first_layer_params(H, D, k=k)
            M1 = jnp.broadcast_to(masks[:, :, None], (masks.shape[0], H, D))
            M2 = jnp.broadcast_to(masks[:, None, :], (masks.shape[0],) + ctx.layers[1][0].shape)
        else:
            c = D if f >= 1 else edge_count(H, D, k)
            eig = ctx.edge_eig if method == "dpp" else None
            masks = edge_masks(kb, method, c, S, W=ctx.layers[0][0], x=ctx.x_tr, jitter=ctx.jitter, eig=eig,
                               design_steps=design_steps)
            counts = np.asarray(jnp.sum(masks, axis=2))
            if not np.all(counts == c):
                raise RuntimeError(f"edge {method} mask kept {np.unique(counts).tolist()} per unit, expected {c}")
            params = first_layer_params(H, D, c=c)
            M1 = masks
            M2 = jnp.ones((masks.shape[0],) + ctx.layers[1][0].shape, bool)
        out["k"].append(k)
        out["c"].append(c)
        out["params_kept"].append(params)
        for r in REWEIGHTS:
            if kind == "node":
                W1s, W2s, b2s = prune_nodes_network(ctx.layers, masks, r, acts=ctx.acts, ridge=ridge, gram=ctx.gram)
            else:
                W1s, W2s, b2s = prune_edges_network(ctx.layers, masks, r, x=ctx.x_tr, ridge=ridge)
            out["errors"][r].append(ctx.errors(W1s, W2s, b2s).tolist())
            if finetune:
                fe = _finetuned_errors(ctx.layers, ctx.activation, W1s, W2s, b2s, M1, M2,
                                       (ctx.x_tr, ctx.y_tr, ctx.x_te, ctx.y_te), finetune, tcfg, seed)
                out["finetuned"][r].append(np.asarray(fe).tolist())
    return out


def _variant(kind, method, reweight) -> str:
    return f"{kind}-{method}" + ("+ls" if reweight == "ls" else "")


def summarise(seed_results: Sequence[dict], budgets: Sequence[float], *, field: str = "errors") -> list[dict]:
    """Tidy rows `(variant, kind, method, reweight, budget, k, c, params_kept, mean, std, n)`: test error pooled
    over training seeds and masks (`std` with `ddof=1`; 0 for one value)."""
    rows = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for res in seed_results:
        groups.setdefault((res["kind"], res["method"]), []).append(res)
    for (kind, method), items in groups.items():
        for r in REWEIGHTS:
            for bi, f in enumerate(budgets):
                vals = np.concatenate([np.asarray(it[field][r][bi], float) for it in items if field in it])
                if vals.size == 0:
                    continue
                rows.append({
                    "variant": _variant(kind, method, r), "kind": kind, "method": method, "reweight": r,
                    "budget": f, "k": items[0]["k"][bi], "c": items[0]["c"][bi],
                    "params_kept": items[0]["params_kept"][bi],
                    "mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if vals.size > 1 else 0.0,
                    "n": int(vals.size), "per_seed_mean": [float(np.mean(it[field][r][bi])) for it in items],
                })
    return rows


def _compare(rows, a: str, b: str, budgets) -> dict:
    """Per budget `< 1`: mean error of variant `a` minus `b`; `a` wins where negative, significantly where the
    difference exceeds twice its standard error."""
    idx = {(r["variant"], r["budget"]): r for r in rows}
    per = []
    for f in budgets:
        if f >= 1 or (a, f) not in idx or (b, f) not in idx:
            continue
        ra, rb = idx[(a, f)], idx[(b, f)]
        diff = ra["mean"] - rb["mean"]
        se = math.sqrt(ra["std"] ** 2 / ra["n"] + rb["std"] ** 2 / rb["n"])
        per.append({"budget": f, "a": ra["mean"], "b": rb["mean"], "diff": diff, "se": se,
                    "a_wins": diff < 0, "a_wins_significantly": diff < -2 * se,
                    "b_wins_significantly": diff > 2 * se})
    wins = sum(p["a_wins"] for p in per)
    return {"a": a, "b": b, "per_budget": per, "a_wins": wins, "budgets_compared": len(per),
            "a_wins_significantly": sum(p["a_wins_significantly"] for p in per),
            "b_wins_significantly": sum(p["b_wins_significantly"] for p in per),
            "mean_diff": float(np.mean([p["diff"] for p in per])) if per else float("nan")}


def realdata_verdicts(rows: Sequence[dict], budgets: Sequence[float]) -> dict:
    """The seed paper's two real-data claims, decided from the numbers (a claim holds where its method has
    the lower mean test error at a strict majority of the pruned budgets):

    - `dpp_node_beats_random_and_importance`: `node-dpp-rbf+ls` (DIVNET with fusing) against `node-random` and
      `node-importance`, each both with the same reweighting (`+ls`) and without it;
    - `random_edge_beats_dpp_node`: `edge-random` (no reweighting, the seed paper's edge baseline) against
      `node-dpp-rbf+ls` at equal first-layer parameter counts.
    """
    variants = {r["variant"] for r in rows}
    out: dict[str, Any] = {}

    def majority(c):
        return c["budgets_compared"] > 0 and 2 * c["a_wins"] > c["budgets_compared"]

    dpp = "node-dpp-rbf+ls"
    if dpp in variants:
        comps = {b: _compare(rows, dpp, b, budgets) for b in
                 ("node-random+ls", "node-importance+ls", "node-random", "node-importance") if b in variants}
        fair = [comps[b] for b in ("node-random+ls", "node-importance+ls") if b in comps]
        holds = bool(fair) and all(majority(c) for c in fair)
        out["dpp_node_beats_random_and_importance"] = {
            "holds": holds,
            "holds_vs_unreweighted": all(majority(comps[b]) for b in ("node-random", "node-importance") if b in comps),
            "comparisons": comps,
            "summary": "; ".join(
                f"{dpp} beats {c['b']} at {c['a_wins']}/{c['budgets_compared']} budgets "
                f"({c['a_wins_significantly']} significantly, {c['b_wins_significantly']} significantly worse), "
                f"mean difference {100 * c['mean_diff']:+.2f} points" for c in comps.values()),
        }
    if dpp in variants and "edge-random" in variants:
        comps = {b: _compare(rows, b, dpp, budgets) for b in ("edge-random", "edge-random+ls") if b in variants}
        c = comps["edge-random"]
        out["random_edge_beats_dpp_node"] = {
            "holds": majority(c),
            "comparisons": comps,
            "budgets_where_edge_wins": [p["budget"] for p in c["per_budget"] if p["a_wins"]],
            "summary": "; ".join(
                f"{c['a']} beats {dpp} at {c['a_wins']}/{c['budgets_compared']} budgets "
                f"({c['a_wins_significantly']} significantly, {c['b_wins_significantly']} significantly worse), "
                f"mean difference {100 * c['mean_diff']:+.2f} points" for c in comps.values()),
        }
    best = {}
    for f in budgets:
        cand = [r for r in rows if r["budget"] == f]
        if cand:
            r = min(cand, key=lambda r: r["mean"])
            best[str(f)] = {"variant": r["variant"], "mean": r["mean"]}
    out["best_per_budget"] = best
    return out


def format_table(rows: Sequence[dict], budgets: Sequence[float], unpruned: Sequence[float], *,
                 title: str = "test error (%)") -> str:
    """Markdown table: one row per method variant, one column per budget, `mean +- std` in percent."""
    head = "| method | " + " | ".join(f"{100 * f:g}%" for f in budgets) + " |"
    sep = "|---|" + "---|" * len(budgets)
    u = np.asarray(unpruned, float)
    lines = [f"**{title}**, mean ± std over seeds and masks; columns: fraction of first-layer parameters kept", "",
             head, sep]
    if u.size:
        s = f"{100 * u.mean():.2f} ± {100 * (u.std(ddof=1) if u.size > 1 else 0):.2f}"
        lines.append("| unpruned | " + " | ".join(s for _ in budgets) + " |")
    idx = {(r["variant"], r["budget"]): r for r in rows}
    for v in dict.fromkeys(r["variant"] for r in rows):
        cells = []
        for f in budgets:
            r = idx.get((v, f))
            cells.append("" if r is None else f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_realdata(rows: Sequence[dict], unpruned: Sequence[float], *, total_params: int | None = None, title=""):
    """Test error vs first-layer parameters kept, one line per method variant (node solid, edge dashed), two
    panels: without and with least-squares reweighting. Returns a matplotlib Figure (imported lazily)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, rw in zip(axes, REWEIGHTS):
        for v in dict.fromkeys(r["variant"] for r in rows if r["reweight"] == rw):
            pts = sorted((r for r in rows if r["variant"] == v), key=lambda r: r["params_kept"])
            xs = [r["params_kept"] for r in pts]
            ax.errorbar(xs, [100 * r["mean"] for r in pts], yerr=[100 * r["std"] for r in pts], capsize=2,
                        marker="o" if pts[0]["kind"] == "node" else "s", ms=3,
                        linestyle="-" if pts[0]["kind"] == "node" else "--", label=v)
        if len(unpruned):
            ax.axhline(100 * float(np.mean(unpruned)), color="k", lw=0.8, ls=":", label="unpruned")
        ax.set_xlabel("first-layer parameters kept" + (f" (of {total_params})" if total_params else ""))
        ax.set_title(f"{title} reweighting: {'least squares' if rw == 'ls' else 'none'}".strip())
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("test error (%)")
    fig.tight_layout()
    return fig


def _load_dataset(dataset, data_dir):
    if isinstance(dataset, Dataset):
        return dataset
    if dataset == "digits":
        return load_dataset("digits")
    return load_dataset(dataset, data_dir=data_dir)


def run_realdata(
    out_dir: str | os.PathLike = "runs/realdata",
    *,
    dataset: str | Dataset = "digits",
    data_dir: str | os.PathLike | None = None,
    hidden: Sequence[int] | None = None,
    activation: str = "sigmoid",
    budgets: Sequence[float] | None = None,
    seeds: int | None = None,
    masks: int | None = None,
    finetune_epochs: int = 0,
    node_methods: Sequence[str] = NODE_METHODS,
    edge_methods: Sequence[str] = EDGE_METHODS,
    beta: float = 1.0,
    jitter: float = 1e-6,
    ridge: float = 1e-6,
    design_steps: int | None = None,
    train_config: Callable[[int], TrainConfig] | None = None,
    quick: bool = False,
    progress: bool = True,
    plot: bool = True,
    log: Callable[[str], None] | None = None,
) -> RealDataResult:
    """Train (or load) MLPs on `dataset`, prune their first hidden layer with every method at every budget,
    and write `out_dir/results.json`, `table.md`, `test_error_vs_params.png` (resumable).

    Defaults: digits, one hidden layer of 100 (`hidden`; MNIST `(500, 500)`, CIFAR-10 `(1000, 1000, 1000)`,
    the seed paper's sizes), sigmoid, budgets 0.1..0.9, 3 training seeds, 5 masks per randomised method, SGD
    with momentum until 99% training accuracy. `quick=True` (under a minute): hidden 50, budgets
    (0.25, 0.5, 0.75), 2 seeds, 3 masks, 100 design steps, 97% training accuracy.

    Per (seed, method) results go to `out_dir/seed<s>/<kind>-<method>.json` with a hash of every setting that
    affects them; a rerun reuses the files whose hash matches. Networks go to `out_dir/models/`.
    """
    t0 = time.perf_counter()
    log = log or (lambda s: None)
    ds = _load_dataset(dataset, data_dir)
    name = ds.name
    if hidden is None:
        hidden = (50,) if quick else {"mnist": (500, 500), "cifar10": (1000, 1000, 1000)}.get(name, (100,))
    hidden = tuple(int(h) for h in hidden)
    if not hidden or min(hidden) < 1:
        raise ValueError(f"hidden must list positive layer widths, got {hidden}.")
    budgets = _check_budgets((0.25, 0.5, 0.75) if (budgets is None and quick) else (budgets or DEFAULT_BUDGETS))
    seeds = int(seeds if seeds is not None else (2 if quick else 3))
    masks = int(masks if masks is not None else (3 if quick else 5))
    design_steps = int(design_steps if design_steps is not None else (100 if quick else 200))
    finetune_epochs = int(finetune_epochs)
    if seeds < 1 or masks < 1 or design_steps < 1 or finetune_epochs < 0:
        raise ValueError(
            f"seeds, masks and design_steps must be >= 1 and finetune_epochs >= 0, got {seeds}, {masks}, "
            f"{design_steps}, {finetune_epochs}.")
    for m in node_methods:
        _check_method("node", m)
    for m in edge_methods:
        _check_method("edge", m)
    for nm, v, lo in (("beta", beta, 0), ("ridge", ridge, 0)):
        if not (math.isfinite(v) and v > lo):
            raise ValueError(f"{nm} must be a finite number > 0, got {v!r}.")
    if not (math.isfinite(jitter) and jitter >= 0):
        raise ValueError(f"jitter must be a finite number >= 0, got {jitter!r}.")
    sizes = (ds.input_dim,) + hidden + (ds.num_classes,)
    tcfg_fn = train_config or (lambda s: _default_train_config(name, s, quick))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "dataset": name, "fingerprint": ds.fingerprint(), "sizes": list(sizes), "activation": activation,
        "budgets": list(budgets), "seeds": seeds, "masks": masks, "finetune_epochs": finetune_epochs,
        "node_methods": list(node_methods), "edge_methods": list(edge_methods), "beta": beta, "jitter": jitter,
        "ridge": ridge, "design_steps": design_steps, "dtype": jnp.dtype(_work_dtype()).name,
        "format": _FORMAT_VERSION,
        "parameter_rule": "node: k (D+1); edge: H c + H with c = round((k (D+1) - H) / H)",
    }
    methods = [("node", m) for m in node_methods] + [("edge", m) for m in edge_methods]
    from tqdm.auto import tqdm

    bar = tqdm(total=seeds * len(methods), desc=f"realdata {name}", disable=not progress, leave=False)
    results, unpruned, computed, reused = [], [], 0, 0
    for s in range(seeds):
        tcfg = tcfg_fn(s)
        model_path = out / "models" / f"seed{s}.eqx"
        seed_dir = out / f"seed{s}"
        ctx = None
        model_info = None
        for kind, method in methods:
            common = {k: config[k] for k in ("fingerprint", "sizes", "activation", "budgets", "masks",
                                             "finetune_epochs", "beta", "jitter", "ridge", "design_steps",
                                             "dtype", "format")}
            key_hash = _hash({"common": common, "train": tcfg.to_dict(), "seed": s, "kind": kind, "method": method})
            path = seed_dir / f"{kind}-{method}.json"
            res = None
            if path.exists():
                try:
                    old = json.loads(path.read_text())
                    if old.get("hash") == key_hash:
                        res = old
                except (OSError, ValueError):
                    res = None
            if res is not None:
                reused += 1
            else:
                if ctx is None:
                    model, history, loaded = train_or_load(
                        model_path, sizes, activation, ds, tcfg, dtype=jnp.float32, progress=progress)
                    ctx = _SeedContext(model, ds, beta, jitter)
                    log(f"seed {s}: network {'loaded' if loaded else 'trained'} "
                        f"({history.num_epochs} epochs, train acc {history.train_accuracy[-1]:.4f})")
                t1 = time.perf_counter()
                key = jax.random.fold_in(jax.random.key(1000 + s), methods.index((kind, method)))
                body = _run_method(ctx, kind, method, budgets, masks, key, ridge, design_steps,
                                   finetune_epochs, tcfg, s)
                res = {"hash": key_hash, "seed": s, "kind": kind, "method": method, **body,
                       "seconds": time.perf_counter() - t1}
                atomic_write_json(path, res)
                COMPUTE_COUNT[0] += 1
                computed += 1
            results.append(res)
            bar.update(1)
        # Unpruned error of this seed's network (cached beside the method files).
        upath = seed_dir / "unpruned.json"
        uhash = _hash({"train": tcfg.to_dict(), "sizes": list(sizes), "fp": ds.fingerprint(), "act": activation,
                       "dtype": config["dtype"]})
        uerr = None
        if upath.exists():
            try:
                old = json.loads(upath.read_text())
                uerr = old["test_error"] if old.get("hash") == uhash else None
            except (OSError, ValueError, KeyError):
                uerr = None
        if uerr is None:
            if ctx is None:
                model, _, _ = train_or_load(model_path, sizes, activation, ds, tcfg, dtype=jnp.float32,
                                            progress=progress)
                ctx = _SeedContext(model, ds, beta, jitter)
            W1, _ = ctx.layers[0]
            W2, b2 = ctx.layers[1]
            uerr = float(ctx.errors(W1[None], W2[None], b2[None])[0])
            atomic_write_json(upath, {"hash": uhash, "test_error": uerr})
        unpruned.append(uerr)
    bar.close()

    rows = summarise(results, budgets)
    ft_rows = summarise(results, budgets, field="finetuned") if finetune_epochs else []
    verdicts = realdata_verdicts(rows, budgets)
    if ft_rows:
        verdicts["finetuned"] = realdata_verdicts(ft_rows, budgets)
    H, D = hidden[0], ds.input_dim
    title = f"{name}, {'-'.join(map(str, sizes))} {activation}"
    table = f"# Pruning the first hidden layer: {title}\n\n" + format_table(rows, budgets, unpruned)
    if ft_rows:
        table += "\n" + format_table(ft_rows, budgets, unpruned,
                                     title=f"test error (%) after {finetune_epochs} epochs of fine-tuning")
    table += "\nFirst-layer parameters kept per budget: " + ", ".join(
        f"{100 * r['budget']:g}%: node {first_layer_params(H, D, k=r['k'])}, edge "
        f"{first_layer_params(H, D, c=edge_count(H, D, r['k']) if r['budget'] < 1 else D)}"
        for r in rows if r["variant"] == rows[0]["variant"]) + f" (of {H * (D + 1)}).\n"
    table += "\n" + "\n".join(
        f"- {k}: {'HOLDS' if v['holds'] else 'does not hold'}. {v['summary']}"
        for k, v in verdicts.items() if isinstance(v, dict) and "holds" in v) + "\n"
    seconds = time.perf_counter() - t0
    paths = {"results": str(out / "results.json"), "table": str(out / "table.md")}
    if plot:
        from .._io import atomic_write_bytes
        import io

        fig = plot_realdata(rows, unpruned, total_params=H * (D + 1), title=name)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(fig)
        atomic_write_bytes(out / "test_error_vs_params.png", buf.getvalue())
        paths["plot"] = str(out / "test_error_vs_params.png")
    result = RealDataResult(config=config, unpruned=unpruned, rows=rows + [dict(r, finetuned=True) for r in ft_rows],
                            verdicts=verdicts, table=table, paths=paths, seconds=seconds, computed=computed,
                            reused=reused)
    atomic_write_json(out / "results.json", {**result.to_dict(), "per_seed": results})
    atomic_write_text(out / "table.md", table)
    return result
