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
    register_paper(sub)


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


def register_paper(sub) -> None:
    p = sub.add_parser("paper", help="the seed paper's claims: theory vs finite-N simulation, and a winner map",
                       description="Train students by finite-N online SGD at the seed paper's settings, prune "
                                   "them by every method at every budget, set the order-parameter prediction "
                                   "beside the measured error, decide the paper's claims, and map which method "
                                   "wins over (budget, sigma, K/M) in theory.")
    p.add_argument("--N", type=positive_int, default=500)
    p.add_argument("--K", type=positive_int, default=6)
    p.add_argument("--M", type=positive_int, default=2)
    p.add_argument("--v-star", type=positive_float, default=4.0)
    p.add_argument("--eta", type=positive_float, default=0.5)
    p.add_argument("--steps", type=positive_int, default=800_000, help="SGD samples (default 800 000)")
    p.add_argument("--sigmas", default="0,0.25", help="label-noise stds (default 0,0.25)")
    p.add_argument("--seeds", type=positive_int, default=3)
    p.add_argument("--masks", type=positive_int, default=20, help="masks per random/DPP method")
    p.add_argument("--no-map", action="store_true", help="skip the theory winner map")
    p.add_argument("--quick", action="store_true", help="small smoke version (N=100, 40 000 steps, 1 seed)")
    add_output_options(p, plot=False)
    p.set_defaults(func=run_paper)


def _claims_markdown(claims) -> str:
    lines = ["| sigma | k | DPP node (rw) | random node (rw) | importance node (rw) | random edge | "
             "DPP<random | DPP<importance | plain DPP<random | edge<DPP node |", "|---|---|---|---|---|---|---|---|---|---|"]
    yn = lambda b: "yes" if b else "no"
    for c in claims:
        lines.append(f"| {c['sigma']:g} | {c['k']} | {c['dpp_node_reweighted']:.4g} | {c['random_node_reweighted']:.4g} | "
                     f"{c['importance_node_reweighted']:.4g} | {c['random_edge_best']:.4g} | "
                     f"{yn(c['claim1_dpp_beats_random'])} | {yn(c['claim1_dpp_beats_importance'])} | "
                     f"{yn(c['claim1_plain_dpp_beats_random'])} | {yn(c['claim2_random_edge_beats_dpp_node'])} |")
    return "\n".join(lines)


def run_paper(args) -> int:
    from .._paper import PaperSetting, claims_from_rows, simulation_check, theory_winner_map
    from ._common import parse_floats

    try:
        sigmas = [float(s) for s in parse_floats(args.sigmas)]
    except Exception as e:
        raise CLIError(f"--sigmas: {e}") from None
    if any(s < 0 for s in sigmas):
        raise CLIError("--sigmas must be >= 0")
    if args.K < 2 or args.M > args.K:
        raise CLIError(f"need 2 <= K and M <= K, got K={args.K}, M={args.M}")
    if args.quick:
        setting = PaperSetting(N=100, M=args.M, K=args.K, v_star=args.v_star, eta=args.eta, steps=40_000)
        seeds, masks = 1, 5
    else:
        setting = PaperSetting(N=args.N, M=args.M, K=args.K, v_star=args.v_star, eta=args.eta, steps=args.steps)
        seeds, masks = args.seeds, args.masks
    out = simulation_check(setting, sigmas=sigmas, seeds=seeds, masks=masks,
                           test_samples=5000 if args.quick else 20_000)
    rows = out["rows"]
    print(f"seed-paper setting {out['setting']}, seeds={seeds}, masks={masks}")
    print("noise-free eps_g after pruning: predicted (order parameters of the trained student) vs measured "
          "(concrete pruned networks); test MSE on fresh noisy inputs vs 2 eps_g + sigma^2 of the same masks")
    print("| sigma | method | option | k | predicted | measured (± std) | test MSE measured | 2 eps_g + sigma^2 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["sigma"], r["k"], r["method"], r["option"])):
        print(f"| {r['sigma']:g} | {r['method']} | {r['option']} | {r['k']} | {r['predicted']:.4g} | "
              f"{r['measured']:.4g} ± {r['measured_std']:.2g} | {r['measured_test_mse']:.4g} | "
              f"{r['test_mse_from_overlaps']:.4g} |")
    result = {"simulation": out, "claims": {}}
    for value in ("predicted", "measured"):
        claims = claims_from_rows(rows, value)
        result["claims"][value] = claims
        print(f"\nclaims decided from the {value} errors:")
        print(_claims_markdown(claims))
    if not args.no_map:
        wm = theory_winner_map(ratios=(2,) if args.quick else (2, 3), sigmas=(0.0, 0.5) if args.quick else (0.0, 0.25, 0.5),
                               M=args.M, v_star=args.v_star, eta=args.eta, alpha=200.0 if args.quick else 1000.0)
        result["winner_map"] = [dict(r, label=list(r["label"])) for r in wm]
        print("\nwinner map (theory, ODE-trained students; best option per method): K/M, sigma, k -> winner")
        for r in wm:
            print(f"  K/M={r['label'][0]} sigma={r['label'][1]:g} k={r['k']}: {r['winner']} "
                  f"({r['errors'][r['winner']]:.4g}; DPP node {r['errors']['dpp-node']:.4g}, random edge "
                  f"{r['errors']['random-edge']:.4g})")
    write_json(args.json, result)
    return 0
