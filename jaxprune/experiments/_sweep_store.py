"""The sweep's output folder, shared safely by any number of processes (on one host or many).

Layout of `OUT/`: `spec.json` (the validated spec and its hash), `chunks/chunk_NNNNN.json` (one finished chunk:
the spec hash, the grid indices it holds and its rows), `chunks/chunk_NNNNN.claim` (a chunk being computed),
`results.csv` (the gathered table).

- **Claims.** A process computes a chunk only after creating its claim file with `O_CREAT | O_EXCL` (atomic,
  also on NFS v3+), which holds the host, pid, time and a random token; while it computes, a heartbeat
  thread touches the claim. A claim is stale, and taken over, when its pid is dead on this host, or when it
  has not been touched for `claim_timeout` seconds (a process that died on another host).
- **Results.** A chunk file is written to a temporary file, flushed, and then hard-linked to its final name
  (`os.link` fails if the name exists): a chunk is never half-written and never written twice, even if two
  processes ended up computing it. Files get the permissions that the umask gives.
- **Corrupt chunks** (unreadable, not JSON, a different spec, other indices, rows of another schema or other
  grid values) are reported by a warning that names the file, and recomputed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import secrets
import socket
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from .._io import atomic_write_text

__all__ = [
    "prepare_out_dir",
    "chunk_path",
    "read_chunk",
    "write_chunk",
    "Claim",
    "write_csv",
    "read_csv_columns",
    "read_results",
]

_HOST = socket.gethostname()
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def prepare_out_dir(out: Path, spec: dict, h: str) -> Path:
    """Create `out/chunks/` and `out/spec.json` (or check that `spec.json` holds the same sweep); returns the
    chunks folder. A path that is a file, or a folder that cannot be written, is a one-line `ValueError`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"sweep output folder {out} is a file, not a folder")
    chunks = out / "chunks"
    try:
        chunks.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create sweep output folder {chunks}: {e.strerror or e}") from None
    if not os.access(chunks, os.W_OK | os.X_OK):
        raise ValueError(f"sweep output folder {chunks} is not writable")
    spec_file = out / "spec.json"
    old = None
    if spec_file.exists():
        try:
            old = json.loads(spec_file.read_bytes())
            if not isinstance(old, dict) or not isinstance(old.get("hash"), str):
                raise ValueError("no spec hash")
        except (OSError, ValueError) as e:
            warnings.warn(f"sweep file {spec_file} is corrupt ({_reason(e)}); rewriting it", stacklevel=3)
            old = None
    if old is not None and old["hash"] != h:
        raise ValueError(f"sweep output folder {out} holds a different sweep (spec hash {old['hash']} != {h}); "
                         "use a fresh folder")
    if old is None:
        try:
            atomic_write_text(spec_file, json.dumps({"hash": h, "spec": spec}, indent=2) + "\n")
        except OSError as e:
            raise ValueError(f"cannot write {spec_file}: {e.strerror or e}") from None
    return chunks


def chunk_path(chunks: Path, c: int) -> Path:
    return chunks / f"chunk_{c:05d}.json"


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]


def _float(x):
    if isinstance(x, str) and x in _NONFINITE:
        return _NONFINITE[x]
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"expected a number, got {x!r}")
    return float(x)


def _check_rows(rows, idx: list[int], grid_rows: list[dict], names: list[str], columns: tuple[str, ...]) -> list[dict]:
    """The rows of a chunk file, checked against the schema and the grid (`ValueError` saying what differs)."""
    if not isinstance(rows, list) or len(rows) != len(idx):
        raise ValueError(f"expected a list of {len(idx)} rows")
    keys = ["index", *names, "K", "M", *columns]
    out = []
    for j, r in enumerate(rows):
        if not isinstance(r, dict) or sorted(r) != sorted(set(keys)):
            raise ValueError(f"row {j} does not have the columns {keys}")
        if r["index"] != idx[j] or isinstance(r["index"], bool):
            raise ValueError(f"row {j} has index {r['index']!r}, expected {idx[j]}")
        want = grid_rows[idx[j]]
        for k in set(names) | {"K", "M"}:
            if r[k] != want[k]:
                raise ValueError(f"row {j} has {k} = {r[k]!r}, the grid has {want[k]!r}")
        row = {k: r[k] for k in keys}  # column order of a fresh row
        for k in columns:
            if k == "status":
                if isinstance(r[k], bool) or not isinstance(r[k], int):
                    raise ValueError(f"row {j} has status {r[k]!r}")
            elif k == "status_words":
                if not isinstance(r[k], str):
                    raise ValueError(f"row {j} has status_words {r[k]!r}")
            elif k in ("stable", "used_fallback"):
                if not isinstance(r[k], bool):
                    raise ValueError(f"row {j} has {k} = {r[k]!r}")
            else:
                row[k] = _float(r[k])
        out.append(row)
    return out


