"""`jaxprune prune` and `jaxprune compare`."""

from __future__ import annotations

import sys

import jax
import numpy as np

from .. import Status, describe, load_state
from .. import experiments as jpx
from ..pruning import (
    EDGE_METHODS,
    EDGE_RESCALES,
    METHODS,
    NODE_REWEIGHTS,
    best_by_method,
    compare_methods,
    format_compare_table,
    prune_expected,
    pruning_option,
)
from ._common import (
    CLIError,
    CommandFailed,
    add_output_options,
    nonnegative_float,
    parse_floats,
    positive_float,
    positive_int,
    save_plot,
    write_json,
)


def register(sub) -> None:
    p = sub.add_parser("prune", help="expected error after pruning a state by one method",
                       description="Expected noise-free generalisation error after pruning the student of a "
                                   "state file (node methods: exact enumeration or Monte Carlo over subsets; "
                                   "edge methods: the Gaussian-equivalent large-N map).")
    p.add_argument("state", help="state JSON file {Q, R, T, v, v_star}")
    p.add_argument("--method", choices=METHODS, required=True)
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--k", type=positive_int, default=None,
                        help="kept units k (edge methods: the matched keep fraction p = k/K)")
    budget.add_argument("--p", type=positive_float, default=None,
                        help="keep fraction in (0, 1] (node methods: p K must be an integer)")
    budget.add_argument("--keep", type=positive_float, default=None,
                        help="older form: kept units k (an integer >= 1) or a keep fraction in (0, 1]")
    p.add_argument("--reweight", choices=NODE_REWEIGHTS, default=None,
                   help="node reweighting rule (node methods only; default none)")
    p.add_argument("--rescale", choices=EDGE_RESCALES, default=None,
                   help="edge rescaling (edge methods only; default none)")
    p.add_argument("--importance-score", choices=("magnitude", "v"), default="magnitude",
                   help="importance-node score: magnitude = |v_i| sqrt(Q_ii) (default), v = the seed paper's v_i")
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
    try:
        return load_state(path)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None


def method_option(args):
    """The one place where the CLI's method strings become pruning objects (`jp.pruning.pruning_option`):
    `(method, reweight, rescale)`; refuses an option that the method does not take (one line, exit code 2)."""
    edge = args.method in EDGE_METHODS
    if edge and args.reweight is not None:
        raise CLIError(f"--reweight applies to node methods only; {args.method} takes --rescale "
                       f"(got --reweight {args.reweight})")
    if not edge and args.rescale is not None:
        raise CLIError(f"--rescale applies to edge methods only; {args.method} takes --reweight "
                       f"(got --rescale {args.rescale})")
    try:
        if edge:
            return pruning_option("edge", args.method), "none", pruning_option("rescale", args.rescale or "none")
        method = pruning_option("selector", args.method, kernel=args.kernel, beta=args.beta, jitter=args.jitter,
                                score=args.importance_score)
        return method, pruning_option("reweight", args.reweight or "none"), "none"
    except ValueError as e:
        raise CLIError(str(e)) from None


# a singular reweighting system is solved by skipping dependent pivots (docs/theory.md, section 6.1): usable
_USABLE = (int(Status.SUCCESS), int(Status.SINGULAR))


def run_prune(args) -> int:
    state = _load(args.state)
    method, reweight, rescale = method_option(args)
    try:
        row = prune_expected(state, method, args.keep, k=args.k, p=args.p, reweight=reweight, rescale=rescale,
                             samples=args.samples, key=jax.random.key(args.seed), N=args.N)
    except ValueError as e:
        raise CLIError(str(e)) from None
    se = f" ± {row['stderr']:.2g} (standard error, Monte Carlo)" if not row["exact"] else " (exact)"
    print(f"{row['method']} ({row['option']}), keep {'k=%d units' % row['k'] if row['k'] else 'p=%.4g' % row['p']}: "
          f"expected eps_g = {row['mean']:.8g}{se}")
    print(f"spread over masks: std {row['std']:.4g}, min {row['min']:.6g}, max {row['max']:.6g}")
    print(f"parameters kept (N={args.N}): {row['params_kept']:.6g}; status: {describe(row['status'])}")
    write_json(args.json, row)
    if int(row["status"]) not in _USABLE or not np.isfinite(row["mean"]):
        raise CommandFailed(f"the expected error is not available: status {describe(row['status'])}, "
                            f"mean {row['mean']}")
    return 0


