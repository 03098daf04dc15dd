"""The `jaxprune reproduce` report: markdown generated from `results.json` only (every number in it)."""

from __future__ import annotations

import math

from jaxprune import pruning

from ._realdata_summary import format_table
from ._reproduce_claims import claims_section
from ._reproduce_format import failed, fig, fmt, num, table
from ._reproduce_settings import PARTS

__all__ = ["build_report"]


def _sec_ode(results) -> str:
    rec = results["parts"].get("ode_vs_sim")
    out = ["## 1. ODE against finite-N simulation", ""]
    bad = failed(rec, "ode_vs_sim")
    if bad:
        return "\n".join(out + [bad])
    s, r = rec["settings"], rec["result"]
    out.append(f"Soft committee machine, K = {s['K']}, M = {s['M']}, eta = {fmt(s['eta'])}, sigma = "
               f"{fmt(s['sigma'])}, trained to alpha = {fmt(s['alpha'])} by online SGD (float32) with "
               f"{s['seeds']} seeds per N; the ODE of each run starts from that run's own initial overlaps. "
               "The deviation is simulation minus ODE in the noise-free eps_g, root mean square over the "
               "recorded alpha, averaged over seeds. Theory (docs/theory.md 4) expects it to shrink like N^-1/2.")
    out += ["", table(["N", "seeds", "SGD steps", "final eps_g sim", "final eps_g ODE", "rms deviation",
                        "max deviation", "sqrt(N) x rms deviation", f"rms deviation, alpha <= {fmt(s['early_alpha'])}",
                        "sqrt(N) x early rms deviation"],
                       [[x["N"], x["seeds"], x["steps"], x["final_sim"], x["final_ode"], x["rms_deviation"],
                         x["max_deviation"], x["sqrtN_rms_deviation"], x["rms_deviation_early"],
                         x["sqrtN_rms_deviation_early"]] for x in r["runs"]]), ""]
    for field, what in (("fitted_exponent", "over the whole run"),
                        ("fitted_exponent_early", f"over alpha <= {fmt(s['early_alpha'])} (before any plateau escape)")):
        exp = num(r[field])
        if math.isfinite(exp):
            verdict = "consistent with" if -0.75 <= exp <= -0.25 else "NOT consistent with"
            out.append(f"- Fitted exponent of the rms deviation against N, {what}: {fmt(exp, 3)}, {verdict} "
                       "the expected -0.5.")
    out.append("")
    out.append("Where the student escapes a symmetric plateau, the escape time is set by O(N^-1/2) fluctuations "
               "that the deterministic ODE does not follow, so the deviation there need not shrink like N^-1/2.")
    out += ["", fig(results, "ode_vs_sim", "ODE vs simulation")]
    return "\n".join(out)


def _sec_fp(results) -> str:
    rec = results["parts"].get("fixed_points")
    out = ["## 2. Fixed points and their implicit gradients", ""]
    bad = failed(rec, "fixed_points")
    if bad:
        return "\n".join(out + [bad])
    s, r = rec["settings"], rec["result"]
    out.append(f"Soft committee machine K = {s['K']}, M = {s['M']} (v* = {fmt(s['v_star'])}): the ODEs are run to "
               f"alpha = {fmt(s['alpha'])}, then the end state is polished by Newton "
               "(`fixed_point_from_ode`). The derivatives come from the implicit function theorem (`jax.grad` "
               f"through `solve_fixed_point`); beside them central finite differences with step {fmt(s['fd_step'])}. "
               f"{r['converged']} of {r['total']} grid points converged to a stable fixed point. Largest relative "
               f"difference between implicit and finite-difference derivatives: {fmt(r['max_rel_diff_eta'], 3)} "
               f"(eta), {fmt(r['max_rel_diff_sigma'], 3)} (sigma).")
    out += ["", table(["eta", "sigma", "eps_g*", "d eps*/d eta", "(finite diff.)", "d eps*/d sigma",
                        "(finite diff.)", "slowest eigenvalue (real part)", "status"],
                       [[p["eta"], p["sigma"], p["eps_g"], p["d_eps_d_eta"], p["fd_d_eps_d_eta"], p["d_eps_d_sigma"],
                         p["fd_d_eps_d_sigma"], p["slowest_eigenvalue_real"],
                         p["status_words"] + (f" ({p['note']})" if p["note"] else "")] for p in r["points"]]),
            "", fig(results, "fixed_points", "fixed points")]
    return "\n".join(out)


