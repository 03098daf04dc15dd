"""k-DPP algebra: validation of a kernel, exact subset probabilities (one subset, or all by enumeration) and
closed-form inclusion probabilities (docs/theory.md, section 6.1).

A k-DPP with a positive semidefinite kernel `L` (`K x K`) draws a size-`k` subset `S` of `{0, ..., K-1}`
with probability `P(S) = det(L_S) / e_k(L)`, where `e_k(L)` is the `k`-th elementary symmetric polynomial
of the eigenvalues of `L` (`_kdpp_eigen`). The exact sampler lives in `_dpp_sample` (re-exported here).
Determinants of the `k x k` blocks use the LAPACK-free [`logdet_psd`][] (batched LAPACK hangs on CPU).

References: A. Kulesza and B. Taskar, "Determinantal Point Processes for Machine Learning",
Foundations and Trends in Machine Learning 5 (2012), arXiv:1207.6083; section 5.2 (k-DPPs).
"""

from __future__ import annotations

import functools
import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ._dpp_sample import sample_kdpp as sample_kdpp
from ._dpp_sample import sample_kdpp_mask as sample_kdpp_mask
from ._dpp_sample import sample_uniform_subset as sample_uniform_subset
from ._dpp_sample import sample_uniform_subset_mask as sample_uniform_subset_mask
from ._kdpp_eigen import KDPPEigen as KDPPEigen
from ._kdpp_eigen import kdpp_eigen as kdpp_eigen
from ._kdpp_eigen import log_elementary_symmetric as log_elementary_symmetric
from ._kdpp_eigen import (
    _as_eigen,
    _check_size,
    _check_square,
    _float_dtype,
    _log_esp_table,
    _safe_log,
    _shift_up,
    _static_int,
)
from ._linalg import logdet_psd

__all__ = [
    "check_kdpp_kernel",
    "enumerate_subsets",
    "kdpp_enumerate",
    "kdpp_log_prob",
    "kdpp_marginals",
    "uniform_marginals",
]

# Upper bound on the number of float entries of one block of the pairwise contraction in
# `kdpp_marginals` (8M float64 = 64 MiB); it only trades memory for the number of scan steps.
_PAIR_BLOCK_ELEMENTS = 8 * 1024 * 1024
# Subsets per block of the determinant evaluation in `kdpp_enumerate` (fixed blocks, the last one padded).
_ENUMERATE_BATCH = 4096


# --------------------------------------------------------------------------------------------------
# Validation (host level)
# --------------------------------------------------------------------------------------------------


def check_kdpp_kernel(L: ArrayLike, k: int, *, jitter: float = 0.0) -> None:
    """Host-level validation of a k-DPP kernel; raises `ValueError` naming the offending argument.

    Checks that `L` is a finite, square, symmetric, positive semidefinite matrix (up to a rounding
    tolerance `100 K eps max|L_ij|`), that `1 <= k <= K`, that `jitter >= 0`, and that the numerical rank
    `r` of `L + jitter I` (eigenvalues above `K eps max|lambda|`) is at least `k`: for `r < k` every
    `k x k` principal minor vanishes, `e_k(L) = 0`, and the k-DPP `P(S) = det(L_S) / e_k(L)` does not
    exist. Call it outside `jit` (it reads concrete values).

    **Arguments:**

    - `L`: the kernel `Float[K, K]` (any array-like; its shape and values are what is checked).
    - `k`: the subset size, a Python integer, `1 <= k <= K`.
    - `jitter`: a nonnegative ridge; the kernel actually used is `L + jitter I`.

    **Returns:**

    `None`; raises `ValueError` if a check fails.

    References: Kulesza & Taskar 2012, section 5.2.
    """
    L_np = np.asarray(L)
    if L_np.ndim != 2 or L_np.shape[0] != L_np.shape[1]:
        raise ValueError(f"`L` must be a square K x K matrix, got shape {L_np.shape}.")
    if not (np.issubdtype(L_np.dtype, np.floating) or np.issubdtype(L_np.dtype, np.integer)):
        raise ValueError(f"`L` must have a real floating or integer dtype, got {L_np.dtype}.")
    K = L_np.shape[0]
    if K == 0:
        raise ValueError("`L` must be at least 1 x 1, got an empty matrix.")
    k = _check_size(k, K)
    jitter_f = float(jitter)
    if not (math.isfinite(jitter_f) and jitter_f >= 0):
        raise ValueError(f"`jitter` must be a finite nonnegative number, got {jitter!r}.")
    eps = float(np.finfo(L_np.dtype if np.issubdtype(L_np.dtype, np.floating) else np.float64).eps)
    L_np = L_np.astype(np.float64)
    bad = ~np.isfinite(L_np)
    if bad.any():
        raise ValueError(f"`L` must be finite, got {int(bad.sum())} non-finite entries.")
    scale = float(np.max(np.abs(L_np))) if L_np.size else 0.0
    tol = 100 * K * eps * max(scale, np.finfo(np.float64).tiny)
    asym = float(np.max(np.abs(L_np - L_np.T)))
    if asym > tol:
        raise ValueError(
            f"`L` must be symmetric, got max |L - L^T| = {asym:.3g} (tolerance {tol:.3g})."
        )
    lam = np.linalg.eigvalsh(0.5 * (L_np + L_np.T))
    if lam[0] < -tol:
        raise ValueError(
            f"`L` must be positive semidefinite, got smallest eigenvalue {lam[0]:.3g} "
            f"(tolerance {-tol:.3g})."
        )
    lam_j = np.clip(lam, 0, None) + jitter_f
    rank_tol = K * eps * max(float(lam_j[-1]), np.finfo(np.float64).tiny)
    rank = int(np.sum(lam_j > rank_tol))
    if rank < k:
        extra = "" if jitter_f == 0 else f" (with jitter = {jitter_f:.3g})"
        suggestion = 1e-6 * max(float(np.trace(L_np)) / K, 1e-300)
        raise ValueError(
            f"`L` has numerical rank r = {rank} < k = {k}{extra}: a k-DPP over a kernel of rank r < k "
            f"does not exist (every k x k principal minor vanishes, so e_k(L) = 0). Pass a positive "
            f"`jitter` (e.g. jitter={suggestion:.1e}, i.e. 1e-6 trace(L)/K) to use L + jitter I, or "
            f"choose k <= {rank}."
        )


