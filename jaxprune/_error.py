"""Generalisation error of a student given its order parameters (docs/theory.md section 3)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._activations import AbstractActivation, Erf, get_activation
from ._integrals import fields, i2_block
from ._overlaps import Overlaps

__all__ = ["generalisation_error", "test_mse", "activation_covariance"]


@eqx.filter_jit
def activation_covariance(
    state: Overlaps, activation: AbstractActivation | str = Erf()
) -> Float[Array, "F F"]:
    """`I2` over all fields: `E[g(a) g(b)]` for students then teachers (the matrix `A` of docs/theory.md 6.1
    is its top-left `K x K` block). `activation` is an [`AbstractActivation`][] or its name."""
    _, _, all_fields = fields(state.K, state.M)
    return i2_block(get_activation(activation), state.covariance(), all_fields, all_fields)


def _quadratic_form(u: Float[Array, " F"], a: Float[Array, "F F"]) -> Float[Array, ""]:
    """`u^T a u` with `u` first rescaled by a power of two `p` (exact) so that `max |u| < 2`: the products
    `u_a u_b` cannot overflow, and the result is `p^2 (u/p)^T a (u/p)`, `inf` only if the value itself is
    beyond the floating-point range."""
    _, e = jnp.frexp(jax.lax.stop_gradient(jnp.max(jnp.abs(u))))
    e = jnp.maximum(e - 1, 0)
    p = jnp.ldexp(jnp.ones_like(u[0]), e)
    w = u / p
    return jnp.einsum("a,ab,b->", w, a, w) * p * p


@eqx.filter_jit
def generalisation_error(state: Overlaps, activation: AbstractActivation | str = Erf()) -> Float[Array, ""]:
    """Noise-free generalisation error `eps_g = 1/2 E[(phi(x) - y_clean)^2] = 1/2 u^T I2 u`, `u = (v, -v*)`.

    For erf this is docs/theory.md section 3:
    `(1/pi)[sum_ik v_i v_k asin(Q_ik/..) + sum_nm v*_n v*_m asin(T_nm/..) - 2 sum_in v_i v*_n asin(R_in/..)]`.
    `activation` is an [`AbstractActivation`][] or its name (`"erf"`, `"linear"`). Overflow-safe: the Gaussian
    integrals take any finite overlaps (e.g. `Q = 1e300 I`), and the second layers enter through an exactly
    rescaled quadratic form, so the result is `inf` only when `eps_g` itself exceeds the largest float
    ([`validate_overlaps`][] refuses second layers that large for erf).
    """
    u = state.output_weights()
    a = activation_covariance(state, get_activation(activation))
    return 0.5 * _quadratic_form(u, a)


def test_mse(
    state: Overlaps, sigma: Float[ArrayLike, ""], activation: AbstractActivation | str = Erf()
) -> Float[Array, ""]:
    """Expected squared error on noisy test labels `y = y_clean + sigma zeta`: `2 eps_g + sigma^2`."""
    return 2.0 * generalisation_error(state, activation) + jnp.square(sigma)


test_mse.__test__ = False  # not a pytest test, despite the name
