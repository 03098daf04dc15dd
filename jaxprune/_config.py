"""Hyperparameters of online SGD, shared by the ODEs (`jaxprune._ode`) and the finite-N simulation
(`jaxprune._simulate`), so that neither imports the other (docs/theory.md, section 4)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._activations import AbstractActivation, Erf, get_activation
from ._checks import check_choice, is_concrete

__all__ = ["SGDConfig", "MODES", "CONFIG_RANGES", "check_config_values"]

#: The training modes of [`SGDConfig`][]: `"scm"` (soft committee machine: `v` fixed) and `"two-layer"`
#: (`v` trained).
MODES = ("scm", "two-layer")


def _as_float_array(x):
    """An array of JAX's default float dtype (the solvers cast it to the state's dtype)."""
    return jnp.asarray(x, dtype=jnp.result_type(float))


class SGDConfig(eqx.Module):
    """Hyperparameters of online SGD (docs/theory.md section 4), shared by the ODEs ([`solve_ode`][]), the fixed
    points and the finite-N simulation ([`simulate`][]); kept apart from the state.

    The four numbers are stored as 0-d arrays of JAX's default float (a solver casts them to its state's
    dtype), so a new value does not recompile a jitted solver, and they can be traced (`grad`, `vmap`; a batch
    of configurations has fields of shape `(B,)`). Concrete values out of range are a `ValueError` naming the
    field.

    **Fields** (the constructor's arguments; all but `eta` are optional):

    - `eta`: first-layer learning rate, `> 0`.
    - `eta_v`: second-layer learning rate, `>= 0` (used in two-layer mode only; default 0).
    - `sigma`: label-noise standard deviation, `>= 0` (default 0).
    - `weight_decay`: `lambda >= 0`, the per-step decay `w <- w - (eta lambda / N) w` (default 0).
    - `mode`: `"scm"` (soft committee machine, `v` fixed; default) or `"two-layer"` (`v` trained). Static.
    - `activation`: [`Erf`][] (default), [`Linear`][], or the name `"erf"` / `"linear"`. Static.

    **Example:**
    ```python
    config = jp.SGDConfig(eta=0.5, eta_v=0.5, sigma=0.1, mode="two-layer")
    ```
    """

    eta: Float[Array, ""] = eqx.field(converter=_as_float_array)
    eta_v: Float[Array, ""] = eqx.field(converter=_as_float_array, default=0.0)
    sigma: Float[Array, ""] = eqx.field(converter=_as_float_array, default=0.0)
    weight_decay: Float[Array, ""] = eqx.field(converter=_as_float_array, default=0.0)
    mode: str = eqx.field(static=True, default="scm")
    activation: AbstractActivation = eqx.field(static=True, default=Erf(), converter=get_activation)

    def __check_init__(self):
        check_choice("mode", self.mode, MODES)
        check_config_values(self)


#: `(field, lower bound, strict)` of the array fields of [`SGDConfig`][].
CONFIG_RANGES = (("eta", 0.0, True), ("eta_v", 0.0, False), ("sigma", 0.0, False), ("weight_decay", 0.0, False))


def check_config_values(config: SGDConfig, prefix: str = "") -> None:
    """`ValueError` naming the field (as `prefix + name`) when a concrete hyperparameter is out of range
    (scalars or batches of them; traced values are not checked)."""
    for name, lo, strict in CONFIG_RANGES:
        x = getattr(config, name)
        if is_concrete(x):
            arr = np.asarray(x)
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{prefix}{name} must be finite, got {arr}")
            if strict and np.any(arr <= lo):
                raise ValueError(f"{prefix}{name} must be > {lo} (allowed range ({lo}, inf)), got {arr}")
            if np.any(arr < lo):
                raise ValueError(f"{prefix}{name} must be >= {lo} (allowed range [{lo}, inf)), got {arr}")


# old private names, kept for callers outside the core
_check_config_values = check_config_values
_CONFIG_RANGES = CONFIG_RANGES
_MODES = MODES
_is_concrete = is_concrete
