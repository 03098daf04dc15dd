"""Gaussian integrals I2, J2, I3, I4 over local fields with covariance `C` (docs/theory.md section 2).

Each integral is written for one index tuple of fields (`a, b, c, d` index rows of `C`). The kernels of
`jaxprune._activations` act elementwise on covariance entries, so blocks are built by broadcasting those
entries (rows and columns of `C` and its diagonal: slices, no per-element gathers), which XLA fuses into one
vectorised loop; `map_product` lifts any two-index function the vmap way, in the manner of jax-md.
The fields are ordered students first (`0..K-1`) then teachers (`K..K+M-1`), as in the joint covariance
`Omega = [[Q, R], [R^T, T]]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from ._activations import AbstractActivation, get_activation

__all__ = ["i2", "j2", "i3", "i4", "i2_block", "j2_block", "i3_block", "i4_pair_sums", "map_product"]


def i2(activation: AbstractActivation | str, C: Float[Array, "F F"], a, b) -> Float[Array, ""]:
    """`I2(a,b) = E[g(a) g(b)]` for two fields of covariance `C` (docs/theory.md section 2); for erf
    `(2/pi) arcsin(C_ab / sqrt((1 + C_aa)(1 + C_bb)))`.

    **Arguments:**

    - `activation`: an [`AbstractActivation`][] or its name (`"erf"`, `"linear"`).
    - `C`: the covariance of the local fields, `Float[Array, "F F"]`, symmetric positive semi-definite; for a
      teacher-student pair `C = state.covariance()` (students `0..K-1`, then teachers `K..K+M-1`).
    - `a`, `b`: field indices, integers in `[0, F)` (equal indices give `E[g(a)^2]`).

    **Returns:** the scalar `I2(a, b)`, `Float[Array, ""]`.

    **Example:**
    ```python
    C = jp.Overlaps.reference(K=2, M=1).covariance()  # fields: students 0, 1, teacher 2
    jp.i2("erf", C, 0, 2)  # E[g(lambda_0) g(nu_0)]
    ```
    """
    return get_activation(activation).i2(C[a, a], C[b, b], C[a, b])


def j2(activation: AbstractActivation | str, C: Float[Array, "F F"], a, b) -> Float[Array, ""]:
    """`J2(a,b) = E[g'(a) g'(b)]` for two fields of covariance `C` (docs/theory.md section 2); for erf
    `(2/pi) / sqrt((1 + C_aa)(1 + C_bb) - C_ab^2)`. It carries the label noise in `dQ/dalpha` (section 4).

    **Arguments:**

    - `activation`: an [`AbstractActivation`][] or its name (`"erf"`, `"linear"`).
    - `C`: the covariance of the local fields, `Float[Array, "F F"]` (symmetric positive semi-definite).
    - `a`, `b`: field indices, integers in `[0, F)`.

    **Returns:** the scalar `J2(a, b)`, `Float[Array, ""]`.
    """
    return get_activation(activation).j2(C[a, a], C[b, b], C[a, b])


def i3(activation: AbstractActivation | str, C: Float[Array, "F F"], a, b, c) -> Float[Array, ""]:
    """`I3(a,b,c) = E[g'(a) b g(c)]` for three fields of covariance `C` (docs/theory.md section 2); for erf
    `(2/pi) (C_bc (1 + C_aa) - C_ab C_ac) / ((1 + C_aa) sqrt((1 + C_aa)(1 + C_cc) - C_ac^2))`. The field `b`
    enters linearly (it is the first-order drive of `dQ`, `dR` in section 4).

    **Arguments:**

    - `activation`: an [`AbstractActivation`][] or its name (`"erf"`, `"linear"`).
    - `C`: the covariance of the local fields, `Float[Array, "F F"]` (symmetric positive semi-definite).
    - `a`, `b`, `c`: field indices, integers in `[0, F)`.

    **Returns:** the scalar `I3(a, b, c)`, `Float[Array, ""]`.
    """
    return get_activation(activation).i3(C[a, a], C[c, c], C[a, b], C[a, c], C[b, c])


def i4(activation: AbstractActivation | str, C: Float[Array, "F F"], a, b, c, d) -> Float[Array, ""]:
    """`I4(a,b,c,d) = E[g'(a) g'(b) g(c) g(d)]` for four fields of covariance `C` (docs/theory.md section 2,
    where `L0`, `L1`, `L2`, `L4` are defined); for erf `(4/pi^2) arcsin(L0 / sqrt(L1 L2)) / sqrt(L4)`. It is
    the `eta^2` term of `dQ/dalpha` (section 4).

    **Arguments:**

    - `activation`: an [`AbstractActivation`][] or its name (`"erf"`, `"linear"`).
    - `C`: the covariance of the local fields, `Float[Array, "F F"]` (symmetric positive semi-definite).
    - `a`, `b`, `c`, `d`: field indices, integers in `[0, F)`.

    **Returns:** the scalar `I4(a, b, c, d)`, `Float[Array, ""]`.
    """
    return get_activation(activation).i4(
        C[a, a], C[b, b], C[c, c], C[d, d], C[a, b], C[a, c], C[a, d], C[b, c], C[b, d], C[c, d]
    )


def map_product(fn):
    """Lift `fn(a, b)` on two indices to `fn(A, B)[i, j] = fn(A[i], B[j])` (outer product of index arrays)."""
    return jax.vmap(jax.vmap(fn, in_axes=(None, 0)), in_axes=(0, None))


def _entries(C, rows, cols):
    """`(C[rows, rows] as a column, C[cols, cols] as a row, C[rows][:, cols])`."""
    d = jnp.diagonal(C)
    return d[rows][:, None], d[cols][None, :], C[rows][:, cols]


def i2_block(
    activation: AbstractActivation, C: Float[Array, "F F"], rows: Int[ArrayLike, " P"], cols: Int[ArrayLike, " Q"]
) -> Float[Array, "P Q"]:
    """The block `I2(rows[p], cols[q])`."""
    return activation.i2(*_entries(C, rows, cols))


def j2_block(
    activation: AbstractActivation, C: Float[Array, "F F"], rows: Int[ArrayLike, " P"], cols: Int[ArrayLike, " Q"]
) -> Float[Array, "P Q"]:
    """The block `J2(rows[p], cols[q])`."""
    return activation.j2(*_entries(C, rows, cols))


def i3_block(
    activation: AbstractActivation, C: Float[Array, "F F"], rows: Int[ArrayLike, " P"]
) -> Float[Array, "P F F"]:
    """The block `I3(rows[p], b, c)` over all fields `b, c`."""
    d = jnp.diagonal(C)
    Ca = C[rows]
    return activation.i3(
        d[rows][:, None, None], d[None, None, :], Ca[:, :, None], Ca[:, None, :], C[None, :, :]
    )


def i4_pair_sums(
    activation: AbstractActivation,
    C: Float[Array, "F F"],
    a: Int[ArrayLike, " P"],
    b: Int[ArrayLike, " P"],
    w: Float[Array, "F F"],
) -> Float[Array, " P"]:
    """`sum_cd w[c, d] I4(a[p], b[p], c, d)` over all fields `c, d`, for each pair `p`.

    The pair kernel is the activation's `i4_contracted`, lifted over the pairs with `vmap` (it needs rows
    `C[a[p]]`, `C[b[p]]` only, so no per-element gathers).
    """
    d = jnp.diagonal(C)
    kernel = jax.vmap(activation.i4_contracted, in_axes=(0, 0, 0, 0, 0, None, None, None))
    return kernel(d[a], d[b], C[a, b], C[a], C[b], d, C, w)


def fields(K: int, M: int) -> tuple[Int[Array, " K"], Int[Array, " M"], Int[Array, " F"]]:
    """Index arrays of the student fields, the teacher fields and all fields of `Omega`."""
    return jnp.arange(K), jnp.arange(K, K + M), jnp.arange(K + M)
