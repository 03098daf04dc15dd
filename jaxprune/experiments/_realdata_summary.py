"""The real-data run's results (docs/theory.md 6.3, claim C8): the result object of
[`run_realdata`][jaxprune.experiments.run_realdata], tidy rows pooled over training seeds and masks, paired
comparisons, the verdict on the seed paper's claim C8 beside ours, the markdown table and the figure.

Rows are keyed by variant labels `<kind>-<method>[+ls]` (e.g. `node-dpp-rbf+ls`, `edge-random`), the names of
`jaxprune.realdata.NODE_METHODS` / `EDGE_METHODS` with `+ls` for least-squares reweighting: the keys of
`results.json` and of the `reproduce` report.

References: Acharyya et al., "Statistical Mechanical Analysis of Neural Network Pruning", UAI 2021;
Mariet & Sra, "Diversity Networks", ICLR 2016.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

import jaxprune as jp
from ._claims import claim_by_id, decide

__all__ = [
    "C8_SIDES",
    "RealDataResult",
    "summarise",
    "paired_cells",
    "c8_cells",
    "realdata_verdicts",
    "verdict_lines",
    "format_table",
    "plot_realdata",
]

#: the two sides of claim C8, as row variants: (random edge + least squares, DPP node (RBF, DIVNET) + fusing)
C8_SIDES: tuple[str, str] = ("edge-random+ls", "node-dpp-rbf+ls")


@dataclasses.dataclass(frozen=True)
class RealDataResult:
    """Everything [`run_realdata`][] computed.

    **Fields:** `config` (the settings), `unpruned` (per-seed test error of the trained networks), `rows`
    (tidy summary: one dict per method variant and budget), `verdicts`, `table` (markdown), `paths` (files
    written), `seconds` (wall time), `computed` / `reused` (numbers of (seed, method) units).
    """

    config: dict
    unpruned: list
    rows: list
    verdicts: dict
    table: str
    paths: dict
    seconds: float
    computed: int
    reused: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------
# Summaries, paired comparisons, verdicts
# --------------------------------------------------------------------------------------------------


def _variant(kind, method, reweight) -> str:
    return f"{kind}-{method}" + ("+ls" if reweight == "ls" else "")


def summarise(seed_results: Sequence[dict], budgets: Sequence[float], *, field: str = "errors") -> list[dict]:
    """Tidy rows of test error pooled over training seeds and masks, one per method variant and budget.

    **Arguments:**

    - `seed_results`: the per (seed, method) results of [`run_realdata`][] (`results.json`'s `per_seed`).
    - `budgets`: the budgets (fractions of first-layer parameters kept) the results were computed at.
    - `field`: `"errors"` (as pruned, default) or `"finetuned"` (after fine-tuning).

    **Returns:** a list of dicts `(variant, kind, method, reweight, budget, k, c, params_kept, mean, std, n,
    per_seed_mean, per_seed_values)`: `std` with `ddof=1` (0 for one value); `per_seed_values[s]` lists the
    error of every mask of training seed `s` (what paired comparisons use).
    """
    rows = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for res in seed_results:
        groups.setdefault((res["kind"], res["method"]), []).append(res)
    for (kind, method), items in groups.items():
        for r in jp.realdata.REWEIGHTS:
            for bi, f in enumerate(budgets):
                per_seed = [[float(x) for x in it[field][r][bi]] for it in items if field in it]
                vals = np.concatenate([np.asarray(v, float) for v in per_seed]) if per_seed else np.zeros(0)
                if vals.size == 0:
                    continue
                rows.append({
                    "variant": _variant(kind, method, r), "kind": kind, "method": method, "reweight": r,
                    "budget": f, "k": items[0]["k"][bi], "c": items[0]["c"][bi],
                    "params_kept": items[0]["params_kept"][bi],
                    "mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if vals.size > 1 else 0.0,
                    "n": int(vals.size), "per_seed_mean": [float(np.mean(v)) for v in per_seed],
                    "per_seed_values": per_seed,
                })
    return rows


def _paired_differences(ra: dict, rb: dict) -> list[np.ndarray]:
    """Per training seed, the paired differences `a - b`: mask by mask where both rows hold the same number of
    masks for that seed (independent draws on the same network), else the difference of the seed means."""
    va, vb = ra.get("per_seed_values"), rb.get("per_seed_values")
    if va is None or vb is None:  # rows written before per-seed values were stored
        va = [[x] for x in ra["per_seed_mean"]]
        vb = [[x] for x in rb["per_seed_mean"]]
    if len(va) != len(vb):
        raise ValueError(f"rows {ra['variant']!r} and {rb['variant']!r} at budget {ra['budget']} come from "
                         f"different numbers of training seeds ({len(va)} and {len(vb)}): cannot pair them")
    out = []
    for xa, xb in zip(va, vb):
        xa, xb = np.asarray(xa, float), np.asarray(xb, float)
        out.append(xa - xb if xa.shape == xb.shape else np.atleast_1d(xa.mean() - xb.mean()))
    return out


def paired_cells(rows_or_result: Any, a: str, b: str, *, budgets: Sequence[float] | None = None) -> list[dict]:
    """Paired comparison of row variants `a` and `b` per budget `< 1` (equal first-layer parameter counts):
    claim cells `{"sigma": None, "k": budget, "a", "b", "diff", "stderr", "n", "params_a", "params_b"}`.

    `a`, `b`: mean test errors of the two sides (over seeds and masks); `diff`: mean of the paired differences
    `a - b` (pairs: same training seed, mask by mask); `stderr`: standard error of that mean, the larger of
    (i) `std(d) / sqrt(n)` over the `n` pairs and (ii) `std(seed means of d) / sqrt(S)` over the `S` training
    seeds (`S >= 2`), so that neither the correlation of pairs from one network nor the few degrees of freedom
    of (ii) overstate significance; `None` when there is a single pair (no estimate).
    `rows_or_result`: a [`RealDataResult`][], a dict with `"rows"` (`results.json`, a `reproduce` part) or rows;
    `budgets`: the budgets to compare (default: every budget of the rows).

    **Returns:** the list of cells, one per budget `< 1` where both variants have a row.
    """
    rows = _rows_of(rows_or_result)
    idx = {(r["variant"], r["budget"]): r for r in rows if not r.get("finetuned")}
    if budgets is None:
        budgets = sorted({r["budget"] for r in rows})
    cells = []
    for f in budgets:
        if f >= 1 or (a, f) not in idx or (b, f) not in idx:
            continue
        ra, rb = idx[(a, f)], idx[(b, f)]
        per_seed = _paired_differences(ra, rb)
        d = np.concatenate(per_seed)
        ses = []
        if d.size > 1:
            ses.append(float(d.std(ddof=1) / math.sqrt(d.size)))
        if len(per_seed) > 1:
            m = np.asarray([x.mean() for x in per_seed])
            ses.append(float(m.std(ddof=1) / math.sqrt(m.size)))
        cells.append({"sigma": None, "k": f, "a": float(ra["mean"]), "b": float(rb["mean"]),
                      "diff": float(d.mean()), "stderr": max(ses) if ses else None, "n": int(d.size),
                      "params_a": ra["params_kept"], "params_b": rb["params_kept"]})
    return cells


def _rows_of(obj: Any) -> list[dict]:
    if isinstance(obj, RealDataResult):
        return list(obj.rows)
    if isinstance(obj, dict):
        if "rows" not in obj:
            raise ValueError("expected a RealDataResult, a dict with 'rows' or a list of rows; got a dict without "
                             "'rows'")
        return list(obj["rows"])
    if isinstance(obj, (list, tuple)):
        return list(obj)
    raise ValueError(f"expected a RealDataResult, a dict with 'rows' or a list of rows; got {type(obj).__name__}")


def c8_cells(result_or_rows: Any, *, budgets: Sequence[float] | None = None) -> list[dict]:
    """Cells of claim C8 (docs/theory.md 6.3): side `a` = random edge pruning + least-squares reweighting
    (`edge-random+ls`), side `b` = DPP node pruning (RBF kernel, DIVNET) + fusing (`node-dpp-rbf+ls`), at equal
    first-layer parameter counts. The paper claims `a < b` (negative `diff`) on CIFAR-10 at every budget and on
    MNIST at budgets >= 50 %.

    **Arguments:**

    - `result_or_rows`: a [`RealDataResult`][], a dict with `"rows"` or a list of rows.
    - `budgets`: the budgets to compare (default: every budget of the rows).

    **Returns:** one cell per budget `< 1`, `{"sigma": None, "k": budget, "a", "b", "diff", "stderr", ...}` as
    in [`paired_cells`][]; empty when the run lacks either side.
    """
    return paired_cells(result_or_rows, *C8_SIDES, budgets=budgets)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def _compare(rows, a: str, b: str, budgets) -> dict:
    """Per budget `< 1`: mean error of variant `a` minus `b` (unpaired); `a` wins where negative, significantly
    where the difference exceeds twice its standard error `sqrt(s_a^2 / n_a + s_b^2 / n_b)`."""
    idx = {(r["variant"], r["budget"]): r for r in rows}
    per = []
    for f in budgets:
        if f >= 1 or (a, f) not in idx or (b, f) not in idx:
            continue
        ra, rb = idx[(a, f)], idx[(b, f)]
        diff = ra["mean"] - rb["mean"]
        se = math.sqrt(ra["std"] ** 2 / ra["n"] + rb["std"] ** 2 / rb["n"])
        per.append({"budget": f, "a": ra["mean"], "b": rb["mean"], "diff": diff, "se": se,
                    "a_wins": diff < 0, "a_wins_significantly": diff < -2 * se,
                    "b_wins_significantly": diff > 2 * se})
    wins = sum(p["a_wins"] for p in per)
    return {"a": a, "b": b, "per_budget": per, "a_wins": wins, "budgets_compared": len(per),
            "a_wins_significantly": sum(p["a_wins_significantly"] for p in per),
            "b_wins_significantly": sum(p["b_wins_significantly"] for p in per),
            "mean_diff": float(np.mean([p["diff"] for p in per])) if per else float("nan")}


def _summary_line(c: dict) -> str:
    return (f"{c['a']} beats {c['b']} at {c['a_wins']}/{c['budgets_compared']} budgets "
            f"({c['a_wins_significantly']} significantly, {c['b_wins_significantly']} significantly worse), "
            f"mean difference {100 * c['mean_diff']:+.2f} points")


def realdata_verdicts(rows: Sequence[dict], budgets: Sequence[float]) -> dict:
    """Verdicts from the numbers (paired cells per budget, see [`paired_cells`][]) of the summary `rows`
    ([`summarise`][]) at the given `budgets`. Returns a dict with these keys:

    - `random_edge_beats_dpp_node` (the seed paper's C8): `edge-random+ls` against `node-dpp-rbf+ls`, both sides
      reweighted; `cells` as in [`c8_cells`][], each with its `outcome` (`better` / `tie` / `worse`) and the
      `verdict` (`holds` / `holds in part` / `does not hold`) by the claims' rule (`_claims.decide`: tie within
      two standard errors; the paper says strictly better at every level); `holds` is `verdict == "holds"`.
    - ours, not claims of the paper (`paper_claim: False`; `holds` = better mean at a strict majority of budgets):
      `dpp_node_beats_random_and_importance` (`node-dpp-rbf+ls` against `node-random` and `node-importance`, each
      with fusing and without), `unreweighted_random_edge_beats_dpp_node` (`edge-random`, no reweighting, against
      `node-dpp-rbf+ls`), and `best_per_budget`.
    """
    variants = {r["variant"] for r in rows}
    out: dict[str, Any] = {}

    def majority(c):
        return c["budgets_compared"] > 0 and 2 * c["a_wins"] > c["budgets_compared"]

    dpp = C8_SIDES[1]
    if dpp in variants:
        comps = {b: _compare(rows, dpp, b, budgets) for b in
                 ("node-random+ls", "node-importance+ls", "node-random", "node-importance") if b in variants}
        fair = [comps[b] for b in ("node-random+ls", "node-importance+ls") if b in comps]
        out["dpp_node_beats_random_and_importance"] = {
            "paper_claim": False,
            "holds": bool(fair) and all(majority(c) for c in fair),
            "holds_vs_unreweighted": all(majority(comps[b]) for b in ("node-random", "node-importance") if b in comps),
            "comparisons": comps,
            "summary": "; ".join(_summary_line(c) for c in comps.values()),
        }
    if set(C8_SIDES) <= variants:
        c8 = decide(claim_by_id("C8"), c8_cells(rows, budgets=budgets), source="real data")
        out["random_edge_beats_dpp_node"] = {
            "paper_claim": "C8", "a": c8["a"], "b": c8["b"], "cells": c8["cells"], "verdict": c8["verdict"],
            "reason": c8["reason"], "holds": c8["verdict"] == "holds",
            "summary": f"C8: {C8_SIDES[0]} against {C8_SIDES[1]} (both reweighted), paired difference a - b: "
                       + ", ".join(f"{100 * c['k']:g}%: {100 * c['diff']:+.2f} ± {_pct(c['stderr'])} points "
                                   f"({c['outcome']})" for c in c8["cells"]),
        }
    if dpp in variants and "edge-random" in variants:
        c = _compare(rows, "edge-random", dpp, budgets)
        out["unreweighted_random_edge_beats_dpp_node"] = {
            "paper_claim": False, "holds": majority(c), "comparisons": {"edge-random": c},
            "budgets_where_edge_wins": [p["budget"] for p in c["per_budget"] if p["a_wins"]],
            "summary": _summary_line(c),
        }
    best = {}
    for f in budgets:
        cand = [r for r in rows if r["budget"] == f]
        if cand:
            r = min(cand, key=lambda r: r["mean"])
            best[str(f)] = {"variant": r["variant"], "mean": r["mean"]}
    out["best_per_budget"] = best
    return out


def verdict_lines(verdicts: dict) -> list[str]:
    """One markdown line per verdict of `verdicts` ([`realdata_verdicts`][]): the paper's claim first, then
    ours. Returns the lines (without newlines)."""
    lines = []
    for key, v in verdicts.items():
        if not (isinstance(v, dict) and "holds" in v):
            continue
        word = v.get("verdict", "holds" if v["holds"] else "does not hold").upper()
        label = f"paper claim {v['paper_claim']}" if v.get("paper_claim") else "ours"
        lines.append((0 if v.get("paper_claim") else 1, f"- {key} ({label}): {word}. {v['summary']}"))
    return [t for _, t in sorted(lines, key=lambda x: x[0])]


# --------------------------------------------------------------------------------------------------
# Tables and figures
# --------------------------------------------------------------------------------------------------


def format_table(rows: Sequence[dict], budgets: Sequence[float], unpruned: Sequence[float], *,
                 title: str = "test error (%)") -> str:
    """The markdown table of test errors: one row per method variant, one column per budget, `mean ± std` in
    percent, with a first row for the unpruned networks.

    **Arguments:**

    - `rows`: summary rows ([`summarise`][]).
    - `budgets`: the columns (fractions of first-layer parameters kept).
    - `unpruned`: test error of each training seed's unpruned network (may be empty).
    - `title`: the table's bold caption.

    **Returns:** the table as a string ending in a newline.
    """
    head = "| method | " + " | ".join(f"{100 * f:g}%" for f in budgets) + " |"
    sep = "|---|" + "---|" * len(budgets)
    u = np.asarray(unpruned, float)
    lines = [f"**{title}**, mean ± std over seeds and masks; columns: fraction of first-layer parameters kept", "",
             head, sep]
    if u.size:
        s = f"{100 * u.mean():.2f} ± {100 * (u.std(ddof=1) if u.size > 1 else 0):.2f}"
        lines.append("| unpruned | " + " | ".join(s for _ in budgets) + " |")
    idx = {(r["variant"], r["budget"]): r for r in rows}
    for v in dict.fromkeys(r["variant"] for r in rows):
        cells = []
        for f in budgets:
            r = idx.get((v, f))
            cells.append("" if r is None else f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_realdata(rows: Sequence[dict], unpruned: Sequence[float], *, total_params: int | None = None, title=""):
    """Test error vs first-layer parameters kept, one line per method variant (node solid, edge dashed), two
    panels: without and with least-squares reweighting.

    **Arguments:**

    - `rows`: summary rows ([`summarise`][]).
    - `unpruned`: test error of each seed's unpruned network (a dotted line at their mean; may be empty).
    - `total_params`: the unpruned first-layer parameter count, shown in the axis label (optional).
    - `title`: prefix of the panel titles (e.g. the dataset's name).

    **Returns:** a matplotlib Figure (matplotlib is imported lazily).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, rw in zip(axes, jp.realdata.REWEIGHTS):
        for v in dict.fromkeys(r["variant"] for r in rows if r["reweight"] == rw):
            pts = sorted((r for r in rows if r["variant"] == v), key=lambda r: r["params_kept"])
            xs = [r["params_kept"] for r in pts]
            ax.errorbar(xs, [100 * r["mean"] for r in pts], yerr=[100 * r["std"] for r in pts], capsize=2,
                        marker="o" if pts[0]["kind"] == "node" else "s", ms=3,
                        linestyle="-" if pts[0]["kind"] == "node" else "--", label=v)
        if len(unpruned):
            ax.axhline(100 * float(np.mean(unpruned)), color="k", lw=0.8, ls=":", label="unpruned")
        ax.set_xlabel("first-layer parameters kept" + (f" (of {total_params})" if total_params else ""))
        ax.set_title(f"{title} reweighting: {'least squares' if rw == 'ls' else 'none'}".strip())
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("test error (%)")
    fig.tight_layout()
    return fig


def _figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
