"""The spectrum of a k-DPP kernel: its eigendecomposition and the elementary symmetric polynomials of its
eigenvalues, shared by the exact probabilities (`_dpp`) and the sampler (`_dpp_sample`).

A k-DPP with a positive semidefinite kernel `L` (`K x K`) draws a size-`k` subset `S` with probability
`P(S) = det(L_S) / e_k(L)`, `e_k(L)` the `k`-th elementary symmetric polynomial of the eigenvalues of `L`
(docs/theory.md, section 6.1).

References: A. Kulesza and B. Taskar, "Determinantal Point Processes for Machine Learning", Foundations and
Trends in Machine Learning 5 (2012), arXiv:1207.6083; section 5.2, Algorithm 7.
"""

from __future__ import annotations

import operator

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = ["KDPPEigen", "kdpp_eigen", "log_elementary_symmetric"]

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


def _log_esp_table(log_lam: Float[Array, " K"], k: int) -> Float[Array, "K+1 _"]:
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
def log_elementary_symmetric(eigenvalues: Float[ArrayLike, " K"], k: int) -> Float[Array, " _"]:
    """Logarithms of the elementary symmetric polynomials `e_0, ..., e_k` of nonnegative values.

    Runs the recursion `e_j(lambda_1..lambda_n) = e_j(lambda_1..lambda_{n-1}) + lambda_n e_{j-1}(...)`
    (Kulesza & Taskar 2012, Algorithm 7) in log space, `log e_j <- logaddexp(log e_j, log lambda_n +
    log e_{j-1})`. Every term is nonnegative, so nothing cancels: the relative error is `O(K eps)` for
    any spread of magnitudes, and nothing overflows or underflows.

    **Arguments:**

    - `eigenvalues`: `Float[K]`, nonnegative values `lambda` (negative entries are treated as zero; any other
      shape is a `ValueError`).
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
# Eigendecomposition
# --------------------------------------------------------------------------------------------------


class KDPPEigen(eqx.Module):
    """Eigendecomposition `L = V diag(lambda) V^T` of a k-DPP kernel, computed once and reused.

    **Fields:**

    - `eigenvalues`: `lambda`, `Float[*batch, K]`, nonnegative, ascending.
    - `eigenvectors`: `V`, `Float[*batch, K, K]`, orthonormal columns; column `n` belongs to `eigenvalues[n]`.

    The leading `*batch` axes are empty for one kernel; [`kdpp_eigen`][] of a batch of kernels gives them.

    Build it with [`kdpp_eigen`][]. References: Kulesza & Taskar 2012, section 5.2.2.
    """

    eigenvalues: Float[Array, "*batch K"]
    eigenvectors: Float[Array, "*batch K K"]

    def __check_init__(self):
        lam, vec = self.eigenvalues, self.eigenvectors
        if lam.ndim < 1 or vec.shape != lam.shape + lam.shape[-1:]:
            raise ValueError(
                "`eigenvalues` must have shape (..., K) and `eigenvectors` shape (..., K, K); "
                f"got {lam.shape} and {vec.shape}."
            )

    @property
    def size(self) -> int:
        """The ground-set size `K`."""
        return self.eigenvalues.shape[-1]


@eqx.filter_jit
def kdpp_eigen(
    L: Float[ArrayLike, "*batch K K"], jitter: float | Float[ArrayLike, "*batch"] = 0.0
) -> KDPPEigen:
    """Eigendecompose `(L + L^T) / 2 + jitter I = V diag(lambda) V^T` once, for many samples.

    Rounding-level negative eigenvalues are clipped to zero. No validation of values is done here (it
    runs under `jit`); see [`check_kdpp_kernel`][].

    **Arguments:**

    - `L`: the `K x K` symmetric positive semidefinite kernel, or a batch `(..., K, K)` of them.
    - `jitter`: nonnegative ridge added to the diagonal (a scalar, or one per kernel of the batch).

    **Returns:**

    A [`KDPPEigen`][] (with the batch's leading axes). A batch is decomposed one kernel after the other
    (`lax.map`), never by one batched LAPACK call: batched LAPACK kernels can hang on CPU (jax 0.10.2), so
    prefer `kdpp_eigen(Ls)` to `jax.vmap(kdpp_eigen)(Ls)`.

    References: Kulesza & Taskar 2012, Algorithm 8 (input).
    """
    L = jnp.asarray(L)
    if L.ndim < 2 or L.shape[-1] != L.shape[-2]:
        raise ValueError(f"`L` must be a square K x K matrix (or a batch of them), got shape {L.shape}.")
    dtype = _float_dtype(L)
    L = L.astype(dtype)
    batch, K = L.shape[:-2], L.shape[-1]
    jitter = jnp.broadcast_to(jnp.asarray(jitter, dtype), batch)

    def one(Lj):
        Lm, jit = Lj
        sym = 0.5 * (Lm + Lm.T) + jit * jnp.eye(K, dtype=dtype)
        return jnp.linalg.eigh(sym)

    if not batch:
        lam, vec = one((L, jitter))
    else:
        lam, vec = jax.lax.map(one, (L.reshape((-1, K, K)), jitter.reshape(-1)))
        lam, vec = lam.reshape(batch + (K,)), vec.reshape(batch + (K, K))
    return KDPPEigen(eigenvalues=jnp.maximum(lam, 0), eigenvectors=vec)


def _as_eigen(eig_or_L) -> KDPPEigen:
    return eig_or_L if isinstance(eig_or_L, KDPPEigen) else kdpp_eigen(eig_or_L)

