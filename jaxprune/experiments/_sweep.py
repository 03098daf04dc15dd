"""Batch sweeps over a grid of problems: one batched, jitted, device-sharded program per chunk, chunks shared
by any number of processes (one or many hosts, `jax.distributed`) through the output folder.

A sweep runs the ODEs (final error), the fixed-point solver or the finite-N simulation for every point of a
Cartesian grid over any of `eta`, `eta_v`, `sigma`, `v_star`, `weight_decay`, `seed`, `init_scale`, `K`, `M`
(the spec: [`validate_spec`][]). Students are padded to the chunk's largest `K` with inactive units
(`Q_ii = R_i = v_i = 0`: exact stationary units of the dynamics) and teachers to its largest `M` with zero
units (`T_nn = v*_n = 0`), so that a chunk is one program. Every configuration gets its own [`jp.Status`][]
code; a failing one never stops a sweep.

- **Solvers.** ODE chunks map [`jp.solve_ode`][] over the chunk with `jax.lax.map(..., batch_size=b)`: each
  configuration keeps its own adaptive step sizes, `b` of them integrated side by side (`vmap`) per loop
  iteration. The default `b` is 1 on a single CPU device (one after another: on the 2-core machine this was
  1.5x faster than `vmap` of the chunk and than a batched Runge-Kutta with one step size for the chunk;
  `benchmarks/bench_sweep.py`) and the whole chunk elsewhere (accelerators, several devices);
  `batch_size` overrides it. Fixed points use [`jp.fixed_point_from_ode_batch`][] (its Levenberg-Marquardt
  fallback only runs when some member needs it), simulations `jax.vmap(jp.simulate)`.
- **Chunks.** The grid is ordered by cost (`K`, `M`, then `eta`, so that similar configurations share a
  chunk) and cut into chunks of `chunk_size` (the last one padded by repeating its final configuration). The
  plan depends on the spec only, never on the number of devices or processes. Each chunk's batch axis is
  sharded over the process's local devices (`NamedSharding` on a one-axis `Mesh`).
- **Processes.** Every process (`jax.process_index()` of `jax.process_count()`, or one process) first
  takes the chunks `i, i + n, i + 2n, ...`, then any other chunk nobody holds, claiming each with an
  exclusive claim file; it then waits for chunks that live claims hold, taking over stale ones (docs of
  `_sweep_store`). A rerun after any process died computes only the missing chunks. Process 0 (or the
  single process of a later run) gathers `OUT/results.csv`; its rows equal a single-process run's bit for
  bit.

Initial state of every configuration: `Q0 = init_scale^2 I`, `T = I`, `v = 1`, `v* = v_star`, and `R0` the
reference state's ([`jp.Overlaps.reference`][]) or, when a `seed` is given, `R0 ~ 1e-3 N(0, 1)` drawn by
`numpy.random.default_rng(seed)`. For `simulate`, weights are drawn from the seed (`w ~ N(0, init_scale^2)`
per unit, teacher `w* ~ N(0, 1)`), unit by unit, so that padding does not change them.
"""

from __future__ import annotations

import functools
import json
import os
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

import jaxprune as jp

from ._sweep_figure import plot_results as plot_results  # noqa: F401  (the former single module's names)
from ._sweep_spec import AXES as AXES  # noqa: F401
from ._sweep_spec import COLUMNS, KINDS, expand_grid, load_spec, spec_hash, sweep_options, validate_spec
from ._sweep_store import Claim, chunk_path, prepare_out_dir, read_chunk, write_chunk, write_csv
from ._sweep_store import read_results as read_results  # noqa: F401

__all__ = ["sweep_arrays", "run_grid", "run_batched", "run_sweep", "default_batch_size"]


# --------------------------------------------------------------------------------- batched padded inputs


@functools.lru_cache(maxsize=None)
def _reference_R(K: int, M: int) -> np.ndarray:
    return np.asarray(jp.Overlaps.reference(K, M).R, dtype=np.float64)


def _initial_R(row: dict) -> np.ndarray:
    if row.get("seed") is None:
        return _reference_R(row["K"], row["M"])
    return 1e-3 * np.random.default_rng(row["seed"]).normal(size=(row["K"], row["M"]))


