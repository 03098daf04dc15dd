"""Sweeps: spec validation, padding over K and M (against unpadded solves), sharding over 8 virtual devices
(identical results), kill-and-resume of the CLI, the fixed-point CLI."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxprune as jp
import jaxprune.experiments  # the experiments layer is imported explicitly
from jaxprune.cli import main

SGDConfig, Overlaps, Status, solve_ode = jp.SGDConfig, jp.Overlaps, jp.Status, jp.solve_ode
expand_grid, read_results = jp.experiments.expand_grid, jp.experiments.read_results
run_sweep, validate_spec, load_spec = jp.experiments.run_sweep, jp.experiments.validate_spec, jp.experiments.load_spec

REPO = Path(__file__).resolve().parents[1]
_CLI = [sys.executable, "-c", "import sys; from jaxprune.cli import main; sys.exit(main())"]


def _spec(**over):
    spec = {"kind": "ode", "axes": {"eta": [0.3, 0.6], "K": [2, 3], "M": [1, 2]},
            "fixed": {"alpha": 5.0, "integrator": "euler", "dt": 0.05, "sigma": 0.1, "mode": "two-layer"},
            "chunk_size": 4}
    spec.update(over)
    return spec


@pytest.mark.parametrize(
    "bad, key",
    [({"kind": "nope"}, "spec.kind"),
     ({"axes": {"eta": [-1.0]}}, "spec.axes.eta"),
     ({"axes": {"bogus": [1]}}, "spec.axes.bogus"),
     ({"axes": {"K": [2.5]}}, "spec.axes.K"),
     ({"chunk_size": 0}, "spec.chunk_size"),
     ({"fixed": {"integrator": "rk99"}}, "spec.fixed.integrator"),
     ({"fixed": {"alpha": -3}}, "spec.fixed.alpha"),
     ({"fixed": {"sigma": float("nan")}}, "spec.fixed.sigma")],
)
def test_spec_validation_names_the_key(bad, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        validate_spec(_spec(**bad))


def test_grid_expansion():
    rows = expand_grid(validate_spec(_spec()))
    assert len(rows) == 8
    assert rows[0]["eta_v"] == rows[0]["eta"] == 0.3 and rows[-1]["K"] == 3 and rows[-1]["M"] == 2


def test_padded_sweep_equals_unpadded_solves(tmp_path):
    """K in {2, 3}, M in {1, 2} padded to K = 3, M = 2: each row equals solve_ode on the unpadded problem."""
    spec = _spec()
    rows = run_sweep(spec, tmp_path, progress=False)
    assert len(rows) == 8 and all(r["status"] == Status.SUCCESS for r in rows)
    for r in rows:
        if r["eta"] != 0.6 or (r["K"], r["M"]) not in ((2, 1), (3, 1)):
            continue
        s0 = Overlaps.reference(r["K"], r["M"])
        sol = solve_ode(s0, SGDConfig(eta=0.6, eta_v=0.6, sigma=0.1, mode="two-layer"), [0.0, 5.0],
                        integrator="euler", dt=0.05)
        np.testing.assert_allclose(r["eps_g"], float(sol.eps_g[-1]), rtol=1e-12)
    cols = read_results(tmp_path / "results.csv")
    np.testing.assert_array_equal(cols["eps_g"], [r["eps_g"] for r in rows])
    assert list(cols["status_words"]) == ["success"] * 8


def test_sweep_cli_bad_arguments(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_spec(kind="nope")))
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "spec.kind" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")]) == 2
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_spec()))
    assert main(["sweep", str(good), "--out", str(tmp_path / "o"), "--plot", "nope"]) == 2
    with pytest.raises(SystemExit) as e:
        main(["sweep", str(good)])  # --out is required
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["fixed-point", "--eta", "-1"])
    assert e.value.code == 2


def test_spec_toml_and_changed_spec_refused(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('kind = "ode"\nchunk_size = 2\n[axes]\neta = [0.1, 0.2]\n[fixed]\nalpha = 1.0\nintegrator = "euler"\n')
    spec = load_spec(p)
    assert spec["axes"]["eta"] == [0.1, 0.2] and spec["fixed"]["integrator"] == "euler"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "spec.json").write_text(json.dumps({"hash": "something-else"}))
    with pytest.raises(ValueError, match="different sweep"):
        run_sweep(spec, tmp_path / "out", progress=False)


_SHARD_SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    import jaxprune as jp
    import jaxprune.experiments
    ex = jp.experiments
    assert len(jax.devices()) == 8, jax.devices()
    spec = ex.validate_spec({"kind": "ode", "axes": {"eta": [0.2, 0.4, 0.8], "sigma": [0.0, 0.1, 0.3], "K": [2, 3]},
                          "fixed": {"M": 2, "alpha": 3.0, "integrator": "euler", "dt": 0.05}})
    rows = ex.expand_grid(spec)
    opts = ex.sweep_options(spec)
    a = ex.run_grid(rows, "ode", opts, shard=True)
    b = ex.run_grid(rows, "ode", opts, devices=jax.devices()[:1])
    np.testing.assert_array_equal(a["status"], b["status"])
    for k in a:  # equal up to the last bits (XLA vectorises 3 per device vs 18 on one device differently)
        np.testing.assert_allclose(a[k], b[k], rtol=1e-13, atol=1e-300)
    print("SHARDED_OK", len(rows))
""")


def test_sharded_equals_unsharded():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _SHARD_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "SHARDED_OK 18" in out.stdout


