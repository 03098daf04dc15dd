"""Batch sweeps over a grid of problems: one vmapped, jitted, device-sharded program per chunk shape.

A sweep runs the ODEs ([`solve_ode`][], final error), the fixed-point solver ([`fixed_point_from_ode`][]) or
the finite-N simulation ([`simulate`][]) for every point of a Cartesian grid over any of `eta`, `eta_v`,
`sigma`, `v_star`, `weight_decay`, `seed`, `init_scale`, `K`, `M`. Students are padded to the largest `K` with
inactive units (`Q_ii = R_i = v_i = 0`: exact stationary units of the dynamics) and teachers to the largest
`M` with zero units (`T_nn = v*_n = 0`), so the whole grid is one program (no recompilation per `K`).
Every configuration gets its own [`Status`][] code (`throw=False` inside); a failing one never stops a sweep.

The grid is ordered by cost (`K`, `M`, then `eta`: configurations of one size, and of similar speed, side by
side) and cut into chunks of a fixed size (padded to a multiple of the device count, the last chunk padded by
repeating its final configuration). Each chunk is padded only to its own largest `K` and `M`, so small
students do not pay for the largest one (the Gaussian integrals cost `~K^2 (K+M)^2`), at the price of one
compilation per distinct chunk size; and vmapped adaptive solvers, which step in lockstep until the slowest
element of a batch is done, waste fewer steps on batches of similar configurations. Fixed points use
[`fixed_point_from_ode_batch`][] (the Levenberg-Marquardt fallback runs only when some element needs it).
The chunk axis is sharded over all devices with a `NamedSharding` on a one-axis `Mesh`. Each finished chunk is written atomically to `OUT/chunks/`; a rerun
skips the chunks already on disk (resume) and assembles the tidy table `OUT/results.csv`.

Grid spec (JSON, or TOML read with `tomllib`), for example:

```json
{"kind": "fixed_point",
 "axes": {"eta": [0.1, 0.5, 1.0], "sigma": [0.01, 0.1], "K": [2, 3, 4]},
 "fixed": {"M": 2, "mode": "scm", "alpha": 100},
 "chunk_size": 64}
```

Initial state of every configuration: `Q0 = init_scale^2 I`, `T = I`, `v = 1`, `v* = v_star`, and
`R0[i, n] = 1e-3 sin(1 + i M + n)` (the reference tool's condition) or, when a `seed` is given,
`R0 ~ 1e-3 N(0, 1)` drawn by `numpy.random.default_rng(seed)`. For `simulate`, weights are drawn from the seed
(`w ~ N(0, init_scale^2)` per unit, teacher `w* ~ N(0, 1)`), unit by unit, so padding does not change them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._dynamics import INTEGRATORS, SGDConfig, solve_ode
from .._fixed_point import fixed_point_from_ode, fixed_point_from_ode_batch
from .._io import atomic_write_json, atomic_write_text
from .._overlaps import Overlaps
from .._status import Status, describe

__all__ = [
    "KINDS",
    "AXES",
    "load_spec",
    "validate_spec",
    "expand_grid",
    "sweep_arrays",
    "run_grid",
    "run_batched",
    "run_sweep",
    "read_results",
    "plot_results",
]

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


# ------------------------------------------------------------------------------------------------ the spec


def load_spec(path: str | os.PathLike) -> dict:
    """Read a grid spec from a `.json` or `.toml` file and validate it ([`validate_spec`][])."""
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
    """Check a grid spec; return a normalised copy. Errors are `ValueError`s naming the offending key."""
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
            if x not in INTEGRATORS:
                raise ValueError(f"spec.fixed.integrator must be one of {INTEGRATORS}, got {x!r}")
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


def _spec_hash(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def expand_grid(spec: dict) -> list[dict]:
    """All configurations of the grid (Cartesian product of the axes, last axis fastest), fixed values merged."""
    names = list(spec["axes"])
    rows = []
    for values in itertools.product(*(spec["axes"][n] for n in names)):
        row = {k: spec["fixed"][k] for k in _DEFAULTS if k in spec["fixed"]}
        row.update(zip(names, values))
        if row.get("eta_v") is None:
            row["eta_v"] = row["eta"]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------- batched padded inputs


def _initial_R(row: dict) -> np.ndarray:
    K, M = row["K"], row["M"]
    if row.get("seed") is None:
        i, n = np.arange(K)[:, None], np.arange(M)[None, :]
        return 1e-3 * np.sin(1.0 + i * M + n)
    return 1e-3 * np.random.default_rng(row["seed"]).normal(size=(K, M))


def sweep_arrays(rows: list[dict], K_max: int, M_max: int) -> dict[str, np.ndarray]:
    """Padded batch arrays of the configurations: initial overlaps, hyperparameters and unit masks."""
    B = len(rows)
    Q = np.zeros((B, K_max, K_max))
    R = np.zeros((B, K_max, M_max))
    T = np.zeros((B, M_max, M_max))
    v = np.zeros((B, K_max))
    vs = np.zeros((B, M_max))
    act = np.zeros((B, K_max), bool)
    tact = np.zeros((B, M_max), bool)
    for b, row in enumerate(rows):
        K, M = row["K"], row["M"]
        Q[b, :K, :K] = row["init_scale"] ** 2 * np.eye(K)
        R[b, :K, :M] = _initial_R(row)
        T[b, :M, :M] = np.eye(M)
        v[b, :K] = 1.0
        vs[b, :M] = row["v_star"]
        act[b, :K] = True
        tact[b, :M] = True
    col = lambda k, dflt=0.0: np.asarray([float(dflt if r.get(k) is None else r[k]) for r in rows])
    seeds = np.asarray([0 if r.get("seed") is None else int(r["seed"]) for r in rows], dtype=np.int64)
    return dict(Q=Q, R=R, T=T, v=v, v_star=vs, active=act, teacher_active=tact, eta=col("eta"),
                eta_v=col("eta_v"), sigma=col("sigma"), weight_decay=col("weight_decay"),
                init_scale=col("init_scale", 1.0), seed=seeds)


def _element_fn(kind: str, opts: dict):
    """The per-configuration computation (un-batched), returning a dict of scalars."""
    mode, activation = opts["mode"], opts["activation"]

    def config_of(x):
        return SGDConfig(eta=x["eta"], eta_v=x["eta_v"], sigma=x["sigma"], weight_decay=x["weight_decay"],
                         mode=mode, activation=activation)

    def state_of(x):
        return Overlaps(Q=x["Q"], R=x["R"], T=x["T"], v=x["v"], v_star=x["v_star"])

    if kind == "ode":
        alphas = np.asarray([0.0, opts["alpha"]])

        def fn(x):
            sol = solve_ode(state_of(x), config_of(x), alphas, integrator=opts["integrator"], dt=opts["dt"],
                            max_steps=opts["max_steps"], throw=False)
            return dict(eps_g=sol.eps_g[-1], status=sol.status, alpha_end=sol.alpha_end)

    elif kind == "fixed_point":

        def fn(x):
            res = fixed_point_from_ode(state_of(x), config_of(x), alpha=opts["alpha"], integrator=opts["integrator"],
                                       ode_max_steps=opts["max_steps"], active=x["active"],
                                       teacher_active=x["teacher_active"], throw=False)
            return dict(eps_g=res.eps_g, status=res.status, residual_norm=res.residual_norm,
                        slowest_eig_real=jnp.real(res.slowest_eigenvalue),
                        slowest_eig_imag=jnp.imag(res.slowest_eigenvalue), stable=res.stable,
                        used_fallback=res.used_fallback)

    elif kind == "simulate":
        from .._simulate import Student, Teacher, simulate

        N = opts["N"]
        steps = int(round(opts["alpha"] * N))
        record_every = opts["record_every"] or steps
        if steps % record_every:
            raise ValueError(f"spec.fixed.record_every must divide the number of steps {steps}, got {record_every}")

        def fn(x):
            dtype = x["eta"].dtype
            key = jax.random.key(x["seed"])
            k_teacher, k_student, k_run = jax.random.split(key, 3)
            draw = lambda k, n: jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(k, i), (N,), dtype))(
                jnp.arange(n)
            )
            K_max, M_max = x["v"].shape[0], x["v_star"].shape[0]
            w_star = draw(k_teacher, M_max) * x["teacher_active"][:, None]
            w = x["init_scale"] * draw(k_student, K_max) * x["active"][:, None]
            res = simulate(k_run, Teacher(w_star=w_star, v_star=x["v_star"]), Student(w=w, v=x["v"]), config_of(x),
                           steps=steps, record_every=record_every, dtype=dtype)
            return dict(eps_g=res.eps_g[-1], status=res.status)

    else:  # pragma: no cover - validated before
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return fn


def _batch_fn(kind: str, opts: dict):
    """The computation on a batch of configurations (leading axis): `vmap` of [`_element_fn`][], except for
    fixed points, which use the batched solver (its fallback runs only when some element needs it)."""
    if kind != "fixed_point":
        return jax.vmap(_element_fn(kind, opts))
    mode, activation = opts["mode"], opts["activation"]

    def fn(x):
        config = SGDConfig(eta=x["eta"], eta_v=x["eta_v"], sigma=x["sigma"], weight_decay=x["weight_decay"],
                           mode=mode, activation=activation)
        state = jax.vmap(Overlaps)(x["Q"], x["R"], x["T"], x["v"], x["v_star"])  # shapes checked per element
        res = fixed_point_from_ode_batch(state, config, alpha=opts["alpha"], integrator=opts["integrator"],
                                         ode_max_steps=opts["max_steps"], active=x["active"],
                                         teacher_active=x["teacher_active"])
        return dict(eps_g=res.eps_g, status=res.status, residual_norm=res.residual_norm,
                    slowest_eig_real=jnp.real(res.slowest_eigenvalue),
                    slowest_eig_imag=jnp.imag(res.slowest_eigenvalue), stable=res.stable,
                    used_fallback=res.used_fallback)

    return fn


def _mesh(devices=None) -> Mesh:
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), ("grid",))


_PROGRAMS: dict = {}


def _program(kind: str, opts: dict):
    key = (kind, json.dumps(opts, sort_keys=True))
    if key not in _PROGRAMS:
        _PROGRAMS[key] = jax.jit(_batch_fn(kind, opts))
    return _PROGRAMS[key]


def run_grid(
    rows: list[dict], kind: str, opts: dict, *, K_max: int | None = None, M_max: int | None = None,
    devices=None, shard: bool = True,
) -> dict[str, np.ndarray]:
    """Run one batch of configurations as one vmapped, jitted program, its batch axis sharded over `devices`
    (default all); the batch is padded to a multiple of the device count. Returns NumPy columns."""
    K_max = max(r["K"] for r in rows) if K_max is None else K_max
    M_max = max(r["M"] for r in rows) if M_max is None else M_max
    B = len(rows)
    mesh = _mesh(devices)
    ndev = mesh.devices.size if shard else 1
    padded = rows + [rows[-1]] * ((-B) % ndev)
    arrays = sweep_arrays(padded, K_max, M_max)
    dtype = jnp.result_type(float)
    x = {k: jnp.asarray(a, dtype=dtype if a.dtype.kind == "f" else None) for k, a in arrays.items()}
    if shard and ndev > 1:
        sharding = NamedSharding(mesh, PartitionSpec("grid"))
        x = jax.device_put(x, sharding)
    out = _program(kind, opts)(x)
    out = jax.tree.map(lambda a: np.asarray(jax.block_until_ready(a))[:B], out)
    return out


def _cost_order(rows: list[dict]) -> list[int]:
    """Indices of `rows` ordered by cost: size `(K, M)` first, then `eta` (a stable sort: ties keep grid order)."""
    return sorted(range(len(rows)), key=lambda i: (rows[i]["K"], rows[i]["M"], float(rows[i]["eta"])))


def _plan(rows: list[dict], chunk_size: int, ndev: int) -> tuple[int, list[list[int]]]:
    """The chunk size (a multiple of `ndev`) and the row indices of each chunk, in cost order."""
    size = -(-chunk_size // ndev) * ndev
    order = _cost_order(rows)
    return size, [order[lo : lo + size] for lo in range(0, len(order), size)]


def run_batched(rows: list[dict], kind: str, opts: dict, *, chunk_size: int = 256, devices=None,
                shard: bool = True) -> dict[str, np.ndarray]:
    """Run many configurations the way [`run_sweep`][] does, without files: in cost order (`K`, `M`, `eta`),
    in chunks of `chunk_size` configurations each padded to its own largest `K` and `M` (one compilation per
    distinct chunk size; the last chunk padded with copies of its last configuration). Returns NumPy columns
    in the order of `rows`."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    ndev = (len(jax.devices()) if devices is None else len(list(devices))) if shard else 1
    size, chunks = _plan(rows, chunk_size, ndev)
    cols: dict[str, np.ndarray] = {}
    for idx in chunks:
        chunk = [rows[i] for i in idx]
        padded = chunk + [chunk[-1]] * (size - len(chunk))
        out = run_grid(padded, kind, opts, devices=devices, shard=shard)
        for k, a in out.items():
            if k not in cols:
                cols[k] = np.empty((len(rows),) + a.shape[1:], a.dtype)
            cols[k][idx] = a[: len(idx)]
    return cols