def sweep_arrays(rows: list[dict], K_max: int, M_max: int) -> dict[str, np.ndarray]:
    """The batch arrays of a list of configurations, padded to `K_max` student and `M_max` teacher units
    (module docstring: padded units are inactive, `Q_ii = R_i = v_i = 0` and `T_nn = v*_n = 0`).

    Initial state per configuration: `Q0 = init_scale^2 I`, `T = I`, `v = 1`, `v* = v_star`, `R0` the
    reference state's ([`Overlaps.reference`][jaxprune.Overlaps.reference]) or, with a `seed`,
    `1e-3 N(0, 1)` from `numpy.random.default_rng(seed)`.

    **Arguments:**

    - `rows`: `B` configurations as from [`expand_grid`][jaxprune.experiments.expand_grid] (each with `K`,
      `M`, `eta`, `eta_v`, `sigma`, `v_star`, `weight_decay`, `seed`, `init_scale`).
    - `K_max`: the padded student size, `>= max K`.
    - `M_max`: the padded teacher size, `>= max M`.

    **Returns:** a dict of float64 NumPy arrays (booleans and int64 where noted): `Q: (B, K_max, K_max)`,
    `R: (B, K_max, M_max)`, `T: (B, M_max, M_max)`, `v: (B, K_max)`, `v_star: (B, M_max)`,
    `active: bool (B, K_max)` and `teacher_active: bool (B, M_max)` (the real units), and per configuration
    `eta`, `eta_v`, `sigma`, `weight_decay`, `init_scale: (B,)`, `seed: int64 (B,)` (`0` where none).
    """
    B = len(rows)
    Q, R, T = np.zeros((B, K_max, K_max)), np.zeros((B, K_max, M_max)), np.zeros((B, M_max, M_max))
    v, vs = np.zeros((B, K_max)), np.zeros((B, M_max))
    act, tact = np.zeros((B, K_max), bool), np.zeros((B, M_max), bool)
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


# ------------------------------------------------------------------------------------ the chunk programs


def _config(x, opts) -> jp.SGDConfig:
    return jp.SGDConfig(eta=x["eta"], eta_v=x["eta_v"], sigma=x["sigma"], weight_decay=x["weight_decay"],
                        mode=opts["mode"], activation=opts["activation"])


def _states(x) -> jp.Overlaps:
    return jax.vmap(jp.Overlaps)(x["Q"], x["R"], x["T"], x["v"], x["v_star"])  # shapes checked per element


def _ode_chunk(x, opts, batch_size):
    alphas = np.asarray([0.0, opts["alpha"]])
    kw = dict(integrator=opts["integrator"], dt=opts["dt"], max_steps=opts["max_steps"], throw=False)

    def one(xi):
        state = jp.Overlaps(Q=xi["Q"], R=xi["R"], T=xi["T"], v=xi["v"], v_star=xi["v_star"])
        sol = jp.solve_ode(state, _config(xi, opts), alphas, **kw)
        return dict(eps_g=sol.eps_g[-1], status=sol.status, alpha_end=sol.alpha_end)

    B = x["eta"].shape[0]
    if batch_size >= B:
        return jax.vmap(one)(x)
    return jax.lax.map(one, x, batch_size=batch_size if batch_size > 1 else None)


def _fixed_point_batch(x, opts):
    res = jp.fixed_point_from_ode_batch(_states(x), _config(x, opts), alpha=opts["alpha"],
                                     integrator=opts["integrator"], ode_max_steps=opts["max_steps"],
                                     active=x["active"], teacher_active=x["teacher_active"])
    return dict(eps_g=res.eps_g, status=res.status, residual_norm=res.residual_norm,
                slowest_eig_real=jnp.real(res.slowest_eigenvalue), slowest_eig_imag=jnp.imag(res.slowest_eigenvalue),
                stable=res.stable, used_fallback=res.used_fallback)


def _simulate_steps(opts) -> tuple[int, int]:
    steps = int(round(opts["alpha"] * opts["N"]))
    record_every = opts["record_every"] or steps
    if steps % record_every:
        raise ValueError(f"spec.fixed.record_every must divide the number of steps {steps}, got {record_every}")
    return steps, record_every


def _simulate_batch(x, opts):
    N = opts["N"]
    steps, record_every = _simulate_steps(opts)

    def one(x):
        dtype = x["eta"].dtype
        k_teacher, k_student, k_run = jax.random.split(jax.random.key(x["seed"]), 3)
        draw = lambda k, n: jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(k, i), (N,), dtype))(jnp.arange(n))
        K_max, M_max = x["v"].shape[0], x["v_star"].shape[0]
        w_star = draw(k_teacher, M_max) * x["teacher_active"][:, None]
        w = x["init_scale"] * draw(k_student, K_max) * x["active"][:, None]
        res = jp.simulate(k_run, jp.Teacher(w_star=w_star, v_star=x["v_star"]), jp.Student(w=w, v=x["v"]),
                          _config(x, opts), steps=steps, record_every=record_every, dtype=dtype)
        return dict(eps_g=res.eps_g[-1], status=res.status)

    return jax.vmap(one)(x)


