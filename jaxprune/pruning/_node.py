"""Node pruning as a map on order parameters (docs/theory.md section 6.1).

Keeping a subset `S` of the `K` student units gives a student with overlaps `Q' = Q_SS`, `R' = R_S` and a new
second layer `v'_S` (one of four reweighting rules). Subsets are boolean masks of fixed length `K`: a removed
unit stays as an *inactive slot* (zero row and column of `Q`, zero row of `R`, `v = 0`), which contributes
nothing to any Gaussian average, so the pruned state has the same error as the smaller student and everything
vmaps over masks.

Expected errors over subset distributions (random, importance, k-DPP) are computed exactly by vectorised
enumeration of all `C(K, k)` subsets while that is feasible, by Monte Carlo otherwise, or (without
reweighting) in closed form from first- and second-order inclusion probabilities.

Every error reported here is the noise-free generalisation error `eps_g` of docs/theory.md section 3.

References: Acharyya, Chattoraj, Zhang, Das, Stefankovic, UAI 2021 (arXiv 2006.16617); Mariet & Sra, ICLR 2016
(activation-space fusing); Kulesza & Taskar 2012 (k-DPPs).
"""

from __future__ import annotations

import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from .._activations import AbstractActivation, Erf, get_activation
from ._dpp import (
    check_kdpp_kernel,
    enumerate_subsets,
    kdpp_eigen,
    kdpp_enumerate,
    kdpp_marginals,
    sample_kdpp,
    sample_uniform_subset,
    uniform_marginals,
)
from .._error import activation_covariance
from .._overlaps import Overlaps
from ._masks import top_k_mask
from ._options import (
    AbstractNodeSelector,
    AbstractReweight,
    DPPNodes,
    pruning_option,
)
from .._checks import check_choice, check_count, check_float, is_concrete
from .._status import Status
from ._node_result import NodePruningResult as NodePruningResult
from ._node_result import _sampled_result, _weighted_result
from ._linalg import DEFAULT_RCOND, solve_psd

__all__ = [
    "NodePruningResult",
    "expected_node_error",
    "expected_node_error_closed_form",
    "importance_mask",
    "importance_scores",
    "kernel_matrix",
    "prune_nodes",
    "reweighted_output_weights",
]

# the names `pruning_option` accepts (aliases included), for the annotations
Reweight = Literal["none", "preactivation", "activation", "fusing", "optimal"]
Method = Literal["random", "random-node", "importance", "importance-node", "dpp", "dpp-node"]
Kernel = Literal["Q", "A", "rbf"]

REWEIGHTS = ("none", "preactivation", "activation", "optimal")
METHODS = ("random", "importance", "dpp")
KERNELS = ("Q", "A", "rbf")

#: enumerate all subsets exactly while `C(K, k)` is at most this (docs/theory.md 6.1)
MAX_ENUMERATE = 200_000
#: Monte Carlo sample count used when enumeration is infeasible and `samples` is not given
DEFAULT_SAMPLES = 10_000
_BATCH = 1024


# --------------------------------------------------------------------------------------------------
# validation helpers (host level)
# --------------------------------------------------------------------------------------------------


def _check_state(state: Overlaps, name="state") -> None:
    if not isinstance(state, Overlaps):
        raise ValueError(f"`{name}` must be an Overlaps, got {type(state).__name__}")
    if not all(is_concrete(getattr(state, f)) for f in ("Q", "R", "T", "v", "v_star")):
        raise ValueError(f"`{name}` must be concrete: this function enumerates or samples subsets on the host and "
                         "cannot run under jit/vmap/grad (use prune_nodes, which can)")
    for field in ("Q", "R", "T", "v", "v_star"):
        a = np.asarray(getattr(state, field))
        if not np.all(np.isfinite(a)):
            raise ValueError(f"`{name}.{field}` has non-finite entries (NaN or inf)")


# --------------------------------------------------------------------------------------------------
# linear algebra: fixed-shape PSD solve with pivot skipping (`_linalg.solve_psd`)
# --------------------------------------------------------------------------------------------------


