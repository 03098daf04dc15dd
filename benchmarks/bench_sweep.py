"""Throughput of batched sweeps vs a loop of single jitted calls, and scaling over virtual CPU devices.

    python benchmarks/bench_sweep.py [--quick]

Every timing is a median of repeats after a first call, with `block_until_ready`; compile time is printed
apart. The loop baselines are timed on an evenly spaced subset and scaled to the whole grid (said so).

1. ODE sweep (1024 configurations; --quick: 128): M = 2, K = 2..4 (--quick: 2..3), an eta x sigma grid,
   alpha = 100, tsit5, final error. `run_batched` (what `run_sweep` does: configurations in cost order
   (K, M, eta), chunks of 256 (--quick: 64) each padded to its own largest K), `jp.solve_ode` mapped over each
   chunk with `jax.lax.map(..., batch_size=b)`:
   - `batch_size=1`: one configuration after another inside one program (the default on one CPU device);
   - `batch_size=chunk`: the whole chunk side by side, `jax.vmap` (lock-stepped `while` loops; the default on
     accelerators and sharded chunks);
   - a loop of single jitted `jp.solve_ode` calls, each at its own K (one compile per K).
2. Fixed-point sweep (256 configurations; --quick: 64): K = M = 2, eta x sigma grid, ODE warm-up to alpha =
   1000 then Newton: `run_grid(kind="fixed_point")` (the batched fixed-point solver) vs a loop of single jitted
   `jp.fixed_point_from_ode` calls.
3. Scaling of an ODE sweep (K = M = 2, 512 configurations; --quick: 128) over 1, 2, 4, 8 virtual CPU devices,
   each in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=D (the batch axis sharded with
   a NamedSharding). On a machine with fewer cores than devices this measures the sharding overhead.
4. (--processes) The same `jaxprune sweep` run as one process and as two processes started through
   `jax.distributed` on 127.0.0.1, wall time of the whole command (start-up included), each into a fresh
   output folder, after warm-up runs (one of each) that fill the shared compilation cache: the two timings
   are start-up, cache loads and the sweep itself.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import jaxprune as jp  # noqa: E402
import jaxprune.experiments  # the experiments layer is imported explicitly

run_batched, run_grid = jp.experiments.run_batched, jp.experiments.run_grid

_ODE_OPTS = dict(mode="scm", activation="erf", alpha=100.0, integrator="tsit5", dt=0.01, max_steps=100_000,
                 N=500, record_every=None)


def _median_time(fn, repeats):
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def _first_call(fn):
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - t, out


def _ode_rows(n, Ks):
    per_k = -(-n // len(Ks))
    side = int(np.ceil(np.sqrt(per_k)))
    etas, sigmas = np.linspace(0.1, 1.0, side), np.linspace(0.0, 0.3, side)
    rows = [dict(eta=float(e), eta_v=float(e), sigma=float(s), weight_decay=0.0, v_star=1.0, seed=None,
                 init_scale=1.0, K=K, M=2) for K in Ks for e in etas for s in sigmas]
    return rows[:n]


def bench_ode(n, Ks, repeats, loop_n, chunk=256):
    rows = _ode_rows(n, Ks)
    alpha = _ODE_OPTS["alpha"]
    print(f"ODE sweep: {n} configurations (M=2, K={Ks[0]}..{Ks[-1]}, eta x sigma grid, alpha={alpha:g}, tsit5), "
          f"run_batched in chunks of {chunk} padded per chunk")
    res = {}
    for label, b in (("map", 1), ("vmap", chunk)):
        run = lambda: run_batched(rows, "ode", _ODE_OPTS, chunk_size=chunk, batch_size=b)
        first, out = _first_call(run)
        t = _median_time(run, repeats)
        res[label] = (t, out)
        print(f"  batch_size={b} ({label}): {t:.3f} s = {n / t:.0f} configs/s [first call incl. compile of {len(Ks)} "
              f"chunk sizes: {first:.1f} s, so compile ~{first - t:.1f} s]; {int(np.sum(out['status'] == 0))}/{n} "
              "SUCCESS")
    (t_b, ob), (t_v, ov) = res["map"], res["vmap"]
    rel = np.nanmax(np.abs(ob["eps_g"] - ov["eps_g"]) / np.abs(ov["eps_g"]))
    single = jax.jit(lambda s, c: jp.solve_ode(s, c, np.asarray([0.0, alpha]), throw=False).eps_g[-1])
    compile_single = 0.0
    for K in Ks:
        t = time.perf_counter()
        jax.block_until_ready(single(jp.Overlaps.reference(K, 2), jp.SGDConfig(eta=0.5, sigma=0.1)))
        compile_single += time.perf_counter() - t
    idx = np.linspace(0, n - 1, loop_n).astype(int)
    args = [(jp.Overlaps.reference(rows[i]["K"], 2), jp.SGDConfig(eta=rows[i]["eta"], sigma=rows[i]["sigma"]))
            for i in idx]
    t_l = _median_time(lambda: [single(s, c) for s, c in args], max(1, repeats - 1)) * n / loop_n
    ref = np.asarray([float(single(s, c)) for s, c in args])
    rel_l = np.max(np.abs(ref - ob["eps_g"][idx]) / np.abs(ref))
    print(f"  loop of single jitted solve_ode calls at each K (timed on {loop_n}, scaled): {t_l:.3f} s = "
          f"{n / t_l:.0f} configs/s [compile {compile_single:.1f} s for {len(Ks)} sizes]")
    print(f"  max relative eps_g difference: map vs vmap {rel:.1e}, map vs single solves (unpadded) {rel_l:.1e}")
    print(f"  speed-up: map / vmap {t_v / t_b:.2f}x; map / loop {t_l / t_b:.2f}x; vmap / loop {t_l / t_v:.2f}x")
    return t_v / t_b


_FP_OPTS = dict(_ODE_OPTS, alpha=1000.0)


def bench_fixed_point(n, repeats, loop_n):
    side = int(np.ceil(np.sqrt(n)))
    rows = [dict(eta=float(e), eta_v=float(e), sigma=float(s), weight_decay=0.0, v_star=1.0, seed=None,
                 init_scale=1.0, K=2, M=2) for e in np.geomspace(0.05, 2.0, side)
            for s in np.linspace(0.01, 0.3, side)][:n]
    print(f"fixed-point sweep: {n} configurations (K=M=2 scm, eta in [0.05, 2] x sigma in [0.01, 0.3], ODE warm-up "
          f"to alpha={_FP_OPTS['alpha']:g}, then Newton)")
    run = lambda: run_grid(rows, "fixed_point", _FP_OPTS, shard=False)
    c_b, rb = _first_call(run)
    t_b = _median_time(run, repeats)
    single = jax.jit(lambda e, g: jp.fixed_point_from_ode(jp.Overlaps.reference(2, 2), jp.SGDConfig(eta=e, sigma=g),
                                                          alpha=_FP_OPTS["alpha"], throw=False).eps_g)
    c_s, _ = _first_call(lambda: single(0.5, 0.1))
    idx = np.linspace(0, n - 1, loop_n).astype(int)
    pairs = [(jnp.asarray(rows[i]["eta"]), jnp.asarray(rows[i]["sigma"])) for i in idx]
    t_l = _median_time(lambda: [single(a, b) for a, b in pairs], max(1, repeats - 1)) * n / loop_n
    ref = np.asarray([float(single(a, b)) for a, b in pairs])
    st = rb["status"]
    print("  statuses: " + ", ".join(f"{int(k)}: {int(np.sum(st == k))}" for k in np.unique(st))
          + f"; fallback used {int(np.sum(rb['used_fallback']))}; max |eps diff| sweep vs single "
          f"{np.nanmax(np.abs(ref - rb['eps_g'][idx])):.1e}")
    print(f"  run_grid (batched fixed points): {t_b:.3f} s = {n / t_b:.0f} configs/s [first call incl. compile "
          f"{c_b:.1f} s]")
    print(f"  loop of single jitted calls (timed on {loop_n}, scaled): {t_l:.3f} s = {n / t_l:.0f} configs/s "
          f"[first call incl. compile {c_s:.1f} s]")
    print(f"  speed-up sweep / loop: {t_l / t_b:.2f}x")
    return t_l / t_b


_SCALING = """
import sys, time
import jax
import numpy as np
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, {root!r})
sys.path.insert(0, {bench!r})
import jaxprune.experiments as jpx
from bench_sweep import _ODE_OPTS, _ode_rows
rows = _ode_rows({n}, [2])
run = lambda: jpx.run_grid(rows, "ode", _ODE_OPTS)
t = time.perf_counter(); jax.block_until_ready(run()); c = time.perf_counter() - t
ts = []
for _ in range({repeats}):
    t = time.perf_counter(); jax.block_until_ready(run()); ts.append(time.perf_counter() - t)
