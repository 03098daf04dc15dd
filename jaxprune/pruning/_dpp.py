"""k-DPP algebra: elementary symmetric polynomials, exact sampling, closed-form inclusion probabilities.

A k-DPP with a positive semidefinite kernel `L` (`K x K`) draws a size-`k` subset `S` of `{0, ..., K-1}`
with probability `P(S) = det(L_S) / e_k(L)`, where `e_k(L)` is the `k`-th elementary symmetric polynomial
of the eigenvalues of `L`. Subsets have static size `k`: a sample is either the `k` sorted indices or a
boolean mask of length `K`; nothing traced has a data-dependent shape.

Everything here is pure JAX (jit / vmap friendly, `k` static) except the host-level validation
[`check_kdpp_kernel`][] and the static subset enumeration [`enumerate_subsets`][], which are NumPy.

References: A. Kulesza and B. Taskar, "Determinantal Point Processes for Machine Learning",
Foundations and Trends in Machine Learning 5 (2012), arXiv:1207.6083; section 5.2 (k-DPPs),
Algorithm 7 (elementary symmetric polynomials), Algorithm 8 (sampling a k-DPP), Algorithm 1 (phase 2).
"""

import functools
import itertools
import math
import operator

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

__all__ = [
    "KDPPEigen",
    "check_kdpp_kernel",
    "enumerate_subsets",
    "kdpp_eigen",
    "kdpp_enumerate",
    "kdpp_log_prob",
    "kdpp_marginals",
    "log_elementary_symmetric",
    "sample_kdpp",
    "sample_kdpp_mask",
    "sample_uniform_subset",
    "sample_uniform_subset_mask",
    "uniform_marginals",
]

# Upper bound on the number of float entries of one block of the pairwise contraction in
# `kdpp_marginals` (8M float64 = 64 MiB); it only trades memory for the number of scan steps.
_PAIR_BLOCK_ELEMENTS = 8 * 1024 * 1024
# Batch size of the vectorised determinant evaluation in `kdpp_enumerate`.
_ENUMERATE_BATCH = 8192
# Keys per vmapped block when `sample_kdpp` is vmapped over many keys: about this many bytes of
# per-sample basis (`8 k K` each), clipped to [min, max]. On CPU a small block stays in cache (4 MiB
# measured best for K = 500, k = 50); accelerators want wide blocks, bounded only by memory.
_SAMPLE_CHUNK_BYTES = {"cpu": 4 * 1024 * 1024}
_SAMPLE_CHUNK_BYTES_ACCELERATOR = 1024 * 1024 * 1024
_SAMPLE_CHUNK_MIN = 8
_SAMPLE_CHUNK_MAX = 1024


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def _static_int(value, name: str) -> int:
    """`value` as a Python int, or a ValueError naming the argument (it must be static)."""
    if isinstance(value, bool):
        raise ValueError(f"`{name}` must be a Python integer, got the bool {value!r}.")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(
            f"`{name}` must be a static Python integer (it fixes array shapes), "
            f"got {type(value).__name__} {value!r}."
        ) from None


def _check_size(k, K: int, *, low: int = 1) -> int:
    k = _static_int(k, "k")
    if not low <= k <= K:
        raise ValueError(f"`k` must satisfy {low} <= k <= K = {K}, got k = {k}.")
    return k


def _float_dtype(x: Array):
    return x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.result_type(float)


def _check_square(L: Array, name: str = "L") -> int:
    if L.ndim != 2 or L.shape[0] != L.shape[1]:
        raise ValueError(f"`{name}` must be a square K x K matrix, got shape {L.shape}.")
    return L.shape[0]


def _safe_log(x: Array) -> Array:
    """`log(x)` for `x > 0` and `-inf` for `x <= 0`, with finite gradients where `x > 0`."""
    positive = x > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, x, 1)), -jnp.inf)


def _shift_up(log_e: Array, log_lam: Array) -> Array:
    """`log(lam * e_{j-1})` for every degree `j` (with `e_{-1} = 0`), along the last axis."""
    pad = jnp.full(log_e.shape[:-1] + (1,), -jnp.inf, log_e.dtype)
    return jnp.concatenate([pad, log_e[..., :-1]], axis=-1) + log_lam


def _log_esp_table(log_lam: Float[Array, " K"], k: int) -> Float[Array, "K+1 k+1"]:
    """Row `n` holds `log e_j(lambda_0, ..., lambda_{n-1})`, `j = 0..k` (Kulesza & Taskar Alg. 7)."""
    init = jnp.full((k + 1,), -jnp.inf, log_lam.dtype).at[0].set(0)

    def step(log_e, ll):
        new = jnp.logaddexp(log_e, _shift_up(log_e, ll))
        return new, new

    _, rows = jax.lax.scan(step, init, log_lam)
    return jnp.concatenate([init[None, :], rows], axis=0)


