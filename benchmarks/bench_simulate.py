"""Finite-N online SGD throughput: `jaxprune.simulate` vs an in-run NumPy loop and the C++ reference figure.

Usage: `python benchmarks/bench_simulate.py [--quick]`. N=500, M=2, K=6 (the seed paper's setting), two-layer
and scm modes, one trajectory in float32 and float64, and 8 and 32 seeds vmapped (float32). Compile time is
printed apart (first call minus a warm call); throughputs are medians of repeats, measured by wall clock
(`block_until_ready`) and, because the machine may be shared, also by process CPU time.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)  # float64 available; the simulation itself defaults to float32

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.special import erf  # noqa: E402

from jaxprune import SGDConfig, init_student, make_teacher, simulate, simulate_seeds  # noqa: E402

CPP_REFERENCE = 2.9e4  # published figure: the original C++ simulator, N=500 M=2 K=6, steps/s per trajectory
N, M, K = 500, 2, 6


def numpy_sgd(steps: int, two_layer: bool, seed: int = 0) -> float:
    """Vectorised NumPy loop of the same SGD step (one fresh input per step); returns steps/s."""
    rng = np.random.default_rng(seed)
    ws, vs = rng.normal(size=(M, N)), np.ones(M)
    w, v = rng.normal(size=(K, N)), np.ones(K)
    eta, eta_v, sigma, sq = 0.5, 0.5, 0.1, 1.0 / math.sqrt(N)
    t0 = time.perf_counter()
    for _ in range(steps):
        x = rng.standard_normal(N) * sq
        lam, nu = w @ x, ws @ x
        g = erf(lam / math.sqrt(2.0))
        delta = g @ v - (erf(nu / math.sqrt(2.0)) @ vs + sigma * rng.standard_normal())
        coef = eta * v * delta * math.sqrt(2.0 / math.pi) * np.exp(-0.5 * lam * lam)
        if two_layer:
            v = v - eta_v / N * g * delta
        w = w - np.outer(coef, x)
    return steps / (time.perf_counter() - t0)


def timed(fn, repeats: int):
    """(compile seconds, median wall seconds, median CPU seconds) of `fn()`."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    wall = statistics.median(walls)
    return max(first - wall, 0.0), wall, statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    args = parser.parse_args()
    steps = 51_200 if args.quick else 204_800
    repeats = 3 if args.quick else 5
    np_steps = 5_000 if args.quick else 20_000

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, N={N} M={M} K={K}, {steps} steps per run")
    print(f"C++ reference (published figure): {CPP_REFERENCE:.3g} steps/s per trajectory")
    baseline = {mode: numpy_sgd(np_steps, mode == "two-layer") for mode in ("two-layer", "scm")}
    for mode, rate in baseline.items():
        print(f"NumPy loop ({mode}, {np_steps} steps, in-run): {rate:.3g} steps/s")
    print()
    header = (f"{'mode':9s} {'dtype':7s} {'prng':10s} {'seeds':>5s} {'compile s':>9s} {'total st/s':>11s} "
              f"{'per traj':>10s} {'CPU-t/traj':>10s} {'x C++':>6s} {'x NumPy':>7s}")
    print(header)
    print("-" * len(header))
    teacher = make_teacher(jax.random.key(0), N, M)
    student = init_student(jax.random.key(1), N, K)
    record_every = steps // 8
    cases = []
    for mode in ("two-layer", "scm"):
        for dtype in ("float32", "float64"):
            cases.append((mode, dtype, None, 1))
        for seeds in (8, 32):
            cases.append((mode, "float32", None, seeds))
    cases.append(("two-layer", "float32", "rbg", 1))
    cases.append(("two-layer", "float32", "unsafe_rbg", 1))
    for mode, dtype, prng, seeds in cases:
        cfg = SGDConfig(eta=0.5, eta_v=0.5 if mode == "two-layer" else 0.0, sigma=0.1, mode=mode)
        n = steps if seeds == 1 else max(steps // seeds * 4, record_every * 2)
        n = (n // record_every) * record_every
        opts = dict(steps=n, record_every=record_every, dtype=jnp.dtype(dtype), prng=prng)
        if seeds == 1:
            fn = lambda: simulate(jax.random.key(2), teacher, student, cfg, **opts)  # noqa: E731
        else:
            keys = jax.random.split(jax.random.key(2), seeds)
            fn = lambda: simulate_seeds(keys, teacher, student, cfg, **opts)  # noqa: E731
        compile_s, wall, cpu = timed(fn, repeats)
        total = n * seeds / wall
        per = total / seeds
        per_cpu = n / cpu  # per trajectory, by process CPU time (all threads)
        print(f"{mode:9s} {dtype:7s} {prng or 'threefry':10s} {seeds:5d} {compile_s:9.2f} {total:11.3g} "
              f"{per:10.3g} {per_cpu:10.3g} {per / CPP_REFERENCE:6.2f} {per / baseline[mode]:7.1f}", flush=True)
    print("\nx C++ = per-trajectory wall-clock steps/s over the published C++ figure; x NumPy = over the in-run "
          "NumPy loop of the same mode. CPU-t/traj = steps/s by process CPU time (robust to a loaded machine).")


if __name__ == "__main__":
    main()
