"""Hyperparameters of online SGD, shared by the ODEs (`jaxprune._dynamics`) and the finite-N simulation
(`jaxprune._simulate`), so that neither imports the other (docs/theory.md, section 4)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._activations import AbstractActivation, Erf, get_activation

__all__ = ["SGDConfig", "MODES"]

MODES = ("scm", "two-layer")
_MODES = MODES


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _as_float_array(x):
    return jnp.asarray(x, dtype=jnp.result_type(float))


class SGDConfig(eqx.Module):
    """Hyperparameters of online SGD (kept apart from the state; all are arrays, so changing them does not
    recompile).

    **Fields:**
    - `eta`: first-layer learning rate (> 0).
    - `eta_v`: second-layer learning rate (>= 0; used in two-layer mode only).
    - `sigma`: label-noise standard deviation (>= 0).
    - `weight_decay`: `lambda >= 0`, the per-step decay `w <- w - (eta lambda / N) w`.
    - `mode`: `"scm"` (soft committee machine, `v` fixed) or `"two-layer"` (`v` trained). Static.
    - `activation`: [`Erf`][] (default) or [`Linear`][]. Static.
    """

    eta: Float[Array, ""] = eqx.field(converter=_as_float_array)
    eta_v: Float[Array, ""] = eqx.field(converter=_as_float_array, default=0.0)
    sigma: Float[Array, ""] = eqx.field(converter=_as_float_array, default=0.0)
    weight_decay: Float[Array, ""] = eqx.field(converter=_as_float_array, default=0.0)
    mode: str = eqx.field(static=True, default="scm")
    activation: AbstractActivation = eqx.field(static=True, default=Erf(), converter=get_activation)

    def __check_init__(self):
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {self.mode!r}")
        _check_config_values(self)


_CONFIG_RANGES = (("eta", 0.0, True), ("eta_v", 0.0, False), ("sigma", 0.0, False), ("weight_decay", 0.0, False))


def _check_config_values(config: SGDConfig, prefix: str = "") -> None:
    """`ValueError` naming the field (as `prefix + name`) when a concrete hyperparameter is out of range."""
    for name, lo, strict in _CONFIG_RANGES:
        x = getattr(config, name)
        if _is_concrete(x):
            arr = np.asarray(x)
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{prefix}{name} must be finite, got {arr}")
            if strict and np.any(arr <= lo):
                raise ValueError(f"{prefix}{name} must be > {lo} (allowed range ({lo}, inf)), got {arr}")
            if np.any(arr < lo):
                raise ValueError(f"{prefix}{name} must be >= {lo} (allowed range [{lo}, inf)), got {arr}")


