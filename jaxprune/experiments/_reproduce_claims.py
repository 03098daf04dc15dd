"""The seed paper's claims in `jaxprune reproduce`: decided from the parts' results (`results["claims"]`) and
written as the report's claim section, with a per-cell table for every claim and source (docs/theory.md 6.3).
"""

from __future__ import annotations

from ._claims import RTOL
from ._paper_claims import decide_claims
from ._realdata_summary import c8_cells
from ._reproduce_format import failed, fmt, table

__all__ = ["claims_from_parts", "claims_section"]


def claims_from_parts(results: dict) -> list[dict]:
    """`results["claims"]` from the finished parts' results (`{part: result}`): the theory at the idealised
    states and on ODE-trained students (`theory_claims`), the trained students of `paper` and `regime_5_20`
    (theory on them and measured), and C8 from `realdata`."""
    students = []
    for part in ("paper", "regime_5_20"):
        r = results.get(part)
        if r is not None:
            st = r["setting"]
            students.append({"K": st["K"], "M": st["M"], "rows": r["rows"],
                             "label": f"{part}: K = {st['K']}, M = {st['M']}, N = {st['N']}, {st['steps']} SGD steps, "
                                      f"{r['seeds']} students per noise level ({r['protocol']['name']} protocol)"})
    th = results.get("theory_claims") or {}
    rd = results.get("realdata")
    cells = c8_cells(rd) if rd is not None else None
    return decide_claims(idealised=th.get("idealised"), ode=th.get("ode"), students=students,
                         realdata_cells=cells)


def _cell_rows(entry: dict) -> list[list]:
    out = []
    for c in entry["cells"]:
        if entry["relation"] == "equal":
            scope = "="
        else:
            scope = "strict" if c.get("strict") else "<="
        if not c.get("claimed", True):
            scope = "not claimed"
        out.append(["-" if c["sigma"] is None else c["sigma"], c["k"], c["a"], c["b"], c["diff"],
                    "-" if c["stderr"] is None else c["stderr"], c["outcome"], scope])
    return out


def _entry(e: dict) -> list[str]:
    a, b = e["a"], e["b"]
    word = e["verdict"].upper()
    out = [f"#### {e['id']} — {e['source']}: **{word}**", "",
           f"*Statement:* {e['statement']}.  ",
           f"*a* = {a['method']} ({a['option']}); *b* = {b['method']} ({b['option']}).  ",
           f"*Setting:* {e['setting']}.  ",
           f"*Why:* {e['reason']}."]
    if not e["ours"] and e["verdict"] == "does not hold":
        out.append("**Our results disagree with the paper here** (at the cells named above).")
    out += ["", table(["sigma", "k", "a", "b", "a - b", "stderr", "outcome", "paper says"], _cell_rows(e))]
    return out


def claims_section(results: dict) -> str:
    """The report's section 4: the paper's claims, then our own findings, then the theory winner map."""
    claims = results.get("claims")
    out = ["## 4. The seed paper's claims", ""]
    out.append("Each claim compares two sides, *a* (the side the paper says has the lower error, or the side it "
               "says is equal) and *b*, with the method and option of each as the paper states them. Per cell "
               "(noise level sigma, budget k) the paired difference a - b is given with its standard error: over "
               "the trained students (paired by student; their mask noise is inside each student's mean) for "
               "measured values and for theory on trained students, 0 for exact theory. Outcome: *better* (a "
               "lower), *worse* or *tie*, where tie means |a - b| <= max(2 stderr, "
               f"{RTOL:g} max(|a|, |b|)). A claim *holds* when no cell it covers is significantly worse and every "
               "cell where the paper says strictly better is better; it *does not hold* when some cell is "
               "significantly worse (named); otherwise it *holds in part*. Cells the paper does not claim are "
               "shown but do not count.")
    if isinstance(claims, dict) and "error" in claims:
        return "\n".join(out + ["", f"*The claims could not be decided: {claims['error']}*"])
    claims = claims or []
    paper = [e for e in claims if not e["ours"]]
    ours = [e for e in claims if e["ours"]]
    out += ["", "### Verdicts", "", table(["claim", "source", "setting", "verdict"],
                                          [[e["id"], e["source"], e["setting"], e["verdict"]] for e in paper])]
    for e in paper:
        out += [""] + _entry(e)
    out += ["", "### Our findings beyond the paper (not claims of the paper)", "",
            "The same rule applied to comparisons with other options than the paper's (for example the optimal "
            "second layer, which uses the teacher): these are ours, reported beside the paper's claims and never "
            "in place of them.", ""]
    if ours:
        out.append(table(["finding", "source", "verdict"], [[e["id"], e["source"], e["verdict"]] for e in ours]))
        for e in ours:
            out += [""] + _entry(e)
    rec = results["parts"].get("winner_map")
    out += ["", "### Theory winner map (ours)", ""]
    bad = failed(rec, "winner_map")
    if bad:
        out.append(bad)
    else:
        s, r = rec["settings"], rec["result"]
        out.append(f"Students trained by the ODEs (two-layer, v* = {fmt(s['v_star'])}, alpha = {fmt(s['alpha'])}, "
                   "second layer starting at 0.1 N(0, 1), rows not normalised, importance by |v_i| sqrt(Q_ii): this "
                   "project's earlier protocol, not the paper's); for each state and budget the "
                   "method with the lowest expected error, each method with its best option (including the "
                   "optimal second layer): a comparison of best options, not one of the paper's claims.")
        methods = ["random-node", "importance-node", "dpp-node", "random-edge", "magnitude-edge", "dpp-edge"]
        out += ["", table(["K/M", "sigma", "eta", "k", "k/K", "unpruned"] + methods + ["winner"],
                          [[x["K_over_M"], x["sigma"], x["eta"], x["k"], x["p"], x["unpruned"]]
                           + [x["errors"].get(m) for m in methods] + [x["winner"]] for x in r["rows"]])]
    return "\n".join(out)
