"""Benchmark of node pruning expectations (docs/theory.md 6.1).

1. Exact expected error over all C(20, 10) = 184 756 subsets, with reweighting, for a random valid state
   (K = 20, M = 2): compile time apart, then the median of repeats, against a plain NumPy loop over the subsets
   (a few thousand timed, extrapolated to all).
2. Closed-form expectation without reweighting for K = 500 (random: uniform marginals; dpp: k-DPP marginals).

Run: `python benchmarks/bench_node.py [--repeats 3] [--loop-subsets 3000] [--K-closed 500]`.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from jaxprune.pruning import expected_node_error, expected_node_error_closed_form  # noqa: E402
from jaxprune import overlaps_from_weights  # noqa: E402


def random_state(K, M, N, seed=0, v_scale=1.0):
    rng = np.random.default_rng(seed)
    ws = rng.normal(size=(M, N))
    w = rng.normal(size=(K, N)) + 1.5 * rng.normal(size=(K, M)) @ ws
    return overlaps_from_weights(w, ws, v_scale * rng.normal(size=K), np.ones(M))


def np_i2(ca, cb, cab):
    return 2.0 / np.pi * np.arcsin(cab / np.sqrt((1.0 + ca) * (1.0 + cb)))


def python_loop(state, k, reweight, n_subsets):
    """Plain baseline: NumPy per subset (A, B, C precomputed once, then solve and quadratic form)."""
    Q, R, T, v, vs = (np.asarray(getattr(state, f)) for f in ("Q", "R", "T", "v", "v_star"))
    q, t = np.diag(Q), np.diag(T)
    A = np_i2(q[:, None], q[None, :], Q)
    b = np_i2(q[:, None], t[None, :], R) @ vs
    c = vs @ np_i2(t[:, None], t[None, :], T) @ vs
    G = Q if reweight == "preactivation" else A
    K = len(v)
    total = 0.0
    start = time.perf_counter()
    for count, S in enumerate(itertools.combinations(range(K), k)):
        if count == n_subsets:
            break
        S = np.asarray(S)
        Sc = np.setdiff1d(np.arange(K), S)
        A_SS = A[np.ix_(S, S)]
        vp = v[S] + np.linalg.solve(G[np.ix_(S, S)], G[np.ix_(S, Sc)] @ v[Sc])
        total += 0.5 * (vp @ A_SS @ vp - 2 * vp @ b[S] + c)
    return time.perf_counter() - start, total


def timed(fn, repeats):
    """(result, first-call wall time, median wall time after compile, median process CPU time after compile).

    The CPU time (all threads of this process) is reported because wall times on a shared machine vary with
    the load; on an idle machine the wall time lies between CPU time / threads and CPU time."""
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out.mean)
    first = time.perf_counter() - start
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn().mean)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return out, first, statistics.median(walls), statistics.median(cpus)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-subsets", type=int, default=3000)
    parser.add_argument("--K-closed", type=int, default=500)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, float64")

    K, M, k = 20, 2, 10
    C = math.comb(K, k)
    state = random_state(K, M, N=60)
    print(f"\n[1] exact expectation over all C({K},{k}) = {C} subsets, random pruning, K={K}, M={M}")
    for reweight in ("preactivation", "activation"):
        res, first, med, cpu = timed(
            lambda: expected_node_error(state, k, method="random", reweight=reweight), args.repeats
        )
        cpu0 = time.process_time()
        loop_t, _ = python_loop(state, k, reweight, args.loop_subsets)
        loop_cpu = (time.process_time() - cpu0) / args.loop_subsets * C
        loop_all = loop_t / args.loop_subsets * C
        print(
            f"  {reweight:13s}: mean eps_g = {float(res.mean):.6f} (std {float(res.std):.4f}, "
            f"{int(res.num_singular)} singular)\n"
            f"                 first call (incl. compile) {first:.2f} s; after compile: median wall {med:.3f} s, "
            f"CPU {cpu:.3f} s\n"
            f"                 NumPy loop: {args.loop_subsets} subsets in {loop_t:.2f} s -> {loop_all:.1f} s wall "
            f"({loop_cpu:.1f} s CPU) for all (extrapolated); speed-up x{loop_all / med:.0f} wall, "
            f"x{loop_cpu / cpu:.0f} CPU"
        )
    res, first, med, cpu = timed(
        lambda: expected_node_error(state, k, method="dpp", reweight="activation", kernel="A"), args.repeats
    )
    print(
        f"  dpp(A)/activation: mean {float(res.mean):.6f}; first call {first:.2f} s, median wall {med:.3f} s, "
        f"CPU {cpu:.3f} s (includes kdpp_enumerate)"
    )

    Kc, kc = args.K_closed, args.K_closed // 2
    state = random_state(Kc, M, N=2 * Kc, seed=1, v_scale=1.0 / math.sqrt(Kc))
    print(f"\n[2] closed-form expectation without reweighting, K={Kc}, k={kc}")
    for method in ("random", "dpp"):
        res, first, med, cpu = timed(
            lambda: expected_node_error_closed_form(state, kc, method=method, kernel="Q"), args.repeats
        )
        print(
            f"  {method:6s}: E[eps_g] = {float(res.mean):.6f}; first call {first:.2f} s, "
            f"after compile median wall {med:.3f} s, CPU {cpu:.3f} s"
        )


if __name__ == "__main__":
    main()