def _protocol_line(p: dict) -> str:
    if p.get("normalise"):
        return ("Protocol: the seed paper's (docs/theory.md 6.3): every trained student's first-layer rows are "
                "normalised to |w_i|^2/N = 1 before pruning (theory and measurement act on the normalised network; "
                "the DPP kernel L = Q is built from it), importance node pruning keeps the k largest v_i, and the "
                f"second layer starts at {fmt(p.get('v0_scale'))} N(0, 1).")
    return ("Protocol: this project's earlier one (no row normalisation, importance score |v_i| sqrt(Q_ii), second "
            f"layer starting at {fmt(p.get('v0_scale'))} N(0, 1)).")


def _simulation_section(results, part: str, title: str, figure: str) -> str:
    rec = results["parts"].get(part)
    out = [title, ""]
    bad = failed(rec, part)
    if bad:
        return "\n".join(out + [bad])
    r = rec["result"]
    st = r["setting"]
    exact_nodes = r.get("node_masks", r["masks"]) == 0
    out.append(f"Students trained by finite-N online SGD (two-layer mode) at N = {st['N']}, M = {st['M']}, "
               f"K = {st['K']}, v* = {fmt(st['v_star'])}, eta = {fmt(st['eta'])}, {st['steps']} SGD steps, "
               f"{r['seeds']} students per noise level, then pruned by every method at every budget k = 1..K-1 "
               "(edge methods at p = k/K). *Theory*: the expected error from the trained student's overlaps (exact "
               "expectation over subsets for node methods, the Gaussian-equivalent large-N map for edge methods). "
               f"*Measured*: concrete pruned networks ({r['masks']} masks per random or DPP edge method"
               + (", node methods by their exact expectation over subsets, which is exact for the concrete network "
                  "because its pruned overlaps are the theory's" if exact_nodes else
                  f", {r['masks']} per random or DPP node method")
               + "), their exact error from their own overlaps"
               + ("" if exact_nodes else "; the test MSE on fresh noisy inputs is set beside 2 eps_g + sigma^2")
               + ".")
    if "protocol" in r:
        out += ["", _protocol_line(r["protocol"])]
    for sigma, rows in r["theory"].items():
        tr = r["training"].get(sigma, {})
        fin = ", ".join(fmt(x) for x in tr.get("eps_g_final", []))
        out += ["", f"### sigma = {fmt(num(sigma))}: theory (mean over students; ± std over subsets)", "",
                f"Trained students' final eps_g (before normalisation): {fin}.", "",
                pruning.format_compare_table([dict(x, std=num(x["std"]), mean=num(x["mean"])) for x in rows])]
    out += ["", "### Theory against measurement (every method, option and budget)", "",
            table(["sigma", "method", "option", "k", "predicted", "measured", "measured std", "test MSE measured",
                   "2 eps_g + sigma^2"],
                  [[x["sigma"], x["method"], x["option"], x["k"], x["predicted"], x["measured"], x["measured_std"],
                    x["measured_test_mse"], x["test_mse_from_overlaps"]]
                   for x in sorted(r["rows"], key=lambda x: (x["sigma"], x["k"], x["method"], x["option"]))]),
            "", fig(results, figure, "pruning methods")]
    return "\n".join(out)


def _sec_paper(results) -> str:
    return _simulation_section(results, "paper", "## 3. Pruning at the seed paper's teacher-student setting",
                               "pruning_methods")


def _sec_regime(results) -> str:
    return _simulation_section(results, "regime_5_20", "## 3b. The seed paper's second regime (K = 20, M = 5)",
                               "regime_5_20")