def run_compare(args) -> int:
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
        from ..experiments._figures import new_figure

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
    bad = [r for r in rows if int(r.get("status", 0)) not in _USABLE or not np.isfinite(r["mean"])]
    if bad:
        raise CommandFailed(f"{len(bad)} of {len(rows)} rows failed, first: {bad[0]['method']} "
                            f"({bad[0]['option']}) status {describe(bad[0].get('status', 0))}")
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
    p.add_argument("--quick", action="store_true", help="small smoke version (N=100, 40 000 steps, 1 seed; "
                                                           "with --N-list: alpha 400, 1 seed, 5 masks)")
    g = p.add_argument_group("gap versus N (issue 4: does the predicted-vs-measured gap close as N grows?)")
    g.add_argument("--N-list", default=None, metavar="N1,N2,...",
                   help="repeat the simulation check at these input sizes, all at the same alpha = steps/N, and "
                        "report the predicted-vs-measured gap per method and N (replaces the single-N table "
                        "and the claims; --plot draws gap vs N)")
    g.add_argument("--alpha", type=positive_float, default=None,
                   help="with --N-list: SGD samples per input dimension (default --steps / --N = 1600)")
    g.add_argument("--test-mse-masks", type=int, default=None,
                   help="masks per method whose noisy test MSE is also measured on fresh inputs "
                        "(default 3; 0 with --N-list)")
    add_output_options(p, plot=True)
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


def _gap_command(args, Ns, alpha, seeds, masks, test_mse_masks) -> str:
    """The command line that reproduces a gap-vs-N run, every option spelt out."""
    parts = ["jaxprune", "paper", "--N-list", ",".join(str(n) for n in Ns), "--alpha", f"{alpha:g}",
             "--K", str(args.K), "--M", str(args.M), "--v-star", f"{args.v_star:g}", "--eta", f"{args.eta:g}",
             "--sigmas", args.sigmas, "--seeds", str(seeds), "--masks", str(masks),
             "--test-mse-masks", str(test_mse_masks)]
    if args.no_map:
        parts.append("--no-map")
    if args.json is not None:
        parts += ["--json", str(args.json)]
    if args.plot is not None:
        parts += ["--plot", str(args.plot)]
    return " ".join(parts)


def _gap_markdown(result) -> str:
    Ns = result["Ns"]
    lines = ["| method | " + " | ".join(f"N={n} gap / spread" for n in Ns) + " | slope of gap |",
             "|---|" + "---|" * (len(Ns) + 1)]
    for m in ("random-node", "importance-node", "dpp-node", "random-edge", "magnitude-edge", "dpp-edge"):
        cells = []
        for s in result["summary"]:
            pm = s["per_method"].get(m)
            if pm is None:
                cells.append("-")
            else:
                cells.append(f"{pm['median_rel_gap']:.2e} / {pm['median_rel_spread']:.2e}")
        slope = result["slopes"].get(f"{m}:median_rel_gap", float("nan"))
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {slope:+.2f} |")
    return "\n".join(lines)