# --------------------------------------------------------------------------------------------------
# Elementary symmetric polynomials
# --------------------------------------------------------------------------------------------------


@eqx.filter_jit
def log_elementary_symmetric(eigenvalues: Float[ArrayLike, " K"], k: int) -> Float[Array, " k+1"]:
    """Logarithms of the elementary symmetric polynomials `e_0, ..., e_k` of nonnegative values.

    Runs the recursion `e_j(lambda_1..lambda_n) = e_j(lambda_1..lambda_{n-1}) + lambda_n e_{j-1}(...)`
    (Kulesza & Taskar 2012, Algorithm 7) in log space, `log e_j <- logaddexp(log e_j, log lambda_n +
    log e_{j-1})`. Every term is nonnegative, so nothing cancels: the relative error is `O(K eps)` for
    any spread of magnitudes, and nothing overflows or underflows.

    **Arguments:**

    - `eigenvalues`: nonnegative values `lambda` (negative entries are treated as zero).
    - `k`: static largest degree, `k >= 0`.

    **Returns:**

    `log e_j` for `j = 0..k`, with `log e_0 = 0` and `-inf` where `e_j = 0` (e.g. `j > K`).

    References: Kulesza & Taskar 2012, section 5.2.1, Algorithm 7.
    """
    eigenvalues = jnp.asarray(eigenvalues)
    if eigenvalues.ndim != 1:
        raise ValueError(f"`eigenvalues` must be one-dimensional, got shape {eigenvalues.shape}.")
    k = _static_int(k, "k")
    if k < 0:
        raise ValueError(f"`k` must be >= 0, got {k}.")
    eigenvalues = eigenvalues.astype(_float_dtype(eigenvalues))
    return _log_esp_table(_safe_log(eigenvalues), k)[-1]


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

    - `L`: the `K x K` kernel.
    - `k`: the subset size.
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
# Eigendecomposition
# --------------------------------------------------------------------------------------------------


class KDPPEigen(eqx.Module):
    """Eigendecomposition `L = V diag(lambda) V^T` of a k-DPP kernel, computed once and reused.

    **Fields:**

    - `eigenvalues`: `lambda`, nonnegative, ascending.
    - `eigenvectors`: `V`, orthonormal columns; column `n` belongs to `eigenvalues[n]`.

    Build it with [`kdpp_eigen`][]. References: Kulesza & Taskar 2012, section 5.2.2.
    """

    eigenvalues: Float[Array, " K"]
    eigenvectors: Float[Array, "K K"]

    def __check_init__(self):
        lam, vec = self.eigenvalues, self.eigenvectors
        if lam.ndim != 1 or vec.shape != lam.shape * 2:
            raise ValueError(
                "`eigenvalues` must have shape (K,) and `eigenvectors` shape (K, K); "
                f"got {lam.shape} and {vec.shape}."
            )

    @property
    def size(self) -> int:
        """The ground-set size `K`."""
        return self.eigenvalues.shape[0]


@eqx.filter_jit
def kdpp_eigen(L: Float[ArrayLike, "K K"], jitter: float | Float[ArrayLike, ""] = 0.0) -> KDPPEigen:
    """Eigendecompose `(L + L^T) / 2 + jitter I = V diag(lambda) V^T` once, for many samples.

    Rounding-level negative eigenvalues are clipped to zero. No validation of values is done here (it
    runs under `jit`); see [`check_kdpp_kernel`][].

    **Arguments:**

    - `L`: the `K x K` symmetric positive semidefinite kernel.
    - `jitter`: nonnegative ridge added to the diagonal.

    **Returns:**

    A [`KDPPEigen`][].

    References: Kulesza & Taskar 2012, Algorithm 8 (input).
    """
    L = jnp.asarray(L)
    K = _check_square(L)
    dtype = _float_dtype(L)
    L = L.astype(dtype)
    sym = 0.5 * (L + L.T) + jnp.asarray(jitter, dtype) * jnp.eye(K, dtype=dtype)
    lam, vec = jnp.linalg.eigh(sym)
    return KDPPEigen(eigenvalues=jnp.maximum(lam, 0), eigenvectors=vec)