_PROGRAMS: dict = {}


def _program(kind: str, opts: dict, batch_size: int):
    key = (kind, json.dumps(opts, sort_keys=True), batch_size if kind == "ode" else None)
    if key not in _PROGRAMS:
        if kind == "ode":
            fn = functools.partial(_ode_chunk, opts=opts, batch_size=batch_size)
        elif kind == "fixed_point":
            fn = functools.partial(_fixed_point_batch, opts=opts)
        elif kind == "simulate":
            _simulate_steps(opts)
            fn = functools.partial(_simulate_batch, opts=opts)
        else:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        _PROGRAMS[key] = jax.jit(fn)
    return _PROGRAMS[key]


def _local_devices(devices) -> list:
    return jax.local_devices() if devices is None else list(devices)


def default_batch_size(devices=None, *, shard: bool = True) -> int | None:
    """How many ODE configurations of a chunk are integrated side by side by default: `1` (one after another,
    each with its own step sizes) on a single CPU device, `None` (the whole chunk, `vmap`) on accelerators or
    when the chunk is sharded over several devices.

    **Arguments:**

    - `devices`: the devices the chunk runs on (default: this process's local devices).
    - `shard`: whether the chunk is sharded over them (`False`: one device).

    **Returns:** `1` or `None`.
    """
    devs = _local_devices(devices)
    single = len(devs) == 1 or not shard
    return 1 if single and devs[0].platform == "cpu" else None


def _check_batch_size(batch_size) -> None:
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be an integer >= 1 or None (default per device), got {batch_size!r}")


