"""`jaxprune design`: pruning masks and rules designed by gradient descent on the theoretical error, compared
with every baseline at the same budget (docs/theory.md section 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import (
    CLIError,
    Progress,
    add_output_options,
    add_problem_options,
    parse_floats,
    positive_float,
    positive_int,
    problem_from_args,
    save_plot,
    write_json,
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "design",
        help="design pruning masks/rules by gradient descent on eps_g and compare with all baselines",
        description="Design pruning by gradient descent (optax) on the exact/theoretical generalisation error: "
        "a mask on a concrete network (--level network), a keep rule or subset distribution under the "
        "Gaussian-equivalent model (population), or the subset kept at alpha_p for the error after retraining "
        "with the ODEs (training), or all three (--level all). Prints one table per level: designed vs random / "
        "magnitude / DPP, node and edge, each with its best reweighting/rescale, and says whether the designed "
        "one beats the best baseline. Errors are the noise-free eps_g; 'sim' is the finite-N check and 'mse/2' "
        "half the test MSE on fresh noise-free inputs (an estimate of eps_g).",
    )
    p.add_argument("--level", choices=("network", "population", "training", "all"), default="network",
                   help="which level to design; 'all' runs network, population and training in sequence on the "
                        "same simulated network and writes all three tables to one JSON and one figure")
    p.add_argument("--budget", type=parse_floats, default=np.asarray([0.5]),
                   help="keep fractions of first-layer weights, comma-separated (node pruning uses k = budget K "
                        "when that is an integer; training level: k = round(budget K)); default 0.5")
    add_problem_options(p, K=6, M=2, eta=0.5)
    p.set_defaults(mode="two-layer", v_star=np.asarray([4.0]))
    g = p.add_argument_group("design")
    g.add_argument("--steps", type=positive_int, default=None,
                   help="optimiser steps (default: 300 network, 200 population, 40 training)")
    g.add_argument("--lr", type=positive_float, default=0.05, help="Adam learning rate (default 0.05)")
    g.add_argument("--restarts", type=positive_int, default=None, help="parallel restarts (default 4; training 2)")
    g.add_argument("--budget-method", choices=("projection", "penalty"), default="projection",
                   help="network level: budget by projection (default) or scheduled penalty")
    g.add_argument("--refit", action="store_true", help="network level: refit the second layer jointly")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--N", type=positive_int, default=500, help="input dimension of the simulated network (500)")
    g.add_argument("--alpha", type=positive_float, default=200.0,
                   help="training time of the simulated network (network/population levels; default 200)")
    g.add_argument("--alpha-p", type=positive_float, default=100.0, help="training level: pruning time (100)")
    g.add_argument("--duration", type=positive_float, default=20.0,
                   help="training level: retraining time after pruning (default 20)")
    g.add_argument("--weights", type=Path, default=None,
                   help="npz with w (K,N), w_star (M,N), v, v_star: the network to prune (default: simulate one)")
    g.add_argument("--no-sim", action="store_true",
                   help="population/training levels: use the ODE state at --alpha / --alpha-p (theory only) "
                        "instead of a simulated N=--N network (whose overlaps are exact and whose weights give the "
                        "finite-N check)")
    add_output_options(p)
    p.set_defaults(func=run)


class _Networks:
    """The simulated (or loaded) teacher and student at the times the levels need, simulated once: always
    `0 -> min(alpha_p, alpha) -> max(alpha_p, alpha)`, so a level gives the same network alone or in `all`."""

    def __init__(self, args, state0, config, key):
        self.args, self.state0, self.config, self.key = args, state0, config, key
        self.cache = {}

    def at(self, alpha):
        """`(w, w_star, v, v_star)` of the student trained to `alpha` (or from --weights)."""
        import jax
        import jax.numpy as jnp

        args = self.args
        if args.weights is not None:
            try:
                data = np.load(args.weights)
                return tuple(jnp.asarray(data[k], dtype=float) for k in ("w", "w_star", "v", "v_star"))
            except (OSError, KeyError, ValueError) as e:
                raise CLIError(f"--weights {args.weights}: need an npz with w, w_star, v, v_star ({e})") from None
        from jaxprune import Student, init_student, make_teacher, simulate

        N = args.N
        kt, ks, kr = jax.random.split(self.key, 3)
        if not self.cache:
            teacher = make_teacher(kt, N, self.state0.M, v_star=np.asarray(self.state0.v_star), dtype=jnp.float64)
            student = init_student(ks, N, self.state0.K, scale=float(args.init_scale), v0=1.0, dtype=jnp.float64)
            self.teacher = teacher
            self.cache[0.0] = student
        times = sorted({float(args.alpha_p), float(args.alpha)})
        for j, t in enumerate(times):
            if t in self.cache:
                continue
            t0 = max(s for s in self.cache if s < t)
            steps = int(round((t - t0) * N))
            res = simulate(jax.random.fold_in(kr, j), self.teacher, self.cache[t0], self.config, steps=steps,
                           record_every=steps, dtype=jnp.float64)
            self.cache[t] = Student(w=res.final.w, v=res.final.v)
            if t >= alpha:
                break
        st = self.cache[float(alpha)]
        return st.w, self.teacher.w_star, st.v, self.teacher.v_star


def _print_table(rows, keys, quiet):
    if quiet:
        return
    names = {"half_mse": "mse/2"}
    head = "  ".join(f"{names.get(k, k):>10}" if k != "method" else f"{k:<40}" for k in keys)
    print(head)
    for r in rows:
        cells = []
        for k in keys:
            x = r.get(k, "")
            if k == "method":
                cells.append(f"{str(x):<40}")
            elif isinstance(x, float):
                cells.append(f"{x:>10.5g}")
            else:
                cells.append(f"{str(x) if x is not None else '-':>10}")
        print("  ".join(cells) + ("   " + r["setting"] if r.get("setting") else ""))


def _plot_level(a1, a2, rows, level):
    for r in rows:
        if "loss_curve" in r:
            lab = f"{r['method']} {r.get('kind', '')} " + (f"keep={r['keep']:.3g}" if "keep" in r else f"k={r['k']}")
            a1.plot(np.asarray(r["loss_curve"]), label=lab)
    a1.set_xlabel("optimisation step")
    a1.set_ylabel("relaxed loss (summed over restarts)")
    a1.set_yscale("log")
    a1.legend(fontsize=7)
    a1.set_title(f"design ({level}): loss curves")
    group = "keep" if level != "training" else "k"
    sel = [r for r in rows if r.get("role") in ("designed", "baseline") or r["method"] == "brute force best"]
    labels = [f"{r['method']} {r.get('kind', '') if level != 'training' else ''}".strip() for r in sel]
    names = list(dict.fromkeys(labels))
    budgets = sorted({r[group] for r in sel if r.get(group) is not None})
    width = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        ys = []
        for b in budgets:
            m = [r["error"] for r, lab in zip(sel, labels) if lab == name and r[group] == b]
            ys.append(min(m) if m else np.nan)
        hatch = "//" if name.startswith("designed") else None
        a2.bar(np.arange(len(budgets)) + j * width, ys, width, label=name, hatch=hatch)
    a2.set_xticks(np.arange(len(budgets)) + 0.4 - width / 2)
    a2.set_xticklabels([f"{group}={b:.3g}" for b in budgets])
    a2.set_ylabel("eps_g (exact)")
    a2.set_yscale("log")
    a2.legend(fontsize=6, ncol=2)
    a2.set_title(f"{level}: designed (hatched) vs baselines at equal budget")


def _plot(tables, path):
    if path is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(tables), 2, figsize=(13, 4.6 * len(tables)), squeeze=False)
    for (level, rows), (a1, a2) in zip(tables.items(), axes):
        _plot_level(a1, a2, rows, level)
    fig.tight_layout()
    save_plot(fig, path)
    plt.close(fig)


def _clean(rows):
    out = []
    for r in rows:
        r = dict(r)
        for k in ("mask", "loss_curve"):
            if k in r:
                r[k] = np.asarray(r[k]).tolist() if k == "loss_curve" else np.asarray(r[k]).astype(int).tolist()
        out.append(r)
    return out


def _budget(name: str):
    """The CLI's `--budget-method` strings mapped onto the design layer's budget objects (the one place)."""
    import jaxprune as jp

    return {"projection": jp.design.Projection(), "penalty": jp.design.Penalty(1.0, 1e3)}[name]


_KEYS = {
    "network": ["keep", "k", "kind", "method", "error", "half_mse"],
    "population": ["keep", "k", "kind", "method", "error", "sim", "half_mse"],
    "training": ["k", "method", "error", "sim", "half_mse"],
}


def _run_level(level, args, nets, state0, config, key, budgets, progress):
    import jax.numpy as jnp

    import jaxprune as jp
    import jaxprune.experiments  # noqa: F401 - the experiments layer (design comparisons)
    from jaxprune import overlaps_from_weights, solve_ode

    K = state0.K
    theory_only = args.no_sim or args.init is not None
    if level == "network":
        w, ws, v, vs = nets.at(args.alpha)
        if not args.quiet:
            print(f"network: K={w.shape[0]}, N={w.shape[1]}, M={ws.shape[0]}, trained to alpha={args.alpha}")
        return jp.experiments.compare_network(w, ws, v, vs, tuple(budgets), key=key, steps=args.steps or 300,
                                 learning_rate=args.lr, restarts=args.restarts or 4, budget=_budget(args.budget_method),
                                 refit=args.refit, activation=config.activation, progress=progress)
    if level == "population":
        if theory_only:
            sol = solve_ode(state0, config, np.array([0.0, args.alpha]), rtol=1e-6, atol=1e-9)
            state, weights = sol.final, None
        else:
            w, ws, v, vs = nets.at(args.alpha)
            state, weights = overlaps_from_weights(w, ws, v, vs), (w, ws)
        return jp.experiments.compare_population(state, tuple(budgets), weights=weights, key=key, steps=args.steps or 200,
                                    learning_rate=args.lr, activation=config.activation, progress=progress)
    ks = sorted({int(round(b * K)) for b in budgets})
    if any(k < 1 or k > K for k in ks):
        raise CLIError(f"--budget gives k = {ks}; need 1 <= round(budget K) <= K={K}")
    network = None
    if theory_only:
        state = solve_ode(state0, config, np.array([0.0, args.alpha_p]), rtol=1e-6, atol=1e-9).final
    else:
        from jaxprune import Student, Teacher

        w, ws, v, vs = nets.at(args.alpha_p)
        state = overlaps_from_weights(w, ws, v, vs)
        network = (Teacher(w_star=ws, v_star=vs), Student(w=w, v=jnp.asarray(v)))
    return jp.experiments.compare_training(state, config, tuple(ks), args.duration, steps=args.steps or 40,
                              learning_rate=args.lr, restarts=args.restarts or 2, key=key, network=network,
                              progress=progress)


def run(args) -> int:
    import time

    import jax

    from jaxprune.experiments import design_verdict, format_verdict

    state0, config = problem_from_args(args)
    budgets = [float(b) for b in np.atleast_1d(args.budget)]
    if any(not (0 < b <= 1) for b in budgets):
        raise CLIError(f"--budget must hold fractions in (0, 1], got {budgets}")
    key = jax.random.key(args.seed)
    levels = ("network", "population", "training") if args.level == "all" else (args.level,)
    payload = {"level": args.level, "budgets": budgets,
               "error": "noise-free eps_g, exact (from overlaps or enumeration; Gaussian-equivalent model for "
                        "population edge rules; ODE for training)",
               "sim": "finite-N check: exact eps_g of the concrete simulated network pruned by the row's mask / "
                      "rule (training: after finite-N SGD retraining)",
               "half_mse": "half the test MSE on fresh noise-free inputs of the pruned concrete network",
               "alpha": args.alpha, "alpha_p": args.alpha_p, "duration": args.duration, "N": args.N,
               "tables": {}}
    nets = _Networks(args, state0, config, key)
    tables = {}
    for level in levels:
        bar = Progress(0, f"design {level}", enabled=not args.quiet)
        bar._bar.total = None
        t0 = time.perf_counter()
        try:
            rows = _run_level(level, args, nets, state0, config, key, budgets, bar.update)
        except ValueError as e:
            raise CLIError(str(e)) from None
        finally:
            bar.close()
        seconds = time.perf_counter() - t0
        verdict = design_verdict(rows)
        bname = "k" if level == "training" else "keep"
        if not args.quiet:
            print(f"\n== level {level} ({seconds:.0f} s) ==")
            _print_table(rows, _KEYS[level], args.quiet)
            for v in verdict:
                print("verdict: " + format_verdict(v, bname))
        tables[level] = rows
        payload["tables"][level] = {"rows": _clean(rows), "verdict": verdict, "seconds": seconds}
        if len(levels) == 1:
            payload["rows"] = payload["tables"][level]["rows"]
        write_json(args.json, payload)  # after every level: finished work is saved
    _plot(tables, args.plot)
    return 0
