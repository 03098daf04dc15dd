"""Time per optimisation step of the pruning designs (jaxprune.design._design), compile time apart.

    python benchmarks/bench_design.py [--quick]    (--quick: about 2-3 min on 2 cores; full: under 10 min)

For K = 6 and K = 20 (M = 2, N = 500 at network level): one jitted step (loss, gradient, optax update,
projection) of the edge-mask design, the node-mask design, the keep-rule design, the subset-distribution
design (enumeration), and the through-training design (gradient through the diffrax ODE solve, in forward
mode as `design_through_training` does; at K = 6 also reverse mode through diffrax's checkpointed loop, for
comparison). Reports the first call (compile + run) and the median of repeated calls (block_until_ready),
float64, and as a plain baseline in the same run the time of one exact error evaluation of the same problem.
Each line is printed as soon as it is measured. The keep rule's pair kernels (`K (K-1)/2 400^2` floats: 19 MB
at K = 6, 243 MB at K = 20) are built once (time reported apart) and passed to the step as an argument, as
`design_edge_rule` does.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxprune.design import _design as D  # noqa: E402
from jaxprune._activations import Erf  # noqa: E402
from jaxprune.pruning._dpp import enumerate_subsets  # noqa: E402
from jaxprune._dynamics import SGDConfig  # noqa: E402
from jaxprune._error import generalisation_error  # noqa: E402
from jaxprune._overlaps import overlaps_from_weights  # noqa: E402


def _network(K, M=2, N=500, seed=0):
    rng = np.random.default_rng(seed)
    ws = rng.normal(size=(M, N))
    w = 1.1 * ws[np.arange(K) % M] + 0.5 * rng.normal(size=(K, N))
    return jnp.asarray(w), jnp.asarray(ws), jnp.asarray(1.0 + 0.3 * rng.random(K)), jnp.full(M, 4.0)


def _time(step, args, repeats):
    t = time.perf_counter()
    jax.block_until_ready(step(*args))
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(step(*args))
        times.append(time.perf_counter() - t)
    return first, statistics.median(times)


def _make_step(loss, project=None, lr=0.05):
    opt = optax.adam(lr)

    @eqx.filter_jit
    def step(p, s):
        val, g = jax.value_and_grad(loss)(p)
        u, s = opt.update(g, s, p)
        p = optax.apply_updates(p, u)
        return (project(p) if project else p), s, val

    return step, opt


def bench(K, repeats, quick, emit):
    w, ws, v, vs = _network(K)
    N = w.shape[1]
    st = overlaps_from_weights(w, ws, v, vs)
    act = Erf()

    # edge mask (network level), Bernoulli relaxation, projection onto the budget
    B = N * K // 2

    def edge_loss(p):
        s = D.masked_network_overlaps(w, ws, v, vs, p["m"], jnp.exp(p["logc"]), bernoulli=True)
        return generalisation_error(s, act)

    p = {"m": jnp.full((K, N), 0.5), "logc": jnp.zeros(K)}
    step, opt = _make_step(edge_loss, lambda p: {**p, "m": D.project_capped_simplex(p["m"], B)})
    emit((f"edge mask K={K} N={N}", *_time(step, (p, opt.init(p)), repeats),
                *_time(jax.jit(edge_loss), (p,), repeats)))

    # node mask, ridge-relaxed optimal reweighting
    k = K // 2

    def node_loss(m):
        return generalisation_error(eqx.tree_at(lambda s: s.v, st, D._relaxed_node_v(st, m, "optimal", 1.0, act)), act)

    m = jnp.full(K, 0.5)
    step, opt = _make_step(node_loss, lambda m: D.project_capped_simplex(m, k))
    emit((f"node mask K={K}", *_time(step, (m, opt.init(m)), repeats),
                *_time(jax.jit(node_loss), (m,), repeats)))

    # keep rule (population level): pair kernels built once, passed as an argument
    rule = D.EdgeRule(a=jnp.zeros(K), log_slope=jnp.zeros(K), log_scale=jnp.zeros(K))
    t = time.perf_counter()
    kernels = jax.block_until_ready(D.conditional_kernels(st)) if D._kernels_fit(K) else None
    build = time.perf_counter() - t

    def rule_loss(r, kern):
        return generalisation_error(D.edge_rule_state(st, r, jnp.asarray(0.5), kernels=kern), act)

    opt = optax.adam(0.05)

    @eqx.filter_jit
    def rule_step(p, s, kern):
        val, g = jax.value_and_grad(rule_loss)(p, kern)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, val

    note = f"kernels built once, {build:.1f} s" if kernels is not None else "kernels rebuilt per step"
    emit((f"keep rule K={K} ({note})", *_time(rule_step, (rule, opt.init(rule), kernels), repeats),
          *_time(eqx.filter_jit(rule_loss), (rule, kernels), repeats)))

    # subset distribution by enumeration (k-DPP quality weights); C(K, k) subsets
    kk = 3 if K == 6 else 4
    masks = jnp.asarray(enumerate_subsets(K, kk))
    errs = D.node_subset_errors(st, masks)
    eye = jnp.eye(K)
    _, base = jax.vmap(lambda mk: jnp.linalg.slogdet(jnp.where(mk[:, None] & mk[None, :], st.Q, eye)))(masks)

    def sub_loss(th):
        return jnp.exp(D.subset_log_probs(th, masks, base)) @ errs

    th = jnp.zeros(K)
    step, opt = _make_step(sub_loss)
    emit((f"subset dist K={K} C={masks.shape[0]}", *_time(step, (th, opt.init(th)), repeats),
                *_time(jax.jit(sub_loss), (th,), repeats)))

    # through training (gradient through the ODE solve): the design's own loss module and compiled step
    if not (quick and K > 6):
        cfg = SGDConfig(eta=0.5, eta_v=0.5, mode="two-layer")
        duration = 5.0
        problem = D._training_problem(st, cfg, k, duration, rows=1)
        problem = eqx.tree_at(lambda p: p.modes, problem, jnp.asarray([D._MODE_RELAXED]))
        opt = D._adam(0.05)
        hyp = {"penalty": jnp.asarray(0.0), "binarise": jnp.asarray(0.0)}
        mm = m[None]

        def fwd_step(p, s):
            return D._design_step(problem, opt, problem.project, p, s, hyp)

        def train_loss(m):
            s0 = D._pruned_start(st, m, "optimal", 1.0, act)
            return generalisation_error(D.retrain_pruned(s0, m, cfg, duration), act)

        r = max(2, repeats // 3)
        emit((f"through training K={K} (duration {duration}, forward mode)", *_time(fwd_step, (mm, opt.init(mm)), r),
              *_time(jax.jit(train_loss), (m,), r)))
        if K <= 6:
            step, opt2 = _make_step(train_loss, lambda m: D.project_capped_simplex(m, k))
            # a fresh wrapper, so that 'loss 1st' is a compile again (jax.jit(train_loss) is cached from above)
            emit((f"through training K={K} (duration {duration}, reverse mode)", *_time(step, (m, opt2.init(m)), r),
                  *_time(jax.jit(lambda m: train_loss(m)), (m,), r)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="3 repeats; skip the K=20 ODE gradient")
    args = ap.parse_args()
    repeats = 3 if args.quick else 10
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, float64; medians of {repeats} calls")
    print(f"{'problem':<52} {'step 1st (s)':>12} {'step (ms)':>10} {'loss 1st (s)':>12} {'loss (ms)':>10}")
    t0 = time.perf_counter()

    def emit(row):
        name, f1, med, g1, gmed = row
        print(f"{name:<52} {f1:12.2f} {1e3 * med:10.2f} {g1:12.2f} {1e3 * gmed:10.2f}", flush=True)

    for K in (6, 20):
        bench(K, repeats, args.quick, emit)
    print(f"total {time.perf_counter() - t0:.0f} s (wall; 'step 1st' = compile + one step, 'step' = median per "
          f"optimisation step after compilation)", flush=True)


if __name__ == "__main__":
    main()
