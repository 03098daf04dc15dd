"""`jaxprune design`: pruning masks and rules designed by gradient descent on the theoretical error, compared
with every baseline at the same budget (THEORY.md section 7)."""

from __future__ import annotations

import argparse
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
        "with the ODEs (training). Prints one table per level: designed vs random / magnitude / DPP, node and "
        "edge, each with its best reweighting/rescale. Errors are the noise-free eps_g.",
    )
    p.add_argument("--level", choices=("network", "population", "training"), default="network")
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


def _network(args, state0, config, key, alpha=None):
    """A concrete trained student: from --weights, or the finite-N simulation to --alpha."""
    import jax
    import jax.numpy as jnp

    if args.weights is not None:
        try:
            data = np.load(args.weights)
            return tuple(jnp.asarray(data[k], dtype=float) for k in ("w", "w_star", "v", "v_star"))
        except (OSError, KeyError, ValueError) as e:
            raise CLIError(f"--weights {args.weights}: need an npz with w, w_star, v, v_star ({e})") from None
    from .._simulate import init_student, make_teacher, simulate

    kt, ks, kr = jax.random.split(key, 3)
    N = args.N
    teacher = make_teacher(kt, N, state0.M, v_star=np.asarray(state0.v_star), dtype=jnp.float64)
    student = init_student(ks, N, state0.K, scale=float(args.init_scale), v0=1.0, dtype=jnp.float64)
    steps = int(round((args.alpha if alpha is None else alpha) * N))
    res = simulate(kr, teacher, student, config, steps=steps, record_every=steps, dtype=jnp.float64)
    return res.final.w, teacher.w_star, res.final.v, teacher.v_star


def _print_table(rows, keys, quiet):
    if quiet:
        return
    head = "  ".join(f"{k:>10}" if k != "method" else f"{k:<42}" for k in keys)
    print(head)
    for r in rows:
        cells = []
        for k in keys:
            x = r.get(k, "")
            if k == "method":
                cells.append(f"{str(x):<42}")
            elif isinstance(x, float):
                cells.append(f"{x:>10.5g}")
            else:
                cells.append(f"{str(x) if x is not None else '-':>10}")
        print("  ".join(cells) + ("   " + r["setting"] if r.get("setting") else ""))


def _plot(rows, path, level):
    if path is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
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
    labels = [f"{r['method']} {r.get('kind', '')}".strip() for r in rows if r["method"] not in ("unpruned",)]
    names = list(dict.fromkeys(labels))
    budgets = sorted({r[group] for r in rows if r["method"] != "unpruned" and r.get(group) is not None
                      and not r["method"].startswith("unpruned")})
    width = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        ys = []
        for b in budgets:
            m = [r["error"] for r in rows if f"{r['method']} {r.get('kind', '')}".strip() == name and r[group] == b]
            ys.append(m[0] if m else np.nan)
        a2.bar(np.arange(len(budgets)) + j * width, ys, width, label=name)
    a2.set_xticks(np.arange(len(budgets)) + 0.4 - width / 2)
    a2.set_xticklabels([f"{group}={b:.3g}" for b in budgets])
    a2.set_ylabel("eps_g (exact)")
    a2.legend(fontsize=6, ncol=2)
    a2.set_title("designed vs baselines at equal budget")
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


def run(args) -> int:
    import jax
    import jax.numpy as jnp

    from .. import _design as D
    from .._dynamics import solve_ode

    state0, config = problem_from_args(args)
    budgets = [float(b) for b in np.atleast_1d(args.budget)]
    if any(not (0 < b <= 1) for b in budgets):
        raise CLIError(f"--budget must hold fractions in (0, 1], got {budgets}")
    key = jax.random.key(args.seed)
    K = state0.K
    level = args.level
    payload = {"level": level, "budgets": budgets, "error": "noise-free eps_g (exact from overlaps or "
               "enumeration; 'sim': exact error of concrete masks drawn on the simulated network)"}
    bar = Progress(0, f"design {level}", enabled=not args.quiet)
    bar._bar.total = None

    def progress(n):
        bar.update(n)

    try:
        if level == "network":
            w, ws, v, vs = _network(args, state0, config, key)
            if not args.quiet:
                print(f"network: K={w.shape[0]}, N={w.shape[1]}, M={ws.shape[0]} (eps_g of the unpruned student "
                      f"from its overlaps below)")
            rows = D.compare_network(w, ws, v, vs, tuple(budgets), key=key, steps=args.steps or 300,
                                     learning_rate=args.lr, restarts=args.restarts or 4,
                                     budget=args.budget_method, refit=args.refit, activation=config.activation,
                                     progress=progress)
            keys = ["keep", "k", "kind", "method", "error"]
        elif level == "population":
            if args.no_sim or args.init is not None:
                sol = solve_ode(state0, config, np.array([0.0, args.alpha]), rtol=1e-6, atol=1e-9)
                state, weights = sol.final, None
            else:
                w, ws, v, vs = _network(args, state0, config, key)
                N = w.shape[1]
                from .._overlaps import overlaps_from_weights

                state, weights = overlaps_from_weights(w, ws, v, vs), (w, ws)
            rows = D.compare_population(state, tuple(budgets), weights=weights, key=key,
                                        steps=args.steps or 200, learning_rate=args.lr,
                                        activation=config.activation, progress=progress)
            keys = ["keep", "k", "kind", "method", "error", "sim"]
        else:
            ks = sorted({int(round(b * K)) for b in budgets})
            if any(k < 1 or k > K for k in ks):
                raise CLIError(f"--budget gives k = {ks}; need 1 <= round(budget K) <= K={K}")
            network = None
            if args.no_sim or args.init is not None:
                state = solve_ode(state0, config, np.array([0.0, args.alpha_p]), rtol=1e-6, atol=1e-9).final
            else:
                from .._overlaps import overlaps_from_weights
                from .._simulate import Student, Teacher

                w, ws, v, vs = _network(args, state0, config, key, alpha=args.alpha_p)
                state = overlaps_from_weights(w, ws, v, vs)
                network = (Teacher(w_star=ws, v_star=vs), Student(w=w, v=v))
            rows = D.compare_training(state, config, tuple(ks), args.duration, steps=args.steps or 40,
                                      learning_rate=args.lr, restarts=args.restarts or 2, key=key,
                                      network=network, progress=progress)
            keys = ["k", "method", "error", "sim"]
            payload.update(alpha_p=args.alpha_p, duration=args.duration)
    except ValueError as e:
        raise CLIError(str(e)) from None
    finally:
        bar.close()
    _print_table(rows, keys, args.quiet)
    payload["rows"] = _clean(rows)
    write_json(args.json, payload)
    _plot(rows, args.plot, level)
    return 0
