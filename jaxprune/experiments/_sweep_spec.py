"""Sweep specs: the grid file (JSON or TOML), its validation, and its expansion into configurations.

A spec names the computation (`kind`: ODE final error, fixed point, or finite-N simulation), the swept axes
(lists of values of `eta`, `eta_v`, `sigma`, `v_star`, `weight_decay`, `seed`, `init_scale`, `K`, `M`), the
fixed values and options, and the chunk size. See [`run_sweep`][] for the run itself.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any

import jaxprune as jp

__all__ = ["KINDS", "AXES", "COLUMNS", "load_spec", "validate_spec", "spec_hash", "expand_grid", "sweep_options"]

#: what a sweep computes per configuration: the ODE's final error, the fixed point, or a finite-N simulation
KINDS = ("ode", "fixed_point", "simulate")
#: names that may be swept (in "axes") or fixed (in "fixed")
AXES = ("eta", "eta_v", "sigma", "v_star", "weight_decay", "seed", "init_scale", "K", "M")
_OPTIONS = {  # fixed-only options and their defaults
    "mode": "scm",
    "activation": "erf",
    "alpha": 100.0,
    "integrator": "tsit5",
    "dt": 0.01,
    "max_steps": 100_000,
    "N": 500,
    "record_every": None,
}
_DEFAULTS = {"eta": 0.5, "eta_v": None, "sigma": 0.0, "v_star": 1.0, "weight_decay": 0.0, "seed": None,
             "init_scale": 1.0, "K": 2, "M": 2}
_INT_AXES = ("K", "M", "seed")
#: result columns per kind, after the axis values, `K` and `M` (the schema of a chunk's rows)
COLUMNS = {
    "ode": ("eps_g", "status", "status_words", "alpha_end"),
    "fixed_point": ("eps_g", "status", "status_words", "residual_norm", "slowest_eig_real", "slowest_eig_imag",
                    "stable", "used_fallback"),
    "simulate": ("eps_g", "status", "status_words"),
}


# ------------------------------------------------------------------------------------------------ the spec


def load_spec(path: str | os.PathLike) -> dict:
    """Read a grid spec from a `.json` or `.toml` file and validate it
    ([`validate_spec`][jaxprune.experiments.validate_spec]).

    **Arguments:**

    - `path`: the spec file; a `.toml` suffix is read as TOML, anything else as JSON.

    **Returns:** the validated, normalised spec dict `{"kind", "axes", "fixed", "chunk_size"}`. A missing file
    is a `FileNotFoundError`, unparsable text or an invalid spec a one-line `ValueError` naming the file or key.

    **Example** (`grid.toml`):

    ```toml
    kind = "fixed_point"
    chunk_size = 32
    [axes]
    eta = [0.25, 0.5, 1.0]
    sigma = [0.0, 0.1, 0.3]
    [fixed]
    K = 2
    M = 2
    ```
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"spec file {path} does not exist") from None
    try:
        spec = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"spec file {path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {e}") from None
    return validate_spec(spec)


def _check_value(name: str, x, where: str):
    if name in _INT_AXES:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or float(x) != int(x):
            raise ValueError(f"{where}.{name} must be an integer, got {x!r}")
        x = int(x)
        lo = 0 if name == "seed" else 1
        if x < lo:
            raise ValueError(f"{where}.{name} must be >= {lo}, got {x}")
        return x
    if name == "v_star" and isinstance(x, list):
        return [_check_value("v_star", t, where) for t in x]
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError(f"{where}.{name} must be a finite number, got {x!r}")
    x = float(x)
    if name == "eta" and x <= 0:
        raise ValueError(f"{where}.{name} must be > 0 (allowed range (0, inf)), got {x}")
    if name in ("eta_v", "sigma", "weight_decay", "init_scale") and x < 0:
        raise ValueError(f"{where}.{name} must be >= 0 (allowed range [0, inf)), got {x}")
    return x


