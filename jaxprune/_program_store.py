"""Traced programs kept on disk between processes (`jax.export`), so that a new process skips tracing and
lowering as well as XLA compilation.

JAX's persistent compilation cache ([`enable_compile_cache`][]) skips XLA compilation, but every process still
traces and lowers its programs before it can look them up, and diffrax's adaptive solve takes about two
seconds to trace and lower. This store keeps the lowered program itself (a serialised `jax.export.Exported`)
under the compilation cache's folder, keyed by everything that determines it: the function, its static
options, the shapes and dtypes of its arguments, the platform, the versions of jax, jaxlib, equinox and
diffrax, and a digest of jaxprune's core source files. A new process deserialises it (milliseconds) and
compiles it, which the compilation cache then serves.

Only calls with concrete arrays use the store; under `jit`, `vmap` or `grad` (any tracer among the arguments)
the function is traced as usual. A program that cannot be exported (a host callback in it) or an entry that
cannot be read falls back to the ordinary path, never to a different result. The store is off until an entry
point turns the compilation cache on (the CLI, `reproduce`, the notebooks and the tests do).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax

from ._io import atomic_write_bytes

__all__ = ["set_program_dir", "program_dir", "call_stored"]

_DIR: Path | None = None
_LOADED: dict[str, Any] = {}  # key -> Exported (or None: cannot be exported; use the ordinary path)
_LOCK = threading.Lock()
SUFFIX = ".jaxexport"


def set_program_dir(folder: str | os.PathLike | None) -> Path | None:
    """Keep exported programs in `folder` (created on first write); `None` turns the store off."""
    global _DIR
    _DIR = None if folder is None else Path(folder)
    _LOADED.clear()
    return _DIR


def program_dir() -> Path | None:
    """The folder of the program store, or `None` when it is off."""
    return _DIR


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


@functools.cache
def _environment_digest() -> str:
    """Versions of the libraries that trace the programs, and jaxprune's core source (the package root's modules:
    a changed formula changes every key)."""
    h = hashlib.sha256()
    for dist in ("jax", "jaxlib", "equinox", "diffrax"):
        h.update(f"{dist}={_version(dist)};".encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _avals(args) -> str:
    leaves, treedef = jax.tree.flatten(args)
    return str(treedef) + "|" + ";".join(f"{jax.numpy.result_type(x)}{jax.numpy.shape(x)}" for x in leaves)


def _key(fn: Callable, static: Any, args) -> str:
    h = hashlib.sha256()
    for part in (fn.__module__, fn.__qualname__, repr(static), _avals(args), jax.default_backend(),
                 str(jax.devices()[0].device_kind), str(jax.config.jax_enable_x64), _environment_digest()):
        h.update(part.encode())
        h.update(b"\0")
    return f"{fn.__name__.strip('_')}-{h.hexdigest()[:40]}"


@functools.cache
def _jitted(fn: Callable) -> Callable:
    return eqx.filter_jit(fn)


def _has_tracer(args) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(args))


def _has_host_callback(exported) -> bool:
    return "callback" in exported.mlir_module()


def _load_or_export(key: str, fn: Callable, static: Any, args):
    from jax import export  # noqa: PLC0415  (only entry points with the store on pay for it)

    path = _DIR / f"{key}{SUFFIX}"
    if path.is_file():
        try:
            return export.deserialize(bytearray(path.read_bytes()))
        except Exception as e:  # a truncated or foreign file: export again and replace it
            warnings.warn(f"program store: ignoring unreadable {path.name} ({type(e).__name__}); re-exporting",
                          stacklevel=3)
    try:
        exported = export.export(jax.jit(functools.partial(fn, static)))(*args)
        if _has_host_callback(exported):
            return None
        atomic_write_bytes(path, bytes(exported.serialize()))
    except Exception as e:  # cannot be exported or written (no flatbuffers, read-only folder, ...): ordinary path
        warnings.warn(f"program store: not keeping {key} ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
                      "it is traced in every process", stacklevel=3)
        return None
    return exported


def call_stored(fn: Callable, static: Any, *args):
    """`fn(static, *args)` through the program store: `static` holds everything that is not an array (hashable,
    with a `repr` that determines it, e.g. an `equinox.Module` with static fields), `args` are arrays (or
    pytrees of arrays). With the store off, or a tracer among `args`, this is `equinox.filter_jit(fn)(static,
    *args)`; otherwise the exported program of this key is loaded (or exported and saved) and called. The
    outputs are the same either way (the same lowered program).
    """
    if _DIR is None or _has_tracer(args):
        return _jitted(fn)(static, *args)
    key = _key(fn, static, args)
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = _load_or_export(key, fn, static, args)
        exported = _LOADED[key]
    if exported is None:
        return _jitted(fn)(static, *args)
    return exported.call(*args)