def _masked_solve(
    G: Float[Array, "K K"], b: Float[Array, " K"], mask: Bool[Array, " K"], rcond: float, ridge
) -> tuple[Float[Array, " K"], Bool[Array, ""]]:
    """Solve `(G_SS + ridge I) x_S = b_S` with fixed shapes: identity (scaled) on the removed slots, `x_Sc = 0`."""
    both = mask[:, None] & mask[None, :]
    scale = jnp.max(jnp.where(mask, jnp.abs(jnp.diagonal(G)), 0.0))
    fill = jnp.where(scale > 0, scale, 1.0)
    eye = jnp.eye(G.shape[-1], dtype=G.dtype)
    Gm = jnp.where(both, G + ridge * eye, jnp.where(mask[:, None] | mask[None, :], 0.0, fill * eye))
    return solve_psd(Gm, jnp.where(mask, b, 0.0), rcond)


# --------------------------------------------------------------------------------------------------
# kernels and scores
# --------------------------------------------------------------------------------------------------


def _student_blocks(state: Overlaps, activation: AbstractActivation):
    """`A = I2` among students (K x K), `B = I2` students x teachers (K x M), `C = I2` among teachers."""
    full = activation_covariance(state, activation)
    K = state.K
    return full[:K, :K], full[:K, K:], full[K:, K:]


@eqx.filter_jit
def kernel_matrix(
    state: Overlaps,
    kernel: Kernel = "Q",
    *,
    beta: float | Float[ArrayLike, ""] = 1.0,
    jitter: float | Float[ArrayLike, ""] = 0.0,
    activation: AbstractActivation | str = Erf(),
) -> Float[Array, "K K"]:
    """The k-DPP kernel of node pruning as a function of the overlaps, plus `jitter I` (docs/theory.md 6.1).

    - `"Q"`: `L = Q` (linear kernel on pre-activations; the seed paper's code, up to scale);
    - `"A"`: `L_ik = A_ik = E[g(lambda_i) g(lambda_k)] = I2(i,k)` (activation covariance);
    - `"rbf"`: `L_ik = exp(-beta E[(g(lambda_i) - g(lambda_k))^2]) = exp(-beta (A_ii + A_kk - 2 A_ik))`.

    **Arguments:**

    - `state`: the student's [`Overlaps`][].
    - `kernel`: one of `"Q"`, `"A"`, `"rbf"`.
    - `beta`: RBF inverse width, `> 0` (used by `"rbf"` only).
    - `jitter`: `>= 0`, added to the diagonal.
    - `activation`: an [`AbstractActivation`][] or its name (`Erf()` by default; used by `"A"` and `"rbf"`).

    **Returns:**

    The symmetric kernel `L + jitter I`, `Float[K, K]`.
    """
    check_choice("kernel", kernel, KERNELS)
    activation = get_activation(activation)
    K = state.K
    if kernel == "Q":
        L = state.Q
    else:
        A = _student_blocks(state, activation)[0]
        if kernel == "A":
            L = A
        else:
            d = jnp.diagonal(A)
            L = jnp.exp(-beta * jnp.maximum(d[:, None] + d[None, :] - 2.0 * A, 0.0))
    L = 0.5 * (L + L.T)
    return L + jitter * jnp.eye(K, dtype=L.dtype)


def importance_scores(state: Overlaps, score: str = "magnitude") -> Float[Array, " K"]:
    """Importance score of each unit (docs/theory.md section 6.1, "Subset distributions").

    **Arguments:**

    - `state`: the student's [`Overlaps`][].
    - `score`: `"magnitude"` (default): `s_i = |v_i| sqrt(Q_ii)`, the RMS of the unit's output contribution
      `v_i lambda_i`; `"v"`: the seed paper's signed `s_i = v_i` (see [`ImportanceNodes`][]).

    **Returns:**

    The scores `Float[K]`.
    """
    check_choice("score", score, ("magnitude", "v"))
    return _importance_scores(state, score)