def validate_spec(spec: Any) -> dict:
    """Check a grid spec and return a normalised copy.

    A spec has `kind` (one of [`KINDS`][jaxprune.experiments.KINDS]), `axes` (a non-empty mapping from names in
    [`AXES`][jaxprune.experiments.AXES] to non-empty lists of values), optional `fixed` (values of unswept
    axes and the fixed-only options `mode` (`"scm"` or `"two-layer"`), `activation` (`"erf"` or `"linear"`),
    `alpha`, `integrator` (one of `jaxprune.INTEGRATORS`), `dt`, `max_steps`, `N`, `record_every`) and
    `chunk_size` (integer `>= 1`, default 64). Allowed ranges: `eta > 0`; `eta_v`, `sigma`, `weight_decay`,
    `init_scale >= 0`; `K`, `M >= 1`; `seed >= 0`; `v_star` a number, or fixed as a list of `M` numbers.
    For `kind="simulate"`, `alpha * N` must be a whole number of steps.

    **Arguments:**

    - `spec`: the spec as a mapping (e.g. parsed JSON or TOML).

    **Returns:** `{"kind", "axes", "fixed", "chunk_size"}` with numbers converted (`float`, or `int` for `K`,
    `M`, `seed`) and every unswept axis and option filled with its default in `fixed` (`eta = 0.5`,
    `eta_v = eta`, `sigma = 0`, `v_star = 1`, `weight_decay = 0`, `seed = None` (the reference initial `R`),
    `init_scale = 1`, `K = M = 2`; `mode = "scm"`, `activation = "erf"`, `alpha = 100`, `integrator = "tsit5"`,
    `dt = 0.01`, `max_steps = 100000`, `N = 500`). Errors are one-line `ValueError`s naming the offending
    key (e.g. `spec.axes.eta`).

    **Example:**

    ```python
    spec = jpx.validate_spec({"kind": "ode", "axes": {"eta": [0.5, 1.0], "sigma": [0.0, 0.1]}})
    spec["fixed"]["alpha"]   # 100.0
    ```
    """
    if not isinstance(spec, dict):
        raise ValueError(f"spec must be a mapping with keys 'kind', 'axes', 'fixed', 'chunk_size', got {type(spec).__name__}")
    unknown = set(spec) - {"kind", "axes", "fixed", "chunk_size"}
    if unknown:
        raise ValueError(f"spec has unknown keys {sorted(unknown)} (allowed: kind, axes, fixed, chunk_size)")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"spec.kind must be one of {KINDS}, got {kind!r}")
    axes = spec.get("axes", {})
    if not isinstance(axes, dict) or not axes:
        raise ValueError("spec.axes must be a non-empty mapping from axis name to a list of values")
    fixed = spec.get("fixed", {})
    if not isinstance(fixed, dict):
        raise ValueError("spec.fixed must be a mapping")
    out_axes = {}
    for name, values in axes.items():
        if name not in AXES:
            raise ValueError(f"spec.axes.{name} is not a sweepable axis (allowed: {', '.join(AXES)})")
        if not isinstance(values, list) or not values:
            raise ValueError(f"spec.axes.{name} must be a non-empty list, got {values!r}")
        vals = [_check_value(name, x, "spec.axes") for x in values]
        if name == "v_star" and any(isinstance(v, list) for v in vals):
            raise ValueError("spec.axes.v_star must hold numbers (one teacher second layer for all units)")
        out_axes[name] = vals
    out_fixed = dict(_OPTIONS)
    for name, x in fixed.items():
        if name in out_axes:
            raise ValueError(f"spec.fixed.{name} is also a swept axis; give it in one place only")
        if name in AXES:
            if x is None and name in ("eta_v", "seed"):
                out_fixed[name] = None
                continue
            out_fixed[name] = _check_value(name, x, "spec.fixed")
        elif name == "mode":
            if x not in ("scm", "two-layer"):
                raise ValueError(f"spec.fixed.mode must be 'scm' or 'two-layer', got {x!r}")
            out_fixed[name] = x
        elif name == "activation":
            if x not in ("erf", "linear"):
                raise ValueError(f"spec.fixed.activation must be 'erf' or 'linear', got {x!r}")
            out_fixed[name] = x
        elif name == "integrator":
            if x not in jp.INTEGRATORS:
                raise ValueError(f"spec.fixed.integrator must be one of {jp.INTEGRATORS}, got {x!r}")
            out_fixed[name] = x
        elif name in ("alpha", "dt"):
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not (math.isfinite(x) and x > 0):
                raise ValueError(f"spec.fixed.{name} must be a positive finite number, got {x!r}")
            out_fixed[name] = float(x)
        elif name in ("max_steps", "N", "record_every"):
            if x is None and name == "record_every":
                continue
            if isinstance(x, bool) or not isinstance(x, int) or x < 1:
                raise ValueError(f"spec.fixed.{name} must be an integer >= 1, got {x!r}")
            out_fixed[name] = x
        else:
            raise ValueError(f"spec.fixed.{name} is not a known option (allowed: {', '.join(AXES + tuple(_OPTIONS))})")
    for name, default in _DEFAULTS.items():
        if name not in out_axes:
            out_fixed.setdefault(name, default)
    vs = out_fixed.get("v_star")
    if isinstance(vs, list) and ("M" in out_axes or len(vs) != out_fixed["M"]):
        raise ValueError(f"spec.fixed.v_star as a list needs a fixed M equal to its length, got {len(vs)} values")
    chunk = spec.get("chunk_size", 64)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"spec.chunk_size must be an integer >= 1, got {chunk!r}")
    if kind == "simulate":
        steps = out_fixed["alpha"] * out_fixed["N"]
        if abs(steps - round(steps)) > 1e-9:
            raise ValueError("spec.fixed.alpha * spec.fixed.N must be a whole number of steps for kind 'simulate'")
    return {"kind": kind, "axes": out_axes, "fixed": out_fixed, "chunk_size": chunk}


