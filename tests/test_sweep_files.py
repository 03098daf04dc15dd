"""The sweep's output folder: corrupt chunks are recomputed with a warning naming them (issue 17 item 5), bad
output folders are one-line errors naming the path, claims are exclusive and stale ones are taken over,
a finished chunk is never written twice."""

import json
import os
import subprocess
import sys
import time
import warnings

import pytest

import jaxprune as jp
import jaxprune.experiments  # the experiments layer is imported explicitly
from jaxprune.cli import main
from jaxprune.experiments import _sweep_store as store

_SPEC = {"kind": "ode", "axes": {"eta": [0.3, 0.6, 0.9], "K": [2, 3]},
         "fixed": {"M": 2, "alpha": 2.0, "integrator": "euler", "dt": 0.1, "sigma": 0.1}, "chunk_size": 2}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run: its folder (chunk files, results.csv) and rows."""
    out = tmp_path_factory.mktemp("ref")
    rows = jp.experiments.run_sweep(_SPEC, out, progress=False)
    return out, rows


def _copy_run(src, dst):
    dst.mkdir()
    (dst / "chunks").mkdir()
    (dst / "spec.json").write_bytes((src / "spec.json").read_bytes())
    for p in (src / "chunks").glob("chunk_*.json"):
        (dst / "chunks" / p.name).write_bytes(p.read_bytes())


def _truncated(text):
    return text[: len(text) // 2]


def _wrong_schema(text):
    data = json.loads(text)
    for r in data["rows"]:
        del r["alpha_end"]
    return json.dumps(data)


def _wrong_values(text):
    data = json.loads(text)
    data["rows"][0]["eta"] = 123.0
    return json.dumps(data)


def _nan_string_as_status(text):
    data = json.loads(text)
    data["rows"][0]["status"] = "nan"
    return json.dumps(data)


@pytest.mark.parametrize(
    "damage",
    [_truncated, lambda t: "[]", lambda t: "", lambda t: "{}", _wrong_schema, _wrong_values, _nan_string_as_status,
     lambda t: json.dumps({**json.loads(t), "hash": "0" * 16})],
    ids=["truncated", "empty-list", "empty-file", "empty-object", "wrong-schema", "wrong-grid-values",
         "wrong-type", "other-spec"],
)
def test_corrupt_chunk_is_recomputed_with_a_warning(tmp_path, reference, damage):
    ref_out, ref_rows = reference
    out = tmp_path / "run"
    _copy_run(ref_out, out)
    bad = out / "chunks" / "chunk_00001.json"
    bad.write_text(damage(bad.read_text()))
    other = out / "chunks" / "chunk_00000.json"
    before = other.stat().st_mtime_ns
    with pytest.warns(UserWarning, match=r"sweep chunk .*chunk_00001\.json is corrupt"):
        rows = jp.experiments.run_sweep(_SPEC, out, progress=False)
    assert rows == ref_rows
    assert (out / "results.csv").read_text() == (ref_out / "results.csv").read_text()
    assert other.stat().st_mtime_ns == before  # the good chunk was reused, not rewritten
    with warnings.catch_warnings():  # the recomputed chunk is good now
        warnings.simplefilter("error")
        assert jp.experiments.run_sweep(_SPEC, out, progress=False) == ref_rows


def test_binary_chunk_is_recomputed(tmp_path, reference):
    ref_out, ref_rows = reference
    out = tmp_path / "run"
    _copy_run(ref_out, out)
    (out / "chunks" / "chunk_00002.json").write_bytes(bytes(range(256)) * 4)
    with pytest.warns(UserWarning, match=r"chunk_00002\.json is corrupt"):
        assert jp.experiments.run_sweep(_SPEC, out, progress=False) == ref_rows


def test_corrupt_spec_file_is_rewritten(tmp_path, reference):
    ref_out, ref_rows = reference
    out = tmp_path / "run"
    _copy_run(ref_out, out)
    (out / "spec.json").write_text('{"hash": ')
    with pytest.warns(UserWarning, match=r"spec\.json is corrupt"):
        assert jp.experiments.run_sweep(_SPEC, out, progress=False) == ref_rows
    assert json.loads((out / "spec.json").read_text())["spec"]["kind"] == "ode"


def test_out_that_is_a_file_or_below_a_file(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(ValueError, match=f"sweep output folder {f} is a file"):
        jp.experiments.run_sweep(_SPEC, f, progress=False)
    with pytest.raises(ValueError, match=f"cannot create sweep output folder {f / 'sub'}"):
        jp.experiments.run_sweep(_SPEC, f / "sub", progress=False)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(_SPEC))
    for out in (f, f / "sub"):
        assert main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(f) in err, err
    assert f.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_out_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ValueError, match=str(ro)):
            jp.experiments.run_sweep(_SPEC, ro / "out", progress=False)
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps(_SPEC))
        assert main(["sweep", str(spec), "--out", str(ro / "out"), "--no-progress"]) == 2
        assert str(ro) in capsys.readouterr().err
    finally:
        ro.chmod(0o755)


def test_claims_are_exclusive_and_stale_ones_are_taken_over(tmp_path):
    path = tmp_path / "chunk_00000.claim"
    first = store.Claim.acquire(path, timeout=60.0)
    assert first is not None and path.exists()
    assert store.Claim.acquire(path, timeout=60.0) is None  # held by this live process
    with first:
        pass
    assert not path.exists()  # released on exit
    # a claim by a dead pid on this host: taken over at once
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.write_text(json.dumps({"host": store._HOST, "pid": dead.pid, "time": time.time(), "token": "x"}))
    with pytest.warns(UserWarning, match="stale"):
        taken = store.Claim.acquire(path, timeout=60.0)
    assert taken is not None and json.loads(path.read_text())["pid"] == os.getpid()
    with taken:
        pass
    # a fresh claim from another host is respected; once untouched for longer than the timeout it is stale
    path.write_text(json.dumps({"host": "some-other-host", "pid": 1, "time": time.time(), "token": "y"}))
    assert store.Claim.acquire(path, timeout=60.0) is None
    old = time.time() - 120
    os.utime(path, (old, old))
    with pytest.warns(UserWarning, match="stale"):
        assert store.Claim.acquire(path, timeout=60.0) is not None


def test_heartbeat_keeps_a_claim_fresh(tmp_path):
    path = tmp_path / "c.claim"
    claim = store.Claim.acquire(path, timeout=0.4)  # heartbeat every 0.1 s
    with claim:
        old = time.time() - 10
        os.utime(path, (old, old))
        time.sleep(0.5)
        assert time.time() - path.stat().st_mtime < 0.4
        assert store.Claim.acquire(path, timeout=0.4) is None


def test_a_chunk_is_never_written_twice(tmp_path):
    path = tmp_path / "chunk_00000.json"
    rows = [{"index": 0, "eta": 0.5, "K": 2, "M": 2, "eps_g": float("nan"), "status": 0, "status_words": "success",
             "alpha_end": 2.0}]
    assert store.write_chunk(path, "h", [0], rows)
    first = path.read_bytes()
    assert not store.write_chunk(path, "h", [0], [dict(rows[0], eps_g=1.0)])
    assert path.read_bytes() == first
    assert json.loads(first)["rows"][0]["eps_g"] == "nan"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left behind
    mode = path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


@pytest.mark.parametrize(
    "flags, words",
    [(["--num-processes", "2"], "several processes need --coordinator"),
     (["--coordinator", "nohostport", "--num-processes", "2", "--process-id", "0"], "--coordinator must be HOST:PORT"),
     (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"], "--process-id must be"),
     (["--coordinator", "127.0.0.1:1", "--num-processes", "0", "--process-id", "0"], "--num-processes must be")],
)
def test_distributed_flags_are_checked(tmp_path, capsys, flags, words):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(_SPEC))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--no-progress", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "o").exists()


def test_distributed_environment_is_read(monkeypatch):
    from argparse import Namespace

    from jaxprune.cli._sweep import distributed_options

    args = Namespace(coordinator=None, num_processes=None, process_id=None, distributed=False)
    assert distributed_options(args) is None
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    assert distributed_options(args) == dict(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3)
    args.process_id = 1  # a flag wins over the environment
    assert distributed_options(args)["process_id"] == 1
