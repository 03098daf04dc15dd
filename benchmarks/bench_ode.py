"""Speed of the order-parameter ODEs (issue: core). Ratios are measured side by side in one run.

    python benchmarks/bench_ode.py            # full (a few minutes on 2 cores)
    python benchmarks/bench_ode.py --quick    # smaller sizes, for a smoke run

Prints, for each problem:
1. time to solution at matched accuracy: adaptive (tsit5) vs explicit Euler (dt = 0.01) to alpha = 1000,
   both checked against a tight-tolerance dopri8 reference curve (max absolute error difference), and
   the published C++ figures (2.3e4 Euler steps/s for M=2, K=6; 700 steps/s for M=4, K=16);
2. fixed-step Euler throughput (steps/s) vs a vectorised NumPy implementation of the same Euler step;
3. a batch of 256 configurations vs a loop over the jitted single solver: (a) `jax.vmap` of the single
   solver (lock-stepped, every member with its own step sizes), (b) `jax.lax.map` of it (one configuration
   after another inside one program: what a sweep does on one CPU device).
Compile times are printed apart; every timing is a median of repeats after `block_until_ready`. Each ratio
is printed against its goal (issue 2) with MET / NOT MET, and the load average before and after the run
(the machine may be shared: ratios are measured side by side, absolute rates are not comparable across runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxprune import Overlaps, SGDConfig, alpha_grid, solve_ode  # noqa: E402

CPP_EULER_STEPS_PER_S = {(2, 6): 2.3e4, (4, 16): 700.0}  # published figures of the reference C++ tool
GOAL_TTS, GOAL_ACCURACY = 20.0, 1e-4  # adaptive vs Euler (same length), error curve within 1e-4 of reference
GOAL_EULER_NUMPY = {(4, 16): 3.0}  # M=4, K=16: 3x NumPy; M=2, K=2..6: 20x
GOAL_EULER_NUMPY_SMALL = 20.0
GOAL_BATCH = 5.0
VERDICTS: list[str] = []


def verdict(what, ratio, goal, extra_ok=True):
    met = bool(ratio >= goal and extra_ok)
    line = f"{what}: {ratio:.1f}x (goal >= {goal:g}x) {'MET' if met else 'NOT MET'}"
    VERDICTS.append(line)
    return line


def load():
    return "load average %.2f %.2f %.2f (%d cores)" % (*os.getloadavg(), os.cpu_count())


def reference_state(K, M):
    return Overlaps.reference(K, M)


def timed_side_by_side(fns, repeats):
    """For a dict of functions: ({name: first call seconds}, {name: median of `repeats` later calls}), the
    later calls taken round-robin so that a change of machine load hits every candidate alike."""
    first, times = {}, {name: [] for name in fns}
    for name, fn in fns.items():
        t = time.perf_counter()
        jax.block_until_ready(fn())
        first[name] = time.perf_counter() - t
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t)
    return first, {name: statistics.median(ts) for name, ts in times.items()}


def timed(fn, repeats):
    """(first call seconds, median of `repeats` later calls)."""
    t = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return first, statistics.median(times)


# ---------------- a vectorised NumPy Euler step (the in-run baseline) ----------------

def numpy_euler_step_factory(K, M, eta, sigma):
    F = K + M
    ik_a, ik_b = np.triu_indices(K)
    cd_a, cd_b = np.triu_indices(F)
    mult = np.where(cd_a == cd_b, 1.0, 2.0)

    def step(Q, R, T, v, vs, dt):
        C = np.block([[Q, R], [R.T, T]])
        u = np.concatenate([v, -vs])
        d = np.diag(C)
        # I3(i, b, c) for i student, b, c all fields
        caa = d[:K, None, None]
        cab = C[:K, :, None]
        cac = C[:K, None, :]
        cbc = C[None, :, :]
        ccc = d[None, None, :]
        l3 = (1 + caa) * (1 + ccc) - cac**2
        i3 = 2 / np.pi * (cbc * (1 + caa) - cab * cac) / ((1 + caa) * np.sqrt(l3))
        drive = i3 @ u
        first = -eta * v[:, None] * drive
        dR = first[:, K:]
        dQ = first[:, :K] + first[:, :K].T
        a, b = ik_a[:, None], ik_b[:, None]
        c, e = cd_a[None, :], cd_b[None, :]
        caa, cbb, ccc, cdd = d[a], d[b], d[c], d[e]
        cab, cac, cad, cbc, cbd, ccd = C[a, b], C[a, c], C[a, e], C[b, c], C[b, e], C[c, e]
        l4 = (1 + caa) * (1 + cbb) - cab**2
        l0 = l4 * ccd - cbc * cbd * (1 + caa) - cac * cad * (1 + cbb) + cab * cac * cbd + cab * cad * cbc
        l1 = l4 * (1 + ccc) - cbc**2 * (1 + caa) - cac**2 * (1 + cbb) + 2 * cab * cac * cbc
        l2 = l4 * (1 + cdd) - cbd**2 * (1 + caa) - cad**2 * (1 + cbb) + 2 * cab * cad * cbd
        i4 = 4 / np.pi**2 / np.sqrt(l4) * np.arcsin(np.clip(l0 / np.sqrt(l1 * l2), -1, 1))
        quad = i4 @ (mult * u[cd_a] * u[cd_b])
        da, db = d[ik_a], d[ik_b]
        quad = quad + sigma**2 * 2 / np.pi / np.sqrt((1 + da) * (1 + db) - C[ik_a, ik_b] ** 2)
        qf = np.zeros((K, K))
        qf[ik_a, ik_b] = quad
        qf[ik_b, ik_a] = quad
        dQ = dQ + eta**2 * np.outer(v, v) * qf
        return Q + dt * dQ, R + dt * dR

    return step


def numpy_euler_rate(K, M, steps):
    s = reference_state(K, M)
    Q, R, T, v, vs = (np.asarray(x) for x in (s.Q, s.R, s.T, s.v, s.v_star))
    step = numpy_euler_step_factory(K, M, 0.5, 0.0)
    rates = []
    for _ in range(3):
        q, r = Q.copy(), R.copy()
        t = time.perf_counter()
        for _ in range(steps):
            q, r = step(q, r, T, v, vs, 0.01)
        rates.append(steps / (time.perf_counter() - t))
    return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sections", default="123", help="which sections to run, e.g. 3 (default: 123)")
    parser.add_argument("--sizes3", default=None, help="K values of section 3 at M = 2, e.g. 2,4,6 (default: 2..6)")
    args = parser.parse_args()
    problems = [(2, 6)] if args.quick else [(2, 6), (4, 16)]
    alpha_final = 100.0 if args.quick else 1000.0
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); float64; {load()}")

    # 1. time to solution at matched accuracy -------------------------------------------------
    print("\n== 1. time to solution to alpha = %g (error curve vs a dopri8 rtol=1e-12 reference) ==" % alpha_final)
    grid = alpha_grid(alpha_final, 200)
    for M, K in (problems if "1" in args.sections else []):
        s = reference_state(K, M)
        cfg = SGDConfig(eta=0.5)
        ref = solve_ode(s, cfg, grid, integrator="dopri8", rtol=1e-12, atol=1e-14, max_steps=10**6)
        ref_eps = np.asarray(ref.eps_g)
        candidates = [("tsit5", 1e-6, 1e-8)] + ([("bosh3", 1e-6, 1e-8)] if K <= 10 else [])
        best = None
        for name, rtol, atol in candidates:
            adaptive = jax.jit(lambda s, c, name=name, rtol=rtol, atol=atol: solve_ode(
                s, c, grid, integrator=name, rtol=rtol, atol=atol))
            first_a, t_a = timed(lambda: adaptive(s, cfg), 3)
            sol_a = adaptive(s, cfg)
            err_a = float(np.max(np.abs(np.asarray(sol_a.eps_g) - ref_eps)))
            print(f"M={M} K={K}: {name}(rtol {rtol:g}) {t_a*1e3:9.1f} ms  [{int(sol_a.num_steps)} steps, "
                  f"max|err - ref| = {err_a:.1e}, compile+first {first_a:.1f} s]")
            if err_a <= GOAL_ACCURACY and (best is None or t_a < best[1]):
                best = (name, t_a, err_a)
        # Euler of the full length; for large K timed on a tenth of it and extrapolated (fixed cost per step)
        n_euler = int(round(alpha_final / 0.01))
        short = K > 10
        e_final = alpha_final / 10 if short else alpha_final
        e_grid = alpha_grid(e_final, 200)
        euler = jax.jit(lambda s, c: solve_ode(s, c, e_grid, integrator="euler", dt=0.01))
        first_e, t_e_run = timed(lambda: euler(s, cfg), 1 if short else 3)
        n_run = int(round(e_final / 0.01))
        t_e = t_e_run * n_euler / n_run
        sol_e = euler(s, cfg)
        # Euler records at whole steps: compare at its own (rounded) times against the dense reference
        ref_e = np.asarray(solve_ode(s, cfg, np.asarray(sol_e.alphas), integrator="dopri8", rtol=1e-12,
                                     atol=1e-14, max_steps=10**6).eps_g)
        err_e = float(np.max(np.abs(np.asarray(sol_e.eps_g) - ref_e)))
        cpp = CPP_EULER_STEPS_PER_S[(M, K)]
        how = (f"timed on alpha = {e_final:g} ({n_run} steps, {t_e_run:.2f} s) and extrapolated x{n_euler // n_run}"
               if short else f"{n_euler} steps")
        print(f"          euler dt=0.01 {t_e*1e3:9.1f} ms  [{how}; max|err - ref| = {err_e:.1e} to alpha = "
              f"{e_final:g}; compile+first {first_e:.1f} s; {n_euler / t_e:.3g} steps/s vs C++ {cpp:g}]")
        if best is None:
            print("          " + verdict(f"time to solution M={M} K={K} (no adaptive run within {GOAL_ACCURACY:g})",
                                         0.0, GOAL_TTS))
            continue
        name, t_a, err_a = best
        print(f"          fastest adaptive within {GOAL_ACCURACY:g}: {name}; vs the C++ tool's published Euler "
              f"{cpp:g} steps/s ({n_euler / cpp:.1f} s): {n_euler / cpp / t_a:.1f}x")
        print("          " + verdict(f"time to solution M={M} K={K}, {name} vs Euler of the same length"
                                     + (" (extrapolated)" if short else ""), t_e / t_a, GOAL_TTS))

    # 2. fixed-step Euler throughput vs NumPy ----------------------------------------------------
    print("\n== 2. Euler steps/s: jaxprune (jit, lax.scan) vs vectorised NumPy, same step ==")
    sizes = [(2, 2), (2, 6)] if args.quick else [(2, 2), (2, 3), (2, 4), (2, 5), (2, 6), (4, 16)]
    for M, K in (sizes if "2" in args.sections else []):
        s = reference_state(K, M)
        cfg = SGDConfig(eta=0.5)
        n = 20000 if K <= 6 else 5000
        run = jax.jit(lambda s, c: solve_ode(s, c, np.array([0.0, n * 0.01]), integrator="euler", dt=0.01))
        first, t = timed(lambda: run(s, cfg), 3)
        rate = n / t
        np_rate = numpy_euler_rate(K, M, 300 if K > 10 else 1000)
        goal = GOAL_EULER_NUMPY.get((M, K), GOAL_EULER_NUMPY_SMALL)
        print(f"M={M} K={K:2d}: jaxprune {rate:10.4g} steps/s (compile {first - t:.1f} s)  numpy {np_rate:9.4g} "
              f"steps/s  (C++ published: {CPP_EULER_STEPS_PER_S.get((M, K), float('nan')):g})  "
              + verdict(f"Euler vs NumPy M={M} K={K}", rate / np_rate, goal))

    # 3. a batch of configurations vs a loop over the single jitted solver ----------------------------
    batch = 64 if args.quick else 256
    print("\n== 3. batch of %d configurations (eta x sigma), tsit5 rtol=1e-6 to alpha = 100: (a) jax.vmap of "
          "solve_ode, (b) jax.lax.map of solve_ode (one program, one configuration after another), each vs a loop over jitted "
          "solve_ode ==" % batch)
    etas = jnp.linspace(0.1, 1.0, batch)
    sigmas = jnp.tile(jnp.asarray([0.0, 0.1, 0.2, 0.3]), batch // 4)
    grid3 = alpha_grid(100.0, 20)
    repeats3 = 3 if args.quick else 5
    sizes3 = [(2, 2), (2, 6)] if args.quick else [(2, 2), (2, 3), (2, 4), (2, 5), (2, 6)]
    if args.sizes3:
        sizes3 = [(2, int(k)) for k in args.sizes3.split(",")]
    for M, K in (sizes3 if "3" in args.sections else []):
        s = reference_state(K, M)
        single = jax.jit(lambda e, sg: solve_ode(s, SGDConfig(eta=e, sigma=sg), grid3, rtol=1e-6, atol=1e-8,
                                                  throw=False).eps_g)
        vmapped = jax.jit(jax.vmap(single))
        mapped = jax.jit(lambda e, sg: jax.lax.map(lambda x: single(*x), (e, sg)))

        def loop():
            return [single(e, sg) for e, sg in zip(etas, sigmas)]

        first, med = timed_side_by_side({
            "loop": loop,
            "vmap": lambda: vmapped(etas, sigmas),
            "map": lambda: mapped(etas, sigmas),
        }, repeats3)
        out_l = np.stack([np.asarray(x) for x in loop()])
        out_v = np.asarray(vmapped(etas, sigmas))
        out_b = np.asarray(mapped(etas, sigmas))
        single_steps = [int(solve_ode(s, SGDConfig(eta=e, sigma=sg), grid3, rtol=1e-6, atol=1e-8,
                                      throw=False).num_steps) for e, sg in zip(etas[::16], sigmas[::16])]
        all_ok = bool(np.all(np.isfinite(out_b)))
        print(f"M={M} K={K}: loop {batch / med['loop']:8.1f} configs/s (compile+first {first['loop']:.1f} s, "
              f"per config {med['loop'] / batch * 1e3:.2f} ms, steps mean {np.mean(single_steps):.0f} max "
              f"{max(single_steps)} of every 16th)")
        print(f"          (a) vmap  {batch / med['vmap']:8.1f} configs/s (compile "
              f"{first['vmap'] - med['vmap']:.1f} s), "
              f"max |vmap - loop| {float(np.nanmax(np.abs(out_v - out_l))):.1e}  "
              + verdict(f"(a) jax.vmap batch of {batch} vs loop M={M} K={K}", med["loop"] / med["vmap"], GOAL_BATCH))
        print(f"          (b) map   {batch / med['map']:8.1f} configs/s (compile "
              f"{first['map'] - med['map']:.1f} s, all finite: {all_ok}), max |map - loop| "
              f"{float(np.nanmax(np.abs(out_b - out_l))):.1e}  "
              + verdict(f"(b) jax.lax.map batch of {batch} vs loop M={M} K={K}", med["loop"] / med["map"],
                        GOAL_BATCH, all_ok))

    print(f"\n== summary ({'quick sizes: the goals are defined on the full run' if args.quick else 'full run'}; "
          f"{load()}) ==")
    for line in VERDICTS:
        print("  " + line)


if __name__ == "__main__":
    main()