def _gap_summary_markdown(result) -> str:
    lines = ["| N | steps | trained eps_g | node median rel gap | node median abs z | importance-node max abs gap | "
             "edge median rel gap | edge median abs z | edge median rel spread | edge median rms rel gap | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in result["summary"]:
        eps = ", ".join(f"{v:.3g}" for v in s["eps_g_trained"].values())
        lines.append(f"| {s['N']} | {s['steps']} | {eps} | {s['node_median_rel_gap']:.3g} | {s['node_median_abs_z']:.2f} | "
                     f"{s['importance_node_max_abs_gap']:.1e} | {s['edge_median_rel_gap']:.3g} | "
                     f"{s['edge_median_abs_z']:.2f} | {s['edge_median_rel_spread']:.3g} | "
                     f"{s['edge_median_rms_rel_gap']:.3g} | {s['seconds']:.0f} |")
    sl = result["slopes"]
    lines.append(f"\nlog-log slopes against N (-0.5 is N^-1/2): node median rel gap {sl['node_median_rel_gap']:+.2f}, "
                 f"edge median rel gap {sl['edge_median_rel_gap']:+.2f}, edge median rel spread "
                 f"{sl['edge_median_rel_spread']:+.2f}, edge median rms rel gap {sl['edge_median_rms_rel_gap']:+.2f}")
    return "\n".join(lines)


def _gap_figure(result, path) -> None:
    from ..experiments._figures import new_figure

    Ns = np.asarray(result["Ns"], float)
    fig, ax = new_figure(6.4, 4.4)
    colors = {"random-edge": "C0", "magnitude-edge": "C1", "dpp-edge": "C2", "random-node": "C3", "dpp-node": "C4"}
    for m, c in colors.items():
        gap = [s["per_method"].get(m, {}).get("median_rel_gap", np.nan) for s in result["summary"]]
        style = "o-" if m.endswith("edge") else "s:"
        ax.plot(Ns, gap, style, color=c, label=f"{m}: |measured - predicted| / measured")
        if m in ("random-edge", "dpp-edge"):
            spr = [s["per_method"].get(m, {}).get("median_rel_spread", np.nan) for s in result["summary"]]
            ax.plot(Ns, spr, "^--", color=c, alpha=0.6, ms=4, label=f"{m}: mask spread (std / mean)")
    edge = np.asarray([s["edge_median_rel_gap"] for s in result["summary"]], float)
    ax.plot(Ns, edge, "D-", color="k", lw=2, label="all edge rows: median relative gap")
    ok = np.isfinite(edge) & (edge > 0)
    if ok.any():  # guide through the geometric mean of the edge medians
        ref = np.exp(np.mean(np.log(edge[ok] * np.sqrt(Ns[ok]))))
        ax.plot(Ns, ref / np.sqrt(Ns), "k--", lw=1, alpha=0.5, label=r"$\propto N^{-1/2}$ guide")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input dimension N (alpha = steps / N = %g)" % result["alpha"])
    ax.set_ylabel(r"relative gap (median over $\sigma$, option, budget)")
    ax.set_title("pruned error: theory on trained overlaps vs concrete networks", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    save_plot(fig, path)


def _run_gap_vs_N(args, sigmas) -> int:
    try:
        Ns = sorted({int(t) for t in args.N_list.split(",") if t.strip()})
    except ValueError:
        raise CLIError(f"--N-list: expected comma-separated integers, got {args.N_list!r}") from None
    if not Ns or min(Ns) < 2:
        raise CLIError("--N-list needs input sizes >= 2")
    if args.quick:
        alpha, seeds, masks = 400.0, 1, 5
    else:
        alpha, seeds, masks = args.steps / args.N, args.seeds, args.masks
    if args.alpha is not None:
        alpha = args.alpha
    tmm = 0 if args.test_mse_masks is None else args.test_mse_masks
    if tmm < 0:
        raise CLIError("--test-mse-masks must be >= 0")
    base = jpx.PaperSetting(N=Ns[0], M=args.M, K=args.K, v_star=args.v_star, eta=args.eta,
                               steps=int(alpha * Ns[0]))
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    command = _gap_command(args, Ns, alpha, seeds, masks, tmm)
    if log:
        log(f"gap vs N: {command}")
    result = jpx.gap_vs_N(base, Ns, alpha=alpha, sigmas=sigmas, seeds=seeds, masks=masks, test_mse_masks=tmm,
                             log=log)
    print(f"predicted vs measured pruned error at N = {Ns}, alpha = steps/N = {alpha:g}, sigmas {sigmas}, "
          f"seeds={seeds}, masks={masks}")
    print("relative gap = mean over students of |measured - predicted| / measured (measured: mean over that "
          "student's masks); spread = std over masks / mean; medians over sigma, option and budget")
    print(_gap_markdown(result))
    print()
    print(_gap_summary_markdown(result))
    payload = {"command": command, "gap_vs_N": result}
    if not args.no_map:
        wm = jpx.theory_winner_map(M=args.M, v_star=args.v_star, eta=args.eta)
        payload["winner_map"] = [dict(r, label=list(r["label"])) for r in wm]
    write_json(args.json, payload)
    if args.plot is not None:
        _gap_figure(result, args.plot)
        print(f"plot written to {args.plot}")
    return 0


def run_paper(args) -> int:
    try:
        sigmas = [float(s) for s in parse_floats(args.sigmas)]
    except Exception as e:
        raise CLIError(f"--sigmas: {e}") from None
    if any(s < 0 for s in sigmas):
        raise CLIError("--sigmas must be >= 0")
    if args.K < 2 or args.M > args.K:
        raise CLIError(f"need 2 <= K and M <= K, got K={args.K}, M={args.M}")
    if args.N_list is not None:
        return _run_gap_vs_N(args, sigmas)
    if args.plot is not None:
        raise CLIError("--plot draws the gap-vs-N figure: it needs --N-list")
    if args.quick:
        setting = jpx.PaperSetting(N=100, M=args.M, K=args.K, v_star=args.v_star, eta=args.eta, steps=40_000)
        seeds, masks = 1, 5
    else:
        setting = jpx.PaperSetting(N=args.N, M=args.M, K=args.K, v_star=args.v_star, eta=args.eta,
                                      steps=args.steps)
        seeds, masks = args.seeds, args.masks
    out = jpx.simulation_check(setting, sigmas=sigmas, seeds=seeds, masks=masks,
                           test_samples=5000 if args.quick else 20_000,
                           test_mse_masks=3 if args.test_mse_masks is None else max(args.test_mse_masks, 0))
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
        claims = jpx.claims_from_rows(rows, value)
        result["claims"][value] = claims
        print(f"\nclaims decided from the {value} errors:")
        print(_claims_markdown(claims))
    if not args.no_map:
        wm = jpx.theory_winner_map(ratios=(2,) if args.quick else (2, 3), sigmas=(0.0, 0.5) if args.quick else (0.0, 0.25, 0.5),
                               M=args.M, v_star=args.v_star, eta=args.eta, alpha=200.0 if args.quick else 1000.0)
        result["winner_map"] = [dict(r, label=list(r["label"])) for r in wm]
        print("\nwinner map (theory, ODE-trained students; best option per method): K/M, sigma, k -> winner")
        for r in wm:
            print(f"  K/M={r['label'][0]} sigma={r['label'][1]:g} k={r['k']}: {r['winner']} "
                  f"({r['errors'][r['winner']]:.4g}; DPP node {r['errors']['dpp-node']:.4g}, random edge "
                  f"{r['errors']['random-edge']:.4g})")
    write_json(args.json, result)
    return 0
