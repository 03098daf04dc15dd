"""Checkpoints of trained MLPs: one file per network (a JSON header line, then the serialised leaves), written
atomically, and [`train_or_load`][], which reuses a checkpoint only when it was trained the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from ._data import Dataset
from ._mlp import MLP, Activation, TrainConfig, TrainHistory, make_mlp, train

__all__ = ["save_checkpoint", "read_checkpoint_meta", "load_checkpoint", "TrainOrLoadResult", "train_or_load"]


_CKPT_FORMAT = "jaxprune.mlp"
_CKPT_VERSION = 1
_MAX_HEADER_BYTES = 1 << 24


def save_checkpoint(
    path: str | os.PathLike, model: MLP, meta: Mapping[str, Any] | None = None
) -> None:
    """Write `model` and a JSON-serialisable `meta` dict to ONE file, atomically.

    The file holds one line of JSON (format tag, layer sizes, activation, dtype, `meta`)
    followed by the leaves written by `eqx.tree_serialise_leaves`. It is first written to a
    temporary file in the same folder and then moved over `path` with `os.replace`, so `path`
    is never left half-written and no temporary file survives a failure.
    """
    path = os.fspath(path)
    header = {
        "format": _CKPT_FORMAT,
        "version": _CKPT_VERSION,
        "sizes": list(model.sizes),
        "activation": model.activation,
        "dtype": jnp.dtype(model.dtype).name,
        "meta": dict(meta or {}),
    }
    try:
        header_bytes = json.dumps(header, sort_keys=True).encode()
    except (TypeError, ValueError) as e:
        raise TypeError(f"Checkpoint meta for {path!r} must be JSON-serialisable: {e}") from e
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header_bytes + b"\n")
            eqx.tree_serialise_leaves(f, model)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _read_header(f, path: str) -> dict[str, Any]:
    line = f.readline(_MAX_HEADER_BYTES)
    try:
        header = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a jaxprune MLP checkpoint (unreadable header: {e}).") from e
    if not isinstance(header, dict) or header.get("format") != _CKPT_FORMAT:
        raise ValueError(f"{path}: not a jaxprune MLP checkpoint (missing format tag).")
    if header.get("version") != _CKPT_VERSION:
        raise ValueError(f"{path}: unsupported checkpoint version {header.get('version')!r}.")
    return header


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The `meta` dict stored in the checkpoint at `path` (written by [`save_checkpoint`][]), read from its
    header without reading the weights; a file that is not a checkpoint is a `ValueError` naming `path`."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        return _read_header(f, path)["meta"]


def load_checkpoint(path: str | os.PathLike) -> tuple[MLP, dict[str, Any]]:
    """Read a checkpoint written by [`save_checkpoint`][].

    **Returns:** `(model, meta)`. The skeleton is rebuilt from the stored sizes, activation and
    dtype; the values come from the file.

    **Raises:** `FileNotFoundError`, or `ValueError` naming `path` for a corrupt file.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        header = _read_header(f, path)
        try:
            skeleton = eqx.filter_eval_shape(
                make_mlp, tuple(header["sizes"]), header["activation"], jax.random.key(0),
                dtype=jnp.dtype(header["dtype"]),
            )
            model = eqx.tree_deserialise_leaves(f, skeleton)
        except (KeyError, TypeError, ValueError, EOFError, RuntimeError, OSError) as e:
            raise ValueError(f"{path}: corrupt checkpoint ({type(e).__name__}: {e}).") from e
        if f.read(1):
            raise ValueError(f"{path}: corrupt checkpoint (trailing data after the weights).")
    return model, header["meta"]


class TrainOrLoadResult(NamedTuple):
    """What [`train_or_load`][] returns; `loaded` is True when no training happened."""

    model: MLP
    history: TrainHistory
    loaded: bool


def _run_description(
    sizes: Sequence[int], activation: str, dataset: Dataset, config: TrainConfig, dtype: Any,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    desc = {
        "sizes": [int(s) for s in sizes],
        "activation": activation,
        "dtype": jnp.dtype(dtype).name,
        "dataset": {
            "name": dataset.name,
            "num_train": dataset.num_train,
            "num_test": dataset.num_test,
            "fingerprint": dataset.fingerprint(),
        },
        "config": config.to_dict(),
        "extra": dict(extra or {}),
    }
    return json.loads(json.dumps(desc, sort_keys=True))  # normalise tuples etc. as stored


def train_or_load(
    path: str | os.PathLike,
    sizes: Sequence[int],
    activation: Activation,
    dataset: Dataset,
    config: TrainConfig = TrainConfig(),
    *,
    dtype: Any = jnp.float32,
    extra_meta: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> TrainOrLoadResult:
    """Load the network at `path` if it was trained the same way, else train and save it.

    The checkpoint's meta records the architecture, dtype, dataset (name, sizes and a hash of
    its arrays), the full `config` and `extra_meta`; it is reused only if all of them match.
    Otherwise (also when the file is unreadable, with a warning) a fresh network
    `make_mlp(sizes, activation, jax.random.key(config.seed))` is trained with [`train`][] and
    saved, overwriting any stale checkpoint.

    **Arguments:**

    - `path`: the checkpoint file (its folder is created when saving).
    - `sizes`: layer widths `(D, H_1, ..., C)`, see [`make_mlp`][].
    - `activation`: the hidden nonlinearity: `"sigmoid"`, `"relu"`, `"tanh"` or `"erf"`.
    - `dataset`: the [`Dataset`][] to train on.
    - `config`: the [`TrainConfig`][] (its `seed` also seeds the initialisation).
    - `dtype`: parameter dtype (default float32).
    - `extra_meta`: more settings that must match for a checkpoint to be reused (optional).
    - `progress`: show a progress bar while training.

    **Returns:** a [`TrainOrLoadResult`][] `(model, history, loaded)`.
    """
    path = os.fspath(path)
    run = _run_description(sizes, activation, dataset, config, dtype, extra_meta)
    if os.path.exists(path):
        try:
            if read_checkpoint_meta(path).get("run") == run:
                model, meta = load_checkpoint(path)
                return TrainOrLoadResult(model, TrainHistory.from_dict(meta["history"]), True)
        except (ValueError, KeyError, TypeError) as e:
            warnings.warn(f"Ignoring unreadable checkpoint {path} ({e}); retraining.", stacklevel=2)
    model = make_mlp(sizes, activation, jax.random.key(config.seed), dtype=dtype)
    model, history = train(model, dataset, config, progress=progress)
    save_checkpoint(path, model, {"run": run, "history": history.to_dict()})
    return TrainOrLoadResult(model, history, False)