@pytest.mark.slow
def test_kill_and_resume(tmp_path):
    """SIGKILL the CLI after its first chunk file appears; the rerun recomputes only the missing chunks and
    its CSV equals that of an uninterrupted run."""
    spec = {"kind": "ode", "axes": {"eta": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7], "sigma": [0.05, 0.1]},
            "fixed": {"K": 2, "M": 2, "alpha": 100.0, "integrator": "euler", "dt": 0.002}, "chunk_size": 2}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "run"
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"), JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(_CLI + ["sweep", str(path), "--out", str(out), "--no-progress"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks = out / "chunks"
    t0 = time.time()
    while not (chunks.exists() and any(chunks.glob("chunk_*.json"))):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() - t0 < 500
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(chunks.glob("chunk_*.json"))
    assert 1 <= len(done) < 6, "the run finished before it could be killed; make the chunks slower"
    assert not (out / "results.csv").exists()
    mtimes = {p.name: p.stat().st_mtime_ns for p in done}
    rerun = subprocess.run(_CLI + ["sweep", str(path), "--out", str(out), "--no-progress"], env=env, cwd=REPO,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert len(list(chunks.glob("chunk_*.json"))) == 6
    for p in done:
        assert p.stat().st_mtime_ns == mtimes[p.name]
    run_sweep(spec, tmp_path / "fresh", progress=False)
    assert (out / "results.csv").read_text() == (tmp_path / "fresh" / "results.csv").read_text()


@pytest.mark.slow
def test_fixed_point_sweep_padded_and_cli(tmp_path):
    """A fixed-point sweep over K in {2, 3} (padded) matches direct solves; the fixed-point CLI agrees."""
    fixed_point_from_ode = jp.fixed_point_from_ode
    spec = {"kind": "fixed_point", "axes": {"K": [2, 3], "eta": [0.5]}, "fixed": {"M": 2, "sigma": 0.1, "alpha": 1000.0},
            "chunk_size": 2}
    rows = run_sweep(spec, tmp_path / "fp", progress=False)
    r2 = rows[0]
    assert r2["K"] == 2 and r2["status"] == Status.SUCCESS
    np.testing.assert_allclose(r2["eps_g"], 0.0011678, rtol=5e-5)
    s3 = Overlaps.reference(3, 2)
    ref = fixed_point_from_ode(s3, SGDConfig(eta=0.5, sigma=0.1), alpha=1000.0, throw=False)
    assert rows[1]["status"] == int(ref.status)
    np.testing.assert_allclose(rows[1]["eps_g"], float(ref.eps_g), rtol=1e-8)
    js = tmp_path / "fp.json"
    assert main(["fixed-point", "--eta", "0.5", "--sigma", "0.1", "--grad", "--json", str(js)]) == 0
    data = json.loads(js.read_text())
    np.testing.assert_allclose(data["eps_g"], 0.0011678, rtol=5e-5)
    assert data["status"] == 0 and data["slowest_eigenvalue"]["real"] < 0
    assert set(data["gradients"]) == {"eta", "eta_v", "sigma", "v_star", "T"}


def test_ode_sweep_rows_match_single_solves_within_tolerance(tmp_path):
    """ODE chunks map `jp.solve_ode` over the chunk (students padded to the chunk's largest K): each row's
    error against a tight-tolerance solve is of the order of the single solver's (tsit5, rtol 1e-8), and a
    diverging member is flagged and does not disturb the others."""
    spec = {"kind": "ode", "axes": {"eta": [0.4, 1.2], "init_scale": [1.0, 200.0], "K": [2, 3]},
            "fixed": {"M": 2, "alpha": 20.0, "sigma": 0.05}, "chunk_size": 8}
    rows = run_sweep(spec, tmp_path / "batch", progress=False)
    for r in rows:
        config = SGDConfig(eta=r["eta"], sigma=0.05)
        s0 = Overlaps.reference(r["K"], 2, q_scale=r["init_scale"] ** 2)
        single = solve_ode(s0, config, [0.0, 20.0], throw=False)
        assert r["status"] == int(single.status)
        if r["init_scale"] == 200.0:  # Q0 = 4e4 I, above the divergence threshold
            assert r["status"] == Status.DIVERGED and r["status_words"] != "success"
            continue
        assert r["status"] == Status.SUCCESS and r["alpha_end"] == 20.0
        exact = float(solve_ode(s0, config, [0.0, 20.0], rtol=1e-13, atol=1e-15).eps_g[-1])
        err_single = abs(float(single.eps_g[-1]) - exact)
        assert abs(r["eps_g"] - exact) <= 10 * err_single + 1e-9 * exact, (r, exact, err_single)


def test_ode_chunk_batch_sizes_agree():
    """One after another (`batch_size=1`), in groups, or the whole chunk side by side (`vmap`): each configuration
    keeps its own step sizes, so the rows agree to rounding; a bad batch size is a one-line error."""
    from jaxprune.experiments import default_batch_size, expand_grid, run_grid, sweep_options, validate_spec

    spec = validate_spec({"kind": "ode", "axes": {"eta": [0.3, 0.8, 1.4], "sigma": [0.0, 0.2]},
                          "fixed": {"K": 3, "M": 2, "alpha": 30.0}})
    rows, opts = expand_grid(spec), sweep_options(spec)
    cols = {b: run_grid(rows, "ode", opts, batch_size=b) for b in (1, 4, len(rows))}
    for b in (4, len(rows)):
        np.testing.assert_allclose(cols[b]["eps_g"], cols[1]["eps_g"], rtol=1e-12)
        np.testing.assert_array_equal(cols[b]["status"], cols[1]["status"])
    assert default_batch_size() == (1 if jax.devices()[0].platform == "cpu" and len(jax.local_devices()) == 1
                                    else None)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="batch_size must be"):
            run_grid(rows, "ode", opts, batch_size=bad)