def spec_hash(spec: dict) -> str:
    """A short hash of a validated spec (chunk files and `spec.json` carry it)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def expand_grid(spec: dict) -> list[dict]:
    """All configurations of the grid: the Cartesian product of the axes (last axis fastest), the fixed axis
    values merged in.

    **Arguments:**

    - `spec`: a validated spec ([`validate_spec`][jaxprune.experiments.validate_spec]).

    **Returns:** a list of dicts, one per configuration, with every axis of [`AXES`][jaxprune.experiments.AXES]
    (`eta_v` set to `eta` where it is `None`); the fixed-only options are in
    [`sweep_options`][jaxprune.experiments.sweep_options]. A grid of axes with `n_1, n_2, ...` values has
    `n_1 n_2 ...` configurations.
    """
    names = list(spec["axes"])
    rows = []
    for values in itertools.product(*(spec["axes"][n] for n in names)):
        row = {k: spec["fixed"][k] for k in _DEFAULTS if k in spec["fixed"]}
        row.update(zip(names, values))
        if row.get("eta_v") is None:
            row["eta_v"] = row["eta"]
        rows.append(row)
    return rows


def sweep_options(spec: dict) -> dict:
    """The fixed-only options of a validated spec: what the batched program depends on besides the arrays.

    **Arguments:**

    - `spec`: a validated spec ([`validate_spec`][jaxprune.experiments.validate_spec]).

    **Returns:** a dict with `mode`, `activation`, `alpha`, `integrator`, `dt`, `max_steps`, `N`,
    `record_every` (the `opts` of [`run_grid`][jaxprune.experiments.run_grid] and
    [`run_batched`][jaxprune.experiments.run_batched]).
    """
    return {k: spec["fixed"][k] for k in _OPTIONS}