# --------------------------------------------------------------------------------------------------
# Exact probabilities
# --------------------------------------------------------------------------------------------------


@eqx.filter_jit
def kdpp_log_prob(L: Float[ArrayLike, "K K"], mask: Bool[ArrayLike, " K"]) -> Float[Array, ""]:
    """`log P(S) = log det(L_S) - log e_k(L)` of the subset `S = {i : mask_i}`, with `k = |S|`.

    `k` is not static: `det(L_S)` is the determinant of `where(mask mask^T, L, I)`, and `log e_k` is read
    from `log e_0..log e_K`. Returns `-inf` where `det(L_S) <= 0` numerically.

    **Arguments:**

    - `L`: the `K x K` symmetric positive semidefinite kernel.
    - `mask`: boolean membership of `S`.

    **Returns:**

    The scalar log-probability under the `|S|`-DPP with kernel `L`.

    References: Kulesza & Taskar 2012, equation (5.1).
    """
    L = jnp.asarray(L)
    K = _check_square(L)
    mask = jnp.asarray(mask)
    if mask.shape != (K,) or mask.dtype != jnp.bool_:
        raise ValueError(f"`mask` must be a boolean array of shape ({K},), got {mask.dtype}{mask.shape}.")
    dtype = _float_dtype(L)
    L = 0.5 * (L + L.T).astype(dtype)
    block = jnp.where(mask[:, None] & mask[None, :], L, jnp.eye(K, dtype=dtype))
    logdet = logdet_psd(block)
    log_e = log_elementary_symmetric(jnp.maximum(jnp.linalg.eigvalsh(L), 0), K)
    return logdet - log_e[jnp.sum(mask)]


@functools.lru_cache(maxsize=32)
def _subset_indices(K: int, k: int) -> np.ndarray:
    combos = list(itertools.combinations(range(K), k))
    out = np.array(combos, dtype=np.int32).reshape(len(combos), k)
    out.flags.writeable = False
    return out


def enumerate_subsets(K: int, k: int) -> Bool[np.ndarray, "C K"]:
    """All `C(K, k)` subsets of size `k` of `{0..K-1}` as boolean masks, in lexicographic order.

    **Arguments:**

    - `K`: ground-set size (static).
    - `k`: subset size (static), `0 <= k <= K`.

    **Returns:**

    A NumPy boolean array of shape `(C(K, k), K)`; row `c` is the `c`-th subset of
    `itertools.combinations(range(K), k)`.
    """
    K = _static_int(K, "K")
    if K < 0:
        raise ValueError(f"`K` must be >= 0, got {K}.")
    k = _check_size(k, K, low=0)
    idx = _subset_indices(K, k)
    masks = np.zeros((idx.shape[0], K), dtype=bool)
    masks[np.arange(idx.shape[0])[:, None], idx] = True
    return masks


