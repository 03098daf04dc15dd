"""Small symmetric positive semidefinite systems without LAPACK: the one solve and the one log-determinant that
every batched linear-algebra call of `jaxprune.pruning` uses.

Why not `jnp.linalg.solve` / `slogdet`: on CPU, XLA lowers a batch of small solves or determinants (a `vmap`)
to one batched LAPACK `getrf` call, and with jax 0.10.2 that call hangs intermittently (threads blocked in the
batched kernel: `balanced_node_error(specialisation(20, 5, 4.0), 1)` hung in about half of the fresh
processes that ran it). The matrices here are small (`k x k` kept-unit blocks, `M x M` group blocks), so a
fixed-shape elimination written with elementwise operations is as fast as the LAPACK call, vectorises under
`vmap`, differentiates under `grad`/`jacfwd`, and never enters a batched LAPACK kernel.

Both helpers eliminate in the natural order (no pivoting, which a PSD matrix does not need). The pivot of
step `j` is the Schur complement `G_jj - G_jP G_PP^{-1} G_Pj` over the earlier accepted indices `P` (the
squared distance, in the metric `G`, of direction `j` from the span of the earlier ones).

References: Golub & Van Loan, "Matrix Computations" (4th ed.), sections 3.2 (Gaussian elimination) and 4.2
(symmetric positive definite systems); docs/theory.md, section 6.1 (singular kept blocks).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

__all__ = ["DEFAULT_RCOND", "solve_psd", "logdet_psd", "solve_small"]

#: default relative pivot threshold of [`solve_psd`][]
DEFAULT_RCOND = 1e-10
#: up to this size the elimination is unrolled (straight-line code); above it, a `fori_loop`
_UNROLL = 16


def _eliminate(n: int, step, carry):
    if n <= _UNROLL:
        for j in range(n):
            carry = step(j, carry)
        return carry
    return jax.lax.fori_loop(0, n, step, carry, unroll=4)


def solve_psd(
    G: Float[Array, "n n"], b: Float[Array, " n"], rcond: float | Float[Array, ""] = DEFAULT_RCOND
) -> tuple[Float[Array, " n"], Bool[Array, ""]]:
    """Solve `G x = b` for symmetric PSD `G` by Gauss-Jordan elimination that skips tiny pivots; `(x, singular)`.

    Singular-block rule (docs/theory.md 6.1): a pivot `<= rcond * max_i G_ii` marks direction `j` as dependent
    on the earlier ones; its equation is dropped and `x_j = 0`, and `singular` is `True`. For a consistent
    system (`b` in the range of `G`, as for every reweighting rule, whose right sides are Gram products) this
    is an exact least-squares solution; of two identical units the first takes the whole weight.
    Differentiable (the elimination is elementwise arithmetic; derivatives are those of the kept subsystem).

    **Arguments:**

    - `G`: symmetric positive semidefinite `Float[n, n]`.
    - `b`: right-hand side `Float[n]`.
    - `rcond`: relative pivot threshold, `>= 0` (default `1e-10`); `0` skips only pivots that are not positive.

    **Returns:**

    `(x, singular)`: the solution `Float[n]` (zero in dropped directions) and a boolean scalar, `True` when
    some pivot was skipped.

    Example: `solve_psd(jnp.array([[1., 1.], [1., 1.]]), jnp.array([2., 2.]))` gives `x = [2, 0]`,
    `singular = True`.
    """
    n = G.shape[-1]
    rows = jnp.arange(n)
    tol = rcond * jnp.max(jnp.abs(jnp.diagonal(G)))
    W = jnp.concatenate([G, b[:, None]], axis=1)

    def step(j, carry):
        W, singular = carry
        d = W[j, j]
        ok = d > tol
        row = jnp.where(ok, W[j] / jnp.where(ok, d, 1.0), 0.0)
        col = jnp.where(rows == j, 0.0, W[:, j])
        W = W - col[:, None] * row[None, :]
        W = jnp.where((rows == j)[:, None], row[None, :], W)
        return W, singular | ~ok

    W, singular = _eliminate(n, step, (W, jnp.asarray(False)))
    return W[:, n], singular


def logdet_psd(G: Float[Array, "n n"]) -> Float[Array, ""]:
    """`log det G` of a symmetric PSD `G` by symmetric elimination (`G = L D L^T`, `log det = sum log D_jj`);
    `-inf` when a pivot is not positive (a singular block: `det G = 0` up to rounding). No LAPACK call, so
    it is safe under `vmap` on CPU (module docstring).

    **Arguments:**

    - `G`: symmetric positive semidefinite `Float[n, n]`.

    **Returns:**

    The scalar `log det G` (`-inf` for a singular `G`).
    """
    n = G.shape[-1]
    rows = jnp.arange(n)

    def step(j, carry):
        W, logdet = carry
        d = W[j, j]
        ok = d > 0
        inv = jnp.where(ok, 1.0 / jnp.where(ok, d, 1.0), 0.0)
        col = jnp.where(rows > j, W[:, j], 0.0)
        W = W - (col * inv)[:, None] * col[None, :]
        logdet = logdet + jnp.where(ok, jnp.log(jnp.where(ok, d, 1.0)), -jnp.inf)
        return W, logdet

    _, logdet = _eliminate(n, step, (G, jnp.zeros((), G.dtype)))
    return logdet


def solve_small(A: Float[Array, "n n"], b: Float[Array, " n"]) -> Float[Array, " n"]:
    """Solve `A x = b` for a small general (e.g. indefinite) `A` by Gauss-Jordan elimination with partial
    pivoting, elementwise (no LAPACK call, safe under `vmap` on CPU); a zero pivot column gives `inf`/`nan`,
    as `jnp.linalg.solve` does for a singular `A`."""
    n = A.shape[-1]
    rows = jnp.arange(n)
    W = jnp.concatenate([A, b[:, None]], axis=1)

    def step(j, W):
        p = jnp.argmax(jnp.where(rows >= j, jnp.abs(W[:, j]), -1.0))
        swap = jnp.where(rows == j, p, jnp.where(rows == p, j, rows))
        W = W[swap]
        row = W[j] / W[j, j]
        col = jnp.where(rows == j, 0.0, W[:, j])
        W = W - col[:, None] * row[None, :]
        return jnp.where((rows == j)[:, None], row[None, :], W)

    return _eliminate(n, step, W)[:, n]
