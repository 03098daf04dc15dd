"""Gaussian integrals I2, J2, I3, I4 over local fields with covariance `C` (THEORY.md section 2).

Each integral is written for one index tuple of fields (`a, b, c, d` index rows of `C`) and lifted to blocks
with `jax.vmap`, in the manner of jax-md's `map_product`. The fields are ordered students first
(`0..K-1`) then teachers (`K..K+M-1`), as in the joint covariance `Omega = [[Q, R], [R^T, T]]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ._activations import AbstractActivation

__all__ = ["i2", "j2", "i3", "i4", "i2_block", "j2_block", "map_product"]


def i2(activation: AbstractActivation, C: Float[Array, "F F"], a, b) -> Float[Array, ""]:
    """`I2(a,b) = E[g(a) g(b)]`."""
    return activation.i2(C[a, a], C[b, b], C[a, b])


def j2(activation: AbstractActivation, C: Float[Array, "F F"], a, b) -> Float[Array, ""]:
    """`J2(a,b) = E[g'(a) g'(b)]`."""
    return activation.j2(C[a, a], C[b, b], C[a, b])


def i3(activation: AbstractActivation, C: Float[Array, "F F"], a, b, c) -> Float[Array, ""]:
    """`I3(a,b,c) = E[g'(a) b g(c)]`."""
    return activation.i3(C[a, a], C[c, c], C[a, b], C[a, c], C[b, c])


def i4(activation: AbstractActivation, C: Float[Array, "F F"], a, b, c, d) -> Float[Array, ""]:
    """`I4(a,b,c,d) = E[g'(a) g'(b) g(c) g(d)]`."""
    return activation.i4(
        C[a, a], C[b, b], C[c, c], C[d, d], C[a, b], C[a, c], C[a, d], C[b, c], C[b, d], C[c, d]
    )


def map_product(fn):
    """Lift `fn(a, b)` on two indices to `fn(A, B)[i, j] = fn(A[i], B[j])` (outer product of index arrays)."""
    return jax.vmap(jax.vmap(fn, in_axes=(None, 0)), in_axes=(0, None))


def i2_block(
    activation: AbstractActivation, C: Float[Array, "F F"], rows: Int[Array, "P"], cols: Int[Array, "Q"]
) -> Float[Array, "P Q"]:
    """The block `I2(rows[p], cols[q])`."""
    return map_product(lambda a, b: i2(activation, C, a, b))(rows, cols)


def j2_block(
    activation: AbstractActivation, C: Float[Array, "F F"], rows: Int[Array, "P"], cols: Int[Array, "Q"]
) -> Float[Array, "P Q"]:
    """The block `J2(rows[p], cols[q])`."""
    return map_product(lambda a, b: j2(activation, C, a, b))(rows, cols)


def fields(K: int, M: int) -> tuple[Int[Array, "K"], Int[Array, "M"], Int[Array, "F"]]:
    """Index arrays of the student fields, the teacher fields and all fields of `Omega`."""
    return jnp.arange(K), jnp.arange(K, K + M), jnp.arange(K + M)
