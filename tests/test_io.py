"""Atomic writes (jaxprune._io): permissions from the umask, old file kept on failure, strict JSON."""

import json
import os
import stat

import numpy as np
import pytest

import jaxprune as jp
from jaxprune import _io


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)

    def set_mask(mask):
        os.umask(mask)

    yield set_mask
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002])
def test_new_files_get_the_umask_permissions(tmp_path, umask, mask):
    umask(mask)
    assert _io.current_umask() == mask
    for name, write in [("a.bin", lambda p: _io.atomic_write_bytes(p, b"x")),
                        ("a.txt", lambda p: _io.atomic_write_text(p, "x")),
                        ("a.json", lambda p: _io.atomic_write_json(p, {"x": 1}))]:
        path = tmp_path / "sub" / name
        write(path)
        # what a plain open() gives a new file under the same umask
        ref = tmp_path / ("ref-" + name)
        with open(ref, "w") as f:
            f.write("x")
        assert _mode(path) == _mode(ref) == 0o666 & ~mask


def test_rewritten_0600_file_gets_the_umask_permissions(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "r.json"
    path.write_text("{}")
    os.chmod(path, 0o600)  # as older versions wrote it
    _io.atomic_write_json(path, {"a": 1})
    assert _mode(path) == 0o644
    assert json.loads(path.read_text()) == {"a": 1}


def test_save_state_is_group_readable(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "s.json"
    jp.save_state(path, jp.Overlaps.reference(2, 2))
    assert _mode(path) == 0o644
    assert np.allclose(np.asarray(jp.load_state(path).R), 1e-3 * np.sin(1.0 + np.array([[0, 1], [2, 3]])))


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "keep.json"
    path.write_text('{"old": true}\n')

    class Boom:
        def __array__(self, *a, **k):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        _io.atomic_write_json(path, {"x": Boom()})
    assert path.read_text() == '{"old": true}\n'
    # a write that fails at the rename (target is a folder) removes its temporary file
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(OSError):
        _io.atomic_write_bytes(folder, b"data")
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "keep.json"]


def test_to_jsonable_is_strict_json():
    obj = {"a": np.array([1.0, np.nan, np.inf, -np.inf]), "b": np.float32(0.5), "c": np.int64(3),
           "d": np.bool_(True), 4: (1, 2)}
    out = _io.to_jsonable(obj)
    assert out == {"a": [1.0, "nan", "inf", "-inf"], "b": 0.5, "c": 3, "d": True, "4": [1, 2]}
    json.dumps(out, allow_nan=False)  # raises on a bare NaN/Infinity
