"""The persistent compilation cache of the entry points (jaxprune._cache): where it lives, the switches that move
or disable it, that child processes inherit it, and that concurrent processes can fill one folder safely."""

import os
import pathlib
import subprocess
import sys
import textwrap
import time

import jaxlib
import numpy as np
import pytest

from jaxprune import _cache

ROOT = pathlib.Path(__file__).resolve().parent.parent
N_PROGRAMS = 12


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "JAXPRUNE_CACHE"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def test_default_folder_follows_the_platform_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(_cache.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _cache.default_cache_dir() == tmp_path / "xdg" / "jaxprune" / f"xla-{jaxlib.__version__}"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if sys.platform.startswith("linux"):
        assert _cache.default_cache_dir() == tmp_path / "home" / ".cache" / "jaxprune" / f"xla-{jaxlib.__version__}"


@pytest.mark.parametrize("value", ["off", "OFF", "none", "0", ""])
def test_env_var_disables(monkeypatch, value):
    monkeypatch.setenv(_cache.ENV_VAR, value)
    assert _cache.default_cache_dir() is None


def test_env_var_moves(monkeypatch, tmp_path):
    monkeypatch.setenv(_cache.ENV_VAR, str(tmp_path / "c"))
    assert _cache.default_cache_dir() == tmp_path / "c" / f"xla-{jaxlib.__version__}"


@pytest.mark.parametrize("kwargs, name", [({"min_compile_secs": -1.0}, "min_compile_secs"),
                                          ({"min_entry_bytes": -2}, "min_entry_bytes"),
                                          ({"max_bytes": 0}, "max_bytes")])
def test_bad_arguments(kwargs, name, tmp_path):
    with pytest.raises(ValueError, match=name):
        _cache.enable_compile_cache(tmp_path, **kwargs)


def test_cache_info_counts_entries(tmp_path):
    assert _cache.cache_info(tmp_path / "absent") == {"path": str(tmp_path / "absent"), "entries": 0, "bytes": 0,
                                                          "programs": 0, "program_bytes": 0}
    (tmp_path / "jit_f-abc-cache").write_bytes(b"x" * 10)
    (tmp_path / "jit_f-abc-atime").write_bytes(b"t" * 8)
    (tmp_path / "other").write_bytes(b"y")
    assert _cache.cache_info(tmp_path) == {"path": str(tmp_path), "entries": 1, "bytes": 10, "programs": 0,
                                             "program_bytes": 0}


# A worker: turns the cache on in `folder`, waits for a common start time, compiles N_PROGRAMS distinct programs
# (one per input length) and prints each result's error against NumPy.
WORKER = textwrap.dedent("""
    import sys, time
    from jaxprune._cache import enable_compile_cache
    folder, start, bounded = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
    enable_compile_cache(folder, max_bytes=(1 << 30) if bounded else None)
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    time.sleep(max(0.0, start - time.time()))
    @jax.jit
    def prog(x):
        return jnp.sin(3.0 * x) @ jnp.cos(x) + jnp.sum(x ** 2)

    worst = 0.0
    for n in range(1, {n} + 1):
        x = np.linspace(0.0, 1.0, n)
        y = prog(x)
        worst = max(worst, abs(float(y) - (np.sin(3.0 * x) @ np.cos(x) + np.sum(x ** 2))))
    print("WORST", worst)
""").format(n=N_PROGRAMS)


def _spawn(folder, start, bounded, log=False):
    env = _clean_env(**({"JAX_LOG_COMPILES": "1"} if log else {}))
    return subprocess.Popen([sys.executable, "-c", WORKER, str(folder), str(start), "1" if bounded else "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    worst = float(out.split("WORST")[1])
    assert worst < 1e-12
    return err


@pytest.mark.parametrize("bounded", [pytest.param(True, marks=pytest.mark.slow), False], ids=["locked", "default"])
def test_two_processes_fill_one_cache(tmp_path, bounded):
    """Two processes compile the same programs at the same moment into one empty folder, then a third finds
    every program there. In the default (unbounded, unlocked) mode a torn read may be reported and recompiled,
    but results stay right; the capped mode (`filelock`) locks the folder: no read or write error may be
    reported."""
    if bounded and not _cache._has_filelock():
        pytest.skip("filelock not installed: JAX's cache runs unlocked")
    folder = tmp_path / "cache"
    start = time.time() + 8.0  # both processes are imported by then, so they compile side by side
    procs = [_spawn(folder, start, bounded) for _ in range(2)]
    errs = [_finish(p) for p in procs]
    if bounded:
        for err in errs:
            assert "persistent compilation cache" not in err.lower(), err[-2000:]
    entries = sorted(p.name for p in folder.glob("jit_*-cache"))
    # every distinct program is there once (the worker's, one per length, beside JAX's small helpers)
    assert sum(name.startswith("jit_prog-") for name in entries) == N_PROGRAMS
    reader = _spawn(folder, 0.0, bounded, log=True)
    err = _finish(reader)
    hits = [line for line in err.splitlines() if "Persistent compilation cache hit for 'jit_prog'" in line]
    assert len(hits) == N_PROGRAMS
    if bounded:
        atimes = list(folder.glob("jit_*-atime"))
        assert len(atimes) == len(entries)  # LRU bookkeeping written for every entry


def test_children_inherit_and_cli_flags(tmp_path):
    """`enable_compile_cache` exports JAX's variables (a child process sees the folder); the CLI's global
    `--compile-cache DIR` fills DIR, `--no-compile-cache` writes nothing."""
    folder = tmp_path / "inherited"
    code = ("from jaxprune._cache import enable_compile_cache; import subprocess, sys;"
            f"enable_compile_cache({str(folder)!r});"
            "print(subprocess.run([sys.executable, '-c', 'import jax; print(jax.config.jax_compilation_cache_dir,"
            " jax.config.jax_persistent_cache_min_compile_time_secs)'], capture_output=True, text=True).stdout)")
    out = subprocess.run([sys.executable, "-c", code], env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(folder), "0.0"]

    state = tmp_path / "state.json"
    state.write_text('{"Q": [[1.0, 0.1], [0.1, 1.0]], "R": [[0.2, 0.0], [0.0, 0.3]], "T": [[1.0, 0.0], [0.0, 1.0]],'
                     ' "v": [1.0, 1.0], "v_star": [1.0, 1.0]}')
    on, off = tmp_path / "on", tmp_path / "off"
    env = _clean_env(JAXPRUNE_CACHE_DIR=str(off))
    r1 = subprocess.run([sys.executable, "-m", "jaxprune.cli", "--compile-cache", str(on), "error", str(state)],
                        env=env, capture_output=True, text=True, timeout=300)
    r2 = subprocess.run([sys.executable, "-m", "jaxprune.cli", "--no-compile-cache", "error", str(state)],
                        env=env, capture_output=True, text=True, timeout=300)
    assert r1.returncode == 0 and r2.returncode == 0, (r1.stderr + r2.stderr)[-2000:]
    assert r1.stdout == r2.stdout
    assert _cache.cache_info(on)["entries"] > 0
    assert not off.exists()
    # the number printed is the generalisation error of the state (docs/theory.md section 3), computed here
    q, r, t = np.array([[1.0, 0.1], [0.1, 1.0]]), np.array([[0.2, 0.0], [0.0, 0.3]]), np.eye(2)

    def pair(a, b, c):  # E[g(u) g(w)] for erf(x/sqrt2), covariances a = <u u>, b = <w w>, c = <u w>
        return 2.0 * np.arcsin(c / np.sqrt((1 + a) * (1 + b))) / np.pi

    ss = sum(pair(q[i, i], q[j, j], q[i, j]) for i in range(2) for j in range(2))
    st = sum(pair(q[i, i], t[n, n], r[i, n]) for i in range(2) for n in range(2))
    tt = sum(pair(t[n, n], t[m, m], t[n, m]) for n in range(2) for m in range(2))
    eps = 0.5 * (ss + tt) - st
    line = next(s for s in r1.stdout.splitlines() if s.startswith("eps_g"))
    assert abs(float(line.split("=")[1]) - eps) < 1e-9
