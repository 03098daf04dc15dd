"""Activations and their Gaussian-integral kernels for one index tuple.

Every kernel takes the entries of the covariance of the local fields it names (scalars or arrays that
broadcast elementwise) and returns the Gaussian average of docs/theory.md section 2. Blocks over many index tuples
are built in `jaxprune._integrals` by lifting these kernels with `vmap`; the `*_batch` methods contract them
for many configurations at once with the batch axis last (for `solve_ode_batch`).

Naming of covariance entries: `caa = C[a, a]`, `cab = C[a, b]`, and so on, for fields `a, b, c, d`.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

__all__ = ["AbstractActivation", "Erf", "Linear", "get_activation"]

_TWO_OVER_PI = 2.0 / math.pi
_FOUR_OVER_PI2 = 4.0 / math.pi**2


@jax.custom_jvp
def safe_sqrt(x: ArrayLike) -> Array:
    """`sqrt(max(x, 0))` whose derivative stays finite at 0 (it is 0 there instead of inf)."""
    return jnp.sqrt(jnp.maximum(x, 0.0))


@safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
    (x,), (tx,) = primals, tangents
    y = safe_sqrt(x)
    positive = y > 0
    return y, jnp.where(positive, 0.5 * tx / jnp.where(positive, y, 1.0), 0.0)


# asin(s) = s + s^3 P(s^2) on 0 <= s <= 1/2: P is the degree-12 Chebyshev interpolant (in z = s^2, on
# [0, 1/4]) of (asin(s) - s) / s^3, computed in 60-digit arithmetic and rounded to float64. Together with the
# half-angle reduction below, the float64 result is within 2.3e-16 of the exact arcsin on [-1, 1].
_ASIN_COEFFS = (
    0.16666666666666669,
    0.07499999999998433,
    0.04464285714635543,
    0.030381944138531247,
    0.02237217294214989,
    0.017352392720869973,
    0.013971212973552933,
    0.011479177415184906,
    0.01032281435018578,
    0.005457506718640358,
    0.01740087944269402,
    -0.014851887071247204,
    0.028757851367421566,
)
_PI_OVER_2 = math.pi / 2.0


@jax.custom_jvp
def _arcsin_poly(x: Array) -> Array:
    """`arcsin(x)` for `|x| <= 1` by a polynomial with half-angle range reduction (branch-free).

    For `|x| <= 1/2`, `asin(x) = x + x^3 P(x^2)`; for `|x| > 1/2`, `asin(|x|) = pi/2 - 2 asin(s)` with
    `s = sqrt((1 - |x|)/2) <= 1/2` (`1 - |x|` is exact there). Only multiply-adds, one `sqrt` and selects:
    XLA vectorises it, unlike its float64 `asin`/`atan2` on CPU (about 15x slower).
    """
    t = jnp.abs(x)
    big = t > 0.5
    z = jnp.where(big, 0.5 * (1.0 - t), t * t)
    s = jnp.where(big, jnp.sqrt(z), t)
    p = _ASIN_COEFFS[-1]
    for coeff in _ASIN_COEFFS[-2::-1]:
        p = p * z + coeff
    r = s + s * (z * p)
    r = jnp.where(big, _PI_OVER_2 - 2.0 * r, r)
    return jnp.where(x < 0, -r, r)


@_arcsin_poly.defjvp
def _arcsin_poly_jvp(primals, tangents):
    (x,), (tx,) = primals, tangents
    one_minus_x2 = (1.0 - x) * (1.0 + x)
    inside = one_minus_x2 > 0
    # 1/sqrt(1 - x^2) inside the domain; 0 at |x| = 1 (where the clipped function is flat from outside)
    slope = jnp.where(inside, jax.lax.rsqrt(jnp.where(inside, one_minus_x2, 1.0)), 0.0)
    return _arcsin_poly(x), slope * tx


def safe_arcsin(x: ArrayLike) -> Array:
    """`arcsin` of `x` clipped to [-1, 1] (only to absorb rounding), with a derivative that stays finite.

    A float64-accurate polynomial evaluation (max error 2.3e-16 against the exact arcsin), several times
    faster than `jnp.arcsin` on CPU. The derivative is `1/sqrt(1 - x^2)` inside `(-1, 1)` and `0` at
    `|x| = 1` and beyond. NaN propagates.
    """
    x = jnp.asarray(x)
    x = x.astype(jnp.result_type(x, float))
    return _arcsin_poly(jnp.clip(x, -1.0, 1.0))


class AbstractActivation(eqx.Module):
    """An activation `g` with the Gaussian averages used by the order-parameter theory.

    Final subclasses: [`Erf`][], [`Linear`][].
    """

    name: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def __call__(self, z: ArrayLike) -> Array:
        """`g(z)`."""

    @abc.abstractmethod
    def derivative(self, z: ArrayLike) -> Array:
        """`g'(z)`."""

    @abc.abstractmethod
    def i2(self, caa, cbb, cab) -> Array:
        """`I2(a,b) = E[g(a) g(b)]`."""

    @abc.abstractmethod
    def j2(self, caa, cbb, cab) -> Array:
        """`J2(a,b) = E[g'(a) g'(b)]`."""

    @abc.abstractmethod
    def i3(self, caa, ccc, cab, cac, cbc) -> Array:
        """`I3(a,b,c) = E[g'(a) b g(c)]`."""

    @abc.abstractmethod
    def i4(self, caa, cbb, ccc, cdd, cab, cac, cad, cbc, cbd, ccd) -> Array:
        """`I4(a,b,c,d) = E[g'(a) g'(b) g(c) g(d)]`."""

    def i4_contracted(self, caa, cbb, cab, ca, cb, cdiag, C, w) -> Array:
        """`sum_cd w[c, d] I4(a, b, c, d)` for one pair of fields `(a, b)`, over all fields `c, d`.

        **Arguments:** `caa`, `cbb`, `cab` (scalars); `ca = C[a, :]`, `cb = C[b, :]`, `cdiag = diag(C)`
        (shape `F`); the covariance `C` and the weights `w` (shape `F F`). Lift over pairs with `vmap`.

        This default broadcasts the scalar kernel [`i4`][] over `(c, d)`; subclasses may override it with an
        algebraically equal, cheaper form.
        """
        col, row = (lambda x: x[:, None]), (lambda x: x[None, :])
        dense = self.i4(
            caa, cbb, col(cdiag), row(cdiag), cab, col(ca), row(ca), col(cb), row(cb), C
        )
        return jnp.sum(w * dense)

    # ---- batch-minor forms (a trailing batch axis `B` on every covariance entry), for `solve_ode_batch` ----

    def i3_contracted_batch(self, cdiag, C, u, K: int) -> Array:
        """`sum_c u_c I3(i, b, c)` for student fields `i < K` and all fields `b`, batch axis last.

        **Arguments:** `cdiag = diag(C)` and `u` (shape `F B`), the covariances `C` (shape `F F B`).
        **Returns:** shape `K F B`. Broadcasts the scalar kernel [`i3`][] over `(i, b, c)` (`K F F B` entries,
        vectorised over the batch; for erf this measured faster than factorising out `L3(i, c)`).
        """
        Ci = C[:K]
        dense = self.i3(cdiag[:K, None, None], cdiag[None, None, :], Ci[:, :, None], Ci[:, None, :], C[None])
        return jnp.sum(dense * u[None, None], axis=2)

    def i4_contracted_batch(self, cdiag, C, u, a, b) -> Array:
        """`sum_cd u_c u_d I4(a[p], b[p], c, d)` over all fields `c, d`, for each pair `p`, batch axis last.

        **Arguments:** `cdiag = diag(C)` and `u` (shape `F B`), `C` (shape `F F B`), static index arrays `a`,
        `b` (length `P`). **Returns:** shape `P B`. This default broadcasts the scalar kernel [`i4`][].
        """
        col, row = (lambda x: x[:, :, None]), (lambda x: x[:, None, :])
        ca, cb = C[a], C[b]
        dense = self.i4(
            cdiag[a][:, None, None], cdiag[b][:, None, None], col(cdiag[None]), row(cdiag[None]),
            C[a, b][:, None, None], col(ca), row(ca), col(cb), row(cb), C[None],
        )
        return jnp.sum(dense * (u[:, None] * u[None, :])[None], axis=(1, 2))


class Erf(AbstractActivation):
    """`g(z) = erf(z / sqrt 2)`, `g'(z) = sqrt(2/pi) exp(-z^2/2)` (Saad & Solla 1995; docs/theory.md section 2).

    Every square root below is of a determinant of `I + C` restricted to the named fields, which is at least
    1 for a positive semi-definite `C`: the closed forms stay finite (with finite gradients) when a student
    unit copies a teacher unit. Arcsin arguments are clipped only to absorb rounding.
    """

    name: ClassVar[str] = "erf"

    def __call__(self, z):
        return jax.scipy.special.erf(z / math.sqrt(2.0))

    def derivative(self, z):
        return math.sqrt(_TWO_OVER_PI) * jnp.exp(-0.5 * z * z)

    def i2(self, caa, cbb, cab):
        """`(2/pi) arcsin(C_ab / sqrt((1+C_aa)(1+C_bb)))`."""
        return _TWO_OVER_PI * safe_arcsin(cab / safe_sqrt((1.0 + caa) * (1.0 + cbb)))

    def j2(self, caa, cbb, cab):
        """`(2/pi) / sqrt((1+C_aa)(1+C_bb) - C_ab^2)`."""
        return _TWO_OVER_PI / safe_sqrt((1.0 + caa) * (1.0 + cbb) - cab * cab)

    def i3(self, caa, ccc, cab, cac, cbc):
        """`(2/pi) (C_bc (1+C_aa) - C_ab C_ac) / ((1+C_aa) sqrt(L3))`, `L3 = (1+C_aa)(1+C_cc) - C_ac^2`."""
        l3 = (1.0 + caa) * (1.0 + ccc) - cac * cac
        return _TWO_OVER_PI * (cbc * (1.0 + caa) - cab * cac) / ((1.0 + caa) * safe_sqrt(l3))

    def i4(self, caa, cbb, ccc, cdd, cab, cac, cad, cbc, cbd, ccd):
        """`(4/pi^2) / sqrt(L4) * arcsin(L0 / sqrt(L1 L2))` (docs/theory.md section 2 for L0..L4)."""
        l4 = (1.0 + caa) * (1.0 + cbb) - cab * cab
        l0 = l4 * ccd - cbc * cbd * (1.0 + caa) - cac * cad * (1.0 + cbb) + cab * cac * cbd + cab * cad * cbc
        l1 = l4 * (1.0 + ccc) - cbc * cbc * (1.0 + caa) - cac * cac * (1.0 + cbb) + 2.0 * cab * cac * cbc
        l2 = l4 * (1.0 + cdd) - cbd * cbd * (1.0 + caa) - cad * cad * (1.0 + cbb) + 2.0 * cab * cad * cbd
        return _FOUR_OVER_PI2 / safe_sqrt(l4) * safe_arcsin(l0 / safe_sqrt(l1 * l2))

    def i4_contracted(self, caa, cbb, cab, ca, cb, cdiag, C, w):
        """`sum_cd w[c, d] I4(a, b, c, d)` for one pair `(a, b)`, factorised (same value as [`i4`][]).

        With `A = 1 + C_aa`, `B = 1 + C_bb`, `x = C[a, :]`, `y = C[b, :]` and
        `q_cd = B x_c x_d + A y_c y_d - C_ab (x_c y_d + y_c x_d)`, docs/theory.md section 2 reads
        `L0(c, d) = L4 C_cd - q_cd`, `L1(c) = L4 (1 + C_cc) - q_cc` (and `L2(d) = L1(d)`), so the `L1` are
        computed once per `c` and the arcsin argument is `L0(c, d) r_c r_d` with `r = 1/sqrt(L1)`.
        `L1` is the determinant of `I + C` on the fields `(a, b, c)`, at least 1 for a PSD `C`.
        """
        A, B = 1.0 + caa, 1.0 + cbb
        l4 = A * B - cab * cab
        col, row = (lambda x: x[:, None]), (lambda x: x[None, :])
        q = B * col(ca) * row(ca) + A * col(cb) * row(cb) - cab * (col(ca) * row(cb) + col(cb) * row(ca))
        l0 = l4 * C - q
        l1 = l4 * (1.0 + cdiag) - (B * ca * ca + A * cb * cb - 2.0 * cab * ca * cb)
        r = 1.0 / safe_sqrt(l1)
        return _FOUR_OVER_PI2 / safe_sqrt(l4) * jnp.sum(w * safe_arcsin(l0 * col(r) * row(r)))

    def i4_contracted_batch(self, cdiag, C, u, a, b):
        """`sum_cd u_c u_d I4(a[p], b[p], c, d)`, batch axis last, on the triangle `c <= d` (same value).

        The factorisation of [`i4_contracted`][] with `p_c = B x_c - C_ab y_c`, `s_c = A y_c - C_ab x_c` gives
        `L0(c, d) = L4 C_cd - x_d p_c - y_d s_c` and `L1(c) = L4 (1 + C_cc) - x_c p_c - y_c s_c`. `I4` is
        symmetric in `(c, d)`, so only `c <= d` is evaluated (off-diagonal terms counted twice): with the batch
        axis minor, the gathers along `c` and `d` move whole batch rows, so halving the arcsins pays (the
        unbatched kernel stays dense, where per-element gathers cost more than they save).
        """
        F = C.shape[0]
        A, B, cab = 1.0 + cdiag[a], 1.0 + cdiag[b], C[a, b]  # (P, batch); B is 1 + C_bb, as above
        l4 = A * B - cab * cab
        x, y = C[a], C[b]  # (P, F, batch)
        p = B[:, None] * x - cab[:, None] * y
        s = A[:, None] * y - cab[:, None] * x
        r = 1.0 / safe_sqrt(l4[:, None] * (1.0 + cdiag[None]) - (x * p + y * s))  # (P, F, batch)
        c, d = np.triu_indices(F)
        rl, rp, rs = r * l4[:, None], r * p, r * s
        arg = r[:, d] * (rl[:, c] * C[c, d][None] - x[:, d] * rp[:, c] - y[:, d] * rs[:, c])  # (P, F(F+1)/2, batch)
        w = np.where(c == d, 1.0, 2.0)[:, None] * (u[c] * u[d])  # (F(F+1)/2, batch)
        return _FOUR_OVER_PI2 / safe_sqrt(l4) * jnp.sum(w[None] * safe_arcsin(arg), axis=1)


class Linear(AbstractActivation):
    """`g(z) = z`: every integral is a covariance entry (`I2 = C_ab`, `J2 = 1`, `I3 = C_bc`, `I4 = C_cd`)."""

    name: ClassVar[str] = "linear"

    def __call__(self, z):
        return jnp.asarray(z)

    def derivative(self, z):
        z = jnp.asarray(z)
        return jnp.ones_like(z, dtype=z.dtype if jnp.issubdtype(z.dtype, jnp.floating) else float)

    def i2(self, caa, cbb, cab):
        return jnp.asarray(cab) + 0.0 * (caa + cbb)

    def j2(self, caa, cbb, cab):
        return jnp.ones_like(jnp.asarray(cab + caa + cbb, dtype=float))

    def i3(self, caa, ccc, cab, cac, cbc):
        return jnp.asarray(cbc) + 0.0 * (caa + ccc + cab + cac)

    def i4(self, caa, cbb, ccc, cdd, cab, cac, cad, cbc, cbd, ccd):
        return jnp.asarray(ccd) + 0.0 * (caa + cbb + ccc + cdd + cab + cac + cad + cbc + cbd)


_ACTIVATIONS = {"erf": Erf, "linear": Linear}


def get_activation(activation: str | AbstractActivation) -> AbstractActivation:
    """Return an activation object from its name (`"erf"` or `"linear"`) or pass one through."""
    if isinstance(activation, AbstractActivation):
        return activation
    try:
        return _ACTIVATIONS[activation]()
    except KeyError:
        raise ValueError(
            f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
        ) from None
