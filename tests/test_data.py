"""Dataset loaders: exact round trips through hand-written IDX / pickle files, and clear errors."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from jaxprune.realdata import Dataset, load_cifar10, load_dataset, load_digits, load_mnist, parse_idx


# ---------------------------------------------------------------------------------------------
# helpers writing files in the real formats, independently of the code under test


def idx_bytes(arr: np.ndarray, *, type_code: int = 0x08, magic_prefix: bytes = b"\x00\x00") -> bytes:
    header = magic_prefix + struct.pack(">BB", type_code, arr.ndim)
    header += struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return header + arr.astype(">u1").tobytes()


def write(path, data: bytes, *, gz: bool):
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)


def fake_mnist(rng, n_train=7, n_test=5, rows=4, cols=3):
    return (
        rng.integers(0, 256, size=(n_train, rows, cols), dtype=np.uint8),
        rng.integers(0, 10, size=n_train, dtype=np.uint8),
        rng.integers(0, 256, size=(n_test, rows, cols), dtype=np.uint8),
        rng.integers(0, 10, size=n_test, dtype=np.uint8),
    )


MNIST_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def write_mnist(folder, arrays, gz=(True, False, False, True)):
    for name, arr, z in zip(MNIST_NAMES, arrays, gz):
        write(folder / name, idx_bytes(arr), gz=z)


def expected_standardised(train, test):
    """Per-feature standardisation with train statistics; zero-variance features only centred."""
    train = train.reshape(train.shape[0], -1).astype(np.float64)
    test = test.reshape(test.shape[0], -1).astype(np.float64)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    return (train - mean) / std, (test - mean) / std


# ---------------------------------------------------------------------------------------------
# MNIST


@pytest.mark.parametrize("gz", [(True,) * 4, (False,) * 4, (True, False, False, True)])
def test_mnist_round_trip_raw(tmp_path, rng, gz):
    arrays = fake_mnist(rng)
    write_mnist(tmp_path, arrays, gz)
    ds = load_mnist(tmp_path, standardize="none")
    xtr, ytr, xte, yte = arrays
    assert ds.name == "mnist" and ds.num_classes == 10 and ds.input_shape == (4, 3)
    assert ds.x_train.shape == (7, 12) and ds.x_test.shape == (5, 12)
    np.testing.assert_allclose(ds.x_train, xtr.reshape(7, 12) / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_allclose(ds.x_test, xte.reshape(5, 12) / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(ds.y_train, ytr)
    np.testing.assert_array_equal(ds.y_test, yte)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32


def test_mnist_standardised(tmp_path, rng):
    arrays = fake_mnist(rng, n_train=9)
    arrays[0][:, 0, 0] = 17  # a constant pixel: must be centred to 0, not divided by 0
    write_mnist(tmp_path, arrays)
    ds = load_mnist(tmp_path)
    exp_tr, exp_te = expected_standardised(arrays[0] / 255.0, arrays[2] / 255.0)
    np.testing.assert_allclose(ds.x_train, exp_tr, atol=1e-5)
    np.testing.assert_allclose(ds.x_test, exp_te, atol=1e-5)
    assert np.all(ds.x_train[:, 0] == 0) and np.all(np.isfinite(ds.x_test))


def test_mnist_torchvision_layout(tmp_path, rng):
    arrays = fake_mnist(rng)
    sub = tmp_path / "MNIST" / "raw"
    sub.mkdir(parents=True)
    write_mnist(sub, arrays)
    ds = load_mnist(tmp_path, standardize="none")
    np.testing.assert_array_equal(ds.y_test, arrays[3])


def test_mnist_missing_file(tmp_path, rng):
    arrays = fake_mnist(rng)
    write_mnist(tmp_path, arrays)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def corrupt_cases():
    def wrong_magic(arrays):
        return {0: idx_bytes(arrays[0], magic_prefix=b"\x08\x03")}, "magic"

    def wrong_type(arrays):
        return {1: idx_bytes(arrays[1], type_code=0x42)}, "type code"

    def wrong_ndim(arrays):
        return {0: idx_bytes(arrays[0].reshape(7, 12))}, "3-d"

    def truncated(arrays):
        return {2: idx_bytes(arrays[2])[:-3]}, "truncated"

    def trailing(arrays):
        return {2: idx_bytes(arrays[2]) + b"\x00"}, "trailing"

    def short_header(arrays):
        return {3: b"\x00\x00\x08"}, "too short"

    def count_mismatch(arrays):
        return {1: idx_bytes(arrays[1][:-1])}, "7 images but .* 6 labels"

    def bad_label(arrays):
        y = arrays[3].copy()
        y[0] = 12
        return {3: idx_bytes(y)}, "0..9"

    return [wrong_magic, wrong_type, wrong_ndim, truncated, trailing, short_header, count_mismatch, bad_label]


@pytest.mark.parametrize("case", corrupt_cases(), ids=lambda c: c.__name__)
def test_mnist_corrupt_file_names_file(tmp_path, rng, case):
    arrays = fake_mnist(rng)
    write_mnist(tmp_path, arrays, gz=(False,) * 4)
    replacements, message = case(arrays)
    for i, data in replacements.items():
        write(tmp_path / MNIST_NAMES[i], data, gz=False)
    bad_name = MNIST_NAMES[min(replacements)]
    with pytest.raises(ValueError, match=message) as info:
        load_mnist(tmp_path)
    assert bad_name in str(info.value)


def test_mnist_corrupt_gzip(tmp_path, rng):
    arrays = fake_mnist(rng)
    write_mnist(tmp_path, arrays, gz=(False, False, False, False))
    os.remove(tmp_path / MNIST_NAMES[0])
    good = gzip.compress(idx_bytes(arrays[0]))
    (tmp_path / (MNIST_NAMES[0] + ".gz")).write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=MNIST_NAMES[0] + r"\.gz"):
        load_mnist(tmp_path)
    (tmp_path / (MNIST_NAMES[0] + ".gz")).write_bytes(b"definitely not gzip data")
    with pytest.raises(ValueError, match="gzip"):
        load_mnist(tmp_path)


def test_parse_idx_other_dtypes():
    arr = np.arange(6).reshape(2, 3) - 3
    data = b"\x00\x00\x0c\x02" + struct.pack(">II", 2, 3) + arr.astype(">i4").tobytes()
    out = parse_idx(data)
    np.testing.assert_array_equal(out, arr)
    assert out.dtype == np.dtype("int32")
    vals = [0.5, -2.25, 1e30]
    data = b"\x00\x00\x0d\x01" + struct.pack(">I", 3) + struct.pack(">3f", *vals)
    np.testing.assert_array_equal(parse_idx(data), np.array(vals, np.float32))


# ---------------------------------------------------------------------------------------------
# CIFAR-10


def cifar_batch(rng, n):
    return {
        b"batch_label": b"fake batch",
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
        b"filenames": [b"x.png"] * n,
    }


def write_cifar(folder, rng, sizes=(2, 3, 1, 2, 2, 4)):
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {}
    for name, n in zip(names, sizes):
        batches[name] = cifar_batch(rng, n)
        with open(folder / name, "wb") as f:
            pickle.dump(batches[name], f, protocol=2)
    return batches


@pytest.mark.parametrize("subdir", ["", "cifar-10-batches-py"])
def test_cifar_round_trip(tmp_path, rng, subdir):
    batches = write_cifar(tmp_path / subdir if subdir else tmp_path, rng)
    ds = load_cifar10(tmp_path, standardize="none")
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    x_tr = np.concatenate([b[b"data"] for b in train])
    y_tr = np.concatenate([b[b"labels"] for b in train])
    assert ds.input_shape == (3, 32, 32) and ds.x_train.shape == (10, 3072) and ds.x_test.shape == (4, 3072)
    np.testing.assert_allclose(ds.x_train, x_tr / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(ds.y_train, y_tr)
    np.testing.assert_allclose(ds.x_test, batches["test_batch"][b"data"] / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(ds.y_test, batches["test_batch"][b"labels"])
    ds_std = load_cifar10(tmp_path)
    exp_tr, exp_te = expected_standardised(x_tr / 255.0, batches["test_batch"][b"data"] / 255.0)
    np.testing.assert_allclose(ds_std.x_train, exp_tr, atol=1e-5)
    np.testing.assert_allclose(ds_std.x_test, exp_te, atol=1e-5)


def test_cifar_missing_batch(tmp_path, rng):
    write_cifar(tmp_path, rng)
    os.remove(tmp_path / "data_batch_4")
    with pytest.raises(FileNotFoundError, match="data_batch_4"):
        load_cifar10(tmp_path)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b.update({b"data": b[b"data"][:, :100]}), "shape"),
        (lambda b: b.update({b"data": b[b"data"].astype(np.float32)}), "uint8"),
        (lambda b: b.update({b"labels": b[b"labels"][:-1]}), "labels"),
        (lambda b: b.update({b"labels": [11] * len(b[b"labels"])}), "0..9"),
        (lambda b: b.pop(b"data"), "missing key"),
    ],
)
def test_cifar_bad_batch_names_file(tmp_path, rng, mutate, message):
    batches = write_cifar(tmp_path, rng)
    bad = batches["data_batch_3"]
    mutate(bad)
    with open(tmp_path / "data_batch_3", "wb") as f:
        pickle.dump(bad, f, protocol=2)
    with pytest.raises(ValueError, match=message) as info:
        load_cifar10(tmp_path)
    assert "data_batch_3" in str(info.value)


def test_cifar_truncated_and_malicious_pickles(tmp_path, rng):
    write_cifar(tmp_path, rng)
    raw = (tmp_path / "test_batch").read_bytes()
    (tmp_path / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="test_batch"):
        load_cifar10(tmp_path)

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(ValueError, match="refusing"):
        load_cifar10(tmp_path)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# digits and dispatch


def test_digits_shapes_and_standardisation():
    ds = load_digits()
    assert ds.num_train + ds.num_test == 1797
    assert ds.num_test == pytest.approx(0.25 * 1797, abs=1)
    assert ds.input_dim == 64 and ds.input_shape == (8, 8) and ds.num_classes == 10
    assert set(np.unique(ds.y_train)) == set(range(10))
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)
    std = ds.x_train.std(axis=0)
    varying = std > 0
    assert varying.sum() >= 60  # a few border pixels are constant
    np.testing.assert_allclose(std[varying], 1.0, atol=1e-5)
    assert np.all(ds.x_train[:, ~varying] == 0)


def test_global_standardisation():
    raw = load_digits(standardize="none")
    ds = load_digits(standardize="global")
    mean, std = raw.x_train.astype(np.float64).mean(), raw.x_train.astype(np.float64).std()
    np.testing.assert_allclose(ds.x_train, (raw.x_train - mean) / std, atol=1e-5)
    np.testing.assert_allclose(ds.x_test, (raw.x_test - mean) / std, atol=1e-5)
    with pytest.raises(ValueError, match="standardize"):
        load_digits(standardize="pixel")


def test_digits_matches_sklearn_pixels():
    from sklearn.datasets import load_digits as sk

    raw = load_digits(standardize="none")
    bunch = sk()
    # every loaded example is one of the bundled images with its label (the split is a permutation)
    table = {row.tobytes(): label for row, label in zip(bunch.data.astype(np.float32), bunch.target)}
    xs = np.concatenate([raw.x_train, raw.x_test])
    ys = np.concatenate([raw.y_train, raw.y_test])
    assert len({x.tobytes() for x in xs}) == len({r.tobytes() for r in bunch.data})
    for x, y in zip(xs, ys):
        assert table[x.tobytes()] == y


def test_digits_deterministic_and_seeded():
    a, b, c = load_digits(seed=3), load_digits(seed=3), load_digits(seed=4)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_train, c.y_train)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_subsampling():
    ds = load_digits(max_train=100, max_test=30)
    assert ds.x_train.shape == (100, 64) and ds.x_test.shape == (30, 64)
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)
    with pytest.raises(ValueError, match="max_train"):
        load_digits(max_train=0)


def test_load_dataset_dispatch(tmp_path, rng):
    assert load_dataset("digits").name == "digits"
    write_mnist(tmp_path, fake_mnist(rng))
    assert load_dataset("MNIST", tmp_path, standardize="none").x_train.shape == (7, 12)
    with pytest.raises(ValueError, match="digits, mnist, cifar10"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("cifar10")


def test_dataset_validates_shapes():
    x = np.zeros((3, 4), np.float32)
    y = np.zeros(3, np.int32)
    with pytest.raises(ValueError, match="y_train"):
        Dataset(x, y[:2], x, y, num_classes=2, name="t", input_shape=(4,))
    with pytest.raises(ValueError, match="x_test"):
        Dataset(x, y, x[:, :3], y, num_classes=2, name="t", input_shape=(4,))
    with pytest.raises(ValueError, match="labels outside"):
        Dataset(x, y + 2, x, y, num_classes=2, name="t", input_shape=(4,))