def _as_eigen(eig_or_L) -> KDPPEigen:
    return eig_or_L if isinstance(eig_or_L, KDPPEigen) else kdpp_eigen(eig_or_L)


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
    sign, logdet = jnp.linalg.slogdet(block)
    logdet = jnp.where(sign > 0, logdet, -jnp.inf)
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
    def logdet(rows):
        sign, value = jnp.linalg.slogdet(L[rows[:, None], rows[None, :]])
        return jnp.where(sign > 0, value, -jnp.inf)

    if idx.shape[0] <= _ENUMERATE_BATCH:
        logdets = jax.vmap(logdet)(idx)
    else:  # bounded memory: blocks of subsets, one after the other
        logdets = jax.lax.map(logdet, idx, batch_size=_ENUMERATE_BATCH)
    return jnp.exp(logdets - jsp.logsumexp(logdets))


def kdpp_enumerate(
    L: Float[ArrayLike, "K K"], k: int
) -> tuple[Bool[np.ndarray, "C K"], Float[Array, " C"]]:
    """Exact k-DPP probabilities of all `C(K, k)` subsets, `P(S) = det(L_S) / sum_{|T|=k} det(L_T)`.

    The `C` determinants of the gathered `k x k` blocks are batched `slogdet`s; the normaliser is their
    log-sum-exp, which equals `e_k(L)` (Kulesza & Taskar 2012, eq. 5.2). Memory and time grow like
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
# Sampling
# --------------------------------------------------------------------------------------------------


def _select_eigenvectors(
    u: Float[Array, " K"], log_lam: Float[Array, " K"], table: Float[Array, "K+1 k+1"], k: int
) -> Int[Array, " k"]:
    """Phase 1 of Kulesza & Taskar Alg. 8: the eigenvector subset `J`, `P(J) = prod(lambda_J) / e_k`.

    Backwards over `n`, with `l` still to choose, keep `n` with probability
    `lambda_n e_{l-1}(lambda_0..lambda_{n-1}) / e_l(lambda_0..lambda_n)` (forced once `l = n + 1`).
    `table` is `_log_esp_table(log_lam, k)`. Returns the `k` chosen indices, ascending.
    """
    K = log_lam.shape[0]
    n = jnp.arange(K)[::-1]

    def step(carry, xs):
        remaining, chosen = carry
        n, ll, row_before, row_with, un = xs
        logp = ll + row_before[jnp.maximum(remaining - 1, 0)] - row_with[remaining]
        take = (remaining > 0) & ((un < jnp.exp(logp)) | (remaining > n))
        chosen = chosen.at[jnp.where(take, remaining - 1, k)].set(n, mode="drop")
        return (remaining - take.astype(remaining.dtype), chosen), None

    xs = (n, log_lam[::-1], table[:-1][::-1], table[1:][::-1], u)
    init = (jnp.asarray(k, n.dtype), jnp.zeros((k,), n.dtype))
    (_, chosen), _ = jax.lax.scan(step, init, xs)
    return chosen


def _categorical(weight: Float[Array, " K"], u: Float[Array, ""]) -> Int[Array, ""]:
    """Index `i` with probability `weight_i / sum(weight)` by inverse CDF with one uniform `u`.

    Two levels (blocks of about `sqrt(K)` items, then items within the chosen block) keep the cost
    `O(K)`: a one-level `cumsum` over `K` items costs `O(K^2)` on CPU. Zero-weight items are never
    returned while some weight is positive (rounding at block edges falls back to the heaviest item).
    """
    (K,) = weight.shape
    size = max(1, math.isqrt(K - 1) + 1)
    num = -(-K // size)
    blocks = jnp.pad(weight, (0, num * size - K)).reshape(num, size)
    totals = jnp.sum(blocks, axis=1)
    cdf = jnp.cumsum(totals)
    x = u * cdf[-1]
    b = jnp.minimum(jnp.sum(cdf <= x), num - 1)
    b = jnp.where(totals[b] > 0, b, jnp.argmax(totals))
    inner = blocks[b]
    y = x - jnp.where(b > 0, cdf[jnp.maximum(b - 1, 0)], 0)
    j = jnp.minimum(jnp.sum(jnp.cumsum(inner) <= y), size - 1)
    j = jnp.where(inner[j] > 0, j, jnp.argmax(inner))
    return b * size + j


def _sample_projection(u: Float[Array, " k"], basis: Float[Array, "k K"]) -> Int[Array, " k"]:
    """Phase 2 (Kulesza & Taskar Alg. 1, second loop): sample the projection DPP with kernel `B^T B`.

    `basis` holds `k` orthonormal vectors of length `K` as rows (the selected eigenvectors). Item `i` is
    drawn with probability proportional to the squared norm of row `i` of the current orthonormal basis
    (a `K x (k - t)` matrix); the basis is then restricted to `e_i^perp`. With `phi_j` the columns of
    `basis` and `r_1, r_2, ...` the orthonormal directions removed so far (`r_t` is `phi_{i_t}` projected
    off `r_1..r_{t-1}`, normalised), the current basis is `basis^T (I - sum_s r_s r_s^T)`, which is
    orthonormal on the complement of the removed directions, and its squared row norms are
    `d_j = |phi_j|^2 - sum_s (phi_j . r_s)^2`. Only `d` (length `K`) and the `r_s` (`k x k`) are
    updated: `O(K k)` per item, fixed shapes, chosen items masked out instead of removed.
    """
    k, K = basis.shape
    dtype = basis.dtype

    def step(carry, xs):
        d, removed, chosen = carry
        t, ut = xs
        i = _categorical(jnp.where(chosen, 0, jnp.maximum(d, 0)), ut)
        r = basis[:, i]
        r = r - (removed @ r) @ removed
        r = r - (removed @ r) @ removed  # second Gram-Schmidt pass ("twice is enough")
        r = r / jnp.sqrt(jnp.sum(r**2))
        d = d - (r @ basis) ** 2
        removed = removed.at[t].set(r)
        return (d, removed, chosen.at[i].set(True)), i

    init = (jnp.sum(basis**2, axis=0), jnp.zeros((k, k), dtype), jnp.zeros((K,), bool))
    _, items = jax.lax.scan(step, init, (jnp.arange(k), u))
    return items


def _draw(
    key: PRNGKeyArray,
    log_lam: Float[Array, " K"],
    table: Float[Array, "K+1 k+1"],
    vec_t: Float[Array, "K K"],
    k: int,
) -> Int[Array, " k"]:
    """One k-DPP sample, given `log lambda`, its polynomial table and the eigenvectors as rows."""
    K = log_lam.shape[0]
    u = jax.random.uniform(key, (K + k,), log_lam.dtype)
    columns = _select_eigenvectors(u[:K], log_lam, table, k)
    return jnp.sort(_sample_projection(u[K:], vec_t[columns]))


def _prepare(lam: Float[Array, " K"], vec: Float[Array, "K K"], k: int):
    """Per-kernel quantities shared by all samples: `log lambda`, the table, `V^T`."""
    log_lam = _safe_log(lam)
    return log_lam, _log_esp_table(log_lam, k), vec.T


def _chunk_size(K: int, k: int) -> int:
    """Keys per block when a batch of samples runs as a `lax.map` (see `_SAMPLE_CHUNK_BYTES`)."""
    backend = jax.default_backend()
    budget = _SAMPLE_CHUNK_BYTES.get(backend, _SAMPLE_CHUNK_BYTES_ACCELERATOR)
    upper = _SAMPLE_CHUNK_MAX if backend == "cpu" else 1 << 20
    return max(_SAMPLE_CHUNK_MIN, min(upper, budget // (8 * k * K)))


@functools.lru_cache(maxsize=None)
def _batched_sampler(k: int):
    """The one-sample sampler for a static `k`, with a batching rule for many keys and one kernel.

    Under `vmap` over keys alone, the samples are drawn by `lax.map` over blocks of keys (each block
    vmapped) instead of one vmap over the whole batch: the eigendecomposition and the polynomial table
    are shared, the per-block working set stays in cache, and memory stays bounded for any number of
    keys (a plain vmap holds a `k x K` basis per key at once). Any other batching is a plain vmap.
    """

    def one(key, lam, vec):
        return _draw(key, *_prepare(lam, vec, k), k)

    @jax.custom_batching.custom_vmap
    def sampler(key, lam, vec):
        return one(key, lam, vec)

    @sampler.def_vmap
    def _rule(axis_size, in_batched, key, lam, vec):
        key_batched, lam_batched, vec_batched = in_batched
        if key_batched and not lam_batched and not vec_batched:
            chunk = max(1, min(_chunk_size(lam.shape[0], k), axis_size))
            num = -(-axis_size // chunk)
            # Pad to whole blocks (repeating keys; the extra samples are dropped) so that a single
            # block computation is compiled, rather than one more for a remainder.
            keys = jnp.concatenate([key, key[: num * chunk - axis_size]])
            keys = keys.reshape((num, chunk) + key.shape[1:])
            shared = _prepare(lam, vec, k)  # once, outside the loop over blocks
            block = jax.vmap(lambda one_key: _draw(one_key, *shared, k))
            out = block(keys[0])[None] if num == 1 else jax.lax.map(block, keys)
            out = out.reshape(num * chunk, k)[:axis_size]
        else:
            axes = tuple(0 if b else None for b in in_batched)
            out = jax.vmap(one, in_axes=axes)(key, lam, vec)
        return out, True

    return sampler


@eqx.filter_jit
def sample_kdpp(
    key: PRNGKeyArray, eig_or_L: KDPPEigen | Float[ArrayLike, "K K"], k: int
) -> Int[Array, " k"]:
    """Draw one exact sample of the k-DPP `P(S) = det(L_S) / e_k(L)`: `k` distinct sorted indices.

    Kulesza & Taskar 2012, Algorithm 8: phase 1 selects `k` eigenvectors `J` with probability
    `prod(lambda_J) / e_k(lambda)` by a backward pass over the log elementary symmetric polynomials;
    phase 2 samples the projection DPP spanned by `V_J` item by item (`k` steps, `lax.scan`, fixed
    shapes). Cost `O(K k)` for phase 1 plus `O(K k^2)` for phase 2 once `eig` is known. Vectorise with
    `jax.vmap(sample_kdpp, in_axes=(0, None, None))`: the eigendecomposition and the polynomial table
    are then computed once, and the keys are processed in cache-sized vmapped blocks (a custom
    batching rule). The kernel must have `e_k(L) > 0` (see [`check_kdpp_kernel`][]); otherwise the
    output is meaningless. Not differentiable (the kernel enters through `stop_gradient`).

    **Arguments:**

    - `key`: a PRNG key.
    - `eig_or_L`: a [`KDPPEigen`][] (reuse it across calls) or the `K x K` kernel `L`.
    - `k`: static subset size, `1 <= k <= K`.

    **Returns:**

    The `k` sampled indices, sorted ascending.

    References: Kulesza & Taskar 2012, Algorithm 8 (and Algorithm 1 for phase 2).
    """
    eig = _as_eigen(eig_or_L)
    k = _check_size(k, eig.size)
    lam = jax.lax.stop_gradient(eig.eigenvalues)
    vec = jax.lax.stop_gradient(eig.eigenvectors)
    return _batched_sampler(k)(key, lam, vec)


@eqx.filter_jit
def sample_kdpp_mask(
    key: PRNGKeyArray, eig_or_L: KDPPEigen | Float[ArrayLike, "K K"], k: int
) -> Bool[Array, " K"]:
    """One exact k-DPP sample as a boolean mask of length `K` (see [`sample_kdpp`][]).

    References: Kulesza & Taskar 2012, Algorithm 8.
    """
    eig = _as_eigen(eig_or_L)
    items = sample_kdpp(key, eig, k)
    return jnp.zeros((eig.size,), bool).at[items].set(True)


@eqx.filter_jit
def sample_uniform_subset(key: PRNGKeyArray, K: int, k: int) -> Int[Array, " k"]:
    """A subset of size `k` of `{0..K-1}` drawn uniformly among the `C(K, k)`: sorted indices.

    **Arguments:**

    - `key`: a PRNG key.
    - `K`: static ground-set size.
    - `k`: static subset size, `0 <= k <= K`.

    **Returns:**

    The `k` indices (those of the `k` largest of `K` iid uniforms), sorted ascending.
    """
    K = _static_int(K, "K")
    k = _check_size(k, K, low=0)
    _, items = jax.lax.top_k(jax.random.uniform(key, (K,)), k)
    return jnp.sort(items)


def sample_uniform_subset_mask(key: PRNGKeyArray, K: int, k: Int[ArrayLike, ""]) -> Bool[Array, " K"]:
    """The subset of [`sample_uniform_subset`][] (the `k` largest of `K` iid uniforms, same key) as a boolean
    mask of length `K`; `k` may be traced, so one compilation serves every subset size.

    **Arguments:** `key` (a PRNG key); `K` (static ground-set size); `k` (subset size, `0 <= k <= K`, checked
    when concrete).
    """
    K = _static_int(K, "K")
    if not isinstance(k, jax.core.Tracer):
        k = _check_size(k, K, low=0)
    return _uniform_subset_mask(key, K, jnp.asarray(k))


@functools.partial(jax.jit, static_argnums=1)
def _uniform_subset_mask(key, K: int, k):
    rank = jnp.argsort(jnp.argsort(-jax.random.uniform(key, (K,))))  # 0 for the largest uniform
    return rank < k


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