@eqx.filter_jit
def _importance_scores(state: Overlaps, score: str) -> Float[Array, " K"]:
    if score == "v":
        return state.v
    return jnp.abs(state.v) * jnp.sqrt(jnp.maximum(jnp.diagonal(state.Q), 0.0))


def importance_mask(state: Overlaps, k: int, score: str = "magnitude") -> Bool[Array, " K"]:
    """The importance selector's subset: the `k` units with the largest [`importance_scores`][], ties broken by
    the lower index ([`top_k_mask`][]); docs/theory.md section 6.1.

    **Arguments:**

    - `state`: the student's [`Overlaps`][].
    - `k`: units kept, `1 <= k <= K` (`ValueError` otherwise).
    - `score`: `"magnitude"` (default) or `"v"`, as in [`importance_scores`][].

    **Returns:**

    A boolean mask `Bool[K]` with exactly `k` entries `True`.
    """
    check_choice("score", score, ("magnitude", "v"))
    return _importance_mask(state, check_count(k, state.K), score)


@eqx.filter_jit
def _importance_mask(state: Overlaps, k: int, score: str) -> Bool[Array, " K"]:
    return top_k_mask(_importance_scores(state, score), k)


# --------------------------------------------------------------------------------------------------
# pruning one subset
# --------------------------------------------------------------------------------------------------


def _check_mask(mask, K) -> Bool[Array, " K"]:
    mask = jnp.asarray(mask)
    if mask.shape != (K,):
        raise ValueError(f"`mask` must have shape (K,) = ({K},), got {mask.shape}")
    if mask.dtype != jnp.bool_:
        raise ValueError(f"`mask` must be a boolean array, got dtype {mask.dtype}")
    return mask


def reweighted_output_weights(
    state: Overlaps,
    mask: Bool[ArrayLike, " K"],
    *,
    reweight: Reweight | AbstractReweight = "none",
    activation: AbstractActivation | str = Erf(),
    ridge: float | Float[ArrayLike, ""] = 0.0,
    rcond: float = DEFAULT_RCOND,
) -> tuple[Float[Array, " K"], Int[Array, ""]]:
    """The new second layer `v'` (zero on removed slots) and a status code; docs/theory.md 6.1.

    - `none`: `v'_S = v_S`;
    - `preactivation`: `v'_S = v_S + Q_SS^{-1} Q_{S,Sc} v_Sc`;
    - `activation`: `v'_S = v_S + A_SS^{-1} A_{S,Sc} v_Sc`, `A_ik = I2(i,k)`;
    - `optimal`: `v'_S = A_SS^{-1} B_S v*`, `B_in = I2(i,n)`.

    The matrix inverted is `G_SS + ridge I`; a numerically singular one (e.g. duplicated units) is solved by
    skipping dependent pivots ([`solve_psd`][], relative threshold `rcond`), which still gives an exact
    least-squares solution, and the status is `Status.SINGULAR` instead of `Status.SUCCESS`.

    **Arguments:**

    - `state`: the [`Overlaps`][] of the unpruned student.
    - `mask`: boolean `Bool[K]`, `True` for kept units (`ValueError` for another shape or dtype).
    - `reweight`: an [`AbstractReweight`][] or its name, as listed above.
    - `activation`: an [`AbstractActivation`][] or its name (`Erf()` by default); used by `activation` and
      `optimal`.
    - `ridge`: Tikhonov term `>= 0` added to the kept block before solving (default 0).
    - `rcond`: relative pivot threshold under which a kept unit counts as linearly dependent.

    **Returns:**

    `(v_new, status)`: the second layer `Float[K]` (zero on removed units) and an int32 [`Status`][] code.
    """
    reweight = pruning_option("reweight", reweight, name="reweight").name
    mask = _check_mask(mask, state.K)
    activation = get_activation(activation)
    m = mask.astype(state.v.dtype)
    v = state.v
    if reweight == "none":
        return v * m, jnp.asarray(Status.SUCCESS, jnp.int32)
    if reweight == "preactivation":
        G = state.Q
    else:
        A, B, _ = _student_blocks(state, activation)
        G = A
    if reweight == "optimal":
        x, singular = _masked_solve(G, B @ state.v_star, mask, rcond, ridge)
        new = x
    else:
        x, singular = _masked_solve(G, G @ (v * (1.0 - m)), mask, rcond, ridge)
        new = v + x
    status = jnp.where(singular, Status.SINGULAR, Status.SUCCESS).astype(jnp.int32)
    return new * m, status


