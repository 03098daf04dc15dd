"""JAX's persistent compilation cache for jaxprune's entry points (the CLI, `reproduce` and its workers, the
notebooks, the tests). The library never turns it on by itself: an entry point calls
[`enable_compile_cache`][] once, before its first compilation.

Where it lives: `$JAXPRUNE_CACHE_DIR` if set (`off` disables it), else `$XDG_CACHE_HOME/jaxprune` or
`~/.cache/jaxprune` (`~/Library/Caches/jaxprune` on macOS, `%LOCALAPPDATA%\\jaxprune` on Windows), one
sub-folder per jaxlib version (`xla-<jaxlib version>`), so that entries of an old JAX can be deleted as one
folder. A jaxprune change needs no invalidation: a changed program has a different key (the key hashes the
program, jaxlib's version, the XLA flags and the compile options).

How big it grows: every compiled program is kept (the project compiles many small programs, and loading
one from disk is cheaper than compiling it again, however small), without a cap: delete the folder to empty it.
A cap (`max_bytes`, least recently used entries evicted; needs the `filelock` package) also makes JAX lock the
folder around every read and write, but JAX then rescans the whole folder on every write (about 1 s at 5000
entries), so it is off by default. Unlocked, concurrent processes share the folder as JAX designed it: a
process that reads an entry while another is writing it fails to decompress it, warns and compiles the
program itself; results are unaffected.

Programs that contain host callbacks (`eqx.error_if` in its default "raise" mode, `jax.debug.print`) are never
cached by JAX: an entry point whose main program carries one compiles it again each run. The cache skips XLA
compilation but not tracing and lowering; for the ODE solve, whose tracing through diffrax takes seconds, the
program store (`jaxprune._program_store`, in the `programs` sub-folder) keeps the lowered program as well.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import jax
import jaxlib

from ._program_store import set_program_dir

__all__ = ["ENV_VAR", "OFF", "default_cache_dir", "enable_compile_cache", "disable_compile_cache", "cache_info"]

ENV_VAR = "JAXPRUNE_CACHE_DIR"
OFF = ("off", "none", "0", "false", "no")

# Thresholds: cache every program. Measured (benchmarks/README.md): on the shared 2-core machine the smallest
# programs (one jnp operation) took 10-100 ms to compile and 1-10 ms to load from the cache, and a third of
# `reproduce --quick`'s 590 programs compile in under 0.2 s, so no compile-time or size threshold pays; JAX's
# default (1 s) left most of this project's programs uncached.
MIN_COMPILE_SECS = 0.0
MIN_ENTRY_BYTES = -1  # -1: no size threshold (and none added by JAX's per-filesystem override)
MAX_BYTES = None  # no cap: JAX's capped (LRU) cache rescans the folder on every write
#: sub-folder of the cache folder that holds exported programs (`jaxprune._program_store`)
PROGRAMS = "programs"

# JAX reads these environment variables when it is imported: exporting them carries the configuration into
# child processes (reproduce's spawned workers, notebook kernels, subprocess tests).
_JAX_ENV = {
    "dir": "JAX_COMPILATION_CACHE_DIR",
    "enable": "JAX_ENABLE_COMPILATION_CACHE",
    "min_secs": "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
    "min_bytes": "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES",
    "max_bytes": "JAX_COMPILATION_CACHE_MAX_SIZE",
}


def _platform_cache_home() -> Path:
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"])
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"])
    return Path.home() / ".cache"


def _version_folder(root: Path) -> Path:
    return root / f"xla-{jaxlib.__version__}"


def default_cache_dir() -> Path | None:
    """The cache folder entry points use: `$JAXPRUNE_CACHE_DIR/xla-<jaxlib version>` if the variable is set
    (`None` when it says `off`), else `<platform cache dir>/jaxprune/xla-<jaxlib version>`."""
    value = os.environ.get(ENV_VAR)
    if value is not None:
        if value.strip().lower() in OFF or not value.strip():
            return None
        return _version_folder(Path(value).expanduser())
    return _version_folder(_platform_cache_home() / "jaxprune")


def _has_filelock() -> bool:
    try:
        import filelock  # noqa: F401  (optional: only its presence is tested)
    except ImportError:
        return False
    return True


def enable_compile_cache(
    path: str | os.PathLike | None = None,
    *,
    min_compile_secs: float = MIN_COMPILE_SECS,
    min_entry_bytes: int = MIN_ENTRY_BYTES,
    max_bytes: int | None = MAX_BYTES,
    export: bool = True,
) -> Path | None:
    """Turn on JAX's persistent compilation cache in `path` (default [`default_cache_dir`][]; `None` there,
    i.e. `JAXPRUNE_CACHE_DIR=off`, turns the cache off instead), and jaxprune's program store in
    `path/programs`: the traced and lowered ODE solve of each shape and option set, kept with `jax.export`, so
    that a new process skips tracing as well as compiling it. Call it before the first compilation of the
    process: JAX opens its cache once.

    **Arguments:**

    - `path`: the folder (created if missing); used as given, without a version sub-folder.
    - `min_compile_secs`: programs that compiled faster than this are not written (default 0: all).
    - `min_entry_bytes`: entries smaller than this are not written (default -1: no threshold).
    - `max_bytes`: cap on the folder, least recently used entries evicted first; needs the `filelock` package
      (then JAX also locks the folder around each read and write; each write rescans the folder), ignored
      without it. `None` (default): unbounded, unlocked.
    - `export`: also set JAX's environment variables, so that child processes use the same cache.

    **Returns:** the folder in use, or `None` when the cache is off or the folder cannot be created (a
    warning says why; the program then runs without a cache).
    """
    if min_compile_secs < 0:
        raise ValueError(f"min_compile_secs must be >= 0, got {min_compile_secs}")
    if min_entry_bytes < -1:
        raise ValueError(f"min_entry_bytes must be >= -1, got {min_entry_bytes}")
    if max_bytes is not None and max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive or None, got {max_bytes}")
    folder = default_cache_dir() if path is None else Path(path).expanduser()
    if folder is None:
        disable_compile_cache(export=export)
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        warnings.warn(f"compilation cache disabled: cannot create {folder} ({e}); set {ENV_VAR} to move it",
                      stacklevel=2)
        disable_compile_cache(export=export)
        return None
    size = max_bytes if (max_bytes is not None and _has_filelock()) else -1
    settings = {
        "dir": ("jax_compilation_cache_dir", str(folder)),
        "enable": ("jax_enable_compilation_cache", True),
        "min_secs": ("jax_persistent_cache_min_compile_time_secs", float(min_compile_secs)),
        "min_bytes": ("jax_persistent_cache_min_entry_size_bytes", int(min_entry_bytes)),
        "max_bytes": ("jax_compilation_cache_max_size", int(size)),
    }
    for key, (option, value) in settings.items():
        jax.config.update(option, value)
        if export:
            os.environ[_JAX_ENV[key]] = str(value).lower() if isinstance(value, bool) else str(value)
    set_program_dir(folder / PROGRAMS)
    return folder


def disable_compile_cache(*, export: bool = True) -> None:
    """Turn JAX's persistent compilation cache off (in this process, and with `export` in child processes)."""
    jax.config.update("jax_enable_compilation_cache", False)
    set_program_dir(None)
    if export:
        os.environ[_JAX_ENV["enable"]] = "false"
        os.environ.pop(_JAX_ENV["dir"], None)


def cache_info(path: str | os.PathLike | None = None) -> dict:
    """The size of a cache folder.

    **Arguments:**

    - `path`: the folder (default [`default_cache_dir`][]).

    **Returns:** `{"path", "entries", "bytes", "programs", "program_bytes"}`: JAX's compiled entries and the
    program store's exported programs (counts and bytes); zeros when the folder is absent.
    """
    folder = default_cache_dir() if path is None else Path(path)
    if folder is None or not folder.is_dir():
        return {"path": None if folder is None else str(folder), "entries": 0, "bytes": 0, "programs": 0,
                "program_bytes": 0}
    files = [p for p in folder.glob("*-cache") if p.is_file()]
    programs = [p for p in (folder / PROGRAMS).glob("*.jaxexport") if p.is_file()]
    return {"path": str(folder), "entries": len(files), "bytes": sum(p.stat().st_size for p in files),
            "programs": len(programs), "program_bytes": sum(p.stat().st_size for p in programs)}