@jax.jit
def _enumerate_probs(L: Float[Array, "K K"], idx: Int[Array, "C k"]) -> Float[Array, " C"]:
    """`det(L_S) / sum_T det(L_T)` over the subsets `S` given as rows of `idx`, in fixed blocks of
    `_ENUMERATE_BATCH` (the last padded; one compiled block), each a vmap of the LAPACK-free `logdet_psd`."""
    C = idx.shape[0]
    B = min(C, _ENUMERATE_BATCH)
    num = -(-C // B)
    padded = jnp.concatenate([idx, jnp.broadcast_to(idx[:1], (num * B - C, idx.shape[1]))])

    def block(rows):
        return jax.vmap(lambda r: logdet_psd(L[r[:, None], r[None, :]]))(rows)

    blocks = padded.reshape(num, B, idx.shape[1])
    logdets = (block(blocks[0])[None] if num == 1 else jax.lax.map(block, blocks)).reshape(-1)[:C]
    return jnp.exp(logdets - jsp.logsumexp(logdets))


def kdpp_enumerate(
    L: Float[ArrayLike, "K K"], k: int
) -> tuple[Bool[np.ndarray, "C K"], Float[Array, " C"]]:
    """Exact k-DPP probabilities of all `C(K, k)` subsets, `P(S) = det(L_S) / sum_{|T|=k} det(L_T)`.

    The `C` determinants of the gathered `k x k` blocks are LAPACK-free eliminations ([`logdet_psd`][]);
    the normaliser is their log-sum-exp, which equals `e_k(L)` (Kulesza & Taskar 2012, eq. 5.2). Memory and
    time grow like
    `C(K, k) k^3`: meant for `C(K, k)` up to a few `1e5`.

    **Arguments:**

    - `L`: the `K x K` symmetric positive semidefinite kernel.
    - `k`: static subset size, `1 <= k <= K`.

    **Returns:**

    `(masks, probs)`: the NumPy masks of [`enumerate_subsets`][] and the matching probabilities.

    References: Kulesza & Taskar 2012, section 5.2.
    """
    L = jnp.asarray(L)
    K = _check_square(L)
    k = _check_size(k, K)
    L = L.astype(_float_dtype(L))
    idx = _subset_indices(K, k)
    return enumerate_subsets(K, k), _enumerate_probs(0.5 * (L + L.T), jnp.asarray(idx))


# --------------------------------------------------------------------------------------------------
# Inclusion probabilities
# --------------------------------------------------------------------------------------------------


def _leave_one_out(prefix: Array, suffix: Array, degree: int) -> Float[Array, " K"]:
    """`log e_degree(lambda without n)` for every `n`, from prefix and suffix tables (`O(K degree)`)."""
    before = prefix[:-1, : degree + 1]  # log e_a(lambda_0..lambda_{n-1})
    after = suffix[1:, degree::-1]  # log e_{degree-a}(lambda_{n+1}..lambda_{K-1})
    return jsp.logsumexp(before + after, axis=1)


def _leave_two_out(log_lam: Array, suffix: Array, degree: int) -> Float[Array, "K K"]:
    """`log e_degree(lambda without n and m)` for all `n != m` (`-inf` on the diagonal), `O(K^2 degree)`.

    A scan over `m` carries, for every `n`, the log polynomials of `{lambda_0..lambda_{m-1}} \\ {n}`; at
    step `m` the pairs `n < m` are completed by a log-space convolution with those of
    `lambda_{m+1}..lambda_{K-1}`, then `lambda_m` is added to every row but row `m`. All terms are
    nonnegative (no deflation, no cancellation).
    """
    K = log_lam.shape[0]
    rows = jnp.arange(K)
    init = jnp.broadcast_to(jnp.full((degree + 1,), -jnp.inf, log_lam.dtype).at[0].set(0), (K, degree + 1))

    def step(without, xs):
        m, ll, tail = xs
        pairs = jsp.logsumexp(without + tail[None, :], axis=1)
        added = jnp.logaddexp(without, _shift_up(without, ll))
        without = jnp.where((rows == m)[:, None], without, added)
        return without, pairs

    tails = suffix[1:, degree::-1]
    _, by_m = jax.lax.scan(step, init, (rows, log_lam, tails))
    upper = by_m.T  # [n, m] for n < m
    below = rows[:, None] < rows[None, :]
    return jnp.where(below, upper, jnp.where(below.T, upper.T, -jnp.inf))


def _pair_contraction(vec: Float[Array, "K K"], weight: Float[Array, "K K"]) -> Float[Array, "K K"]:
    """`Q_ij = sum_{n,m} W_nm V_in V_jn V_im V_jm` by blocks of `n`: `2 K^4` flops as GEMMs."""
    K = vec.shape[0]
    block = max(1, min(K, _PAIR_BLOCK_ELEMENTS // (K * K)))
    num = -(-K // block)
    pad = num * block - K
    cols = jnp.pad(vec, ((0, 0), (0, pad))).T.reshape(num, block, K)  # [q, b, i] = V[i, q*block + b]
    rows_w = jnp.pad(weight, ((0, pad), (0, 0))).reshape(num, block, K)  # [q, b, m] = W[q*block+b, m]

    def step(acc, xs):
        v_n, w_n = xs
        x = v_n.T[:, :, None] * vec[:, None, :]  # [i, b, m] = V[i, n_b] V[i, m]
        y = x * w_n[None, :, :]
        acc = acc + y.reshape(K, -1) @ x.reshape(K, -1).T
        return acc, None

    acc, _ = jax.lax.scan(step, jnp.zeros((K, K), vec.dtype), (cols, rows_w))
    return acc


@eqx.filter_jit
def kdpp_marginals(
    eig_or_L: KDPPEigen | Float[ArrayLike, "K K"], k: int
) -> tuple[Float[Array, " K"], Float[Array, "K K"]]:
    """Closed-form inclusion probabilities `p1_i = P(i in S)`, `p2_ij = P(i, j in S)` of a k-DPP.

    A k-DPP is a mixture of elementary DPPs: the eigenvector set `J` (`|J| = k`) has probability
    `prod(lambda_J) / e_k`, and given `J`, `S` is the projection DPP with kernel `P^J = V_J V_J^T`, for
    which `P(i in S) = P^J_ii` and `P(i, j in S) = P^J_ii P^J_jj - (P^J_ij)^2`. With
    `pi_n = P(n in J) = lambda_n e_{k-1}(lambda without n) / e_k` and
    `pi_nm = P(n, m in J) = lambda_n lambda_m e_{k-2}(lambda without n, m) / e_k` (`n != m`):

    `p1_i = sum_n pi_n V_in^2`,
    `p2_ij = sum_{n != m} pi_nm (V_in^2 V_jm^2 - V_in V_jn V_im V_jm)` for `i != j`, `p2_ii = p1_i`.

    The leave-one/two-out polynomials are built in log space from prefix/suffix tables (`O(K^2 k)`, no
    cancellation); the quartic sum costs `2 K^4` flops as blocked matrix products (seconds for
    `K = 500` on a CPU). Results are clipped to `[0, 1]` (rounding). `sum_i p1_i = k` and
    `sum_j p2_ij = k p1_i`. NaN if `e_k(L) = 0`.

    **Arguments:**

    - `eig_or_L`: a [`KDPPEigen`][] or the `K x K` kernel `L`.
    - `k`: static subset size, `1 <= k <= K`.

    **Returns:**

    `(p1, p2)` with shapes `(K,)` and `(K, K)`.

    References: Kulesza & Taskar 2012, section 5.2.2 (mixture of elementary DPPs, eq. 5.3) and
    section 2.4 (elementary DPPs, marginal kernel `P^J`).
    """
    eig = _as_eigen(eig_or_L)
    K = eig.size
    k = _check_size(k, K)
    lam, vec = eig.eigenvalues, eig.eigenvectors
    log_lam = _safe_log(lam)
    prefix = _log_esp_table(log_lam, k)
    suffix = _log_esp_table(log_lam[::-1], k)[::-1]  # row n: lambda_n..lambda_{K-1}
    log_ek = prefix[-1, k]

    pi1 = jnp.exp(log_lam + _leave_one_out(prefix, suffix, k - 1) - log_ek)
    sq = vec**2
    p1 = sq @ pi1

    if k >= 2:
        log_e2 = _leave_two_out(log_lam, suffix, k - 2)
        pi2 = jnp.exp(log_lam[:, None] + log_lam[None, :] + log_e2 - log_ek)
        p2 = sq @ pi2 @ sq.T - _pair_contraction(vec, pi2)
    else:
        p2 = jnp.zeros((K, K), lam.dtype)
    diag = jnp.eye(K, dtype=bool)
    p2 = jnp.where(diag, p1[:, None], 0.5 * (p2 + p2.T))
    return jnp.clip(p1, 0, 1), jnp.clip(p2, 0, 1)


def uniform_marginals(K: int, k: int) -> tuple[Float[Array, " K"], Float[Array, "K K"]]:
    """Inclusion probabilities of a uniform size-`k` subset: `p1_i = k / K`, `p2_ij = k(k-1) / (K(K-1))`.

    **Arguments:**

    - `K`: static ground-set size.
    - `k`: static subset size, `0 <= k <= K`.

    **Returns:**

    `(p1, p2)` with shapes `(K,)` and `(K, K)`, `p2_ii = p1_i`.
    """
    K = _static_int(K, "K")
    if K < 1:
        raise ValueError(f"`K` must be >= 1, got {K}.")
    k = _check_size(k, K, low=0)
    dtype = jnp.result_type(float)
    p1 = jnp.full((K,), k / K, dtype)
    pair = k * (k - 1) / (K * (K - 1)) if K > 1 else 0.0
    p2 = jnp.where(jnp.eye(K, dtype=bool), p1[:, None], jnp.full((K, K), pair, dtype))
    return p1, p2