def _opts(spec: dict) -> dict:
    return {k: spec["fixed"][k] for k in _OPTIONS}


def run_sweep(spec: dict | str | os.PathLike, out_dir: str | os.PathLike, *, progress: bool = True,
              devices=None) -> list[dict]:
    """Run (or resume) a sweep: chunk the grid in cost order (module docstring), write each finished chunk
    atomically to `out_dir/chunks/` (with the grid indices it holds), skip chunks already there, and write the
    tidy table `out_dir/results.csv` (one row per configuration, in grid order).

    Returns the rows (dicts: axis values, `K`, `M`, `eps_g` (noise-free), `status`, `status_words`, and
    per kind `alpha_end` or `residual_norm`, `slowest_eig_real`, `slowest_eig_imag`, `stable`, `used_fallback`).
    """
    spec = load_spec(spec) if isinstance(spec, (str, os.PathLike)) else validate_spec(spec)
    out = Path(out_dir)
    chunks_dir = out / "chunks"
    chunks_dir.mkdir(parents=True, exist_ok=True)
    h = _spec_hash(spec)
    spec_file = out / "spec.json"
    if spec_file.exists():
        old = json.loads(spec_file.read_text())
        if old.get("hash") != h:
            raise ValueError(f"out_dir {out} holds a different sweep (spec hash {old.get('hash')} != {h}); "
                             "use a fresh directory")
    else:
        atomic_write_json(spec_file, {"hash": h, "spec": spec})
    rows = expand_grid(spec)
    ndev = len(jax.devices()) if devices is None else len(list(devices))
    size, chunks = _plan(rows, spec["chunk_size"], ndev)
    n_chunks = len(chunks)
    opts = _opts(spec)
    from tqdm.auto import tqdm

    bar = tqdm(total=n_chunks, desc=f"sweep {spec['kind']}", disable=not progress, leave=False, dynamic_ncols=True)
    results: list[dict] = []
    try:
        for c, idx in enumerate(chunks):
            path = chunks_dir / f"chunk_{c:05d}.json"
            if path.exists():
                data = json.loads(path.read_text())
                if data.get("hash") == h and data.get("indices") == idx and len(data.get("rows", [])) == len(idx):
                    results.extend(data["rows"])
                    bar.update(1)
                    continue
            chunk = [rows[i] for i in idx]
            padded = chunk + [chunk[-1]] * (size - len(chunk))  # one batch shape: one compile per (K, M) size
            cols = run_grid(padded, spec["kind"], opts, devices=devices)
            chunk_rows = _rows(chunk, cols, spec, indices=idx)
            atomic_write_json(path, {"hash": h, "indices": idx, "rows": chunk_rows})
            results.extend(chunk_rows)
            bar.update(1)
    finally:
        bar.close()
    results.sort(key=lambda r: r["index"])
    _write_csv(out / "results.csv", results)
    return results


