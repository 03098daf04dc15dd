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
    """`I2` over all fields: `E[g(a) g(b)]` for students then teachers (docs/theory.md sections 2 and 3; the
    matrix `A` of section 6.1 is its top-left `K x K` block).

    **Arguments:**

    - `state`: the [`Overlaps`][] (one state; `vmap` for a batch).
    - `activation`: an [`AbstractActivation`][] or its name (`"erf"`, `"linear"`); default [`Erf`][].

    **Returns:** the `F x F` matrix `I2(a, b)`, `Float[Array, "F F"]` with `F = K + M` (symmetric positive
    semi-definite), fields ordered students `0..K-1` then teachers.
    """
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

    **Arguments:**

    - `state`: the [`Overlaps`][] (one state; `vmap` for a batch, `grad` for its derivatives).
    - `activation`: an [`AbstractActivation`][] or its name (`"erf"`, `"linear"`); default [`Erf`][].

    **Returns:** the scalar `eps_g >= 0`, `Float[Array, ""]`, in the state's dtype. Overflow-safe: the Gaussian
    integrals take any finite overlaps (e.g. `Q = 1e300 I`), and the second layers enter through an exactly
    rescaled quadratic form, so the result is `inf` only when `eps_g` itself exceeds the largest float
    ([`validate_overlaps`][] refuses second layers that large for erf).

    **Example:**
    ```python
    jp.generalisation_error(jp.Overlaps.reference(K=2, M=2))  # the error at the reference initial state
    ```
    """
    u = state.output_weights()
    a = activation_covariance(state, get_activation(activation))
    return 0.5 * _quadratic_form(u, a)


def test_mse(
    state: Overlaps, sigma: Float[ArrayLike, ""], activation: AbstractActivation | str = Erf()
) -> Float[Array, ""]:
    """Expected squared error on noisy test labels `y = y_clean + sigma zeta`: the test MSE
    `E[(phi(x) - y)^2] = 2 eps_g + sigma^2` (docs/theory.md section 3; the seed paper's "test GE" is half of it).

    **Arguments:**

    - `state`: the [`Overlaps`][] of the student and teacher.
    - `sigma`: the label-noise standard deviation (`>= 0`), a scalar.
    - `activation`: an [`AbstractActivation`][] or its name (`"erf"`, `"linear"`); default [`Erf`][].

    **Returns:** the scalar `2 eps_g + sigma^2`, `Float[Array, ""]`. [`fresh_test_mse`][] estimates the same
    quantity on concrete networks and fresh inputs.
    """
    return 2.0 * generalisation_error(state, activation) + jnp.square(sigma)


test_mse.__test__ = False  # not a pytest test, despite the name