@eqx.filter_jit
def prune_nodes(
    state: Overlaps,
    mask: Bool[ArrayLike, " K"],
    *,
    reweight: Reweight | AbstractReweight = "none",
    activation: AbstractActivation | str = Erf(),
    ridge: float | Float[ArrayLike, ""] = 0.0,
    rcond: float = DEFAULT_RCOND,
) -> tuple[Overlaps, Int[Array, ""]]:
    """Keep the units `S = {i : mask_i}`: `Q' = Q_SS`, `R' = R_S`, `v'_S` by `reweight` (docs/theory.md 6.1).

    The result keeps `K` slots: removed units become inactive (zero row/column of `Q`, zero row of `R`,
    `v = 0`), exactly equivalent to deleting them, so `prune_nodes` vmaps over masks.

    **Arguments:**

    - `state`: the [`Overlaps`][] of the unpruned student.
    - `mask`: boolean `(K,)`, `True` for kept units.
    - `reweight`: an [`AbstractReweight`][] or its name `"none"`, `"preactivation"`, `"activation"`,
      `"optimal"` (see [`reweighted_output_weights`][]).
    - `activation`: the activation (`Erf()` by default); used by the activation-space rules.
    - `ridge`: Tikhonov term added to the kept block before solving (default 0).
    - `rcond`: relative pivot threshold under which a kept unit counts as linearly dependent.

    **Returns:** `(pruned_state, status)`, status `Status.SUCCESS` or `Status.SINGULAR` (int32).
    """
    mask = _check_mask(mask, state.K)
    v_new, status = reweighted_output_weights(
        state, mask, reweight=reweight, activation=activation, ridge=ridge, rcond=rcond
    )
    both = mask[:, None] & mask[None, :]
    pruned = Overlaps(
        Q=jnp.where(both, state.Q, 0.0),
        R=jnp.where(mask[:, None], state.R, 0.0),
        T=state.T,
        v=v_new,
        v_star=state.v_star,
    )
    return pruned, status


# --------------------------------------------------------------------------------------------------
# many subsets (gathered k x k blocks)
# --------------------------------------------------------------------------------------------------


class _Blocks(eqx.Module):
    """What the error of every pruned subset needs, computed once: `A`, `b = B v*`, `c = v*^T C v*`, `G`, `G v`."""

    A: Float[Array, "K K"]
    b: Float[Array, " K"]
    c: Float[Array, ""]
    G: Float[Array, "K K"]
    Gv: Float[Array, " K"]
    v: Float[Array, " K"]


@eqx.filter_jit
def _blocks(state: Overlaps, reweight: str, activation: AbstractActivation) -> _Blocks:
    A, B, C = _student_blocks(state, activation)
    G = state.Q if reweight == "preactivation" else A
    return _Blocks(A=A, b=B @ state.v_star, c=state.v_star @ C @ state.v_star, G=G, Gv=G @ state.v, v=state.v)