def _rows(chunk: list[dict], cols: dict, spec: dict, *, indices: list[int]) -> list[dict]:
    names = list(spec["axes"])
    out = []
    for j, row in enumerate(chunk):
        r = {"index": indices[j]}
        for k in names:
            r[k] = row[k]
        r["K"], r["M"] = row["K"], row["M"]
        for k, a in cols.items():
            val = a[j]
            if k == "status":
                r[k] = int(val)
                r["status_words"] = describe(val)
            elif a.dtype == bool:
                r[k] = bool(val)
            else:
                r[k] = float(val)
        out.append(r)
    return out


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    fields = list(rows[0])
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("nan" if isinstance(v, float) and math.isnan(v) else
                             repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def read_results(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read `results.csv` into columns (numbers as float arrays, words as string arrays)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} holds no rows")
    cols = {}
    for k in rows[0]:
        vals = [r[k] for r in rows]
        try:
            cols[k] = np.asarray([float(v) if v not in ("True", "False") else float(v == "True") for v in vals])
        except ValueError:
            cols[k] = np.asarray(vals)
    return cols


def plot_results(path: str | os.PathLike, axes: list[str], *, value: str = "eps_g", log: bool = True):
    """Heat map of `value` over two axes (`axes = [x, y]`) or a line plot over one axis, from `results.csv`.

    Configurations whose status is not `SUCCESS` are marked (x: diverged / not converged; o: unstable or
    singular). Other swept axes are fixed at their first value. matplotlib is imported here only.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = read_results(path)
    if not 1 <= len(axes) <= 2:
        raise ValueError(f"axes must name one or two columns, got {axes}")
    for a in axes:
        if a not in cols:
            raise ValueError(f"axis {a!r} is not a column of {path} (columns: {', '.join(cols)})")
    if value not in cols:
        raise ValueError(f"value {value!r} is not a column of {path}")
    # fix every other swept axis at its first value
    sel = np.ones(cols["index"].shape, bool)
    for k in cols:
        if k in AXES and k not in axes and cols[k].dtype.kind == "f":
            first = cols[k][0]
            sel &= (cols[k] == first) | (np.isnan(cols[k]) & np.isnan(first))
    status = cols["status"][sel]
    z = np.where(status == Status.SUCCESS, cols[value][sel], np.nan)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if len(axes) == 1:
        x = cols[axes[0]][sel]
        order = np.argsort(x)
        ax.plot(x[order], z[order], "o-")
        bad = status != Status.SUCCESS
        ax.plot(x[bad], np.full(bad.sum(), np.nanmin(z) if np.any(np.isfinite(z)) else 0), "rx", label="not SUCCESS")
        ax.set_xlabel(axes[0])
        ax.set_ylabel(value)
        if log:
            ax.set_yscale("log")
    else:
        xs, ys = np.unique(cols[axes[0]][sel]), np.unique(cols[axes[1]][sel])
        grid = np.full((ys.size, xs.size), np.nan)
        st = np.full((ys.size, xs.size), -1)
        ix = np.searchsorted(xs, cols[axes[0]][sel])
        iy = np.searchsorted(ys, cols[axes[1]][sel])
        grid[iy, ix] = z
        st[iy, ix] = status
        data = np.log10(grid) if log else grid
        mesh = ax.pcolormesh(np.arange(xs.size + 1) - 0.5, np.arange(ys.size + 1) - 0.5, data, shading="flat")
        fig.colorbar(mesh, ax=ax, label=f"log10 {value}" if log else value)
        for code, marker, label in ((Status.UNSTABLE, "o", "unstable"), (Status.SINGULAR, "s", "singular"),
                                    (Status.DIVERGED, "x", "diverged"), (Status.NOT_CONVERGED, "+", "not converged"),
                                    (Status.MAX_STEPS, "^", "step budget"), (Status.INVALID, "d", "invalid")):
            yy, xx = np.nonzero(st == code)
            if yy.size:
                ax.scatter(xx, yy, marker=marker, c="red", label=label)
        ax.set_xticks(np.arange(xs.size), [f"{t:.3g}" for t in xs], rotation=45)
        ax.set_yticks(np.arange(ys.size), [f"{t:.3g}" for t in ys])
        ax.set_xlabel(axes[0])
        ax.set_ylabel(axes[1])
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    ax.set_title(f"{value} (noise-free generalisation error)" if value == "eps_g" else value)
    fig.tight_layout()
    return fig
