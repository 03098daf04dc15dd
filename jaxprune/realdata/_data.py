"""Classification datasets for the real-data pruning experiments.

Every loader returns a [`Dataset`][] of flat, standardised float32 inputs and int32 labels
held as host NumPy arrays. Nothing is ever downloaded: MNIST and CIFAR-10 are read from files
the user already has, and any missing or malformed file raises an error naming that file.

The default dataset is scikit-learn's bundled 8x8 `digits` (1797 images, 10 classes), which
needs no files at all.

References: Acharyya et al., "Statistical Mechanical Analysis of Neural Network Pruning",
UAI 2021 (real-data experiments on MNIST and CIFAR-10).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import struct
import warnings
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: standardisation: "feature", "global" or "none" (a plain `str`: the loaders check it and name the choices)
Standardize = str

DATASET_NAMES: tuple[str, ...] = ("digits", "mnist", "cifar10")

_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# Sub-folders searched (in order) below `data_dir` for the MNIST files; the second is the
# layout torchvision leaves behind.
_MNIST_SUBDIRS = ("", os.path.join("MNIST", "raw"))
_CIFAR_SUBDIRS = ("", "cifar-10-batches-py")
_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_BATCH = "test_batch"
_CIFAR_SHAPE = (3, 32, 32)

# IDX type codes -> big-endian NumPy dtypes (http://yann.lecun.com/exdb/mnist/, bottom of page).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test classification split with flattened inputs.

    **Fields:**

    - `x_train`, `x_test`: inputs, shape `(n_train, d)` / `(n_test, d)`, flattened from
        `input_shape` (so `d == prod(input_shape)`).
    - `y_train`, `y_test`: integer labels in `[0, num_classes)`.
    - `num_classes`: number of classes.
    - `name`: the dataset's name (`"digits"`, `"mnist"`, `"cifar10"`, or anything else).
    - `input_shape`: the shape of one example before flattening, e.g. `(28, 28)`.

    Arrays are host NumPy arrays; move them to the device with `jnp.asarray` where needed.
    """

    # Plain `np.ndarray`: `__post_init__` checks type, shapes and dtypes with messages naming the split.
    x_train: np.ndarray  # Float (n_train, d)
    y_train: np.ndarray  # Int (n_train,)
    x_test: np.ndarray  # Float (n_test, d)
    y_test: np.ndarray  # Int (n_test,)
    num_classes: int
    name: str
    input_shape: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        d = int(np.prod(self.input_shape))
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != d:
                raise ValueError(
                    f"Dataset {self.name!r}: x_{split} must be a 2-d NumPy array of shape "
                    f"(n, {d}) for input_shape {self.input_shape}, got "
                    f"{getattr(x, 'shape', type(x).__name__)}."
                )
            if not isinstance(y, np.ndarray) or y.shape != (x.shape[0],):
                raise ValueError(
                    f"Dataset {self.name!r}: y_{split} must have shape ({x.shape[0]},) to match "
                    f"x_{split}, got {getattr(y, 'shape', type(y).__name__)}."
                )
            if not np.issubdtype(y.dtype, np.integer):
                raise ValueError(
                    f"Dataset {self.name!r}: y_{split} must be integer, got {y.dtype}."
                )
            if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(
                    f"Dataset {self.name!r}: y_{split} has labels outside [0, {self.num_classes})."
                )

    @property
    def input_dim(self) -> int:
        """`d`, the length of one flattened example."""
        return int(self.x_train.shape[1])

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.x_test.shape[0])

    def fingerprint(self) -> str:
        """A SHA-256 hex digest of the arrays, shapes and dtypes, for checkpoint matching."""
        h = hashlib.sha256()
        h.update(repr((self.name, self.num_classes, self.input_shape)).encode())
        for a in (self.x_train, self.y_train, self.x_test, self.y_test):
            a = np.ascontiguousarray(a)
            h.update(repr((a.shape, a.dtype.str)).encode())
            h.update(a.tobytes())
        return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Shared post-processing


def _subsample(x, y, max_n: int | None, rng: np.random.Generator, what: str):
    if max_n is None or max_n >= x.shape[0]:
        return x, y
    if max_n < 1:
        raise ValueError(f"{what} must be a positive integer or None, got {max_n}.")
    idx = np.sort(rng.choice(x.shape[0], size=max_n, replace=False))
    return x[idx], y[idx]


