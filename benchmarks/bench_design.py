"""Time per optimisation step of the pruning designs (jaxprune.design), compile time apart.

    python benchmarks/bench_design.py [--quick] [--only training|static] [--sizes 6,20]

For K = 6 and K = 20 (M = 2, N = 500 at network level) every design runs through its public function, and the
time of each optimisation step is read from its `progress` callback (called once per step, after the step's
result is on the host): 'step 1st' is compile + first step, 'step' the median of the others. As a plain baseline
in the same run: one exact error evaluation of the same problem.

Through training (gradient through the diffrax ODE solve, duration 5, one restart) runs twice side by side:
forward mode (`adjoint=diffrax.ForwardMode()`, one tangent per unit: the only mode before) and reverse mode
(`diffrax.RecursiveCheckpointAdjoint()`), the default above `jp.design.FORWARD_MODE_MAX_K` units, the two
arms alternating so that a change of machine load between them shows in both; the ratio of the medians is
printed. The exact evaluation of the rounded candidates is skipped (`exact_errors` returns
zeros): only the optimisation steps are timed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxprune as jp  # noqa: E402


def _network(K, M=2, N=500, seed=0):
    rng = np.random.default_rng(seed)
    ws = rng.normal(size=(M, N))
    w = 1.1 * ws[np.arange(K) % M] + 0.5 * rng.normal(size=(K, N))
    return jnp.asarray(w), jnp.asarray(ws), jnp.asarray(1.0 + 0.3 * rng.random(K)), jnp.full(M, 4.0)


class _Clock:
    """A `progress` callback that records the wall time of every optimisation step."""

    def __init__(self):
        self.marks = [time.perf_counter()]

    def __call__(self, n):
        self.marks.append(time.perf_counter())

    def times(self):
        d = np.diff(self.marks)
        return float(d[0]), float(statistics.median(d[1:])) if d.size > 1 else float("nan")


def _timed_design(fn, steps):
    clock = _Clock()
    fn(steps, clock)
    return clock.times()


def _timed_call(f, *args, repeats=3):
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    first = time.perf_counter() - t
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t)
    return first, statistics.median(ts)


def bench_training(K, steps, emit, rounds=2):
    """Design through training: forward vs reverse mode, side by side. The two arms alternate (`rounds`
    designs each, forward then reverse), so that a change of machine load between them shows in both; each
    arm's median is over all its steps after the first (compile) step."""
    w, ws, v, vs = _network(K)
    st = jp.overlaps_from_weights(w, ws, v, vs)
    cfg = jp.SGDConfig(eta=0.5, eta_v=0.5, mode="two-layer")
    k, duration = K // 2, 5.0
    skip = lambda ms, rw: np.zeros(len(ms))  # noqa: E731
    arms = {"forward": diffrax.ForwardMode(), "reverse": diffrax.RecursiveCheckpointAdjoint()}
    first, per_step = {}, {name: [] for name in arms}
    for r in range(rounds):
        for name, adj in arms.items():
            clock = _Clock()
            jp.design.design_through_training(st, cfg, k, duration, steps=steps, restarts=1, polish=False,
                                              exact_errors=skip, adjoint=adj, progress=clock)
            d = np.diff(clock.marks)
            if r == 0:
                first[name] = float(d[0])
                d = d[1:]
            per_step[name] += d.tolist()
    loss = jax.jit(lambda s: jp.generalisation_error(jp.design.retrain_pruned(s, jnp.ones(K), cfg, duration)))
    g1, gmed = _timed_call(loss, st)
    med = {name: statistics.median(x) for name, x in per_step.items()}
    for name in arms:
        emit((f"through training K={K} ({name} mode)", first[name], med[name], g1, gmed))
    print(f"    through training K={K}: reverse mode {med['forward'] / med['reverse']:.1f}x faster per step than "
          f"forward mode (median of {len(per_step['forward'])} steps each, arms alternating: "
          f"{1e3 * med['forward']:.0f} ms -> {1e3 * med['reverse']:.0f} ms)", flush=True)


def bench(K, steps, emit):
    w, ws, v, vs = _network(K)
    st = jp.overlaps_from_weights(w, ws, v, vs)
    act = jp.Erf()
    err = jax.jit(lambda s: jp.generalisation_error(s, act))

    f1, med = _timed_design(lambda s, p: jp.design.design_edge_mask(w, ws, v, vs, 0.5, steps=s, restarts=1,
                                                                    roundings=1, progress=p), steps)
    mask = jnp.ones(w.shape)
    loss = jax.jit(lambda m: jp.generalisation_error(jp.design.masked_network_overlaps(w, ws, v, vs, m, bernoulli=True)))
    emit((f"edge mask K={K} N={w.shape[1]}", f1, med, *_timed_call(loss, mask)))

    f1, med = _timed_design(lambda s, p: jp.design.design_node_mask(st, K // 2, steps=s, restarts=4, polish=False,
                                                                    progress=p), steps)
    emit((f"node mask K={K}", f1, med, *_timed_call(err, st)))

    t = time.perf_counter()
    kernels = jax.block_until_ready(jp.design.conditional_kernels(st)) if K <= 20 else None
    build = time.perf_counter() - t
    f1, med = _timed_design(lambda s, p: jp.design.design_edge_rule(st, 0.5, steps=s, slopes=(1.0,), kernels=kernels,
                                                                    progress=p), steps)
    note = f"kernels built once, {build:.1f} s" if kernels is not None else "kernels rebuilt per step"
    emit((f"keep rule K={K} ({note})", f1, med, *_timed_call(err, st)))

    kk = 3 if K == 6 else 4
    f1, med = _timed_design(lambda s, p: jp.design.design_subset_distribution(st, kk, steps=s, progress=p), steps)
    emit((f"subset dist K={K} k={kk}", f1, med, *_timed_call(err, st)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer steps; skip forward mode at K = 20")
    ap.add_argument("--only", choices=("training", "static"), default=None,
                    help="only the through-training comparison, or only the other designs")
    ap.add_argument("--sizes", type=lambda x: [int(k) for k in x.split(",")], default=[6, 20],
                    help="student sizes K, comma-separated (default 6,20)")
    args = ap.parse_args()
    steps = 6 if args.quick else 12
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, float64; medians over {steps - 1} steps")
    print(f"{'problem':<52} {'step 1st (s)':>12} {'step (ms)':>10} {'loss 1st (s)':>12} {'loss (ms)':>10}")
    t0 = time.perf_counter()

    def emit(row):
        name, f1, med, g1, gmed = row
        print(f"{name:<52} {f1:12.2f} {1e3 * med:10.2f} {g1:12.2f} {1e3 * gmed:10.2f}", flush=True)

    for K in args.sizes:
        if args.only != "training":
            bench(K, steps, emit)
        if args.only != "static" and not (args.quick and K > 6):
            bench_training(K, 3 if K > 6 else steps, emit)
    print(f"total {time.perf_counter() - t0:.0f} s (wall; 'step 1st' = compile + one step, 'step' = median per "
          f"optimisation step after compilation)", flush=True)


if __name__ == "__main__":
    main()