def read_chunk(path: Path, h: str, idx: list[int], grid_rows: list[dict], names: list[str],
               columns: tuple[str, ...]) -> list[dict] | None:
    """The rows of a finished chunk, `None` when the file is missing; a `ValueError` naming the file and what is
    wrong when it is corrupt (module docstring)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ValueError(f"sweep chunk {path} is unreadable ({_reason(e)})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        if data.get("hash") != h:
            raise ValueError(f"spec hash {data.get('hash')!r} is not this sweep's {h}")
        if data.get("indices") != idx:
            raise ValueError("its grid indices are not this chunk's")
        return _check_rows(data.get("rows"), idx, grid_rows, names, columns)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise ValueError(f"sweep chunk {path} is corrupt ({_reason(e)})") from None


def _to_json(x):
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _create(path: Path, data: bytes) -> None:
    """Write `data` to the new file `path` (exclusive create) with the umask's permissions, flushed to disk."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def write_chunk(path: Path, h: str, idx: list[int], rows: list[dict], *, replace_corrupt: bool = False) -> bool:
    """Publish a finished chunk at `path` unless one is there already (hard link of a flushed temporary file);
    `replace_corrupt` first removes a file there (the caller holds the claim and found it corrupt). Returns
    whether this call wrote it."""
    record = {"hash": h, "indices": idx, "rows": [{k: _to_json(v) for k, v in r.items()} for r in rows],
              "writer": {"host": _HOST, "pid": os.getpid(), "time": time.time()}}
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    _create(tmp, (json.dumps(record, indent=1) + "\n").encode("utf-8"))
    try:
        if replace_corrupt:
            path.unlink(missing_ok=True)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return True  # no /proc (macOS): trust kill(pid, 0)


class Claim:
    """An exclusive claim on one chunk: `Claim.acquire(path, timeout)` returns a held claim or `None` (held by
    a live process). Use as a context manager: the heartbeat runs inside, the claim file goes on exit."""

    def __init__(self, path: Path, token: str, heartbeat: float):
        self.path, self.token, self._heartbeat = path, token, heartbeat
        self._stop = threading.Event()
        self._thread = None

    @classmethod
    def acquire(cls, path: Path, timeout: float) -> "Claim | None":
        token = secrets.token_hex(8)
        body = json.dumps({"host": _HOST, "pid": os.getpid(), "time": time.time(), "token": token}).encode()
        for _ in range(2):  # second try after taking over a stale claim
            try:
                _create_exclusive(path, body)
                return cls(path, token, heartbeat=max(0.05, min(30.0, timeout / 4)))
            except FileExistsError:
                if not _take_over_if_stale(path, timeout):
                    return None
        return None

    def __enter__(self):
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()
        return self

    def _beat(self):
        while not self._stop.wait(self._heartbeat):
            try:
                os.utime(self.path)
            except OSError:
                return

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:  # remove only our own claim (it may have been taken over as stale)
            if json.loads(self.path.read_bytes()).get("token") == self.token:
                self.path.unlink()
        except (OSError, ValueError, AttributeError):
            pass
        return False


def _create_exclusive(path: Path, body: bytes) -> None:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(body)


def claim_is_stale(path: Path, timeout: float) -> bool | None:
    """Whether the claim at `path` is stale (dead pid on this host, or untouched for `timeout` seconds);
    `None` if there is no claim. An unreadable or half-written claim counts by its age only."""
    try:
        st = path.stat()
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    if time.time() - st.st_mtime > timeout:
        return True
    try:
        info = json.loads(raw)
        if info.get("host") == _HOST and isinstance(info.get("pid"), int):
            return not _pid_alive(info["pid"])
    except (ValueError, AttributeError):
        pass
    return False


def _take_over_if_stale(path: Path, timeout: float) -> bool:
    """Remove a stale claim so that it can be claimed again; `False` if the claim is live. The claim is renamed
    away first (only one of several processes doing this at once succeeds), then checked again."""
    stale = claim_is_stale(path, timeout)
    if stale is None:
        return True
    if not stale:
        return False
    grave = path.with_name(f".{path.name}.{secrets.token_hex(6)}.stale")
    try:
        os.rename(path, grave)
    except FileNotFoundError:
        return True  # someone else removed it
    if claim_is_stale(grave, timeout) is False:
        # we raced with a fresh claim: put it back unless someone claimed meanwhile
        try:
            os.link(grave, path)
        except FileExistsError:
            pass
        grave.unlink(missing_ok=True)
        return False
    grave.unlink(missing_ok=True)
    warnings.warn(f"sweep claim {path} was stale (its process is gone); taking the chunk over", stacklevel=4)
    return True


def write_csv(path: Path, rows: list[dict]) -> None:
    """The tidy table (one row per configuration; floats as `repr`, so that they round-trip exactly)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("nan" if isinstance(v, float) and math.isnan(v) else
                             repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    try:
        atomic_write_text(path, buf.getvalue())
    except OSError as e:
        raise ValueError(f"cannot write {path}: {e.strerror or e}") from None


def read_csv_columns(path) -> dict[str, list[str]]:
    """The columns of a results table as lists of strings (`ValueError` naming the file when it has none)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise ValueError(f"results table {path} does not exist") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"results table {path} is unreadable: {_reason(e)}") from None
    if not rows:
        raise ValueError(f"results table {path} holds no rows")
    return {k: [r[k] for r in rows] for k in rows[0]}


def read_results(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a sweep's `results.csv` (written by [`run_sweep`][jaxprune.experiments.run_sweep]) into columns.

    **Arguments:**

    - `path`: the `results.csv` file.

    **Returns:** a dict `{column: array}`, each array with one entry per configuration (table row): numeric
    and boolean columns (`True` / `False` as `1.0` / `0.0`) as float64 arrays, `nan` included; other columns
    (e.g. `status_words`) as string arrays. A missing, unreadable or empty table is a one-line `ValueError`
    naming the file.
    """
    cols = {}
    for k, vals in read_csv_columns(path).items():
        try:
            cols[k] = np.asarray([float(v) if v not in ("True", "False") else float(v == "True") for v in vals])
        except ValueError:
            cols[k] = np.asarray(vals)
    return cols