def _column_stats(x: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and (population) standard deviation in float64, two passes over row
    chunks so that no float64 copy of a large `x` is ever made."""
    n = x.shape[0]
    total = np.zeros(x.shape[1])
    for i in range(0, n, chunk):
        total += x[i : i + chunk].sum(axis=0, dtype=np.float64)
    mean = total / n
    sq = np.zeros(x.shape[1])
    for i in range(0, n, chunk):
        sq += np.square(x[i : i + chunk] - mean[None, :]).sum(axis=0)
    return mean, np.sqrt(sq / n)


def _finalise(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    divisor: float,
    standardize: Standardize,
    max_train: int | None,
    max_test: int | None,
    seed: int,
) -> Dataset:
    """Subsample, flatten, cast to float32, divide by `divisor`, standardise with training
    statistics, and wrap in a `Dataset`."""
    if standardize not in ("feature", "global", "none"):
        raise ValueError(f"standardize must be 'feature', 'global' or 'none', got {standardize!r}.")
    if x_train.shape[0] == 0:
        raise ValueError(f"Dataset {name!r} has no training examples.")
    rng = np.random.default_rng(seed)
    x_train, y_train = _subsample(x_train, y_train, max_train, rng, "max_train")
    x_test, y_test = _subsample(x_test, y_test, max_test, rng, "max_test")
    x_train = x_train.reshape(x_train.shape[0], -1).astype(np.float32)
    x_test = x_test.reshape(x_test.shape[0], -1).astype(np.float32)
    if divisor != 1:
        x_train /= np.float32(divisor)
        x_test /= np.float32(divisor)
    if standardize != "none":
        mean, std = _column_stats(x_train)
        if standardize == "global":  # pooled over columns, which all have n_train entries
            g_mean = mean.mean()
            std = np.full_like(std, np.sqrt(np.mean(std**2 + (mean - g_mean) ** 2)))
            mean = np.full_like(mean, g_mean)
        # Constant pixels (std 0, e.g. digit borders) are only centred, never divided by ~0.
        std = np.where(std > 1e-12, std, 1.0)
        for x in (x_train, x_test):
            x -= mean.astype(np.float32)[None, :]
            x /= std.astype(np.float32)[None, :]
    return Dataset(
        x_train=x_train,
        y_train=np.asarray(y_train, dtype=np.int32),
        x_test=x_test,
        y_test=np.asarray(y_test, dtype=np.int32),
        num_classes=num_classes,
        name=name,
        input_shape=input_shape,
    )


# ---------------------------------------------------------------------------------------------
# digits


def load_digits(
    *,
    test_fraction: float = 0.25,
    seed: int = 0,
    standardize: Standardize = "feature",
    max_train: int | None = None,
    max_test: int | None = None,
) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, 64 features, 10 classes).

    **Arguments:**

    - `test_fraction`: fraction of the 1797 images held out for testing, in `(0, 1)`.
    - `seed`: seed of the (stratified) split and of any subsampling; the same seed always
        gives the same split.
    - `standardize`: `"feature"` (default) centres and scales each pixel with the training-set
        mean and standard deviation (pixels constant on the training set are only centred);
        `"global"` uses one mean and std for all pixels; `"none"` keeps raw values in `[0, 16]`.
    - `max_train`, `max_test`: optional sizes of random subsets, drawn before standardising.

    **Returns:** a [`Dataset`][] with `input_shape == (8, 8)`.
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}.")
    bunch = _sk_load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        bunch.data, bunch.target, test_size=test_fraction, random_state=seed, stratify=bunch.target
    )
    return _finalise(
        "digits",
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes=10,
        input_shape=(8, 8),
        divisor=1.0,
        standardize=standardize,
        max_train=max_train,
        max_test=max_test,
        seed=seed,
    )


# ---------------------------------------------------------------------------------------------
# MNIST (IDX files)


def _read_bytes(path: str) -> bytes:
    """The content of `path`, gunzipped when the name ends in `.gz`."""
    if not path.endswith(".gz"):
        with open(path, "rb") as f:
            return f.read()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({e}).") from e


def parse_idx(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Parse the content of an IDX file (the MNIST container format).

    Layout: two zero bytes, one type-code byte (`0x08` uint8, `0x09` int8, `0x0B` int16,
    `0x0C` int32, `0x0D` float32, `0x0E` float64), one byte holding the number of dimensions
    `n`, then `n` big-endian uint32 sizes, then the data in C order, big-endian.

    **Arguments:**

    - `data`: the raw (already decompressed) bytes.
    - `source`: name used in error messages (usually the file path).

    **Returns:** the array, in native byte order.

    **Raises:** `ValueError` naming `source` for a bad magic number, unknown type code, or a
    size that disagrees with the header.
    """
    if len(data) < 4:
        raise ValueError(f"{source}: too short for an IDX header ({len(data)} bytes).")
    zero0, zero1, code, ndim = struct.unpack(">BBBB", data[:4])
    magic = int.from_bytes(data[:4], "big")
    if zero0 != 0 or zero1 != 0:
        raise ValueError(
            f"{source}: bad IDX magic number 0x{magic:08x} (the first two bytes must be zero)."
        )
    if code not in _IDX_DTYPES:
        raise ValueError(f"{source}: unknown IDX type code 0x{code:02x} in magic 0x{magic:08x}.")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(
            f"{source}: truncated IDX header ({len(data)} bytes, {ndim} dimensions need "
            f"{header_len})."
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = _IDX_DTYPES[code]
    expected = header_len + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "has trailing data"
        raise ValueError(
            f"{source}: IDX file {kind}: header says dims {dims} of {dtype.name} "
            f"({expected} bytes with header), file has {len(data)} bytes."
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def _find_file(data_dir: str, subdirs: Sequence[str], names: Sequence[str], what: str) -> str:
    tried = []
    for sub in subdirs:
        for name in names:
            path = os.path.join(data_dir, sub, name)
            if os.path.isfile(path):
                return path
            tried.append(path)
    raise FileNotFoundError(
        f"{what}: none of these files exist: {', '.join(repr(t) for t in tried)}. "
        "jaxprune never downloads data; place the files there or pass another data_dir."
    )


def _read_idx_file(data_dir: str, base: str, ndim: int) -> tuple[np.ndarray, str]:
    path = _find_file(data_dir, _MNIST_SUBDIRS, (base, base + ".gz"), f"MNIST file {base!r}")
    arr = parse_idx(_read_bytes(path), source=path)
    if arr.ndim != ndim:
        raise ValueError(f"{path}: expected a {ndim}-d IDX array, got shape {arr.shape}.")
    if arr.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 (type code 0x08) data, got {arr.dtype}.")
    return arr, path


def load_mnist(
    data_dir: str | os.PathLike,
    *,
    standardize: Standardize = "feature",
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> Dataset:
    """MNIST from the four IDX files in `data_dir` (plain or gzipped).

    Looks for `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
    `t10k-labels-idx1-ubyte` (each optionally with `.gz`) in `data_dir` or `data_dir/MNIST/raw`.
    Pixels are scaled to `[0, 1]` (divided by 255) and then standardised with training-set
    statistics (see [`load_digits`][] for `standardize`). Any file with the same layout
    (e.g. Fashion-MNIST) loads too; the name is still `"mnist"`.

    **Arguments:**

    - `data_dir`: folder holding the files. Nothing is downloaded.
    - `standardize`, `max_train`, `max_test`, `seed`: as in [`load_digits`][]; `seed` only
        drives subsampling.

    **Returns:** a [`Dataset`][] with `input_shape == (rows, cols)`, `(28, 28)` for MNIST.

    **Raises:** `FileNotFoundError` naming the paths tried; `ValueError` naming the file for
    a corrupt header, truncated data, labels outside `0..9`, or image/label counts that differ.
    """
    data_dir = os.fspath(data_dir)
    x_train, p_xtr = _read_idx_file(data_dir, _MNIST_FILES["train_images"], 3)
    y_train, p_ytr = _read_idx_file(data_dir, _MNIST_FILES["train_labels"], 1)
    x_test, p_xte = _read_idx_file(data_dir, _MNIST_FILES["test_images"], 3)
    y_test, p_yte = _read_idx_file(data_dir, _MNIST_FILES["test_labels"], 1)
    for x, y, px, py in ((x_train, y_train, p_xtr, p_ytr), (x_test, y_test, p_xte, p_yte)):
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{px} holds {x.shape[0]} images but {py} holds {y.shape[0]} labels."
            )
        if y.size and y.max() > 9:
            raise ValueError(f"{py}: labels must lie in 0..9, found {int(y.max())}.")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"Image sizes differ: {p_xtr} has {x_train.shape[1:]}, {p_xte} has {x_test.shape[1:]}."
        )
    return _finalise(
        "mnist",
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes=10,
        input_shape=x_train.shape[1:],
        divisor=255.0,
        standardize=standardize,
        max_train=max_train,
        max_test=max_test,
        seed=seed,
    )


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (python pickle batches)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and NumPy arrays, and refuses every other global.

    The CIFAR batches are pickles; refusing arbitrary globals means a tampered file raises
    instead of running code.
    """

    _ALLOWED = {
        ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol < 3
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def _read_cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    raw = _read_bytes(path)
    try:
        batch = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # pickle raises many types on corrupt input
        raise ValueError(
            f"{path}: not a readable CIFAR-10 pickle ({type(e).__name__}: {e})."
        ) from e
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(batch).__name__}.")
    for k in (b"data", b"labels"):
        if k not in batch and k.decode() not in batch:
            raise ValueError(f"{path}: missing key {k!r} (keys: {sorted(map(repr, batch))}).")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    d = int(np.prod(_CIFAR_SHAPE))
    if not (
        isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
        and data.shape[1] == d
    ):
        raise ValueError(
            f"{path}: b'data' must be a uint8 array of shape (n, {d}), got "
            f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}."
        )
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: b'labels' is not a list of integers ({e}).") from e
    if labels.shape != (data.shape[0],):
        raise ValueError(
            f"{path}: {data.shape[0]} images but b'labels' has shape {labels.shape}."
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels must lie in 0..9.")
    return data, labels


def load_cifar10(
    data_dir: str | os.PathLike,
    *,
    standardize: Standardize = "feature",
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> Dataset:
    """CIFAR-10 from the python-pickle batches in `data_dir` or `data_dir/cifar-10-batches-py`.

    Reads `data_batch_1` ... `data_batch_5` and `test_batch`; each is a pickled dict whose
    `b"data"` is a uint8 array of shape `(n, 3072)` (channel-major `3 x 32 x 32`) and whose
    `b"labels"` is a list of `n` integers in `0..9`. Pixels are divided by 255 and then
    standardised with training-set statistics. The pickles are read with an unpickler that only
    accepts NumPy arrays, so a tampered file raises `ValueError` instead of running code.

    **Arguments:**

    - `data_dir`: folder holding the batches (or their `cifar-10-batches-py` folder). Nothing is downloaded.
    - `standardize`, `max_train`, `max_test`, `seed`: as in [`load_digits`][]; `seed` only drives
        subsampling.

    **Returns:** a [`Dataset`][] with `input_shape == (3, 32, 32)`.

    **Raises:** `FileNotFoundError` naming the paths tried; `ValueError` naming the file for an
    unreadable pickle, missing keys or wrong shapes.
    """
    data_dir = os.fspath(data_dir)

    def read_all(names):
        xs, ys = [], []
        for name in names:
            path = _find_file(data_dir, _CIFAR_SUBDIRS, (name,), f"CIFAR-10 batch {name!r}")
            x, y = _read_cifar_batch(path)
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs, axis=0), np.concatenate(ys, axis=0)

    x_train, y_train = read_all(_CIFAR_TRAIN_BATCHES)
    x_test, y_test = read_all((_CIFAR_TEST_BATCH,))
    return _finalise(
        "cifar10",
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes=10,
        input_shape=_CIFAR_SHAPE,
        divisor=255.0,
        standardize=standardize,
        max_train=max_train,
        max_test=max_test,
        seed=seed,
    )


# ---------------------------------------------------------------------------------------------
# Dispatch


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, **kwargs: Any) -> Dataset:
    """Load a dataset by name: `"digits"`, `"mnist"` or `"cifar10"` (case-insensitive).

    **Arguments:**

    - `name`: the dataset name.
    - `data_dir`: folder with the files; required for `"mnist"` and `"cifar10"`, ignored for
        `"digits"` (which ships with scikit-learn).
    - `**kwargs`: passed on to [`load_digits`][], [`load_mnist`][] or [`load_cifar10`][]
        (e.g. `standardize`, `max_train`, `max_test`, `seed`).

    **Returns:** the [`Dataset`][] of the named loader.

    **Raises:** `ValueError` for an unknown name (listing the allowed ones) or a missing
    `data_dir`.
    """
    key = name.lower().replace("-", "").replace("_", "") if isinstance(name, str) else name
    loaders: dict[str, Callable[..., Dataset]] = {
        "digits": load_digits,
        "mnist": load_mnist,
        "cifar10": load_cifar10,
    }
    if key not in loaders:
        raise ValueError(f"Unknown dataset {name!r}; allowed names are {', '.join(DATASET_NAMES)}.")
    if key == "digits":
        return load_digits(**kwargs)
    if data_dir is None:
        raise ValueError(
            f"Dataset {name!r} is read from local files: pass data_dir (nothing is downloaded)."
        )
    return loaders[key](data_dir, **kwargs)