def _subset_error(blocks: _Blocks, idx: Int[Array, " k"], reweight: str, rcond: float, ridge):
    """`eps_g` of the student pruned to the units `idx`: `1/2 [v'^T A_SS v' - 2 v'^T (B v*)_S + v*^T C v*]`."""
    sub = idx[:, None], idx[None, :]
    A_SS, b_S, v_S = blocks.A[sub], blocks.b[idx], blocks.v[idx]
    k = idx.shape[0]
    singular = jnp.asarray(False)
    if reweight == "none":
        vp = v_S
    else:
        G_SS = blocks.G[sub] + ridge * jnp.eye(k, dtype=A_SS.dtype)
        if reweight == "optimal":
            vp, singular = solve_psd(A_SS + ridge * jnp.eye(k, dtype=A_SS.dtype), b_S, rcond)
        else:
            rhs = blocks.Gv[idx] - blocks.G[sub] @ v_S  # G_{S,Sc} v_Sc
            x, singular = solve_psd(G_SS, rhs, rcond)
            vp = v_S + x
    err = 0.5 * (vp @ A_SS @ vp - 2.0 * vp @ b_S + blocks.c)
    return err, singular


@eqx.filter_jit
def _subset_errors_batch(blocks: _Blocks, idx: Int[Array, "B k"], reweight: str, rcond: float, ridge):
    return jax.vmap(lambda i: _subset_error(blocks, i, reweight, rcond, ridge))(idx)


def _subset_errors(blocks: _Blocks, idx, reweight: str, rcond: float, ridge):
    """Errors and singular flags of many subsets (rows of `idx`).

    Evaluated in fixed-size batches of `_BATCH` subsets (the last one padded), so that one compilation per
    `(K, k, reweight)` serves every number of subsets (enumeration, Monte Carlo, point mass).
    """
    idx = np.asarray(idx, dtype=np.int32)
    n = idx.shape[0]
    pad = -n % _BATCH
    if pad:
        idx = np.concatenate([idx, np.broadcast_to(idx[:1], (pad, idx.shape[1]))], axis=0)
    chunks = [
        _subset_errors_batch(blocks, jnp.asarray(idx[s : s + _BATCH]), reweight, rcond, ridge)
        for s in range(0, idx.shape[0], _BATCH)
    ]
    errors = jnp.concatenate([c[0] for c in chunks])[:n]
    singular = jnp.concatenate([c[1] for c in chunks])[:n]
    return errors, singular


@eqx.filter_jit
def _sample_indices(key, eig, K: int, k: int, samples: int, dpp: bool) -> Int[Array, "S k"]:
    keys = jax.random.split(key, samples)
    if dpp:
        return jax.vmap(sample_kdpp, in_axes=(0, None, None))(keys, eig, k)
    return jax.vmap(sample_uniform_subset, in_axes=(0, None, None))(keys, K, k)


def _indices_of(masks: np.ndarray, k: int) -> np.ndarray:
    return np.nonzero(masks)[1].reshape(masks.shape[0], k).astype(np.int32)


def _dpp_kernel(state, k, kernel, beta, jitter, activation):
    L0 = kernel_matrix(state, kernel, beta=beta, jitter=0.0, activation=activation)
    check_kdpp_kernel(L0, k, jitter=jitter)
    return L0 + jitter * jnp.eye(state.K, dtype=L0.dtype)


