"""Generalisation error of a student given its order parameters (docs/theory.md section 3)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._activations import AbstractActivation, Erf
from ._integrals import fields, i2_block
from ._overlaps import Overlaps

__all__ = ["generalisation_error", "test_mse", "activation_covariance"]


@eqx.filter_jit
def activation_covariance(state: Overlaps, activation: AbstractActivation = Erf()) -> Float[Array, "K+M K+M"]:
    """`I2` over all fields: `E[g(a) g(b)]` for students then teachers (the matrix `A` of docs/theory.md 6.1
    is its top-left `K x K` block)."""
    _, _, all_fields = fields(state.K, state.M)
    return i2_block(activation, state.covariance(), all_fields, all_fields)


@eqx.filter_jit
def generalisation_error(state: Overlaps, activation: AbstractActivation = Erf()) -> Float[Array, ""]:
    """Noise-free generalisation error `eps_g = 1/2 E[(phi(x) - y_clean)^2] = 1/2 u^T I2 u`, `u = (v, -v*)`.

    For erf this is docs/theory.md section 3:
    `(1/pi)[sum_ik v_i v_k asin(Q_ik/..) + sum_nm v*_n v*_m asin(T_nm/..) - 2 sum_in v_i v*_n asin(R_in/..)]`.
    """
    u = state.output_weights()
    a = activation_covariance(state, activation)
    return 0.5 * jnp.einsum("a,ab,b->", u, a, u)


def test_mse(
    state: Overlaps, sigma: Float[ArrayLike, ""], activation: AbstractActivation = Erf()
) -> Float[Array, ""]:
    """Expected squared error on noisy test labels `y = y_clean + sigma zeta`: `2 eps_g + sigma^2`."""
    return 2.0 * generalisation_error(state, activation) + jnp.square(sigma)


test_mse.__test__ = False  # not a pytest test, despite the name
