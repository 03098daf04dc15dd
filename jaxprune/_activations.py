"""Activations and their Gaussian-integral kernels for one index tuple.

Every kernel takes the entries of the covariance of the local fields it names (scalars or arrays that
broadcast elementwise) and returns the Gaussian average of docs/theory.md section 2. Blocks over many index tuples
are built in `jaxprune._integrals` by broadcasting these kernels (or lifting them with `vmap`).

Naming of covariance entries: `caa = C[a, a]`, `cab = C[a, b]`, and so on, for fields `a, b, c, d`.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

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


def pow2_scale(d: ArrayLike) -> Array:
    """The power of two `s = 2^-floor(e/2)` for `d = m 2^e` (`1/2 <= m < 1`), so that `d s^2` lies in `[1/2, 2)`.

    The Gaussian integrals of [`Erf`][] are written on the fields rescaled by `s` (`1 + C_aa -> s_a^2 (1 + C_aa)`,
    `C_ab -> s_a s_b C_ab`): no product of variances can overflow or underflow (overlaps of `1e300` are fine),
    and because multiplying by a power of two is exact, the results are bit-for-bit those of the unscaled
    formulas wherever those do not overflow. `s` is a constant for autodiff (piecewise constant in `d`).
    """
    d = jax.lax.stop_gradient(jnp.asarray(d))
    _, e = jnp.frexp(d)
    return jnp.ldexp(jnp.ones_like(d), -(e // 2))


def det_sqrt(x: ArrayLike) -> Array:
    """`sqrt` of a determinant of `I + C` (rescaled by `pow2_scale`), floored at the smallest normal float.

    Such determinants are positive for a PSD `C`; the floor only acts where rounding has cancelled them to
    zero (a unit copying another at overlaps near `1e300`, where `1 + C = C` in floating point), so that the
    integrals stay finite there instead of `0/0`. Elsewhere it is [`safe_sqrt`][] unchanged.
    """
    x = jnp.asarray(x)
    return safe_sqrt(jnp.maximum(x, jnp.finfo(x.dtype).tiny))


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
    """An activation `g` with the Gaussian averages used by the order-parameter theory (docs/theory.md section 2).

    Final subclasses: [`Erf`][], [`Linear`][]. A subclass sets `name` and implements `g`, `g'` and the four
    kernels below; the blocks over many fields ([`jaxprune.i2`][], [`activation_covariance`][], [`vector_field`][]) are
    built from them by broadcasting.

    **Fields:**

    - `name`: the activation's name, a class variable of each final subclass (`"erf"`, `"linear"`): what
      [`get_activation`][] and `SGDConfig(activation=...)` accept. The constructors take no argument (`Erf()`).

    **Kernel convention:** every kernel takes the entries of the covariance `C` of the local fields it names,
    `caa = C[a, a]`, `cab = C[a, b]`, ..., as scalars or arrays that broadcast against each other, and
    returns the Gaussian average elementwise (one index tuple per element):

    - `i2(caa, cbb, cab) = E[g(a) g(b)]`
    - `j2(caa, cbb, cab) = E[g'(a) g'(b)]`
    - `i3(caa, ccc, cab, cac, cbc) = E[g'(a) b g(c)]`
    - `i4(caa, cbb, ccc, cdd, cab, cac, cad, cbc, cbd, ccd) = E[g'(a) g'(b) g(c) g(d)]`

    **Example:**
    ```python
    act = jp.get_activation("erf")
    act.i2(1.0, 1.0, 0.5)  # E[g(a) g(b)] for unit variances and covariance 1/2: (2/pi) asin(1/4)
    ```
    """

    name: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def __call__(self, z: ArrayLike) -> Array:
        """`g(z)`, elementwise on an array `z` of any shape."""

    @abc.abstractmethod
    def derivative(self, z: ArrayLike) -> Array:
        """`g'(z)`, elementwise on an array `z` of any shape."""

    @abc.abstractmethod
    def i2(self, caa, cbb, cab) -> Array:
        """`I2(a,b) = E[g(a) g(b)]` from the variances `caa`, `cbb` and the covariance `cab` (broadcast)."""

    @abc.abstractmethod
    def j2(self, caa, cbb, cab) -> Array:
        """`J2(a,b) = E[g'(a) g'(b)]` from the variances `caa`, `cbb` and the covariance `cab` (broadcast)."""

    @abc.abstractmethod
    def i3(self, caa, ccc, cab, cac, cbc) -> Array:
        """`I3(a,b,c) = E[g'(a) b g(c)]` from `caa`, `ccc`, `cab`, `cac`, `cbc` (broadcast; `C_bb` does not
        enter)."""

    @abc.abstractmethod
    def i4(self, caa, cbb, ccc, cdd, cab, cac, cad, cbc, cbd, ccd) -> Array:
        """`I4(a,b,c,d) = E[g'(a) g'(b) g(c) g(d)]` from the four variances `caa`, `cbb`, `ccc`, `cdd` and the six
        covariances `cab`, `cac`, `cad`, `cbc`, `cbd`, `ccd` (broadcast)."""

    def i4_contracted(self, caa, cbb, cab, ca, cb, cdiag, C, w) -> Array:
        """`sum_cd w[c, d] I4(a, b, c, d)` for one pair of fields `(a, b)`, over all fields `c, d`.

        **Arguments:**

        - `caa`, `cbb`, `cab`: the entries `C[a, a]`, `C[b, b]`, `C[a, b]` (scalars).
        - `ca`, `cb`: the rows `C[a, :]`, `C[b, :]`, `Float[Array, " F"]`.
        - `cdiag`: the diagonal of `C`, `Float[Array, " F"]`.
        - `C`: the covariance of all `F` fields, `Float[Array, "F F"]`.
        - `w`: the weights of the contraction, `Float[Array, "F F"]` (e.g. `u_c u_d`).

        **Returns:** a scalar. Lift over pairs `(a, b)` with `vmap`.

        This default broadcasts the scalar kernel [`i4`][] over `(c, d)`; subclasses may override it with an
        algebraically equal, cheaper form.
        """
        col, row = (lambda x: x[:, None]), (lambda x: x[None, :])
        dense = self.i4(
            caa, cbb, col(cdiag), row(cdiag), cab, col(ca), row(ca), col(cb), row(cb), C
        )
        return jnp.sum(w * dense)


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
        """`(2/pi) arcsin(C_ab / sqrt((1+C_aa)(1+C_bb)))` (fields rescaled by `pow2_scale` first)."""
        sa, sb = pow2_scale(1.0 + caa), pow2_scale(1.0 + cbb)
        A, B, cab = (1.0 + caa) * sa * sa, (1.0 + cbb) * sb * sb, cab * sa * sb
        return _TWO_OVER_PI * safe_arcsin(cab / safe_sqrt(A * B))

    def j2(self, caa, cbb, cab):
        """`(2/pi) / sqrt((1+C_aa)(1+C_bb) - C_ab^2)` (fields rescaled by `pow2_scale` first)."""
        sa, sb = pow2_scale(1.0 + caa), pow2_scale(1.0 + cbb)
        A, B, cab = (1.0 + caa) * sa * sa, (1.0 + cbb) * sb * sb, cab * sa * sb
        return (_TWO_OVER_PI * sa * sb) / det_sqrt(A * B - cab * cab)

    def i3(self, caa, ccc, cab, cac, cbc):
        """`(2/pi) (C_bc (1+C_aa) - C_ab C_ac) / ((1+C_aa) sqrt(L3))`, `L3 = (1+C_aa)(1+C_cc) - C_ac^2`.

        The fields `a` and `c` are rescaled by `pow2_scale` (the linear field `b` needs none: the products
        stay below `sqrt(C_bb)` in size).
        """
        sa, sc = pow2_scale(1.0 + caa), pow2_scale(1.0 + ccc)
        A, Cc = (1.0 + caa) * sa * sa, (1.0 + ccc) * sc * sc
        cab, cac, cbc = cab * sa, cac * sa * sc, cbc * sc
        l3 = A * Cc - cac * cac
        return _TWO_OVER_PI * (cbc * A - cab * cac) / (A * det_sqrt(l3)) * sa

    def i4(self, caa, cbb, ccc, cdd, cab, cac, cad, cbc, cbd, ccd):
        """`(4/pi^2) / sqrt(L4) * arcsin(L0 / sqrt(L1 L2))` (docs/theory.md section 2 for L0..L4; fields rescaled
        by `pow2_scale` first)."""
        sa, sb, sc, sd = (pow2_scale(1.0 + x) for x in (caa, cbb, ccc, cdd))
        A, B = (1.0 + caa) * sa * sa, (1.0 + cbb) * sb * sb
        Cc, Dd = (1.0 + ccc) * sc * sc, (1.0 + cdd) * sd * sd
        cab, cac, cad = cab * sa * sb, cac * sa * sc, cad * sa * sd
        cbc, cbd, ccd = cbc * sb * sc, cbd * sb * sd, ccd * sc * sd
        l4 = A * B - cab * cab
        l0 = l4 * ccd - cbc * cbd * A - cac * cad * B + cab * cac * cbd + cab * cad * cbc
        l1 = l4 * Cc - cbc * cbc * A - cac * cac * B + 2.0 * cab * cac * cbc
        l2 = l4 * Dd - cbd * cbd * A - cad * cad * B + 2.0 * cab * cad * cbd
        return (_FOUR_OVER_PI2 * sa * sb) / det_sqrt(l4) * safe_arcsin(l0 / det_sqrt(l1 * l2))

    def i4_contracted(self, caa, cbb, cab, ca, cb, cdiag, C, w):
        """`sum_cd w[c, d] I4(a, b, c, d)` for one pair `(a, b)`, factorised (same value as [`i4`][]).

        With `A = 1 + C_aa`, `B = 1 + C_bb`, `x = C[a, :]`, `y = C[b, :]` and
        `q_cd = B x_c x_d + A y_c y_d - C_ab (x_c y_d + y_c x_d)`, docs/theory.md section 2 reads
        `L0(c, d) = L4 C_cd - q_cd`, `L1(c) = L4 (1 + C_cc) - q_cc` (and `L2(d) = L1(d)`), so the `L1` are
        computed once per `c` and the arcsin argument is `L0(c, d) r_c r_d` with `r = 1/sqrt(L1)`.
        `L1` is the determinant of `I + C` on the fields `(a, b, c)`, at least 1 for a PSD `C`. Every field is
        rescaled by `pow2_scale` first (the rescaled `C` does not depend on the pair: computed once).
        """
        s = pow2_scale(1.0 + cdiag)
        sa, sb = pow2_scale(1.0 + caa), pow2_scale(1.0 + cbb)
        A, B, cab = (1.0 + caa) * sa * sa, (1.0 + cbb) * sb * sb, cab * sa * sb
        ca, cb = ca * sa * s, cb * sb * s
        C = C * s[:, None] * s[None, :]
        l4 = A * B - cab * cab
        col, row = (lambda x: x[:, None]), (lambda x: x[None, :])
        q = B * col(ca) * row(ca) + A * col(cb) * row(cb) - cab * (col(ca) * row(cb) + col(cb) * row(ca))
        l0 = l4 * C - q
        l1 = l4 * ((1.0 + cdiag) * s * s) - (B * ca * ca + A * cb * cb - 2.0 * cab * ca * cb)
        r = 1.0 / det_sqrt(l1)
        return (_FOUR_OVER_PI2 * sa * sb) / det_sqrt(l4) * jnp.sum(w * safe_arcsin(l0 * col(r) * row(r)))


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
    """The activation object named by `activation`, or `activation` itself if it already is one.

    **Arguments:**

    - `activation`: `"erf"` ([`Erf`][]), `"linear"` ([`Linear`][]) or an [`AbstractActivation`][] instance.

    **Returns:** an [`AbstractActivation`][]. An unknown name is a `ValueError` listing the allowed ones.

    **Example:**
    ```python
    jp.get_activation("erf")  # Erf()
    ```
    """
    if isinstance(activation, AbstractActivation):
        return activation
    try:
        return _ACTIVATIONS[activation]()
    except KeyError:
        raise ValueError(
            f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
        ) from None
