"""Sweeps run by several processes (issue 20): two local CPU processes started through `jax.distributed` on
127.0.0.1 share one output folder; one is killed half-way (then the other), a rerun computes only the missing
chunks, and the gathered table equals a single-process run's bit for bit. Two plain runs started at once on
one folder share the work and never corrupt or double-write a chunk."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_CLI = [sys.executable, "-c", "import sys; from jaxprune.cli import main; sys.exit(main())"]
_SPEC = {"kind": "ode", "axes": {"eta": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], "sigma": [0.05, 0.1]},
         "fixed": {"K": 2, "M": 2, "alpha": 50.0, "integrator": "euler", "dt": 0.002}, "chunk_size": 2}
_N_CHUNKS = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("dist")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(_SPEC))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    base = _CLI + ["--compile-cache", str(tmp_path / "cache"), "sweep", str(spec), "--no-progress"]
    ref = subprocess.run(base + ["--out", str(tmp_path / "ref")], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    return tmp_path, base, env, (tmp_path / "ref" / "results.csv").read_text()


def _start_pair(base, env, out):
    port = _free_port()
    return [subprocess.Popen(base + ["--out", str(out), "--coordinator", f"127.0.0.1:{port}", "--num-processes",
                                     "2", "--process-id", str(i), "--shutdown-timeout", "5"],
                             env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(2)]


def _wait_for_chunks(chunks: Path, n: int, procs, limit=400.0):
    t0 = time.time()
    while len(list(chunks.glob("chunk_*.json"))) < n:
        if any(p.poll() is not None for p in procs):
            return
        assert time.time() - t0 < limit
        time.sleep(0.02)


@pytest.mark.slow
def test_two_processes_killed_and_rerun_equal_one_process(setup):
    tmp, base, env, ref_csv = setup
    out = tmp / "killed"
    chunks = out / "chunks"
    procs = _start_pair(base, env, out)
    _wait_for_chunks(chunks, 1, procs)
    procs[1].send_signal(signal.SIGKILL)  # one process dies half-way...
    procs[1].wait()
    _wait_for_chunks(chunks, 3, procs[:1])
    if procs[0].poll() is None:
        procs[0].send_signal(signal.SIGKILL)  # ...and then the other
    procs[0].communicate()
    done = sorted(chunks.glob("chunk_*.json"))
    assert 1 <= len(done) < _N_CHUNKS, "the sweep finished before it could be killed; make the chunks slower"
    assert not (out / "results.csv").exists()
    mtimes = {p.name: p.stat().st_mtime_ns for p in done}
    claims_left = list(chunks.glob("*.claim"))
    t0 = time.time()
    procs = _start_pair(base, env, out)
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-3000:]
    print(f"rerun of two processes: {time.time() - t0:.1f} s")
    assert "process 1 of 2: 16 configurations" in outs[1][0]
    if claims_left:  # the dead processes' claims were taken over
        assert "stale" in outs[0][1] + outs[1][1]
    assert len(list(chunks.glob("chunk_*.json"))) == _N_CHUNKS
    assert not list(chunks.glob("*.claim")) and not list(chunks.glob(".*"))  # no claim or temporary file left
    for p in done:  # finished chunks were reused, not recomputed
        assert p.stat().st_mtime_ns == mtimes[p.name]
    assert (out / "results.csv").read_text() == ref_csv


@pytest.mark.slow
def test_two_plain_runs_on_one_folder(setup):
    """Two single-process runs started at once on one folder: each chunk is computed and written once (its
    writer is one of the two), both return the full table, which equals the reference."""
    tmp, base, env, ref_csv = setup
    out = tmp / "twice"
    procs = [subprocess.Popen(base + ["--out", str(out)], env=env, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        o, e = p.communicate(timeout=600)
        assert p.returncode == 0, e[-3000:]
        assert "16 configurations, 16 SUCCESS" in o
    writers = {json.loads(p.read_text())["writer"]["pid"] for p in (out / "chunks").glob("chunk_*.json")}
    assert writers <= {p.pid for p in procs}
    assert len(list((out / "chunks").glob("chunk_*.json"))) == _N_CHUNKS
    assert not list((out / "chunks").glob("*.claim"))
    assert (out / "results.csv").read_text() == ref_csv