print("RESULT", len(jax.devices()), c, float(np.median(ts)))
"""


def bench_scaling(n, repeats, devices):
    print(f"device scaling of an ODE sweep ({n} configurations, K=M=2, tsit5; virtual CPU devices, "
          f"{os.cpu_count()} cores):")
    base = None
    here = os.path.dirname(os.path.abspath(__file__))
    for d in devices:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={d}", JAX_PLATFORMS="cpu")
        code = _SCALING.format(root=os.path.dirname(here), bench=here, n=n, repeats=repeats)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
        if not line:
            print(f"  {d} devices: failed\n{out.stderr[-2000:]}")
            continue
        _, nd, c, t = line[0].split()
        t = float(t)
        base = t if base is None else base
        print(f"  {nd} devices: {t:.3f} s = {n / t:.0f} configs/s (first call incl. compile {float(c):.1f} s; "
              f"process {time.perf_counter() - t0:.0f} s); speed-up vs 1 device {base / t:.2f}x")


_PROC_SPEC = {"kind": "ode", "axes": {"eta": [float(e) for e in np.linspace(0.1, 1.0, 16)],
                                     "sigma": [0.0, 0.05, 0.1, 0.2], "K": [2, 3]},
              "fixed": {"M": 2, "alpha": 300.0, "integrator": "tsit5"}, "chunk_size": 8}


def bench_processes(spec=_PROC_SPEC):
    """`jaxprune sweep` as one process and as two `jax.distributed` processes on 127.0.0.1 (wall times)."""
    import json
    import socket
    import tempfile

    cli = [sys.executable, "-c", "import sys; from jaxprune.cli import main; sys.exit(main())"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    n = int(np.prod([len(v) for v in spec["axes"].values()]))
    print(f"processes: `jaxprune sweep` of {n} configurations in chunks of {spec['chunk_size']} (ODE, tsit5, "
          f"alpha={spec['fixed']['alpha']:g}); {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "spec.json")
        with open(path, "w") as f:
            json.dump(spec, f)
        times = {}
        # the cache keys of a jax.distributed program differ from a single process's: warm up both
        runs = (("warm-up of 1 process (fills the compilation cache)", 1, "warm1"),
                ("warm-up of 2 processes (fills the compilation cache)", 2, "warm2"),
                ("1 process", 1, "one"), ("2 processes", 2, "two"))
        for label, procs, name in runs:
            out = os.path.join(d, f"out_{name}")
            base = cli + ["--compile-cache", os.path.join(d, "cache"), "sweep", path, "--out", out, "--no-progress"]
            with socket.socket() as sk:
                sk.bind(("127.0.0.1", 0))
                port = sk.getsockname()[1]
            extra = (lambda i: []) if procs == 1 else (
                lambda i: ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)])
            t0 = time.perf_counter()
            ps = [subprocess.Popen(base + extra(i), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for i in range(procs)]
            errs = [p.communicate(timeout=1800)[1] for p in ps]
            times[name] = time.perf_counter() - t0
            if any(p.returncode for p in ps):
                print(f"  {label}: failed\n" + "\n".join(e[-2000:] for e in errs))
                return
            print(f"  {label}: {times[name]:.1f} s (whole command: start-up, compilation or cache load, sweep, table)")
        same = open(os.path.join(d, "out_one", "results.csv")).read() == open(os.path.join(d, "out_two", "results.csv")).read()
        print(f"  speed-up 2 processes / 1 (warm cache): {times['one'] / times['two']:.2f}x; tables equal bit for "
              f"bit: {same}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller grids (about three minutes)")
    p.add_argument("--only", choices=("ode", "fixed_point", "scaling", "processes"), nargs="+", default=None,
                   help="run only these sections (default: all but processes)")
    p.add_argument("--processes", action="store_true", help="also time one vs two jax.distributed processes")
    a = p.parse_args()
    sections = set(a.only or ("ode", "fixed_point", "scaling") + (("processes",) if a.processes else ()))
    t0 = time.perf_counter()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {len(jax.devices())} device(s), float64, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    if "ode" in sections:
        bench_ode(128, [2, 3], 3, 16, chunk=64) if a.quick else bench_ode(1024, [2, 3, 4], 3, 64)
    if "fixed_point" in sections:
        bench_fixed_point(64, 3, 8) if a.quick else bench_fixed_point(256, 3, 32)
    if "scaling" in sections:
        bench_scaling(128, 2, (1, 2, 4, 8)) if a.quick else bench_scaling(512, 3, (1, 2, 4, 8))
    if "processes" in sections:
        bench_processes()
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
