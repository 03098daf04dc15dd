"""Throughput of batched sweeps vs a loop of single jitted calls, and scaling over virtual CPU devices.

    python benchmarks/bench_sweep.py [--quick]

Every timing is a median of repeats after a first call, with `block_until_ready`; compile time is printed
apart. The loop baselines are timed on an evenly spaced subset and scaled to the whole grid (said so).

1. ODE sweep (1024 configurations; --quick: 128): M = 2, K = 2..4 (--quick: 2..3), an eta x sigma grid,
   alpha = 100, tsit5, final error.
   - `run_batched` (what `run_sweep` does): configurations in cost order (K, M, eta), chunks of 256 (--quick:
     64) each padded
     to its own largest K (one compile per distinct chunk size);
   - one vmapped program over the whole grid padded to the largest K (the previous sweep layout);
   - a loop of single jitted `solve_ode` calls, each at its own K (one compile per K).
2. Fixed-point sweep (1024 configurations; --quick: 128): `solve_fixed_point` from a specialised K = M = 2
   state, eta x sigma grid: `solve_fixed_point_batch` (fallback only if some element needs it) vs
   `jax.vmap(solve_fixed_point)` (fallback computed for every element under vmap) vs a loop of single jitted
   calls.
3. Scaling of an ODE sweep (K = M = 2, 512 configurations; --quick: 128) over 1, 2, 4, 8 virtual CPU devices,
   each in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=D (the batch axis sharded with
   a NamedSharding). On a machine with fewer cores than devices this measures the sharding overhead.
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
from jaxprune._dynamics import SGDConfig, solve_ode  # noqa: E402
from jaxprune._fixed_point import solve_fixed_point, solve_fixed_point_batch  # noqa: E402
from jaxprune._overlaps import Overlaps  # noqa: E402
from jaxprune.experiments._sweep import run_batched, run_grid  # noqa: E402

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


def _ode_single_state(K, M):
    i, n = np.arange(K)[:, None], np.arange(M)[None, :]
    return Overlaps(Q=jnp.eye(K), R=jnp.asarray(1e-3 * np.sin(1.0 + i * M + n)), T=jnp.eye(M), v=jnp.ones(K),
                    v_star=jnp.ones(M))


def bench_ode(n, Ks, repeats, loop_n, chunk=256):
    rows = _ode_rows(n, Ks)
    alpha = _ODE_OPTS["alpha"]
    print(f"ODE sweep: {n} configurations (M=2, K={Ks[0]}..{Ks[-1]}, eta x sigma grid, alpha={alpha:g}, tsit5)")
    # batched, cost-ordered chunks padded per chunk
    first, out = _first_call(lambda: run_batched(rows, "ode", _ODE_OPTS, chunk_size=chunk))
    t_b = _median_time(lambda: run_batched(rows, "ode", _ODE_OPTS, chunk_size=chunk), repeats)
    ok = int(np.sum(out["status"] == 0))
    print(f"  batched (run_batched, chunks of {chunk} padded per chunk): {t_b:.3f} s = {n / t_b:.0f} configs/s "
          f"[first call incl. compile of {len(Ks)} chunk sizes: {first:.1f} s, so compile ~{first - t_b:.1f} s]; "
          f"{ok}/{n} SUCCESS")
    # one program over the whole grid padded to the largest K
    first_p, out_p = _first_call(lambda: run_grid(rows, "ode", _ODE_OPTS, shard=False))
    t_p = _median_time(lambda: run_grid(rows, "ode", _ODE_OPTS, shard=False), max(1, repeats - 1))
    print(f"  one vmapped program padded to K={Ks[-1]}: {t_p:.3f} s = {n / t_p:.0f} configs/s "
          f"[compile ~{first_p - t_p:.1f} s]; max |eps diff| vs batched {np.nanmax(np.abs(out_p['eps_g'] - out['eps_g'])):.1e}")
    # loop of single jitted calls, each at its own K
    single = jax.jit(lambda s, c: solve_ode(s, c, np.asarray([0.0, alpha]), throw=False).eps_g[-1])
    compile_single = 0.0
    for K in Ks:
        t = time.perf_counter()
        jax.block_until_ready(single(_ode_single_state(K, 2), SGDConfig(eta=0.5, sigma=0.1)))
        compile_single += time.perf_counter() - t
    idx = np.linspace(0, n - 1, loop_n).astype(int)
    args = [(_ode_single_state(rows[i]["K"], 2), SGDConfig(eta=rows[i]["eta"], sigma=rows[i]["sigma"])) for i in idx]
    t_l = _median_time(lambda: [single(s, c) for s, c in args], max(1, repeats - 1)) * n / loop_n
    ref = np.asarray([float(single(s, c)) for s, c in args[:8]])
    print(f"  loop of single jitted calls at each K (timed on {loop_n}, scaled): {t_l:.3f} s = {n / t_l:.0f} configs/s "
          f"[compile {compile_single:.1f} s for {len(Ks)} sizes]; max |eps diff| vs batched "
          f"{np.max(np.abs(ref - out['eps_g'][idx[:8]])):.1e}")
    print(f"  speed-up batched / loop: {t_l / t_b:.2f}x; batched / one padded program: {t_p / t_b:.2f}x")
    return t_l / t_b


def bench_fixed_point(n, repeats, loop_n):
    side = int(np.ceil(np.sqrt(n)))
    e, sg = np.meshgrid(np.geomspace(0.05, 2.0, side), np.linspace(0.01, 0.3, side), indexing="ij")
    etas, sigmas = jnp.asarray(e.ravel()[:n]), jnp.asarray(sg.ravel()[:n])
    s = Overlaps(Q=jnp.eye(2), R=0.95 * jnp.eye(2), T=jnp.eye(2), v=jnp.ones(2), v_star=jnp.ones(2))
    print(f"fixed-point sweep: {n} configurations (K=M=2 scm from a specialised state, eta in [0.05, 2] x "
          f"sigma in [0.01, 0.3]; full result: state, status, eigenvalues)")

    def stacked(m):
        return jax.tree.map(lambda a: jnp.broadcast_to(a, (m,) + a.shape), s)

    batch = jax.jit(lambda e, g: solve_fixed_point_batch(stacked(e.shape[0]), SGDConfig(eta=e, sigma=g)))
    vmapped = jax.jit(jax.vmap(lambda e, g: solve_fixed_point(s, SGDConfig(eta=e, sigma=g), throw=False)))
    single = jax.jit(lambda e, g: solve_fixed_point(s, SGDConfig(eta=e, sigma=g), throw=False))
    c_b, rb = _first_call(lambda: batch(etas, sigmas))
    t_b = _median_time(lambda: batch(etas, sigmas), repeats)
    c_v, rv = _first_call(lambda: vmapped(etas, sigmas))
    t_v = _median_time(lambda: vmapped(etas, sigmas), repeats)
    c_s, _ = _first_call(lambda: single(etas[0], sigmas[0]))
    idx = np.linspace(0, n - 1, loop_n).astype(int)
    pairs = [(etas[i], sigmas[i]) for i in idx]
    t_l = _median_time(lambda: [single(a, b) for a, b in pairs], max(1, repeats - 1)) * n / loop_n
    st = np.asarray(rb.status)
    print(f"  statuses: " + ", ".join(f"{int(k)}: {int(np.sum(st == k))}" for k in np.unique(st))
          + f"; Newton steps max {int(np.max(rb.num_steps))}, fallback used {int(np.sum(rb.used_fallback))}; "
          f"max |eps diff| batch vs vmap {np.nanmax(np.abs(np.asarray(rb.eps_g) - np.asarray(rv.eps_g))):.1e}")
    print(f"  solve_fixed_point_batch: {t_b:.3f} s = {n / t_b:.0f} configs/s [first call incl. compile {c_b:.1f} s]")
    print(f"  vmap(solve_fixed_point): {t_v:.3f} s = {n / t_v:.0f} configs/s [first call incl. compile {c_v:.1f} s]")
    print(f"  loop of single jitted calls (timed on {loop_n}, scaled): {t_l:.3f} s = {n / t_l:.0f} configs/s "
          f"[first call incl. compile {c_s:.1f} s]")
    print(f"  speed-up batch / loop: {t_l / t_b:.2f}x; vmap / loop: {t_l / t_v:.2f}x; batch / vmap: {t_v / t_b:.2f}x")
    return t_l / t_b


_SCALING = """
import sys, time, jax, numpy as np
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, {root!r})
sys.path.insert(0, {bench!r})
from jaxprune.experiments._sweep import run_grid
from bench_sweep import _ode_rows, _ODE_OPTS
rows = _ode_rows({n}, [2])
t = time.perf_counter(); run_grid(rows, "ode", _ODE_OPTS); c = time.perf_counter() - t
ts = []
for _ in range({repeats}):
    t = time.perf_counter(); run_grid(rows, "ode", _ODE_OPTS); ts.append(time.perf_counter() - t)
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller grids (about three minutes)")
    a = p.parse_args()
    t0 = time.perf_counter()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {len(jax.devices())} device(s), float64, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    if a.quick:
        bench_ode(128, [2, 3], 3, 16, chunk=64)
        bench_fixed_point(128, 3, 16)
        bench_scaling(128, 2, (1, 2, 4, 8))
    else:
        bench_ode(1024, [2, 3, 4], 3, 64)
        bench_fixed_point(1024, 3, 64)
        bench_scaling(512, 3, (1, 2, 4, 8))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
