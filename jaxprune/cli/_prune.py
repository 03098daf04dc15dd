"""`jaxprune prune` and `jaxprune compare`."""

from __future__ import annotations

import numpy as np

from ._common import CLIError, add_output_options, nonnegative_float, positive_float, positive_int, save_plot, write_json


def register(sub) -> None:
    from .._compare import EDGE_RESCALES, METHODS, NODE_REWEIGHTS

    p = sub.add_parser("prune", help="expected error after pruning a state by one method",
                       description="Expected noise-free generalisation error after pruning the student of a "
                                   "state file (node methods: exact enumeration or Monte Carlo over subsets; "
                                   "edge methods: the Gaussian-equivalent large-N map).")
    p.add_argument("state", help="state JSON file {Q, R, T, v, v_star}")
    p.add_argument("--method", choices=METHODS, required=True)
    p.add_argument("--keep", type=positive_float, required=True,
                   help="kept units k (an integer >= 1) or a keep fraction in (0, 1]")
    p.add_argument("--reweight", choices=NODE_REWEIGHTS, default="none", help="node reweighting rule")
    p.add_argument("--rescale", choices=EDGE_RESCALES, default="none", help="edge rescaling")
    p.add_argument("--kernel", choices=("Q", "A", "rbf"), default="Q", help="DPP kernel (node)")
    p.add_argument("--beta", type=positive_float, default=1.0, help="RBF inverse width")
    p.add_argument("--jitter", type=nonnegative_float, default=0.0, help="added to the DPP kernel's diagonal")
    p.add_argument("--samples", type=positive_int, default=None, help="Monte Carlo subsets instead of enumeration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--N", type=positive_int, default=500, help="input dimension for parameter counts")
    add_output_options(p, plot=False)
    p.set_defaults(func=run_prune)

    p = sub.add_parser("compare", help="all pruning methods at all budgets on one state",
                       description="Table of the expected error of every pruning method and option at every "
                                   "budget k = 1..K-1 (edge methods at the matched keep fraction), and a plot.")
    p.add_argument("state", help="state JSON file")
    p.add_argument("--kernel", choices=("Q", "A", "rbf"), default="Q")
    p.add_argument("--jitter", type=nonnegative_float, default=1e-6)
    p.add_argument("--N", type=positive_int, default=500, help="input dimension for parameter counts")
    p.add_argument("--match", choices=("theory", "seed-paper"), default="theory",
                   help="node/edge parameter matching rule (default theory: p = k/K)")
    add_output_options(p)
    p.set_defaults(func=run_compare)


def _load(path):
    from .._overlaps import load_state

    try:
        return load_state(path)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None


def run_prune(args) -> int:
    import jax

    from .._compare import prune_expected

    state = _load(args.state)
    try:
        row = prune_expected(state, args.method, args.keep, reweight=args.reweight, rescale=args.rescale,
                             kernel=args.kernel, beta=args.beta, jitter=args.jitter, samples=args.samples,
                             key=jax.random.key(args.seed), N=args.N)
    except ValueError as e:
        raise CLIError(str(e)) from None
    from .._status import describe

    se = f" ± {row['stderr']:.2g} (standard error, Monte Carlo)" if not row["exact"] else " (exact)"
    print(f"{row['method']} ({row['option']}), keep {'k=%d units' % row['k'] if row['k'] else 'p=%.4g' % row['p']}: "
          f"expected eps_g = {row['mean']:.8g}{se}")
    print(f"spread over masks: std {row['std']:.4g}, min {row['min']:.6g}, max {row['max']:.6g}")
    print(f"parameters kept (N={args.N}): {row['params_kept']:.6g}; status: {describe(row['status'])}")
    write_json(args.json, row)
    return 0


def run_compare(args) -> int:
    from .._compare import best_by_method, compare_methods, format_compare_table

    state = _load(args.state)
    if state.K < 2:
        raise CLIError("compare needs K >= 2 student units")
    try:
        rows = compare_methods(state, kernel=args.kernel, jitter=args.jitter, N=args.N, match=args.match)
    except ValueError as e:
        raise CLIError(str(e)) from None
    print("expected noise-free eps_g after pruning (node: mean ± std over subsets; edge: large-N map)")
    print(format_compare_table(rows))
    write_json(args.json, {"rows": rows})
    if getattr(args, "plot", None) is not None:
        from ..plots import new_figure

        best = best_by_method(rows)
        fig, ax = new_figure()
        for m in sorted({m for m, _ in best}):
            ks = sorted(k for mm, k in best if mm == m)
            ax.plot([best[(m, k)]["params_kept"] for k in ks], [best[(m, k)]["mean"] for k in ks], "o-",
                    label=f"{m} (best option)")
        ax.set_xlabel(f"parameters kept (N={args.N})")
        ax.set_ylabel(r"expected $\epsilon_g$")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        save_plot(fig, args.plot)
        print(f"plot written to {args.plot}")
    return 0