def expected_node_error(
    state: Overlaps,
    k: int,
    *,
    method: Method | AbstractNodeSelector = "random",
    reweight: Reweight | AbstractReweight = "none",
    kernel: Kernel = "Q",
    beta: float = 1.0,
    jitter: float = 0.0,
    samples: int | None = None,
    key: PRNGKeyArray | None = None,
    activation: AbstractActivation | str = Erf(),
    ridge: float = 0.0,
    rcond: float = DEFAULT_RCOND,
    max_enumerate: int = MAX_ENUMERATE,
    return_errors: bool = False,
) -> NodePruningResult:
    """Expected `eps_g` after keeping `k` of the `K` units, `S` drawn by `method`, reweighted by `reweight`.

    `method` is a node selector ([`RandomNodes`][], [`ImportanceNodes`][], [`DPPNodes`][]) or its name (then
    `kernel`, `beta`, `jitter` configure `"dpp"`); `reweight` an [`AbstractReweight`][] or its name.

    - random: `S` uniform over the `C(K, k)` subsets;
    - importance: the point mass on the `k` largest scores (`|v_i| sqrt(Q_ii)`, or the seed paper's `v_i`;
      ties: lower index), see [`importance_mask`][];
    - dpp: the k-DPP `P(S) = det(L_S) / e_k(L)` with `L = kernel_matrix(state, kernel, beta=beta,
      jitter=jitter)`.

    Exact by vectorised enumeration of all subsets (probabilities from `kdpp_enumerate` for the DPP) when
    `samples is None` and `C(K, k) <= max_enumerate`; otherwise Monte Carlo with `samples` (default
    10 000) exact draws (uniform subsets, or the exact k-DPP sampler), reporting a standard error. The error
    of each subset is `1/2 [v'^T A_SS v' - 2 v'^T (B v*)_S + v*^T C v*]` (docs/theory.md 3), equal to
    `generalisation_error(prune_nodes(state, mask, ...)[0])`, with `A`, `B`, `C` computed once.

    **Arguments:**

    - `state`: the [`Overlaps`][] of the unpruned student (concrete: not under `jit`).
    - `k`: units kept, static, `1 <= k <= K`.
    - `method`: the selector, as above (default `"random"`).
    - `reweight`: the reweighting rule, as in [`reweighted_output_weights`][] (default `"none"`).
    - `kernel`, `beta`, `jitter`: the k-DPP kernel when `method` is the name `"dpp"` (see [`kernel_matrix`][]).
    - `samples`: `None` (exact when feasible) or the Monte Carlo sample count, an integer `>= 2`.
    - `key`: a PRNG key for Monte Carlo (default `jax.random.key(0)`).
    - `activation`: an [`AbstractActivation`][] or its name (`Erf()` by default).
    - `ridge`, `rcond`: as in [`prune_nodes`][].
    - `max_enumerate`: enumerate exactly while `C(K, k)` is at most this (default `MAX_ENUMERATE = 200 000`).
    - `return_errors`: keep the per-subset masks, probabilities and errors in the result.

    **Returns:**

    A [`NodePruningResult`][]. Raises `ValueError` for invalid arguments and for a DPP kernel of rank `< k`
    (the message suggests a `jitter`).

    Example: `expected_node_error(state, 3, method="dpp", reweight="activation").mean`.
    """
    _check_state(state)
    K = state.K
    k = check_count(k, K)
    selector = pruning_option("selector", method, name="method", kernel=kernel, beta=beta, jitter=jitter)
    reweight = pruning_option("reweight", reweight, name="reweight").name
    method = selector.name
    if isinstance(selector, DPPNodes):
        kernel, beta, jitter = selector.kernel, selector.beta, selector.jitter
    ridge = check_float("ridge", ridge, 0.0)
    rcond = check_float("rcond", rcond, 0.0)
    if samples is not None:
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 2:
            raise ValueError(f"`samples` must be an integer >= 2 or None, got {samples!r}")
        samples = int(samples)
    activation = get_activation(activation)
    blocks = _blocks(state, reweight, activation)
    common = dict(method=method, reweight=reweight)

    if method == "importance":
        mask = np.asarray(importance_mask(state, k, selector.score))
        idx = jnp.asarray(_indices_of(mask[None, :], k))
        errors, singular = _subset_errors(blocks, idx, reweight, rcond, ridge)
        probs = jnp.ones((1,), errors.dtype)
        return _weighted_result(errors, probs, singular, masks=mask[None, :], return_errors=return_errors, **common)

    L = _dpp_kernel(state, k, kernel, beta, jitter, activation) if method == "dpp" else None
    if samples is None and math.comb(K, k) <= max_enumerate:
        if method == "dpp":
            masks, probs = kdpp_enumerate(L, k)
        else:
            masks = enumerate_subsets(K, k)
            probs = jnp.full((masks.shape[0],), 1.0 / masks.shape[0], blocks.A.dtype)
        idx = jnp.asarray(_indices_of(masks, k))
        errors, singular = _subset_errors(blocks, idx, reweight, rcond, ridge)
        return _weighted_result(errors, probs, singular, masks=masks, return_errors=return_errors, **common)

    samples = DEFAULT_SAMPLES if samples is None else samples
    key = jax.random.key(0) if key is None else key
    eig = kdpp_eigen(L) if method == "dpp" else None
    idx = _sample_indices(key, eig, K, k, samples, method == "dpp")
    errors, singular = _subset_errors(blocks, idx, reweight, rcond, ridge)
    return _sampled_result(errors, singular, idx, K, return_errors=return_errors, **common)