def _sec_design(results) -> str:
    out = ["## 5. Designed pruning against the baselines", ""]
    out.append("Masks and rules designed by gradient descent on the exact or theoretical error (docs/theory.md 7) on a "
               "student trained by finite-N SGD at the paper setting, beside random / magnitude / importance / DPP "
               "baselines (each with its best reweighting or rescale). A design counts only if it beats the best "
               "baseline of the same kind at the same budget. `sim`: the exact error of concrete masks drawn on "
               "the simulated network (population level) or of the pruned network trained on by finite-N SGD "
               "(training level).")
    for name, title in (("design_network", "Network level (a mask on the concrete network)"),
                        ("design_population", "Population level (keep rules and subset distributions)"),
                        ("design_training", "Training level (prune at alpha_p, retrain with the ODEs)")):
        rec = results["parts"].get(name)
        out += ["", f"### {title}", ""]
        bad = failed(rec, name)
        if bad:
            out.append(bad)
            continue
        r = rec["result"]
        net = rec["settings"]["network"]
        out.append(f"Network: N = {net['N']}, K = {net['K']}, M = {net['M']}, {net['steps']} SGD steps, sigma = "
                   f"{fmt(net['sigma'])}." + (f" Pruned at alpha_p = {fmt(r['alpha_p'])}, retrained for "
                                                f"{fmt(r['duration'])}." if "alpha_p" in r else ""))
        bkey = r["budget"]
        out += ["", table([bkey, "kind", "method", "eps_g", "sim", "setting"],
                           [[x.get(bkey), x.get("kind", "node"), x["method"], x["error"], x.get("sim"),
                             x.get("setting", "")] for x in r["rows"]]), ""]
        for sm in r["summary"]:
            line = (f"- {bkey} = {fmt(sm['budget'])}, {sm['kind']}: {sm['designed']} "
                    f"{'BEATS' if sm['beats'] else 'does NOT beat'} the best baseline ({sm['best_baseline']}): "
                    f"{fmt(sm['designed_error'])} vs {fmt(sm['baseline_error'])}")
            if "beats_in_simulation" in sm:
                line += (f"; in simulation {fmt(sm['designed_sim'])} vs {fmt(sm['baseline_sim'])} "
                         f"({'beats' if sm['beats_in_simulation'] else 'does not beat'})")
            out.append(line + ".")
    out += ["", fig(results, "design", "designed pruning")]
    return "\n".join(out)


def _sec_realdata(results) -> str:
    rec = results["parts"].get("realdata")
    out = ["## 6. Real data", ""]
    bad = failed(rec, "realdata")
    if bad:
        return "\n".join(out + [bad])
    r = rec["result"]
    cfg = r["config"]
    out.append(f"MLPs ({'-'.join(str(x) for x in cfg['sizes'])}, {cfg['activation']}) trained on the "
               f"{cfg['dataset']} data set ({cfg['seeds']} training seeds), their first hidden layer pruned by every "
               f"node and edge method at every budget ({cfg['masks']} masks per randomised method); test error in "
               "percent, mean ± std over seeds and masks (`+ls`: least-squares reweighting / fusing).")
    rows = [dict(x, mean=x["mean_pct"] / 100, std=x["std_pct"] / 100) for x in r["rows"]]
    out += ["", format_table(rows, r["budgets"], r["unpruned"]), ""]
    for key, v in r["verdicts"].items():
        if isinstance(v, dict) and "holds" in v:
            out.append(f"- {key}: **{'HOLDS' if v['holds'] else 'DOES NOT HOLD'}**. {v.get('summary', '')}")
    out += ["", fig(results, "realdata", "real data")]
    return "\n".join(out)


def build_report(results: dict) -> str:
    """The markdown report of [`reproduce`][jaxprune.experiments.reproduce], generated from its results only
    (every number in it comes from `results.json`).

    A section that cannot be written (a missing or failed part) is replaced by one line saying so; the rest of
    the report is kept.

    **Arguments:**

    - `results`: the content of `results.json` (a [`ReproduceResult`][jaxprune.experiments.ReproduceResult]
      or the dict read back): `mode`, `parts` (each part's record), `claims`, `figures`.

    **Returns:** the report as one markdown string (ending in a newline).
    """
    out = [f"# jaxprune reproduce ({results['mode']} mode)", ""]
    failed = [n for n, p in results["parts"].items() if p.get("status") != "ok"]
    missing = [n for n in PARTS if n not in results["parts"]]
    out.append("Every number below is generated from `results.json`; errors are the noise-free generalisation "
               "error eps_g unless a column says otherwise. "
               + (f"**{len(failed)} part(s) failed: {', '.join(failed)}.** " if failed else "")
               + (f"Not run: {', '.join(missing)}. " if missing else "")
               + ("All parts succeeded." if not failed and not missing else ""))
    out += ["", table(["part", "status", "computed in (s, wall)", "(s, CPU)", "this run (s, wall)"],
                       [[n, ("reused" if p.get("reused") else p.get("status", "?")) if p.get("status") == "ok"
                         else "FAILED", p.get("seconds"), p.get("cpu_seconds"), p.get("wall_seconds")]
                        for n, p in results["parts"].items()])]
    for sec in (_sec_ode, _sec_fp, _sec_paper, _sec_regime, claims_section, _sec_design, _sec_realdata):
        try:
            out += ["", sec(results)]
        except Exception as e:  # noqa: BLE001 - a broken section must not lose the rest of the report
            out += ["", f"*(section {sec.__name__} could not be written: {type(e).__name__}: {e})*"]
    return "\n".join(out) + "\n"

