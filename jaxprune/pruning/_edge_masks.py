"""Edge pruning of concrete networks (docs/theory.md, section 6.2): masks on actual first-layer weights `w` (`K x N`)
keeping `k_i = round(p_i N)` weights of every unit (random, magnitude, the seed paper's per-unit k-DPP over a
unit's incoming edges), applying a mask with a rescale, and least-squares edge reweighting.

References: Acharyya, Chattoraj, Zhang, Das, Stefankovic, UAI 2021 (arXiv 2006.16617); Kulesza & Taskar 2012.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from .._checks import check_choice
from ._budgets import _check_p, _per_unit
from ._dpp import kdpp_eigen, sample_kdpp_mask
from ._masks import top_k_mask

__all__ = [
    "apply_edge_mask",
    "dpp_edge_mask",
    "edge_dpp_kernels",
    "magnitude_edge_mask",
    "random_edge_mask",
    "reweight_edges",
]


def _as_weights(w) -> Float[Array, "K N"]:
    w = jnp.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"`w` must be a (K, N) weight matrix, got shape {w.shape}")
    if not jnp.issubdtype(w.dtype, jnp.floating):
        w = w.astype(float)
    return w


def _keep_counts(p, K: int, N: int) -> np.ndarray:
    """Per-unit kept count `k_i = floor(p_i N + 1/2)` (round half up), on the host."""
    p = np.broadcast_to(np.asarray(_check_p(p, K)), (K,))
    return np.floor(p * N + 0.5).astype(np.int64)


def _rank_mask(scores: Float[Array, "K N"], k: Int[Array, " K"]) -> Bool[Array, "K N"]:
    """Keep the `k_i` largest scores of each row (ties broken by index): `top_k_mask` per row."""
    return top_k_mask(scores, k)


def random_edge_mask(
    key: PRNGKeyArray,
    w: Float[ArrayLike, "K N"],
    p: float | Sequence[float] | Float[ArrayLike, "..."],
    *,
    exact: bool = True,
) -> Bool[Array, "K N"]:
    """Random edge mask (docs/theory.md section 6.2, "random(p)"): exactly `k_i = round(p_i N)` uniformly chosen
    edges per unit (`exact=True`, the seed paper's choice), or independent Bernoulli(`p_i`) per weight
    (`exact=False`).

    **Arguments:**

    - `key`: a PRNG key.
    - `w`: the first-layer weights, `Float[K, N]` (only the shape and dtype are used).
    - `p`: keep fraction in `(0, 1]`, a scalar or one per unit (`Float[K]`); `ValueError` otherwise.
    - `exact`: `True` for exactly `round(p_i N)` kept edges per unit, `False` for independent coin flips.

    **Returns:**

    A boolean mask `Bool[K, N]`, `True` for kept weights.

    Example: `random_edge_mask(jax.random.key(0), w, 0.5)` keeps `round(N / 2)` weights of every row of `w`.
    """
    w = _as_weights(w)
    K, N = w.shape
    u = jax.random.uniform(key, (K, N), w.dtype)
    if exact:
        return _rank_mask(u, jnp.asarray(_keep_counts(p, K, N)))
    p = _per_unit(_check_p(p, K).astype(w.dtype), K)
    return u < p[:, None]


def magnitude_edge_mask(
    w: Float[ArrayLike, "K N"], p: float | Sequence[float] | Float[ArrayLike, "..."]
) -> Bool[Array, "K N"]:
    """Magnitude edge mask (docs/theory.md section 6.2, "magnitude(p)"): per unit, the `k_i = round(p_i N)`
    weights of largest `|w_ij|` (ties broken by the lower index, [`top_k_mask`][]).

    **Arguments:**

    - `w`: the first-layer weights, `Float[K, N]`.
    - `p`: keep fraction in `(0, 1]`, a scalar or one per unit (`Float[K]`); `ValueError` otherwise.

    **Returns:**

    A boolean mask `Bool[K, N]` with exactly `round(p_i N)` entries `True` in row `i`.
    """
    w = _as_weights(w)
    K, N = w.shape
    return _rank_mask(jnp.abs(w), jnp.asarray(_keep_counts(p, K, N)))


def apply_edge_mask(
    w: Float[ArrayLike, "K N"], mask: Bool[ArrayLike, "K N"], c: Float[ArrayLike, "..."] | None = None
) -> Float[Array, "K N"]:
    """Apply an edge mask and an optional per-unit rescale: `w'_i = c_i (m_i * w_i)` (docs/theory.md section 6.2).

    **Arguments:**

    - `w`: the first-layer weights, `Float[K, N]`.
    - `mask`: boolean `Bool[K, N]` of the shape of `w`, `True` for kept weights (`ValueError` otherwise).
    - `c`: the rescale, a scalar or one per unit (`Float[K]`); `None` (default) means `c = 1`.

    **Returns:**

    The pruned weights `Float[K, N]`: zero where `mask` is `False`, `c_i w_ij` elsewhere.
    """
    w = _as_weights(w)
    mask = jnp.asarray(mask)
    if mask.shape != w.shape:
        raise ValueError(f"`mask` must have the shape of `w` {w.shape}, got {mask.shape}")
    out = jnp.where(mask, w, 0.0)
    if c is None:
        return out
    c = jnp.broadcast_to(jnp.asarray(c, w.dtype), (w.shape[0],))
    return c[:, None] * out


def edge_dpp_kernels(w: Float[ArrayLike, "K N"], x: Float[ArrayLike, "P N"]) -> Float[Array, "K N N"]:
    """The seed paper's data kernels of edge k-DPPs, one per unit (docs/theory.md section 6.2, "dpp(p)"):
    `L^(i)_jl = (1/P) sum_mu (x_mu,j w_ij)(x_mu,l w_il) = w_ij G_jl w_il`, `G = X^T X / P`.

    **Arguments:**

    - `w`: the first-layer weights, `Float[K, N]`.
    - `x`: the input data, `Float[P, N]` (`P` samples of dimension `N`; `ValueError` for another `N`).

    **Returns:**

    The kernels `Float[K, N, N]`, each symmetric positive semidefinite of rank at most `min(P, N)`.
    """
    w = _as_weights(w)
    x = jnp.asarray(x, w.dtype)
    if x.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"`x` must be (P, N) with N={w.shape[1]}, got shape {x.shape}")
    G = x.T @ x / x.shape[0]
    return w[:, :, None] * G[None, :, :] * w[:, None, :]


@jax.jit
def _conditional_bernoulli_probs(lam: Float[Array, "K N"], k: Int[Array, " K"]) -> Float[Array, "K N"]:
    """`pi_ij = mu_i lam_ij / (1 + mu_i lam_ij)` with `sum_j pi_ij = k_i` (bisection in `log mu_i`)."""
    N = lam.shape[1]
    dtype = lam.dtype
    kf = k.astype(dtype)
    scale = jnp.sum(lam, axis=1) / jnp.maximum(jnp.sum(lam > 0, axis=1), 1).astype(dtype)
    lam_n = lam / jnp.where(scale > 0, scale, 1.0)[:, None]

    def bisect(_, b):
        lo, hi = b
        mid = 0.5 * (lo + hi)
        m = jnp.exp(mid)[:, None]
        up = jnp.sum(m * lam_n / (1.0 + m * lam_n), axis=1) < kf
        return jnp.where(up, mid, lo), jnp.where(up, hi, mid)

    K = lam.shape[0]
    lo, hi = jax.lax.fori_loop(0, 200, bisect, (jnp.full((K,), -80.0, dtype), jnp.full((K,), 80.0, dtype)))
    mu = jnp.exp(0.5 * (lo + hi))[:, None]
    pi = mu * lam_n / (1.0 + mu * lam_n)
    return jnp.where((k >= N)[:, None], 1.0, jnp.where((k <= 0)[:, None], 0.0, pi))


@functools.partial(jax.jit, static_argnames=("batch", "max_iter"))
def _conditional_bernoulli(key, pi, k, *, batch: int = 16, max_iter: int = 20000):
    """Exact k-DPP with diagonal kernel `diag(lam)` for each row: independent Bernoulli(`pi`),
    `pi = mu lam / (1 + mu lam)`, conditioned on size `k_r` (`P(S)` is proportional to
    `prod_{j in S} lam_j` for every `mu`), by rejection; `mu` makes the expected size `k_r`, so the
    acceptance rate is about `1/sqrt(2 pi Var|S|)`. Returns `(mask, accepted)`."""
    R, N = pi.shape
    dtype = pi.dtype

    def cond(c):
        _, done, it = c
        return jnp.any(~done) & (it < max_iter)

    def body(c):
        mask, done, it = c
        u = jax.random.uniform(jax.random.fold_in(key, it), (R, batch, N), dtype)
        prop = u < pi[:, None, :]
        good = jnp.sum(prop, axis=2) == k[:, None]
        first = jnp.argmax(good, axis=1)
        pick = jnp.take_along_axis(prop, first[:, None, None], axis=1)[:, 0, :]
        take = ~done & jnp.any(good, axis=1)
        return jnp.where(take[:, None], pick, mask), done | take, it + 1

    mask, done, _ = jax.lax.while_loop(
        cond, body, (jnp.zeros((R, N), bool), jnp.zeros((R,), bool), jnp.asarray(0))
    )
    return mask, done


def dpp_edge_mask(
    key: PRNGKeyArray,
    w: Float[ArrayLike, "K N"],
    p: float | Sequence[float] | Float[ArrayLike, "..."],
    *,
    x: Float[ArrayLike, "P N"] | None = None,
    kernel: str | None = None,
    jitter: float = 0.0,
    num_samples: int | None = None,
) -> Bool[Array, "... K N"]:
    """Per-unit k-DPP over each unit's `N` incoming edges, `k_i = round(p_i N)` (the seed paper's edge DPP;
    docs/theory.md section 6.2, "dpp(p)").

    **Arguments:**

    - `key`: a PRNG key.
    - `w`: the first-layer weights, `Float[K, N]`.
    - `p`: keep fraction in `(0, 1]`, a scalar or one per unit (`Float[K]`).
    - `x`: input data `Float[P, N]` for the data kernel; `None` for the diagonal kernel.
    - `kernel`: `"data"` (default when `x` is given): `L^(i) = diag(w_i) (X^T X / P) diag(w_i)` (+ `jitter I`,
      see [`edge_dpp_kernels`][]), eigendecomposed once per unit and sampled exactly (Kulesza & Taskar
      Alg. 8, [`sample_kdpp_mask`][]); `"diagonal"` (default without `x`): `L^(i) = diag(w_ij^2)` (+ `jitter`),
      the iid-input limit, a Bernoulli product conditioned on its size, sampled exactly by rejection (any `N`).
    - `jitter`: a finite nonnegative ridge added to each kernel's diagonal.
    - `num_samples`: `None` for one mask, or a positive integer `S` of independent masks reusing the kernels'
      eigendecompositions.

    **Returns:**

    A boolean mask `Bool[K, N]` (`num_samples=None`) or `Bool[S, K, N]`, with `round(p_i N)` kept weights in
    row `i`. A kernel of numerical rank below `k_i` raises `ValueError` (pass `jitter`).
    """
    w = _as_weights(w)
    K, N = w.shape
    k = _keep_counts(p, K, N)
    if kernel is None:
        kernel = "diagonal" if x is None else "data"
    check_choice("kernel", kernel, ("data", "diagonal"))
    if not (math.isfinite(float(jitter)) and float(jitter) >= 0):
        raise ValueError(f"`jitter` must be a finite nonnegative number, got {jitter!r}")
    S = 1 if num_samples is None else int(num_samples)
    if S < 1:
        raise ValueError(f"`num_samples` must be a positive integer, got {num_samples!r}")
    keys = jax.random.split(key, S)

    if kernel == "diagonal":
        lam = jnp.square(w) + jitter
        nonzero = np.asarray(jnp.sum(lam > 0, axis=1))
        if np.any(nonzero < k):
            raise ValueError(
                f"diagonal kernel of unit(s) {np.flatnonzero(nonzero < k).tolist()} has fewer nonzero "
                f"weights than k = round(p N); pass `jitter` > 0 or a smaller `p`"
            )
        pi = _conditional_bernoulli_probs(lam, jnp.asarray(k))
        # samples as extra rows of one rejection loop: (S K, N)
        rows = jnp.broadcast_to(pi[None], (S, K, N)).reshape(S * K, N)
        masks, ok = _conditional_bernoulli(key, rows, jnp.asarray(np.tile(k, S)))
        masks = masks.reshape(S, K, N)
        if not bool(np.all(np.asarray(ok))):
            raise RuntimeError("conditional-Bernoulli rejection sampler hit its iteration cap")
    else:
        if x is None:
            raise ValueError('`x` (data, P x N) is required for kernel="data"')
        L = edge_dpp_kernels(w, x)
        eig = kdpp_eigen(L, jitter)  # one kernel after the other (no batched LAPACK)
        lam = np.asarray(eig.eigenvalues)
        tol = N * np.finfo(lam.dtype).eps * np.maximum(lam[:, -1], np.finfo(lam.dtype).tiny)
        rank = np.sum(lam > tol[:, None], axis=1)
        if np.any(rank < k):
            raise ValueError(
                f"data kernel of unit(s) {np.flatnonzero(rank < k).tolist()} has numerical rank "
                f"{rank.tolist()} below k = {k.tolist()} (need P >= k and nonzero weights); pass `jitter` > 0"
            )
        masks = jnp.zeros((S, K, N), bool)
        unit_keys = jax.vmap(lambda kk: jax.random.split(kk, K))(keys)  # (S, K)
        for kk in np.unique(k):  # host loop over distinct sizes only (static k for the sampler)
            units = np.flatnonzero(k == kk)
            if kk == 0:
                continue
            sub = jax.tree_util.tree_map(lambda a: a[units], eig)
            sampler = jax.vmap(sample_kdpp_mask, in_axes=(0, 0, None))  # over units
            draw = jax.vmap(sampler, in_axes=(0, None, None))(unit_keys[:, units], sub, int(kk))
            masks = masks.at[:, units, :].set(draw)
    return masks[0] if num_samples is None else masks


def reweight_edges(
    w: Float[ArrayLike, "K N"],
    mask: Bool[ArrayLike, "K N"],
    x: Float[ArrayLike, "P N"],
    *,
    ridge: float = 1e-8,
) -> Float[Array, "K N"]:
    """Least-squares edge reweighting (the seed paper's `reweight_edge`; docs/theory.md section 6.2): per unit,
    `w'_i,kept = argmin ||X_kept w' - X w_i||^2 / P + ridge (tr G / N) ||w'||^2`, `G = X^T X / P`;
    removed weights stay zero. Solved as `(D G D + ridge' I) w' = D G w_i`, `D = diag(m_i)` (fixed shapes),
    one unit after the other (`lax.map` of an `N x N` solve: no batched LAPACK call).

    **Arguments:**

    - `w`: the first-layer weights, `Float[K, N]`.
    - `mask`: boolean `Bool[K, N]` of the shape of `w`, `True` for kept weights.
    - `x`: the input data, `Float[P, N]`.
    - `ridge`: positive relative Tikhonov weight (scaled by `tr G / N`); `ValueError` if not positive.

    **Returns:**

    The reweighted weights `Float[K, N]`, zero where `mask` is `False`.
    """
    w = _as_weights(w)
    mask = jnp.asarray(mask)
    x = jnp.asarray(x, w.dtype)
    if mask.shape != w.shape:
        raise ValueError(f"`mask` must have the shape of `w` {w.shape}, got {mask.shape}")
    if x.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"`x` must be (P, N) with N={w.shape[1]}, got shape {x.shape}")
    if not (float(ridge) > 0):
        raise ValueError(f"`ridge` must be positive, got {ridge!r}")
    return _reweight(w, mask, x, jnp.asarray(ridge, w.dtype))


@jax.jit
def _reweight(w, mask, x, ridge):
    N = w.shape[1]
    G = x.T @ x / x.shape[0]
    lam = ridge * jnp.trace(G) / N
    eye = jnp.eye(N, dtype=w.dtype)

    def unit(wm):
        wi, mi = wm
        d = mi.astype(w.dtype)
        A = d[:, None] * G * d[None, :] + lam * eye
        b = d * (G @ wi)
        return jnp.where(mi, jnp.linalg.solve(A, b), 0.0)

    # one unit after the other: an `N x N` LAPACK solve per unit, never one batched LAPACK call (those hang on CPU)
    return jax.lax.map(unit, (w, mask))


