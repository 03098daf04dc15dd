"""The seed paper's claims decided from the experiment's rows (docs/theory.md 6.3).

Rows come from [`simulation_check`][] (trained students: per-student theory and measurement), from
[`idealised_rows`][] and [`lean_rows`][] (exact theory), or as ready cells from the real-data run
(`c8_cells`). The claims themselves and the verdict rule live in `_claims`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ._claims import CLAIMS, OURS, Claim, cell, decide, paired_cell

__all__ = ["cells_from_student_rows", "cells_from_theory_rows", "decide_claims", "claims_from_rows"]


def _side_key(side: dict) -> tuple[str, str]:
    return side["method"], side["option"]


def cells_from_student_rows(claim: Claim, rows: Sequence[dict], value: str) -> list[dict]:
    """Cells of `claim` from [`simulation_check`][] rows, paired by student: `value="predicted"` (theory on
    each student's overlaps: the spread is over students) or `"measured"` (concrete pruned networks: each
    student's mean over its masks, the spread over students; with one student, the masks' standard error)."""
    field = "predicted_per_seed" if value == "predicted" else "measured_mean_per_seed"
    idx = {(r["sigma"], r["method"], r["option"], r["k"]): r for r in rows}
    out = []
    for sigma, k in sorted({(r["sigma"], r["k"]) for r in rows}):
        ra = idx.get((sigma, *_side_key(claim.a), k))
        rb = idx.get((sigma, *_side_key(claim.b), k))
        if ra is None or rb is None:
            continue
        se1 = 0.0
        if value == "measured":
            def se(r):
                n = np.asarray(r["masks_per_seed"], float)
                sd = np.asarray(r["measured_std_per_seed"], float)
                ok = n > 1
                return float(np.sum(sd[ok] ** 2 / (n[ok] - 1))) / max(len(n), 1) ** 2
            se1 = math.sqrt(se(ra) + se(rb))
        out.append(paired_cell(sigma, k, ra[field], rb[field], mask_stderr=se1))
    return out


def cells_from_theory_rows(claim: Claim, rows: Sequence[dict], sigma=None) -> list[dict]:
    """Cells of `claim` from theory rows of one state (`mean`, `stderr` per method, option and `k`)."""
    idx = {(r["method"], r["option"], r["k"]): r for r in rows}
    out = []
    for k in sorted({r["k"] for r in rows}):
        ra = idx.get((*_side_key(claim.a), k))
        rb = idx.get((*_side_key(claim.b), k))
        if ra is None or rb is None:
            continue
        se = math.hypot(float(ra.get("stderr") or 0.0), float(rb.get("stderr") or 0.0))
        out.append(cell(sigma, k, ra["mean"], rb["mean"], se))
    return out


def decide_claims(*, idealised: dict | None = None, students: dict | None = None, ode: dict | None = None,
                  realdata_cells: Sequence[dict] | None = None) -> list[dict]:
    """Decide every claim of the paper (and ours) from every source given: `results["claims"]` of
    `jaxprune reproduce` (docs/theory.md section 6.3).

    Cells are built per claim from the rows of both sides (same method names and options as the claim's `a`
    and `b`) and decided by [`decide`][jaxprune.experiments.decide]: exact theory gives `stderr = 0`; trained
    students are paired by student (the standard error is over students, or over masks for one student).
    A claim with no matching rows in a source is left out for that source. All arguments are keyword-only and
    optional.

    **Arguments:**

    - `idealised`: a list (one per regime) of dicts `{"K", "M", "v_star", "rows"}`, `rows` from
      [`idealised_rows`][jaxprune.experiments.idealised_rows]; decides the paper's claims in exact theory.
    - `students`: a list of dicts `{"K", "M", "label", "rows"}`, `rows` from
      [`simulation_check`][jaxprune.experiments.simulation_check]: every claim (paper's and ours) is decided
      twice, from the theory on the trained students (`predicted`) and from the concrete pruned networks
      (`measured`).
    - `ode`: a list of dicts `{"K", "M", "label", "rows": {sigma: rows}}`, `rows` from
      [`lean_rows`][jaxprune.experiments.lean_rows] on ODE-trained students; the paper's claims in exact
      theory.
    - `realdata_cells`: C8 cells of the real-data run ([`c8_cells`][jaxprune.experiments.c8_cells]; `k` is the
      kept fraction of first-layer parameters, errors are test error fractions).

    **Returns:** a list of [`decide`][jaxprune.experiments.decide] entries, the paper's claims first in the
    order of [`CLAIMS`][jaxprune.experiments.CLAIMS], then ours (`ours: true`).
    """
    out = []
    for reg in idealised or ():
        K = reg["K"]
        setting = f"idealised specialised state, K = {K}, M = {reg['M']}, v* = {reg['v_star']:g} (exact theory)"
        for c in CLAIMS:
            cells = cells_from_theory_rows(c, reg["rows"])
            if cells:
                out.append(decide(c, cells, source="theory (idealised state)", K=K, setting=setting))
    for reg in ode or ():
        K = reg["K"]
        setting = f"ODE-trained students, {reg['label']} (exact theory, rows normalised)"
        for c in CLAIMS:
            cells = [x for sigma, rows in reg["rows"].items() for x in cells_from_theory_rows(c, rows, float(sigma))]
            if cells:
                out.append(decide(c, cells, source="theory (ODE-trained students)", K=K, setting=setting))
    for reg in students or ():
        K = reg["K"]
        for value, source in (("predicted", "theory on the trained students"),
                              ("measured", "measured (concrete pruned networks)")):
            for c in CLAIMS + OURS:
                cells = cells_from_student_rows(c, reg["rows"], value)
                if cells:
                    out.append(decide(c, cells, source=source, K=K, setting=reg["label"]))
    if realdata_cells:
        c8 = next(c for c in CLAIMS if c.id == "C8")
        cells = [{k: x.get(k) for k in ("sigma", "k", "a", "b", "diff", "stderr")} for x in realdata_cells]
        out.append(decide(c8, cells, source="real data", setting="MLP on digits, first layer pruned, no fine-tuning; "
                          "k is the fraction of first-layer parameters kept; errors are test error fractions"))
    order = {c.id: i for i, c in enumerate(CLAIMS + OURS)}
    return sorted(out, key=lambda e: (e["ours"], order[e["id"]]))


def claims_from_rows(rows: Sequence[dict], value: str = "predicted") -> list[dict]:
    """Legacy per-cell flags (the report before the claims were decided by [`decide`][jaxprune.experiments.decide];
    kept for the `paper` command): at every `(sigma, k)`, best-option errors of each side and strict
    comparisons of them.

    These flags compare *best options* (among `preactivation`, `activation`, `optimal` for "reweighted"; any
    rescale for random edge) and use a strict `<` without standard errors: they are not the paper's claims
    (see [`decide_claims`][jaxprune.experiments.decide_claims]). In particular `claim2_random_edge_beats_dpp_node`
    compares against the *reweighted* DPP node error, while the paper's C5 is against DPP node without
    reweighting.

    **Arguments:**

    - `rows`: rows of [`simulation_check`][jaxprune.experiments.simulation_check] (`sigma`, `method`,
      `option`, `k` and the `value` column).
    - `value`: the column compared, `"predicted"` (theory on the students) or `"measured"` (concrete
      networks).

    **Returns:** one dict per `(sigma, k)`, in sorted order: the best errors `dpp_node_reweighted`,
    `random_node_reweighted`, `importance_node_reweighted`, `dpp_node_plain`, `random_node_plain`,
    `importance_node_plain`, `random_edge_best` (`nan` where a method is missing) and the boolean flags
    `claim1_dpp_beats_random`, `claim1_dpp_beats_importance`, `claim1_plain_dpp_beats_random`,
    `claim1_plain_dpp_beats_importance`, `claim2_random_edge_beats_dpp_node`.
    """
    table = {}
    for r in rows:
        table[(r["sigma"], r["method"], r["option"], r["k"])] = r[value]
    out = []
    for sigma, k in sorted({(r["sigma"], r["k"]) for r in rows}):
        def best(method, options=None):
            vals = [v for (s, m, o, kk), v in table.items() if s == sigma and kk == k and m == method
                    and (options is None or o in options)]
            return min(vals) if vals else float("nan")

        rw = ("preactivation", "activation", "optimal")
        dpp_rw, rand_rw, imp_rw = best("dpp-node", rw), best("random-node", rw), best("importance-node", rw)
        dpp0, rand0, imp0 = best("dpp-node", ["none"]), best("random-node", ["none"]), best("importance-node", ["none"])
        edge = best("random-edge")
        out.append({
            "sigma": sigma, "k": k,
            "dpp_node_reweighted": dpp_rw, "random_node_reweighted": rand_rw, "importance_node_reweighted": imp_rw,
            "dpp_node_plain": dpp0, "random_node_plain": rand0, "importance_node_plain": imp0,
            "random_edge_best": edge,
            "claim1_dpp_beats_random": bool(dpp_rw < rand_rw),
            "claim1_dpp_beats_importance": bool(dpp_rw < imp_rw),
            "claim1_plain_dpp_beats_random": bool(dpp0 < rand0),
            "claim1_plain_dpp_beats_importance": bool(dpp0 < imp0),
            "claim2_random_edge_beats_dpp_node": bool(edge < dpp_rw),
        })
    return out