def run_grid(
    rows: list[dict], kind: str, opts: dict, *, K_max: int | None = None, M_max: int | None = None,
    devices=None, shard: bool = True, batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Run one batch of configurations as one jitted program, its batch axis sharded over `devices` and padded
    to a multiple of their number (by repeating the last configuration). No files; every configuration gets
    its own [`Status`][jaxprune.Status] code and a failing one does not stop the batch.

    **Arguments:**

    - `rows`: `B >= 1` configurations as from [`expand_grid`][jaxprune.experiments.expand_grid].
    - `kind`: one of [`KINDS`][jaxprune.experiments.KINDS]: `"ode"` (final error of the ODEs at `alpha`),
      `"fixed_point"` (Newton from the end of an ODE run, docs/theory.md section 5) or `"simulate"`
      (finite-N online SGD, section 4).
    - `opts`: the fixed-only options, [`sweep_options`][jaxprune.experiments.sweep_options]`(spec)`.
    - `K_max`, `M_max`: pad students and teachers to these sizes (default: the batch's largest `K` and `M`).
    - `devices`: the devices to shard over (default: this process's local devices).
    - `shard`: `False` runs on one device without sharding.
    - `batch_size`: `kind="ode"` only: how many configurations [`jp.solve_ode`][jaxprune.solve_ode] integrates
      side by side (`jax.lax.map`'s `batch_size`; each keeps its own step sizes); `None` (default):
      [`default_batch_size`][jaxprune.experiments.default_batch_size] of the devices.

    **Returns:** a dict of NumPy arrays of length `B` in the order of `rows`: `eps_g` (noise-free) and `status`
    always, `alpha_end` for `"ode"`, and `residual_norm`, `slowest_eig_real`, `slowest_eig_imag`, `stable`,
    `used_fallback` for `"fixed_point"`.

    **Example:**

    ```python
    spec = jpx.validate_spec({"kind": "ode", "axes": {"eta": [0.5, 1.0]}, "fixed": {"alpha": 20.0}})
    cols = jpx.run_grid(jpx.expand_grid(spec), spec["kind"], jpx.sweep_options(spec))
    cols["eps_g"], cols["status"]
    ```
    """
    _check_batch_size(batch_size)
    K_max = max(r["K"] for r in rows) if K_max is None else K_max
    M_max = max(r["M"] for r in rows) if M_max is None else M_max
    B = len(rows)
    devs = _local_devices(devices)
    ndev = len(devs) if shard else 1
    padded = rows + [rows[-1]] * ((-B) % ndev)
    dtype = jnp.result_type(float)
    x = {k: jnp.asarray(a, dtype=dtype if a.dtype.kind == "f" else None)
         for k, a in sweep_arrays(padded, K_max, M_max).items()}
    if shard and ndev > 1:
        x = jax.device_put(x, NamedSharding(Mesh(np.asarray(devs), ("grid",)), PartitionSpec("grid")))
    elif devices is not None:
        x = jax.device_put(x, devs[0])
    if batch_size is None:
        batch_size = default_batch_size(devices, shard=shard)
    out = _program(kind, opts, len(padded) if batch_size is None else min(int(batch_size), len(padded)))(x)
    return jax.tree.map(lambda a: np.asarray(jax.block_until_ready(a))[:B], out)


def _plan(rows: list[dict], chunk_size: int) -> list[list[int]]:
    """The row indices of each chunk, in cost order (`K`, `M`, `eta`; a stable sort: ties keep grid order)."""
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["K"], rows[i]["M"], float(rows[i]["eta"])))
    return [order[lo : lo + chunk_size] for lo in range(0, len(order), chunk_size)]


def _run_chunk(rows, idx, chunk_size, kind, opts, devices, batch_size, shard=True):
    chunk = [rows[i] for i in idx]
    padded = chunk + [chunk[-1]] * (chunk_size - len(chunk))  # one batch shape per (K, M): one compile each
    return run_grid(padded, kind, opts, devices=devices, shard=shard, batch_size=batch_size)


def run_batched(rows: list[dict], kind: str, opts: dict, *, chunk_size: int = 256, devices=None,
                shard: bool = True, batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Run many configurations the way [`run_sweep`][jaxprune.experiments.run_sweep] does, without files: in
    cost order (`K`, `M`, `eta`), in chunks of `chunk_size` each padded to its own largest `K` and `M` and
    run by [`run_grid`][jaxprune.experiments.run_grid]. The numbers equal `run_sweep`'s for the same chunk size.

    **Arguments:**

    - `rows`: configurations as from [`expand_grid`][jaxprune.experiments.expand_grid].
    - `kind`: one of [`KINDS`][jaxprune.experiments.KINDS].
    - `opts`: the fixed-only options, [`sweep_options`][jaxprune.experiments.sweep_options]`(spec)`.
    - `chunk_size`: configurations per compiled program, an integer `>= 1` (the last chunk is padded).
    - `devices`: the devices each chunk is sharded over (default: this process's local devices).
    - `shard`: `False` runs each chunk on one device.
    - `batch_size`: see [`run_grid`][jaxprune.experiments.run_grid] (`kind="ode"` only).

    **Returns:** the columns of [`run_grid`][jaxprune.experiments.run_grid] (NumPy arrays of length
    `len(rows)`), in the order of `rows`.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    cols: dict[str, np.ndarray] = {}
    for idx in _plan(rows, chunk_size):
        out = _run_chunk(rows, idx, chunk_size, kind, opts, devices, batch_size, shard=shard)
        for k, a in out.items():
            if k not in cols:
                cols[k] = np.empty((len(rows),) + a.shape[1:], a.dtype)
            cols[k][idx] = a[: len(idx)]
    return cols


# ------------------------------------------------------------------------------------------- the sweep


def _rows(chunk: list[dict], cols: dict, names: list[str], indices: list[int], columns) -> list[dict]:
    out = []
    for j, row in enumerate(chunk):
        r = {"index": indices[j], **{k: row[k] for k in names}, "K": row["K"], "M": row["M"]}
        for k in columns:
            if k == "status":
                r[k] = int(cols[k][j])
            elif k == "status_words":
                r[k] = jp.describe(cols["status"][j])
            elif cols[k].dtype == bool:
                r[k] = bool(cols[k][j])
            else:
                r[k] = float(cols[k][j])
        out.append(r)
    return out


def _process() -> tuple[int, int]:
    """This process's index and the number of processes (1 process unless `jax.distributed` is running)."""
    return jax.process_index(), jax.process_count()


def run_sweep(
    spec: dict | str | os.PathLike, out_dir: str | os.PathLike, *, progress: bool = True, devices=None,
    gather: bool | None = None, claim_timeout: float = 3600.0, poll_interval: float = 0.5,
    batch_size: int | None = None,
) -> list[dict]:
    """Run (or resume, or join) a sweep whose results go to `out_dir` (module docstring).

    Run it the same way in one process or in each of N processes started with `jax.distributed.initialize`:
    each process computes its share of the chunks, claiming each first, and writes each finished chunk to
    `out_dir/chunks/`; chunks already there are reused, corrupt ones recomputed (with a warning naming the
    file). When every chunk is done, the gathering process writes `out_dir/results.csv` (one row per
    configuration, in grid order).

    **Arguments:**

    - `spec`: a spec dict or the path of a `.json` / `.toml` spec
      ([`validate_spec`][jaxprune.experiments.validate_spec]).
    - `out_dir`: the output folder, shared by all processes (on several hosts: a shared file system).
    - `progress`: show a progress bar (tqdm) over chunks.
    - `devices`: the devices a chunk is sharded over (default: this process's local devices).
    - `gather`: whether this process writes `results.csv` (default: process 0 only).
    - `claim_timeout`: seconds after which a claim whose holder stopped touching it is taken over (a process
      that died on another host; a dead pid on this host is noticed at once).
    - `poll_interval`: seconds between looks at chunks that other processes hold.
    - `batch_size`: see [`run_grid`][jaxprune.experiments.run_grid] (`kind="ode"` only).

    **Returns:** the rows (dicts: `index`, the swept axis values, `K`, `M`, `eps_g` (noise-free), `status`,
    `status_words`, and per kind `alpha_end` or `residual_norm`, `slowest_eig_real`, `slowest_eig_imag`,
    `stable`, `used_fallback`), in grid order. Raises `ValueError` (one line, naming the path) when the folder
    cannot be used.

    **Example:**

    ```python
    rows = jpx.run_sweep("grid.toml", "out/grid")          # writes out/grid/results.csv
    fig = jpx.plot_results("out/grid/results.csv", ["eta", "sigma"])
    ```
    """
    _check_batch_size(batch_size)
    if not (claim_timeout > 0 and poll_interval > 0):
        raise ValueError(f"claim_timeout and poll_interval must be > 0, got {claim_timeout}, {poll_interval}")
    spec = load_spec(spec) if isinstance(spec, (str, os.PathLike)) else validate_spec(spec)
    out = Path(out_dir)
    h = spec_hash(spec)
    chunks_dir = prepare_out_dir(out, spec, h)
    rows = expand_grid(spec)
    names, kind, size = list(spec["axes"]), spec["kind"], spec["chunk_size"]
    columns = COLUMNS[kind]
    opts = sweep_options(spec)
    chunks = _plan(rows, size)
    me, n_proc = _process()
    gather = (me == 0) if gather is None else gather
    mine = list(range(me, len(chunks), n_proc))
    order = mine + [c for c in range(len(chunks)) if c % n_proc != me]

    results: dict[int, list[dict]] = {}
    corrupt: set[int] = set()
    bar = tqdm(total=len(chunks), desc=f"sweep {kind}", disable=not progress, leave=False, dynamic_ncols=True)

    def finished(c):
        try:
            return read_chunk(chunk_path(chunks_dir, c), h, chunks[c], rows, names, columns)
        except ValueError as e:
            if c not in corrupt:
                warnings.warn(f"{e}; recomputing it", stacklevel=3)
            corrupt.add(c)
            return None

    try:
        while len(results) < len(chunks):
            progressed = False
            for c in order:
                if c in results:
                    continue
                got = finished(c)
                if got is None:
                    claim = Claim.acquire(chunks_dir / f"chunk_{c:05d}.claim", claim_timeout)
                    if claim is None:
                        continue  # another live process computes it
                    with claim:
                        got = finished(c)  # finished meanwhile by the previous holder?
                        if got is None:
                            cols = _run_chunk(rows, chunks[c], size, kind, opts, devices, batch_size)
                            got = _rows([rows[i] for i in chunks[c]], cols, names, chunks[c], columns)
                            if not write_chunk(chunk_path(chunks_dir, c), h, chunks[c], got,
                                               replace_corrupt=c in corrupt):
                                got = finished(c)  # someone published it first: theirs is the result
                                if got is None:
                                    continue
                results[c] = got
                progressed = True
                bar.update(1)
            if not progressed and len(results) < len(chunks):
                time.sleep(poll_interval)
    except OSError as e:
        raise ValueError(f"cannot write to sweep output folder {chunks_dir}: {e.strerror or e}") from None
    finally:
        bar.close()
    table = sorted((r for got in results.values() for r in got), key=lambda r: r["index"])
    if gather:
        write_csv(out / "results.csv", table)
    return table

