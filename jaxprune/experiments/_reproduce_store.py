"""Part files of `jaxprune reproduce`: each part's record written atomically to `parts/<name>.json` with the
settings it used; a rerun reuses a complete record with equal settings, and a failing part is recorded (status
"error") without stopping the others."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import traceback
from pathlib import Path
from typing import Callable

from .._io import atomic_write_json, to_jsonable
from ._reproduce_parts import PART_FUNCTIONS
from ._reproduce_settings import DESIGN_PARTS

__all__ = ["FORMAT", "run_part", "part_hash"]

FORMAT = 1


def part_hash(obj) -> str:
    """A short hash of settings (names of cached intermediates)."""
    return hashlib.sha256(_canon(obj).encode()).hexdigest()[:16]


def _canon(obj) -> str:
    return json.dumps(to_jsonable(obj), sort_keys=True)


def _normalise(obj):
    """What the object looks like after a JSON round trip (so fresh and reused parts are handled alike)."""
    return json.loads(json.dumps(to_jsonable(obj)))


def _load_part(path: Path) -> dict | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("format") != FORMAT or rec.get("status") != "ok" or "result" not in rec:
        return None
    return rec


def _work_paths(name: str, work: Path) -> list[Path]:
    if name == "realdata":
        return [work / "realdata"]
    if name in DESIGN_PARTS:
        return list(work.glob("design_network_*.npz"))
    return []


def _reusable(name: str, settings: dict, parts_dir: Path, log: Callable[[str], None] | None = None) -> dict | None:
    """The finished record of part `name` in `parts_dir` if its settings equal `settings` (marked reused), else
    `None` (missing, unreadable, or computed with other settings)."""
    old = _load_part(parts_dir / f"{name}.json")
    if old is None or _canon(old.get("settings")) != _canon(settings):
        return None
    if log is not None:
        log(f"[{name}] reused (computed earlier in {old.get('seconds', float('nan')):.1f} s)")
    return dict(old, reused=True, wall_seconds=0.0)


def _remove(paths) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def run_part(name: str, settings: dict, parts_dir: Path, *, force: bool = False, clean_work: bool = True,
             log: Callable[[str], None] = print) -> dict:
    """Run (or reuse) one part of [`reproduce`][jaxprune.experiments.reproduce] and write its record
    atomically to `parts_dir/<name>.json`. A part that raises is recorded with status `"error"` (and its
    traceback) instead of raising.

    **Arguments:**

    - `name`: a part, one of [`PARTS`][jaxprune.experiments.PARTS].
    - `settings`: its settings, e.g. [`reproduce_settings`][jaxprune.experiments.reproduce_settings]`(mode)[name]`.
    - `parts_dir`: the folder of part files; cached intermediates go to `parts_dir/work/`.
    - `force`: recompute even when a finished record with equal settings exists.
    - `clean_work`: with `force`, first delete the part's cached intermediates (e.g. a trained network).
    - `log`: called with one line of progress text at a time.

    **Returns:** the record after a JSON round trip: `{format, name, settings, status ("ok" or "error"),
    result | error (and traceback), seconds, cpu_seconds, reused, wall_seconds}` (`reused` true and
    `wall_seconds` 0 when an earlier record was taken).
    """
    path = parts_dir / f"{name}.json"
    work = parts_dir / "work"
    if not force:
        old = _reusable(name, settings, parts_dir, log)
        if old is not None:
            return old
    elif clean_work:
        _remove(_work_paths(name, work))
    work.mkdir(parents=True, exist_ok=True)
    log(f"[{name}] running ...")
    t0, c0 = time.perf_counter(), time.process_time()
    rec = {"format": FORMAT, "name": name, "settings": settings}
    try:
        result = PART_FUNCTIONS[name](settings, work, log)
        rec.update(status="ok", result=result)
    except Exception as e:  # noqa: BLE001 - one failing part must not stop the others
        rec.update(status="error", error=f"{type(e).__name__}: {e}".strip(),
                   traceback=traceback.format_exc(limit=8))
    rec["seconds"] = time.perf_counter() - t0
    rec["cpu_seconds"] = time.process_time() - c0
    atomic_write_json(path, rec)
    if rec["status"] == "ok":
        log(f"[{name}] done in {rec['seconds']:.1f} s (CPU {rec['cpu_seconds']:.1f} s)")
    else:
        log(f"[{name}] FAILED after {rec['seconds']:.1f} s: {rec['error']}")
    return dict(_normalise(rec), reused=False, wall_seconds=rec["seconds"])

