"""`jaxprune reproduce`: every experiment of the project in one resumable run, and a report.

The run is split into *parts* (`_reproduce_parts`, `_reproduce_design`; settings per mode in
`_reproduce_settings`). Each part is written atomically to `DIR/parts/<name>.json` with the settings it used
(`_reproduce_store`); a rerun reuses a part whose file is complete and whose settings match, and recomputes it
otherwise (or when forced). A failing part is recorded and does not stop the others. Parts run in groups in
worker processes. The seed paper's claims (docs/theory.md 6.3) are decided from the results
(`_reproduce_claims`); finally `DIR/results.json` (every number), `DIR/figures/*.png` (`_reproduce_figures`) and
`DIR/report.md` (`_reproduce_report`, generated from `results.json`) are written.

Every error is the noise-free generalisation error `eps_g` unless a column says "test MSE" or "test error".
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Sequence

import jax

import jaxprune as jp

from .._io import atomic_write_json, atomic_write_text
from ._reproduce_claims import claims_from_parts
from ._reproduce_figures import draw_figures
from ._reproduce_parts import PART_FUNCTIONS
from ._reproduce_report import build_report
from ._reproduce_settings import MODES, PARTS, reproduce_settings
from ._reproduce_store import FORMAT, _canon, _load_part, _normalise, _remove, _reusable, _work_paths, run_part

__all__ = ["MODES", "PARTS", "reproduce_settings", "reproduce", "ReproduceResult", "run_part", "build_report"]

# names kept for callers and tests of the earlier single module
_PART_FUNCTIONS = PART_FUNCTIONS
_figures = draw_figures


class ReproduceResult(dict):
    """What [`reproduce`][jaxprune.experiments.reproduce] returns: the content of `results.json`, a dict, with
    two properties.

    Keys: `format`, `mode`, `ok`, `failed_parts`, `total_seconds`, `parts` (each part's record: `status`,
    `settings`, `result` or `error`, timings), `claims` (the decided claims,
    [`decide_claims`][jaxprune.experiments.decide_claims]), `figures` and `paths`.

    Properties: `ok` (whether no selected part failed) and `paths` (`{"results", "report", "figures"}`: the
    files and folder written). Built like a dict: `ReproduceResult(json.load(open("results.json")))`.
    """

    @property
    def ok(self) -> bool:
        return bool(self["ok"])

    @property
    def paths(self) -> dict:
        return self["paths"]


# Parts that run in one process, in this order (they share a trained network or compiled functions); groups
# are listed longest first, which is the order they are handed to workers.
_GROUPS = (("regime_5_20",), ("paper",), ("design_network", "design_population", "design_training"),
           ("theory_claims", "winner_map"), ("ode_vs_sim",), ("realdata",), ("fixed_points",))
assert sorted(n for g in _GROUPS for n in g) == sorted(PARTS)


def _use_compile_cache(folder: str | Path) -> None:
    """Keep XLA compilations in `folder` (the project's persistent cache settings, `jp.enable_compile_cache`;
    exported to the environment, so the spawned workers use it too)."""
    jp.enable_compile_cache(folder)


def _exit_with_parent(parent: int, period: float = 2.0) -> None:
    """Worker side: end this process when the parent that spawned it is gone (a killed `reproduce` must not
    leave workers computing for an hour); finished parts are on disk already."""

    def watch():
        while True:
            time.sleep(period)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="jaxprune-parent-watch").start()


def _worker_init(compile_cache: str | None, parent: int | None = None) -> None:
    jax.config.update("jax_enable_x64", True)
    if parent is not None:
        _exit_with_parent(parent)
    if compile_cache is not None:
        _use_compile_cache(compile_cache)


def _run_group(names: tuple, settings: dict, parts_dir: str, verbose: bool) -> dict[str, dict]:
    """Worker: run the parts of one group in order (each written atomically by `run_part`)."""
    log = (lambda m: print(m, flush=True)) if verbose else (lambda m: None)
    return {n: run_part(n, settings[n], Path(parts_dir), force=True, clean_work=False, log=log) for n in names}


def _run_groups_parallel(groups, settings, parts_dir: Path, jobs: int, log, verbose: bool,
                         compile_cache, quick_compile: bool = False, on_idle=None) -> dict[str, dict]:
    """Groups of parts in `jobs` spawned worker processes; a worker that dies leaves its unfinished parts
    recorded as failed (finished ones are on disk and are read back). `quick_compile` lowers XLA's backend
    optimisation level in the workers (compiles ~20% faster; for the small quick mode, where compiling
    dominates). At that level XLA CPU computes some float64 operations less exactly: numbers can differ from a
    default-level run at the 1e-7 relative level, which a smoke run tolerates. `on_idle(finished records)` is
    called in this process each time a group finishes while a worker has nothing left to start (the report's
    figures are drawn there, on the idle core, instead of after the last part)."""
    ctx = mp.get_context("spawn")
    cache = None if compile_cache is None else str(compile_cache)
    log(f"running {sum(len(g) for g in groups)} parts in {min(jobs, len(groups))} worker processes")
    saved = os.environ.get("XLA_FLAGS")
    if quick_compile:  # the workers inherit this environment (read when their XLA backend starts)
        os.environ["XLA_FLAGS"] = ((saved or "") + " --xla_backend_optimization_level=0").strip()
    try:
        return _pool(groups, settings, parts_dir, jobs, log, verbose, cache, ctx, on_idle)
    finally:
        if quick_compile:
            if saved is None:
                os.environ.pop("XLA_FLAGS", None)
            else:
                os.environ["XLA_FLAGS"] = saved


def _pool(groups, settings, parts_dir, jobs, log, verbose, cache, ctx, on_idle=None) -> dict[str, dict]:
    out: dict[str, dict] = {}
    started = time.time()
    with ProcessPoolExecutor(max_workers=min(jobs, len(groups)), mp_context=ctx, initializer=_worker_init,
                             initargs=(cache, os.getpid())) as pool:
        finished = 0
        futures = {pool.submit(_run_group, g, {n: settings[n] for n in g}, str(parts_dir), verbose): g
                   for g in groups}
        for fut in as_completed(futures):
            g = futures[fut]
            try:
                out.update(fut.result())
            except Exception as e:  # noqa: BLE001 - a crashed worker: keep what it finished
                for n in g:
                    path = parts_dir / f"{n}.json"
                    rec = _load_part(path) if path.exists() and path.stat().st_mtime >= started else None
                    if rec is not None and _canon(rec.get("settings")) == _canon(settings[n]):
                        out[n] = dict(_normalise(rec), reused=False, wall_seconds=rec.get("seconds", 0.0))
                    else:
                        out[n] = _normalise({"format": FORMAT, "name": n, "settings": settings[n],
                                             "status": "error", "error": f"worker failed: {type(e).__name__}: {e}",
                                             "seconds": 0.0, "reused": False, "wall_seconds": 0.0})
                        log(f"[{n}] FAILED: worker process ended ({type(e).__name__})")
            finished += 1
            if on_idle is not None and len(groups) - finished < min(jobs, len(groups)):
                try:
                    on_idle(out)
                except Exception as e:  # noqa: BLE001 - drawing early is an optimisation; the end draws again
                    log(f"(early figures skipped: {type(e).__name__}: {e})")
    return out


def reproduce(out_dir: str | Path, mode: str = "default", force: bool | Sequence[str] = False, *,
              parts: Sequence[str] | None = None, jobs: int = 1, compile_cache: str | Path | None = None,
              log: Callable[[str], None] | None = print) -> ReproduceResult:
    """Run every part (or reuse it), decide the claims, draw the figures and write the report.

    **Arguments:**

    - `out_dir`: output folder: `parts/<name>.json`, `figures/*.png`, `results.json`, `report.md`.
    - `mode`: `"quick"`, `"default"` or `"full"` (see [`reproduce_settings`][]).
    - `force`: `True` to recompute every part, or a list of part names to recompute.
    - `parts`: run only these parts (the report still includes the other parts' finished files whose
      settings match).
    - `jobs`: worker processes; with `jobs > 1` independent groups of parts (`_GROUPS`: parts that share a
      trained network or compiled code stay together) run side by side in fresh processes (`spawn`), longest
      first. Each part's file is written by its worker, so an interrupted run keeps every finished part.
    - `compile_cache`: a folder for JAX's persistent compilation cache (in this process and in the workers):
      a later run skips most compile time.
    - `log`: progress messages (default `print`; `None` for silence).

    **Returns:** a [`ReproduceResult`][jaxprune.experiments.ReproduceResult] (the content of `results.json`). A
    part that raises is recorded as failed and the others go on; unknown part names or `jobs < 1` are a
    `ValueError`.

    **Example:**

    ```python
    res = jpx.reproduce("out/repro", mode="quick", jobs=2)
    res.ok, res.paths["report"]
    ```
    """
    verbose = log is not None  # workers print their own progress
    log = log or (lambda m: None)
    settings = reproduce_settings(mode)
    if compile_cache is not None:
        _use_compile_cache(compile_cache)
    if isinstance(force, (list, tuple, set)):
        unknown = sorted(set(force) - set(PARTS))
        if unknown:
            raise ValueError(f"unknown parts {unknown}; parts are {PARTS}")
        forced = set(force)
    else:
        forced = set(PARTS) if force else set()
    selected = PARTS if parts is None else tuple(p for p in PARTS if p in set(parts))
    if parts is not None and set(parts) - set(PARTS):
        raise ValueError(f"unknown parts {sorted(set(parts) - set(PARTS))}; parts are {PARTS}")
    out = Path(out_dir)
    parts_dir = out / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    if not (isinstance(jobs, int) and jobs >= 1):
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    t0 = time.perf_counter()
    records: dict[str, dict] = {}
    todo = []
    for name in PARTS:
        run = name in selected
        old = None if run and name in forced else _reusable(name, settings[name], parts_dir, log if run else None)
        if old is not None:
            records[name] = old
        elif run:
            todo.append(name)
    # forced parts' intermediates are deleted once, up front (a group's later parts reuse its first one's)
    _remove({p for name in todo if name in forced for p in _work_paths(name, parts_dir / "work")})
    groups = [g for g in (tuple(n for n in grp if n in todo) for grp in _GROUPS) if g]
    fig_dir, made = out / "figures", {}  # figures drawn so far
    if jobs == 1 or len(groups) <= 1:
        for name in todo:
            records[name] = run_part(name, settings[name], parts_dir, force=True, clean_work=False, log=log)
    else:
        def draw_ready(done: dict[str, dict]) -> None:
            ready = {**records, **done}
            draw_figures(ready, fig_dir, made, ready=set(ready))

        records.update(_run_groups_parallel(groups, settings, parts_dir, jobs, log, verbose, compile_cache,
                                            quick_compile=mode == "quick", on_idle=draw_ready))
    ok_result = {n: r["result"] for n, r in records.items() if r.get("status") == "ok"}
    try:
        claims = _normalise(claims_from_parts(ok_result))
    except Exception as e:  # noqa: BLE001 - the report still shows every part
        claims = {"error": f"{type(e).__name__}: {e}"}
    figures = draw_figures(records, fig_dir, made)
    failed = [n for n in selected if records[n].get("status") != "ok"]
    results = {
        "format": FORMAT, "mode": mode, "ok": not failed, "failed_parts": failed,
        "total_seconds": time.perf_counter() - t0,
        "parts": {n: {k: v for k, v in r.items() if k != "format"} for n, r in records.items()},
        "claims": claims, "figures": figures,
        "paths": {"results": str(out / "results.json"), "report": str(out / "report.md"),
                  "figures": str(out / "figures")},
    }
    results = _normalise(results)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "report.md", build_report(results))
    log(f"wrote {out / 'report.md'} and {out / 'results.json'} ({results['total_seconds']:.1f} s"
        + (f"; FAILED parts: {', '.join(failed)})" if failed else ")"))
    return ReproduceResult(results)
