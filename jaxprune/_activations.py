"""Activations and their Gaussian-integral kernels for one index tuple.

Every kernel takes the entries of the covariance of the local fields it names (scalars or arrays that
broadcast elementwise) and returns the Gaussian average of THEORY.md section 2. Blocks over many index tuples
are built in `jaxprune._integrals` by lifting these kernels with `vmap`.

Naming of covariance entries: `caa = C[a, a]`, `cab = C[a, b]`, and so on, for fields `a, b, c, d`.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
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


def safe_arcsin(x: ArrayLike) -> Array:
    """`arcsin` of `x` clipped to [-1, 1] (only to absorb rounding), with a derivative that stays finite."""
    x = jnp.clip(x, -1.0, 1.0)
    return jnp.arctan2(x, safe_sqrt(1.0 - x * x) + jnp.finfo(jnp.result_type(x, float)).tiny)


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


class Erf(AbstractActivation):
    """`g(z) = erf(z / sqrt 2)`, `g'(z) = sqrt(2/pi) exp(-z^2/2)` (Saad & Solla 1995; THEORY.md section 2).

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
        """`(4/pi^2) / sqrt(L4) * arcsin(L0 / sqrt(L1 L2))` (THEORY.md section 2 for L0..L4)."""
        l4 = (1.0 + caa) * (1.0 + cbb) - cab * cab
        l0 = l4 * ccd - cbc * cbd * (1.0 + caa) - cac * cad * (1.0 + cbb) + cab * cac * cbd + cab * cad * cbc
        l1 = l4 * (1.0 + ccc) - cbc * cbc * (1.0 + caa) - cac * cac * (1.0 + cbb) + 2.0 * cab * cac * cbc
        l2 = l4 * (1.0 + cdd) - cbd * cbd * (1.0 + caa) - cad * cad * (1.0 + cbb) + 2.0 * cab * cad * cbd
        return _FOUR_OVER_PI2 / safe_sqrt(l4) * safe_arcsin(l0 / safe_sqrt(l1 * l2))


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
