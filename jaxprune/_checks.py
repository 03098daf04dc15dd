"""Argument checks shared by every layer: one `ValueError` line naming the argument, the allowed range and the
value received. Checks of concrete (non-traced) Python or array values only; run-time checks of traced values
use `eqx.error_if` where they belong."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import jax
import numpy as np

__all__ = ["is_concrete", "check_int", "check_count", "check_float", "check_choice"]


def is_concrete(x: Any) -> bool:
    """True unless `x` is a JAX tracer (a value known only at run time)."""
    return not isinstance(x, jax.core.Tracer)


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """`value` as a Python int in `[lo, hi]`; booleans and non-integral numbers are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        if isinstance(value, (numbers.Real, np.floating)) and not isinstance(value, bool) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer{_range(lo, hi, '[', ']')}, got {value!r}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name} must be an integer{_range(lo, hi, '[', ']')}, got {value}")
    return value


def check_count(k: Any, K: int, name: str = "k (units kept)") -> int:
    """A number of units kept, `k`, as a Python int in `[1, K]` (the one check of a budget `k` in every layer)."""
    return check_int(name, k, 1, K)


def check_float(
    name: str, value: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """`value` as a finite Python float in the range given (`lo_open`/`hi_open` exclude the ends)."""
    allowed = _range(lo, hi, "(" if lo_open else "[", ")" if hi_open else "]")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number{allowed}, got {value!r}")
    x = float(value)
    bad = not math.isfinite(x)
    bad |= lo is not None and (x <= lo if lo_open else x < lo)
    bad |= hi is not None and (x >= hi if hi_open else x > hi)
    if bad:
        raise ValueError(f"{name} must be a finite number{allowed}, got {value!r}")
    return x


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    """`value` if it is one of `allowed`, else a `ValueError` listing them."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def _range(lo, hi, left: str, right: str) -> str:
    if lo is None and hi is None:
        return ""
    a = "-inf" if lo is None else lo
    b = "inf" if hi is None else hi
    return f" in {'(' if lo is None else left}{a}, {b}{')' if hi is None else right}"
