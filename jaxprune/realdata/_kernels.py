"""Data-based scores and k-DPP kernels of a trained layer's units and edges, and the one route to the k-DPP
sampler of `jaxprune.pruning` (docs/theory.md, sections 6.1 and 6.2, applied to a concrete network on data).

The teacher-student versions of these quantities live in `jaxprune.pruning` as functions of the overlaps:
`pruning.importance_scores(state) = |v_i| sqrt(Q_ii)` and `pruning.kernel_matrix(state, kernel)` (population
averages over Gaussian inputs). A trained MLP has no overlaps: its units feed a next layer of `H2` outputs (not
one `v_i`) and the input distribution is the data set's. The quantities here are the sample (data) versions:

- importance: `s_i = ||W2[:, i]||_2 std_mu(a_mu,i)`, the size of unit `i`'s contribution to the next layer's
  pre-activations on the training set (the centred analogue of `|v_i| sqrt(Q_ii)` for `H2` outputs);
- node kernels over the training-set activations `A` (`P x H`): `linear` `L = A^T A / P` (the seed paper's code;
  the data version of `L = A` of docs/theory.md 6.1), and `rbf` (DIVNET, Mariet & Sra 2016)
  `L_ij = exp(-beta d_ij / dbar)`, `d_ij = ||a_i - a_j||^2 / P`, `dbar = mean_{i != j} d_ij` (so `beta` is
  dimensionless, unlike the population kernel's absolute `beta`); both plus `jitter * mean(diag L) I`;
- edge kernels: the seed paper's `L^(i) = diag(w_i) (X^T X / P) diag(w_i)` per unit
  ([`jaxprune.pruning.edge_dpp_kernels`][]), eigendecomposed once per network.

References: Mariet & Sra, "Diversity Networks", ICLR 2016; Kulesza & Taskar 2012 (k-DPPs).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from .._checks import check_choice, check_float, check_int
from ..pruning import DPPNodes, KDPPEigen, edge_dpp_kernels, kdpp_eigen, sample_kdpp_mask
from ._options import data_kernel_name

__all__ = ["NODE_KERNELS", "data_node_kernel", "data_importance_scores", "edge_dpp_eigen", "sample_kdpp_masks"]

NODE_KERNELS: tuple[str, ...] = ("rbf", "linear")


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


def data_node_kernel(
    acts: Float[ArrayLike, "P H"],
    kind: str | DPPNodes = "rbf",
    *,
    beta: float | None = None,
    jitter: float | None = None,
) -> Float[Array, "H H"]:
    """k-DPP kernel over hidden units from their training-set activations `A` (`P x H`).

    `rbf` (DIVNET): `L_ij = exp(-beta d_ij / dbar)`, `d_ij = ||a_i - a_j||^2 / P`, `dbar = mean_{i!=j} d_ij`;
    `linear`: `L = A^T A / P` (the data version of `L = A`). Both plus `jitter * mean(diag L) I`
    (docs/theory.md 6.1; the population version is [`jaxprune.pruning.kernel_matrix`][]).

    **Arguments:**

    - `acts`: training-set activations of the layer, shape `(P, H)`.
    - `kind`: `"rbf"` (default) or `"linear"`, or a [`jaxprune.pruning.DPPNodes`][] with kernel `"rbf"` or
      `"A"` (= `linear`), which then also gives `beta` and `jitter`.
    - `beta`: inverse width `> 0` of `rbf`, in units of `dbar` (default 1; not with a `DPPNodes`).
    - `jitter`: diagonal jitter `>= 0` relative to the mean diagonal (default `1e-6`; not with a `DPPNodes`).

    **Returns:** the kernel `L`, shape `(H, H)`, symmetric positive semidefinite (definite for `jitter > 0`).

    References: Mariet & Sra, "Diversity Networks", ICLR 2016.
    """
    if isinstance(kind, DPPNodes):
        if beta is not None or jitter is not None:
            raise ValueError("beta and jitter come from the DPPNodes object; do not pass them as well")
        kind, beta, jitter = data_kernel_name(kind), kind.beta, kind.jitter
    else:
        check_choice("kind", kind, NODE_KERNELS)
        beta = 1.0 if beta is None else beta
        jitter = 1e-6 if jitter is None else jitter
    beta = check_float("beta", beta, 0.0, lo_open=True)
    jitter = check_float("jitter", jitter, 0.0)
    acts = jnp.asarray(acts)
    return _node_kernel(acts, jnp.asarray(beta, acts.dtype), jnp.asarray(jitter, acts.dtype), kind)


def data_importance_scores(acts: Float[ArrayLike, "P H"], W2: Float[ArrayLike, "H2 _H"]) -> Float[Array, " H"]:
    """Data importance scores `s_i = ||W2[:, i]||_2 std_mu(a_mu,i)`: the size of unit `i`'s contribution to the
    next layer's pre-activations on the training set (the data version of
    [`jaxprune.pruning.importance_scores`][], `|v_i| sqrt(Q_ii)`, docs/theory.md 6.1).

    **Arguments:**

    - `acts`: training-set activations of the layer, shape `(P, H)`.
    - `W2`: the next layer's weights, shape `(H2, H)`.

    **Returns:** the scores `s`, shape `(H,)`, `>= 0`.
    """
    acts = jnp.asarray(acts)
    W2 = jnp.asarray(W2, acts.dtype)
    if W2.ndim != 2 or acts.ndim != 2 or W2.shape[1] != acts.shape[1]:
        raise ValueError(f"acts (P, H) and W2 (H2, H) must share H, got shapes {acts.shape} and {W2.shape}")
    return jnp.linalg.norm(W2, axis=0) * jnp.std(acts, axis=0)


@jax.jit
def _edge_eigen_chunk(W, x, jitter):
    L = edge_dpp_kernels(W, x)
    jit = jitter * jnp.mean(jnp.diagonal(L, axis1=1, axis2=2), axis=1)
    return kdpp_eigen(L, jit)  # one kernel at a time inside: no batched LAPACK eigh (an XLA CPU hang class)


def edge_dpp_eigen(
    W: Float[ArrayLike, "H D"], x: Float[ArrayLike, "P _D"], *, jitter: float = 1e-6, chunk: int | None = None
) -> KDPPEigen:
    """Eigendecompositions (batched over units) of the seed paper's per-unit edge kernels
    `L^(i) = diag(w_i) (X^T X / P) diag(w_i) + jitter * mean(diag L^(i)) I` (docs/theory.md 6.2,
    [`jaxprune.pruning.edge_dpp_kernels`][] on data), computed once per network and reused for every budget and
    mask.

    **Arguments:**

    - `W`: first-layer weights, shape `(H, D)`.
    - `x`: training inputs, shape `(P, D)`.
    - `jitter`: diagonal jitter `>= 0`, relative to each kernel's mean diagonal (default `1e-6`).
    - `chunk`: units decomposed per call (`>= 1`; default: as many as keep a chunk's kernels near 256 MB).

    **Returns:** a [`jaxprune.pruning.KDPPEigen`][] with `eigenvalues` `(H, D)` and `eigenvectors` `(H, D, D)`.
    """
    W = jnp.asarray(W)
    x = jnp.asarray(x, W.dtype)
    if W.ndim != 2 or x.ndim != 2 or x.shape[1] != W.shape[1]:
        raise ValueError(f"W (H, D) and x (P, D) must share D, got shapes {W.shape} and {x.shape}")
    jitter = check_float("jitter", jitter, 0.0)
    H, D = W.shape
    chunk = check_int("chunk", chunk, 1) if chunk is not None else max(1, min(H, (1 << 25) // (D * D)))
    parts = [_edge_eigen_chunk(W[s : s + chunk], x, jnp.asarray(jitter, W.dtype)) for s in range(0, H, chunk)]
    return jax.tree.map(lambda *a: jnp.concatenate(a), *parts)


def _draw_masks(key, eig, k, num_masks: int, cap: int | None):
    """Masks `(S, K)` or `(S, U, K)`; `cap` None: `k` a static int, else `k` traced with `cap` work slots."""
    keys = jax.random.split(key, num_masks)
    if cap is None:
        one = lambda kk, e: sample_kdpp_mask(kk, e, k)
    else:
        one = lambda kk, e: sample_kdpp_mask(kk, e, k, k_max=cap)
    draw = jax.vmap(one, in_axes=(0, None))  # over keys: one kernel, shared polynomial tables
    if eig.eigenvalues.ndim == 1:
        return draw(keys, eig)
    U = eig.eigenvalues.shape[0]
    unit_keys = jax.vmap(lambda kk: jax.random.split(kk, U), out_axes=1)(keys)  # (U, S)
    if cap is None:  # large ground sets: one unit at a time, its keys in cache-sized blocks (the sampler's rule)
        per_unit = jax.lax.map(lambda t: draw(*t), (unit_keys, eig))
    else:
        per_unit = jax.vmap(draw)(unit_keys, eig)
    return jnp.swapaxes(per_unit, 0, 1)  # (S, U, K)


_sample_traced = jax.jit(_draw_masks, static_argnames=("num_masks", "cap"))
_sample_static = jax.jit(functools.partial(_draw_masks, cap=None), static_argnames=("k", "num_masks"))

#: largest ground set sampled with a traced size (above it, one compilation per size)
_TRACED_MAX_K = 256


def sample_kdpp_masks(key: PRNGKeyArray, eig: KDPPEigen, k: int, num_masks: int) -> Bool[Array, "S ... K"]:
    """`num_masks` exact k-DPP samples (boolean masks) from a precomputed eigendecomposition, optionally batched
    over a leading unit axis.

    The one route from the real-data layer to the sampler of `jaxprune.pruning` ([`sample_kdpp_mask`][],
    Kulesza & Taskar 2012, Alg. 8): every real-data DPP mask is drawn here. For ground sets of at most 256 items
    the size is traced (work arrays of `K` slots: one compilation serves every budget); above, the size is
    static (one compilation per size, but work in proportion to `k`, not `K`: many times faster per sample at
    `K = 784`, `k = 78`, see benchmarks/bench_realdata.py). Both give the same subset for the same key.

    **Arguments:**

    - `key`: PRNG key (one split per mask and unit).
    - `eig`: a [`jaxprune.pruning.KDPPEigen`][] of one kernel (`eigenvalues` `(K,)`) or of `U` kernels
      (`eigenvalues` `(U, K)`).
    - `k`: the subset size, `1 <= k <= K`.
    - `num_masks`: samples per kernel, `>= 1`.

    **Returns:** boolean masks with exactly `k` entries `True` per sample: shape `(S, K)`, or `(S, U, K)` for a
    batch of kernels (`S = num_masks`).
    """
    if not isinstance(eig, KDPPEigen):
        raise ValueError(f"eig must be a KDPPEigen (see jaxprune.pruning.kdpp_eigen), got {type(eig).__name__}")
    K = eig.eigenvalues.shape[-1]
    k = check_int("k", k, 1, K)
    num_masks = check_int("num_masks", num_masks, 1)
    if K > _TRACED_MAX_K:
        return _sample_static(key, eig, k=k, num_masks=num_masks)
    return _sample_traced(key, eig, jnp.asarray(k, jnp.int32), num_masks=num_masks, cap=K)