@eqx.filter_jit
def _closed_form_mean(state: Overlaps, p1, p2, activation):
    A, B, C = _student_blocks(state, activation)
    v, vs = state.v, state.v_star
    quad = jnp.einsum("ik,i,k,ik->", p2, v, v, A)
    lin = jnp.sum(p1 * v * (B @ vs))
    return 0.5 * (quad - 2.0 * lin + vs @ C @ vs)


def expected_node_error_closed_form(
    state: Overlaps,
    k: int,
    *,
    method: Literal["random", "random-node", "dpp", "dpp-node"] | AbstractNodeSelector = "random",
    kernel: Kernel = "Q",
    beta: float = 1.0,
    jitter: float = 0.0,
    activation: AbstractActivation | str = Erf(),
) -> NodePruningResult:
    """Exact `E_S[eps_g]` without reweighting, from inclusion probabilities (no enumeration).

    With `z_i = [i in S]` the pruned error is quadratic in `z`:
    `eps = 1/2 [sum_ik z_i z_k v_i v_k A_ik - 2 sum_i z_i v_i (B v*)_i + v*^T C v*]`, hence
    `E[eps] = 1/2 [sum_ik p2_ik v_i v_k A_ik - 2 sum_i p1_i v_i (B v*)_i + v*^T C v*]`, `p2_ii = p1_i`, with
    `(p1, p2)` from `uniform_marginals` (random) or `kdpp_marginals` (dpp; `O(K^4)` flops, fine for `K` in
    the hundreds).

    **Arguments:**

    - `state`: the [`Overlaps`][] of the unpruned student (concrete).
    - `k`: units kept, static, `1 <= k <= K`.
    - `method`: `"random"` or `"dpp"`, or a [`RandomNodes`][] / [`DPPNodes`][] selector.
    - `kernel`, `beta`, `jitter`: the k-DPP kernel when `method` is the name `"dpp"` (see [`kernel_matrix`][]).
    - `activation`: an [`AbstractActivation`][] or its name (`Erf()` by default).

    **Returns:**

    A [`NodePruningResult`][] with `mean` only: `std`, `min`, `max` are NaN (they need fourth-order inclusion
    probabilities or enumeration), `stderr = 0`, `exact = True`.
    """
    _check_state(state)
    K = state.K
    k = check_count(k, K)
    selector = pruning_option("selector", method, name="method", kernel=kernel, beta=beta, jitter=jitter)
    method = check_choice("method", selector.name, ("random", "dpp"))
    if isinstance(selector, DPPNodes):
        kernel, beta, jitter = selector.kernel, selector.beta, selector.jitter
    activation = get_activation(activation)
    if method == "dpp":
        L = _dpp_kernel(state, k, kernel, beta, jitter, activation)
        p1, p2 = kdpp_marginals(L, k)
    else:
        p1, p2 = uniform_marginals(K, k)
    dtype = state.Q.dtype
    mean = _closed_form_mean(state, p1.astype(dtype), p2.astype(dtype), activation)
    nan = jnp.full((), jnp.nan, mean.dtype)
    return NodePruningResult(
        mean=mean,
        std=nan,
        stderr=jnp.zeros_like(mean),
        min=nan,
        max=nan,
        status=jnp.asarray(Status.SUCCESS, jnp.int32),
        num_singular=jnp.asarray(0, jnp.int32),
        exact=True,
        num_subsets=math.comb(K, k),
        method=method,
        reweight="none",
    )
