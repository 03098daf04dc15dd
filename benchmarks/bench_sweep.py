"""Throughput of batched sweeps vs a loop of single jitted calls, and scaling over virtual CPU devices.

    python benchmarks/bench_sweep.py [--quick]

1. ODE sweep: M = 2, K = 2..6 padded to 6, an eta x sigma grid, alpha = 100, tsit5 (1024 configurations;
   --quick: 64): one vmapped jitted program vs looping over a jitted single-configuration solve (the loop is
   timed on a subset and scaled). Compile time printed apart; medians of repeats; block_until_ready.
2. Fixed-point sweep (solve_fixed_point from a specialised K = M = 2 state): batched vs loop.
3. Scaling of the ODE sweep over 1, 2, 4, 8 virtual CPU devices, each in a subprocess with
   XLA_FLAGS=--xla_force_host_platform_device_count=D (on a 2-core machine this measures sharding overhead).
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
from jaxprune._fixed_point import solve_fixed_point  # noqa: E402
from jaxprune._overlaps import Overlaps  # noqa: E402
from jaxprune._sweep import _element_fn, run_grid, sweep_arrays  # noqa: E402


def _median_time(fn, repeats):
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def _ode_rows(n, alpha):
    Ks = [2, 3, 4, 5, 6]
    per_k = -(-n // len(Ks))
    side = int(np.ceil(np.sqrt(per_k)))
    etas, sigmas = np.linspace(0.1, 1.0, side), np.linspace(0.0, 0.3, side)
    rows = [dict(eta=float(e), eta_v=float(e), sigma=float(s), weight_decay=0.0, v_star=1.0, seed=None,
                 init_scale=1.0, K=K, M=2) for K in Ks for e in etas for s in sigmas]
    return rows[:n]


def bench_ode(n, alpha, repeats, loop_n):
    opts = dict(mode="scm", activation="erf", alpha=alpha, integrator="tsit5", dt=0.01, max_steps=100_000)
    rows = _ode_rows(n, alpha)
    arrays = sweep_arrays(rows, 6, 2)
    x = {k: jnp.asarray(a) for k, a in arrays.items()}
    batched = jax.jit(jax.vmap(_element_fn("ode", opts)))
    t = time.perf_counter()
    compiled = batched.lower(x).compile()
    compile_batched = time.perf_counter() - t
    t_batched = _median_time(lambda: compiled(x), repeats)
    single = jax.jit(_element_fn("ode", opts))
    x0 = jax.tree.map(lambda a: a[0], x)
    t = time.perf_counter()
    single_c = single.lower(x0).compile()
    compile_single = time.perf_counter() - t
    sub = [jax.tree.map(lambda a: a[i], x) for i in np.linspace(0, n - 1, loop_n).astype(int)]
    t_loop = _median_time(lambda: [single_c(xi) for xi in sub], max(1, repeats // 2)) * n / loop_n
    out = compiled(x)
    print(f"ODE sweep: {n} configurations (M=2, K=2..6 padded to 6, alpha={alpha}, tsit5), "
          f"{int(np.sum(np.asarray(out['status']) == 0))} SUCCESS")
    print(f"  compile: batched {compile_batched:.1f} s, single {compile_single:.1f} s")
    print(f"  batched: {t_batched:.3f} s ({n / t_batched:.1f} configs/s)")
    print(f"  loop of single jitted calls (timed on {loop_n}, scaled): {t_loop:.3f} s ({n / t_loop:.1f} configs/s)")
    print(f"  speed-up batched / loop: {t_loop / t_batched:.2f}x")


def bench_fixed_point(n, repeats, loop_n):
    etas = np.geomspace(0.05, 2.0, n)
    s = Overlaps(Q=jnp.eye(2), R=0.95 * jnp.eye(2), T=jnp.eye(2), v=jnp.ones(2), v_star=jnp.ones(2))

    def one(eta, sigma):
        return solve_fixed_point(s, SGDConfig(eta=eta, sigma=sigma), throw=False).eps_g

    sig = np.full(n, 0.1)
    batched = jax.jit(jax.vmap(one))
    t = time.perf_counter()
    bc = batched.lower(jnp.asarray(etas), jnp.asarray(sig)).compile()
    compile_batched = time.perf_counter() - t
    t_batched = _median_time(lambda: bc(jnp.asarray(etas), jnp.asarray(sig)), repeats)
    single = jax.jit(one)
    t = time.perf_counter()
    sc = single.lower(jnp.asarray(0.5), jnp.asarray(0.1)).compile()
    compile_single = time.perf_counter() - t
    idx = np.linspace(0, n - 1, loop_n).astype(int)
    t_loop = _median_time(lambda: [sc(jnp.asarray(etas[i]), jnp.asarray(0.1)) for i in idx], repeats) * n / loop_n
    print(f"fixed-point sweep: {n} configurations (K=M=2 scm, eta in [0.05, 2], sigma=0.1)")
    print(f"  compile: batched {compile_batched:.1f} s, single {compile_single:.1f} s")
    print(f"  batched: {t_batched:.3f} s ({n / t_batched:.1f} configs/s); loop (scaled from {loop_n}): "
          f"{t_loop:.3f} s; speed-up {t_loop / t_batched:.2f}x")


_SCALING = """
import sys, time, jax, numpy as np
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, {root!r})
from jaxprune._sweep import run_grid
sys.path.insert(0, {bench!r})
from bench_sweep import _ode_rows
rows = _ode_rows({n}, {alpha})
opts = dict(mode="scm", activation="erf", alpha={alpha}, integrator="tsit5", dt=0.01, max_steps=100_000)
t = time.perf_counter(); run_grid(rows, "ode", opts, K_max=6, M_max=2); c = time.perf_counter() - t
ts = []
for _ in range({repeats}):
    t = time.perf_counter(); run_grid(rows, "ode", opts, K_max=6, M_max=2); ts.append(time.perf_counter() - t)
print("RESULT", len(jax.devices()), c, float(np.median(ts)))
"""


def bench_scaling(n, alpha, repeats, devices):
    print(f"device scaling of the ODE sweep ({n} configurations; virtual CPU devices, {os.cpu_count()} cores):")
    base = None
    here = os.path.dirname(os.path.abspath(__file__))
    for d in devices:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={d}", JAX_PLATFORMS="cpu")
        code = _SCALING.format(root=os.path.dirname(here), bench=here, n=n, alpha=alpha, repeats=repeats)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
        if not line:
            print(f"  {d} devices: failed\n{out.stderr[-2000:]}")
            continue
        _, nd, c, t = line[0].split()
        t = float(t)
        base = t if base is None else base
        print(f"  {nd} devices: run {t:.3f} s (first call incl. compile {float(c):.1f} s), "
              f"time relative to 1 device {t / base:.2f}x")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="smaller grids (about a minute)")
    a = p.parse_args()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {len(jax.devices())} device(s), float64")
    if a.quick:
        bench_ode(64, 100.0, 3, 8)
        bench_fixed_point(32, 3, 8)
        bench_scaling(64, 100.0, 2, (1, 2, 4, 8))
    else:
        bench_ode(1024, 100.0, 3, 16)
        bench_fixed_point(256, 3, 16)
        bench_scaling(256, 100.0, 2, (1, 2, 4, 8))


if __name__ == "__main__":
    main()
