"""Exact k-DPP sampling (docs/theory.md, section 6.1): one sampler for a static size `k` (`k` sorted indices)
and for a traced size (a boolean mask; one compilation serves every size), for one kernel or, under `vmap`,
a batch of kernels; and uniform subsets (the `random` selector).

Kulesza & Taskar 2012, Algorithm 8: phase 1 selects `k` eigenvectors `J` with probability
`prod(lambda_J) / e_k(lambda)` by a backward pass over the log elementary symmetric polynomials; phase 2 samples
the projection DPP spanned by `V_J` item by item. Work arrays have a static number `cap >= k` of slots (`cap = k`
for a static size, `cap = k_max` or `K` for a traced one); the steps past `k` change nothing. For the same key
and `k`, the static and the traced sampler return the same subset (the uniforms are one threefry stream whose
prefix does not depend on its length).

References: A. Kulesza and B. Taskar, "Determinantal Point Processes for Machine Learning", Foundations and
Trends in Machine Learning 5 (2012), arXiv:1207.6083; Algorithm 8 and Algorithm 1 (phase 2).
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from ._kdpp_eigen import KDPPEigen, _as_eigen, _check_size, _log_esp_table, _safe_log, _static_int
from ._masks import top_k_mask

__all__ = [
    "sample_kdpp",
    "sample_kdpp_mask",
    "sample_uniform_subset",
    "sample_uniform_subset_mask",
]

# Keys per vmapped block when the sampler is vmapped over many keys: about this many bytes of per-sample
# basis (`8 cap K` each), clipped to [min, max]. On CPU a small block stays in cache (4 MiB measured best for
# K = 500, k = 50); accelerators want wide blocks, bounded only by memory.
_SAMPLE_CHUNK_BYTES = {"cpu": 4 * 1024 * 1024}
_SAMPLE_CHUNK_BYTES_ACCELERATOR = 1024 * 1024 * 1024
_SAMPLE_CHUNK_MIN = 8
_SAMPLE_CHUNK_MAX = 1024


def _select_eigenvectors(
    u: Float[Array, " K"], log_lam: Float[Array, " K"], table: Float[Array, "K+1 _"], k, cap: int
) -> Int[Array, " cap"]:
    """Phase 1 of Kulesza & Taskar Alg. 8: the eigenvector subset `J`, `P(J) = prod(lambda_J) / e_k`.

    Backwards over `n`, with `l` still to choose, keep `n` with probability
    `lambda_n e_{l-1}(lambda_0..lambda_{n-1}) / e_l(lambda_0..lambda_n)` (forced once `l = n + 1`).
    `table` is `_log_esp_table(log_lam, cap)`, `k <= cap` (static or traced). Returns the chosen indices,
    ascending, in the first `k` of `cap` slots (the others 0).
    """
    K = log_lam.shape[0]
    n = jnp.arange(K)[::-1]

    def step(carry, xs):
        remaining, chosen = carry
        n, ll, row_before, row_with, un = xs
        logp = ll + row_before[jnp.maximum(remaining - 1, 0)] - row_with[remaining]
        take = (remaining > 0) & ((un < jnp.exp(logp)) | (remaining > n))
        chosen = chosen.at[jnp.where(take, remaining - 1, cap)].set(n, mode="drop")
        return (remaining - take.astype(remaining.dtype), chosen), None

    xs = (n, log_lam[::-1], table[:-1][::-1], table[1:][::-1], u)
    init = (jnp.asarray(k, n.dtype), jnp.zeros((cap,), n.dtype))
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


def _sample_projection(u: Float[Array, " cap"], basis: Float[Array, "cap K"], k) -> Int[Array, " cap"]:
    """Phase 2 (Kulesza & Taskar Alg. 1, second loop): sample the projection DPP with kernel `B^T B`.

    `basis` holds orthonormal vectors of length `K` as rows (the selected eigenvectors; rows past `k` are
    zero). Item `i` is drawn with probability proportional to the squared norm of row `i` of the current
    orthonormal basis; the basis is then restricted to `e_i^perp`. With `phi_j` the columns of `basis` and
    `r_1, r_2, ...` the orthonormal directions removed so far (`r_t` is `phi_{i_t}` projected off
    `r_1..r_{t-1}`, normalised), the squared row norms are `d_j = |phi_j|^2 - sum_s (phi_j . r_s)^2`. Only `d`
    (length `K`) and the `r_s` (`cap x cap`) are updated: `O(K cap)` per item, fixed shapes, chosen items
    masked out instead of removed. `k=None`: every one of the `cap` steps draws; else steps `t >= k` draw
    nothing and return the sentinel `K`.
    """
    cap, K = basis.shape
    dtype = basis.dtype

    def step(carry, xs):
        d, removed, chosen = carry
        t, ut = xs
        i = _categorical(jnp.where(chosen, 0, jnp.maximum(d, 0)), ut)
        r = basis[:, i]
        r = r - (removed @ r) @ removed
        r = r - (removed @ r) @ removed  # second Gram-Schmidt pass ("twice is enough")
        r = r / jnp.sqrt(jnp.sum(r**2))
        new = (d - (r @ basis) ** 2, removed.at[t].set(r), chosen.at[i].set(True))
        if k is None:
            return new, i
        active = t < k
        new = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, (d, removed, chosen))
        return new, jnp.where(active, i, K)

    init = (jnp.sum(basis**2, axis=0), jnp.zeros((cap, cap), dtype), jnp.zeros((K,), bool))
    _, items = jax.lax.scan(step, init, (jnp.arange(cap, dtype=jnp.int32), u))
    return items


def _draw(key: PRNGKeyArray, log_lam, table, vec_t, k, cap: int, traced: bool) -> Int[Array, " cap"]:
    """One k-DPP sample: `cap` item slots, the first `k` drawn (sorted ascending), the rest the sentinel `K`."""
    K = log_lam.shape[0]
    u = jax.random.uniform(key, (K + cap,), log_lam.dtype)
    columns = _select_eigenvectors(u[:K], log_lam, table, k if traced else cap, cap)
    basis = vec_t[columns]
    if traced:
        basis = jnp.where((jnp.arange(cap, dtype=jnp.int32) < k)[:, None], basis, 0)
    return jnp.sort(_sample_projection(u[K:], basis, k if traced else None))


def _prepare(lam: Float[Array, " K"], vec: Float[Array, "K K"], cap: int):
    """Per-kernel quantities shared by all samples: `log lambda`, the polynomial table, `V^T`."""
    log_lam = _safe_log(lam)
    return log_lam, _log_esp_table(log_lam, cap), vec.T


def _chunk_size(K: int, cap: int) -> int:
    """Keys per block when a batch of samples runs as a `lax.map` (see `_SAMPLE_CHUNK_BYTES`)."""
    backend = jax.default_backend()
    budget = _SAMPLE_CHUNK_BYTES.get(backend, _SAMPLE_CHUNK_BYTES_ACCELERATOR)
    upper = _SAMPLE_CHUNK_MAX if backend == "cpu" else 1 << 20
    return max(_SAMPLE_CHUNK_MIN, min(upper, budget // (8 * max(cap, 1) * K)))


@functools.lru_cache(maxsize=None)
def _batched_sampler(cap: int, traced: bool):
    """The one-sample sampler for `cap` slots, with a batching rule for many keys and one kernel.

    Under `vmap` over keys alone, the samples are drawn by `lax.map` over blocks of keys (each block
    vmapped) instead of one vmap over the whole batch: the eigendecomposition and the polynomial table
    are shared, the per-block working set stays in cache, and memory stays bounded for any number of
    keys. Any other batching (a batch of kernels, of sizes) is a plain vmap.
    """

    def one(key, lam, vec, k):
        return _draw(key, *_prepare(lam, vec, cap), k, cap, traced)

    @jax.custom_batching.custom_vmap
    def sampler(key, lam, vec, k):
        return one(key, lam, vec, k)

    @sampler.def_vmap
    def _rule(axis_size, in_batched, key, lam, vec, k):
        key_batched, *others = in_batched
        if key_batched and not any(others):
            chunk = max(1, min(_chunk_size(lam.shape[0], cap), axis_size))
            num = -(-axis_size // chunk)
            # Pad to whole blocks (repeating keys; the extra samples are dropped) so that a single
            # block computation is compiled, rather than one more for a remainder.
            keys = jnp.concatenate([key, key[: num * chunk - axis_size]])
            keys = keys.reshape((num, chunk) + key.shape[1:])
            shared = _prepare(lam, vec, cap)  # once, outside the loop over blocks
            block = jax.vmap(lambda one_key: _draw(one_key, *shared, k, cap, traced))
            out = block(keys[0])[None] if num == 1 else jax.lax.map(block, keys)
            out = out.reshape(num * chunk, cap)[:axis_size]
        else:
            axes = tuple(0 if b else None for b in in_batched)
            out = jax.vmap(one, in_axes=axes)(key, lam, vec, k)
        return out, True

    return sampler


def _stopped(eig: KDPPEigen):
    return jax.lax.stop_gradient(eig.eigenvalues), jax.lax.stop_gradient(eig.eigenvectors)


@eqx.filter_jit
def sample_kdpp(
    key: PRNGKeyArray, eig_or_L: KDPPEigen | Float[ArrayLike, "K K"], k: int
) -> Int[Array, " k"]:
    """Draw one exact sample of the k-DPP `P(S) = det(L_S) / e_k(L)`: `k` distinct sorted indices.

    Kulesza & Taskar 2012, Algorithm 8 (module docstring): cost `O(K k)` for phase 1 plus `O(K k^2)` for
    phase 2 once the eigendecomposition is known. Vectorise with `jax.vmap(sample_kdpp, in_axes=(0, None,
    None))`: the eigendecomposition and the polynomial table are then computed once, and the keys are
    processed in cache-sized vmapped blocks (a custom batching rule). The kernel must have `e_k(L) > 0` (see
    [`check_kdpp_kernel`][]); otherwise the output is meaningless. Not differentiable (the kernel enters
    through `stop_gradient`). For a traced size use [`sample_kdpp_mask`][].

    **Arguments:**

    - `key`: a PRNG key.
    - `eig_or_L`: a [`KDPPEigen`][] (reuse it across calls) or the kernel `L`, `Float[K, K]` (a `ValueError`
      naming `L` for another shape).
    - `k`: static subset size, a Python integer, `1 <= k <= K`.

    **Returns:**

    The `k` sampled indices `Int[k]`, sorted ascending.

    Example: `jax.vmap(sample_kdpp, in_axes=(0, None, None))(jax.random.split(key, 1000), kdpp_eigen(L), 3)`
    draws 1000 subsets of size 3.
    """
    eig = _as_eigen(eig_or_L)
    k = _check_size(k, eig.size)
    return _batched_sampler(k, False)(key, *_stopped(eig), jnp.asarray(k, jnp.int32))


def sample_kdpp_mask(
    key: PRNGKeyArray,
    eig_or_L: KDPPEigen | Float[ArrayLike, "K K"],
    k: int | Int[ArrayLike, ""],
    *,
    k_max: int | None = None,
) -> Bool[Array, " K"]:
    """One exact k-DPP sample as a boolean mask of length `K`: the one k-DPP sampler of jaxprune.

    - `k` a Python int: static size (the sample of [`sample_kdpp`][] with the same key);
    - `k` an integer array (traced under `jit`/`vmap`): one compilation serves every size `0 <= k <= k_max`;
      the work arrays have `k_max` slots (static, default `K`; a smaller bound saves work for large `K`).
      The same key gives the same subset as the static sampler.

    Many samples: `jax.vmap(sample_kdpp_mask, in_axes=(0, None, None))(keys, eig, k)` (one kernel, blocks of
    keys); a batch of kernels and sizes: `jax.vmap(sample_kdpp_mask, in_axes=(0, 0, 0))(keys, eigs, ks)` with
    `eigs = kdpp_eigen(Ls)` (a batch of kernels is decomposed one by one, see [`kdpp_eigen`][]).

    **Arguments:**

    - `key`: a PRNG key.
    - `eig_or_L`: a [`KDPPEigen`][] or the kernel `L`, `Float[K, K]`.
    - `k`: the subset size: a Python int (static) or an integer scalar array (may be traced), `0 <= k <= k_max`.
    - `k_max`: static bound on a traced `k`, `1 <= k_max <= K` (default `K`).

    **Returns:**

    The boolean mask `Bool[K]` of the sampled subset (`k` entries `True`).
    """
    K = (eig_or_L.eigenvalues if isinstance(eig_or_L, KDPPEigen) else jnp.asarray(eig_or_L)).shape[-1]
    if isinstance(k, int) and not isinstance(k, bool) and k_max is None:
        return _mask_jit(key, eig_or_L, jnp.asarray(_check_size(k, K), jnp.int32), _check_size(k, K), False)
    cap = K if k_max is None else _check_size(k_max, K)
    k = jnp.asarray(k)
    if not jnp.issubdtype(k.dtype, jnp.integer) or k.ndim != 0:
        raise ValueError(f"`k` must be an integer scalar, got dtype {k.dtype} and shape {k.shape}.")
    if not isinstance(k, jax.core.Tracer) and not 0 <= int(k) <= cap:
        raise ValueError(f"`k` must satisfy 0 <= k <= k_max = {cap}, got k = {int(k)}.")
    return _mask_jit(key, eig_or_L, k.astype(jnp.int32), cap, True)


@eqx.filter_jit
def _mask_jit(key, eig_or_L, k, cap: int, traced: bool) -> Bool[Array, " K"]:
    eig = _as_eigen(eig_or_L)
    items = _batched_sampler(cap, traced)(key, *_stopped(eig), k)
    return jnp.zeros((eig.size,), bool).at[items].set(True, mode="drop")


@eqx.filter_jit
def sample_uniform_subset(key: PRNGKeyArray, K: int, k: int) -> Int[Array, " k"]:
    """A subset of size `k` of `{0..K-1}` drawn uniformly among the `C(K, k)`: sorted indices.

    **Arguments:**

    - `key`: a PRNG key.
    - `K`: static ground-set size.
    - `k`: static subset size, `0 <= k <= K`.

    **Returns:**

    The `k` indices `Int[k]` (those of the `k` largest of `K` iid uniforms), sorted ascending.
    """
    K = _static_int(K, "K")
    k = _check_size(k, K, low=0)
    mask = top_k_mask(jax.random.uniform(key, (K,)), k)
    return jnp.nonzero(mask, size=k)[0]


def sample_uniform_subset_mask(key: PRNGKeyArray, K: int, k: Int[ArrayLike, ""]) -> Bool[Array, " K"]:
    """The subset of [`sample_uniform_subset`][] (the `k` largest of `K` iid uniforms, same key) as a boolean
    mask of length `K`; `k` may be traced, so one compilation serves every subset size.

    **Arguments:**

    - `key`: a PRNG key.
    - `K`: static ground-set size.
    - `k`: subset size, an integer scalar (may be traced), `0 <= k <= K` (checked when concrete).

    **Returns:**

    The boolean mask `Bool[K]` with `k` entries `True`.
    """
    K = _static_int(K, "K")
    if not isinstance(k, jax.core.Tracer):
        k = _check_size(k, K, low=0)
    return _uniform_subset_mask(key, K, jnp.asarray(k))


@functools.partial(jax.jit, static_argnums=1)
def _uniform_subset_mask(key, K: int, k):
    return top_k_mask(jax.random.uniform(key, (K,)), k)
