"""The real-data run (docs/theory.md 6.3, claim C8): train MLPs on a data set, prune their first hidden layer
with every node and edge method of [`jaxprune.realdata`][] at every budget, with and without least-squares
reweighting, and compare test errors at equal first-layer parameter counts.

The methods, the reweighting rules and the parameter matching are the library's (`jaxprune.realdata`, see its
`_prune` module); this module runs them over training seeds, masks and budgets, stores the results, and turns
them into tables, figures and verdicts:

- **C8, the seed paper's real-data claim** ([`c8_cells`][]): random edge pruning WITH least-squares
  reweighting (`edge-random+ls`) against DPP node pruning WITH fusing (DIVNET, `node-dpp-rbf+ls`): both sides
  reweighted, at equal first-layer parameter counts; paired cells (difference and standard error per budget).
- **Ours** (comparisons the paper does not make, reported beside it): DIVNET against random and importance node
  pruning, with and without fusing; random edge WITHOUT reweighting against DIVNET; the best variant per budget.

Test errors are classification error rates on the test split, as mean and standard deviation over training
seeds and masks. Results are written atomically per (seed, method) under the output folder and reused when
their configuration matches, so a rerun only computes what is missing; a corrupt file is recomputed with a
warning naming it.

References: Acharyya et al., "Statistical Mechanical Analysis of Neural Network Pruning", UAI 2021;
Mariet & Sra, "Diversity Networks", ICLR 2016.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .._checks import check_choice, check_float, check_int
from .._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from ._claims import claim_by_id, decide
from ..pruning import kdpp_eigen
from ..realdata import (
    EDGE_METHODS,
    MLP,
    NODE_KERNELS,
    NODE_METHODS,
    RANDOMISED,
    REWEIGHTS,
    Dataset,
    TrainConfig,
    augmented_gram,
    data_node_kernel,
    edge_count,
    edge_dpp_eigen,
    edge_masks,
    finetuned_test_errors,
    first_layer_activations,
    first_layer_params,
    load_dataset,
    masked_test_errors,
    node_masks,
    prune_edges_network,
    prune_nodes_network,
    train_or_load,
)

__all__ = [
    "DEFAULT_BUDGETS",
    "C8_SIDES",
    "RealDataResult",
    "run_realdata",
    "summarise",
    "paired_cells",
    "c8_cells",
    "realdata_verdicts",
    "format_table",
    "plot_realdata",
]

DEFAULT_BUDGETS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: the two sides of claim C8, as row variants: (random edge + least squares, DPP node (RBF, DIVNET) + fusing)
C8_SIDES: tuple[str, str] = ("edge-random+ls", "node-dpp-rbf+ls")
_FORMAT_VERSION = 1


def _work_dtype():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _check_budgets(budgets) -> tuple[float, ...]:
    out = tuple(float(b) for b in np.atleast_1d(np.asarray(budgets, dtype=float)))
    if not out:
        raise ValueError("budgets must list at least one fraction in (0, 1], got none")
    for b in out:
        if not (math.isfinite(b) and 0 < b <= 1):
            raise ValueError(f"budgets must be fractions in (0, 1] of the first layer's parameters, got {b}")
    return out


def _prepare_out_dir(out_dir) -> Path:
    """The output folder, created if needed and checked writable before any work (one-line `ValueError`)."""
    out = Path(out_dir)
    if os.path.lexists(out) and not out.is_dir():
        raise ValueError(f"out_dir {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"out_dir {out}: cannot create the folder ({e.strerror or e})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"out_dir {out}: folder is not writable")
    return out


def _read_part(path: Path, expected_hash: str, valid: Callable[[dict], bool]) -> dict | None:
    """A stored result if it exists, holds `expected_hash` and is well formed; `None` (recompute) otherwise.
    A file that cannot be parsed or is malformed is corrupt: a warning names it."""
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text())
        if not isinstance(old, dict) or "hash" not in old:
            raise ValueError("not a result object")
        if old["hash"] != expected_hash:
            return None  # written with other settings: recomputed silently
        if not valid(old):
            raise ValueError("missing or malformed fields")
        return old
    except (OSError, ValueError, TypeError, KeyError) as e:
        warnings.warn(f"realdata: corrupt result file {path} ({e}); recomputing it", stacklevel=3)
        return None


def _valid_method_result(res: dict, nb: int, finetune: bool) -> bool:
    def table(t):
        return (isinstance(t, dict) and all(isinstance(t.get(r), list) and len(t[r]) == nb for r in REWEIGHTS)
                and all(isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v)
                        for r in REWEIGHTS for v in t[r]))

    return (all(isinstance(res.get(f), list) and len(res[f]) == nb for f in ("k", "c", "params_kept"))
            and table(res.get("errors")) and (not finetune or table(res.get("finetuned"))))


# --------------------------------------------------------------------------------------------------
# Per-network work
# --------------------------------------------------------------------------------------------------


class _SeedContext:
    """Lazily computed per-network quantities shared by all methods of one training seed."""

    def __init__(self, model: MLP, dataset: Dataset, beta: float, jitter: float):
        dt = _work_dtype()
        self.layers = [(l.weight.astype(dt), l.bias.astype(dt)) for l in model.layers]
        self.activation = model.activation
        self.x_tr = jnp.asarray(dataset.x_train, dt)
        self.y_tr = jnp.asarray(dataset.y_train, jnp.int32)
        self.x_te = jnp.asarray(dataset.x_test, dt)
        self.y_te = jnp.asarray(dataset.y_test, jnp.int32)
        self.beta, self.jitter = beta, jitter
        self.acts = first_layer_activations(self.layers, self.activation, self.x_tr)
        self.H, self.D = self.layers[0][0].shape

    @functools.cached_property
    def gram(self):
        return augmented_gram(self.acts)

    @functools.cached_property
    def node_eig(self):
        return {kind: kdpp_eigen(data_node_kernel(self.acts, kind, beta=self.beta, jitter=self.jitter))
                for kind in NODE_KERNELS}

    @functools.cached_property
    def edge_eig(self):
        return edge_dpp_eigen(self.layers[0][0], self.x_tr, jitter=self.jitter)

    def errors(self, W1s, W2s, b2s):
        return np.asarray(masked_test_errors(self.layers, self.activation, W1s, W2s, b2s, self.x_te, self.y_te))


def _run_method(ctx: _SeedContext, kind, method, budgets, num_masks, key, ridge, design_steps, finetune, tcfg, seed):
    H, D = ctx.H, ctx.D
    S = num_masks if (kind, method) in RANDOMISED else 1
    out = {"k": [], "c": [], "params_kept": [], "errors": {r: [] for r in REWEIGHTS}}
    if finetune:
        out["finetuned"] = {r: [] for r in REWEIGHTS}
    for bi, f in enumerate(budgets):
        k = int(min(H, max(1, math.floor(f * H + 0.5))))
        kb = jax.random.fold_in(key, bi)
        if kind == "node":
            eig = ctx.node_eig[method.removeprefix("dpp-")] if method.startswith("dpp") else None
            masks = node_masks(kb, method, k, S, acts=ctx.acts, W2=ctx.layers[1][0], beta=ctx.beta,
                               jitter=ctx.jitter, eig=eig, design_steps=design_steps)
            counts = np.asarray(jnp.sum(masks, axis=1))
            if not np.all(counts == k):
                raise RuntimeError(f"node {method} mask kept {counts.tolist()} units, expected {k}")
            c, params = None, first_layer_params(H, D, k=k)
            M1 = jnp.broadcast_to(masks[:, :, None], (masks.shape[0], H, D))
            M2 = jnp.broadcast_to(masks[:, None, :], (masks.shape[0],) + ctx.layers[1][0].shape)
        else:
            c = D if f >= 1 else edge_count(H, D, k)
            eig = ctx.edge_eig if method == "dpp" else None
            masks = edge_masks(kb, method, c, S, W=ctx.layers[0][0], x=ctx.x_tr, jitter=ctx.jitter, eig=eig,
                               design_steps=design_steps)
            counts = np.asarray(jnp.sum(masks, axis=2))
            if not np.all(counts == c):
                raise RuntimeError(f"edge {method} mask kept {np.unique(counts).tolist()} per unit, expected {c}")
            params = first_layer_params(H, D, c=c)
            M1 = masks
            M2 = jnp.ones((masks.shape[0],) + ctx.layers[1][0].shape, bool)
        out["k"].append(k)
        out["c"].append(c)
        out["params_kept"].append(params)
        for r in REWEIGHTS:
            if kind == "node":
                W1s, W2s, b2s = prune_nodes_network(ctx.layers, masks, r, acts=ctx.acts, ridge=ridge, gram=ctx.gram)
            else:
                W1s, W2s, b2s = prune_edges_network(ctx.layers, masks, r, x=ctx.x_tr, ridge=ridge)
            out["errors"][r].append(ctx.errors(W1s, W2s, b2s).tolist())
            if finetune:
                fe = finetuned_test_errors(
                    ctx.layers, ctx.activation, W1s, W2s, b2s, M1, M2, (ctx.x_tr, ctx.y_tr, ctx.x_te, ctx.y_te),
                    finetune, batch_size=tcfg.batch_size, learning_rate=tcfg.learning_rate,
                    momentum=tcfg.momentum, seed=seed)
                out["finetuned"][r].append(np.asarray(fe).tolist())
    return out


# --------------------------------------------------------------------------------------------------
# Summaries, paired comparisons, verdicts
# --------------------------------------------------------------------------------------------------


def _variant(kind, method, reweight) -> str:
    return f"{kind}-{method}" + ("+ls" if reweight == "ls" else "")


def summarise(seed_results: Sequence[dict], budgets: Sequence[float], *, field: str = "errors") -> list[dict]:
    """Tidy rows `(variant, kind, method, reweight, budget, k, c, params_kept, mean, std, n, per_seed_mean,
    per_seed_values)`: test error pooled over training seeds and masks (`std` with `ddof=1`; 0 for one value);
    `per_seed_values[s]` lists the error of every mask of training seed `s` (what paired comparisons use)."""
    rows = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for res in seed_results:
        groups.setdefault((res["kind"], res["method"]), []).append(res)
    for (kind, method), items in groups.items():
        for r in REWEIGHTS:
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
    `rows_or_result`: a [`RealDataResult`][], a dict with `"rows"` (`results.json`, a `reproduce` part) or rows.
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
    first-layer parameter counts, one cell per budget `< 1`: `{"sigma": None, "k": budget, "a", "b", "diff",
    "stderr", ...}` as in [`paired_cells`][]. The paper claims `a < b` (negative `diff`) on CIFAR-10 at every
    budget and on MNIST at budgets >= 50 %. Empty when the run lacks either side."""
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
    """Verdicts from the numbers (paired cells per budget, see [`paired_cells`][]):

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
    """One markdown line per verdict: the paper's claim first, then ours."""
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
    """Markdown table: one row per method variant, one column per budget, `mean +- std` in percent."""
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
    panels: without and with least-squares reweighting. Returns a matplotlib Figure (imported lazily)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, rw in zip(axes, REWEIGHTS):
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


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


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


def _default_train_config(dataset: str, seed: int, quick: bool) -> TrainConfig:
    return TrainConfig(
        optimizer="sgd-momentum", learning_rate=0.05, momentum=0.9, batch_size=32 if dataset == "digits" else 64,
        max_epochs=100, stop_train_accuracy=0.97 if quick else 0.99, seed=seed,
    )


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _load_dataset(dataset, data_dir):
    if isinstance(dataset, Dataset):
        return dataset
    if dataset == "digits":
        return load_dataset("digits")
    return load_dataset(dataset, data_dir=data_dir)


def run_realdata(
    out_dir: str | os.PathLike = "runs/realdata",
    *,
    dataset: str | Dataset = "digits",
    data_dir: str | os.PathLike | None = None,
    hidden: Sequence[int] | None = None,
    activation: str = "sigmoid",
    budgets: Sequence[float] | None = None,
    seeds: int | None = None,
    masks: int | None = None,
    finetune_epochs: int = 0,
    node_methods: Sequence[str] = NODE_METHODS,
    edge_methods: Sequence[str] = EDGE_METHODS,
    beta: float = 1.0,
    jitter: float = 1e-6,
    ridge: float = 1e-6,
    design_steps: int | None = None,
    train_config: Callable[[int], TrainConfig] | None = None,
    quick: bool = False,
    progress: bool = True,
    plot: bool = True,
    log: Callable[[str], None] | None = None,
) -> RealDataResult:
    """Train (or load) MLPs on `dataset`, prune their first hidden layer with every method at every budget,
    and write `out_dir/results.json`, `table.md`, `test_error_vs_params.png` (resumable).

    Defaults: digits, one hidden layer of 100 (`hidden`; MNIST `(500, 500)`, CIFAR-10 `(1000, 1000, 1000)`,
    the seed paper's sizes), sigmoid, budgets 0.1..0.9, 3 training seeds, 5 masks per randomised method, SGD
    with momentum until 99% training accuracy. `quick=True` (under a minute): hidden 50, budgets
    (0.25, 0.5, 0.75), 2 seeds, 3 masks, 100 design steps, 97% training accuracy.

    Per (seed, method) results go to `out_dir/seed<s>/<kind>-<method>.json` with a hash of every setting that
    affects them; a rerun reuses the files whose hash matches and recomputes, with a warning naming it, a
    file that is corrupt. Networks go to `out_dir/models/`. An `out_dir` that is a file or cannot be written
    is a `ValueError` before any work.
    """
    t0 = time.perf_counter()
    log = log or (lambda s: None)
    if hidden is not None:
        hidden = tuple(check_int("hidden width", h, 1) for h in hidden)
        if not hidden:
            raise ValueError("hidden must list at least one positive layer width, got none")
    budgets = _check_budgets((0.25, 0.5, 0.75) if (budgets is None and quick) else (budgets or DEFAULT_BUDGETS))
    seeds = check_int("seeds", seeds if seeds is not None else (2 if quick else 3), 1)
    masks = check_int("masks", masks if masks is not None else (3 if quick else 5), 1)
    design_steps = check_int("design_steps", design_steps if design_steps is not None else (100 if quick else 200), 1)
    finetune_epochs = check_int("finetune_epochs", finetune_epochs, 0)
    for m in node_methods:
        check_choice("node method", m, NODE_METHODS)
    for m in edge_methods:
        check_choice("edge method", m, EDGE_METHODS)
    beta = check_float("beta", beta, 0.0, lo_open=True)
    ridge = check_float("ridge", ridge, 0.0, lo_open=True)
    jitter = check_float("jitter", jitter, 0.0)
    out = _prepare_out_dir(out_dir)
    ds = _load_dataset(dataset, data_dir)
    name = ds.name
    if hidden is None:
        hidden = (50,) if quick else {"mnist": (500, 500), "cifar10": (1000, 1000, 1000)}.get(name, (100,))
    sizes = (ds.input_dim,) + hidden + (ds.num_classes,)
    tcfg_fn = train_config or (lambda s: _default_train_config(name, s, quick))
    config = {
        "dataset": name, "fingerprint": ds.fingerprint(), "sizes": list(sizes), "activation": activation,
        "budgets": list(budgets), "seeds": seeds, "masks": masks, "finetune_epochs": finetune_epochs,
        "node_methods": list(node_methods), "edge_methods": list(edge_methods), "beta": beta, "jitter": jitter,
        "ridge": ridge, "design_steps": design_steps, "dtype": jnp.dtype(_work_dtype()).name,
        "format": _FORMAT_VERSION,
        "parameter_rule": "node: k (D+1); edge: H c + H with c = round((k (D+1) - H) / H)",
    }
    methods = [("node", m) for m in node_methods] + [("edge", m) for m in edge_methods]
    bar = tqdm(total=seeds * len(methods), desc=f"realdata {name}", disable=not progress, leave=False)
    results, unpruned, computed, reused = [], [], 0, 0
    common = {k: config[k] for k in ("fingerprint", "sizes", "activation", "budgets", "masks", "finetune_epochs",
                                     "beta", "jitter", "ridge", "design_steps", "dtype", "format")}
    valid = lambda res: _valid_method_result(res, len(budgets), bool(finetune_epochs))
    for s in range(seeds):
        tcfg = tcfg_fn(s)
        model_path = out / "models" / f"seed{s}.eqx"
        seed_dir = out / f"seed{s}"
        ctx = None

        def context():
            nonlocal ctx
            if ctx is None:
                model, history, loaded = train_or_load(
                    model_path, sizes, activation, ds, tcfg, dtype=jnp.float32, progress=progress)
                ctx = _SeedContext(model, ds, beta, jitter)
                log(f"seed {s}: network {'loaded' if loaded else 'trained'} "
                    f"({history.num_epochs} epochs, train acc {history.train_accuracy[-1]:.4f})")
            return ctx

        for kind, method in methods:
            key_hash = _hash({"common": common, "train": tcfg.to_dict(), "seed": s, "kind": kind, "method": method})
            path = seed_dir / f"{kind}-{method}.json"
            res = _read_part(path, key_hash, valid)
            if res is not None:
                reused += 1
            else:
                c = context()
                t1 = time.perf_counter()
                key = jax.random.fold_in(jax.random.key(1000 + s), methods.index((kind, method)))
                body = _run_method(c, kind, method, budgets, masks, key, ridge, design_steps, finetune_epochs,
                                   tcfg, s)
                res = {"hash": key_hash, "seed": s, "kind": kind, "method": method, **body,
                       "seconds": time.perf_counter() - t1}
                atomic_write_json(path, res)
                computed += 1
            results.append(res)
            bar.update(1)
        # Unpruned error of this seed's network (cached beside the method files).
        upath = seed_dir / "unpruned.json"
        uhash = _hash({"train": tcfg.to_dict(), "sizes": list(sizes), "fp": ds.fingerprint(), "act": activation,
                       "dtype": config["dtype"]})
        old = _read_part(upath, uhash, lambda r: isinstance(r.get("test_error"), (int, float)))
        if old is not None:
            uerr = old["test_error"]
        else:
            c = context()
            W1, _ = c.layers[0]
            W2, b2 = c.layers[1]
            uerr = float(c.errors(W1[None], W2[None], b2[None])[0])
            atomic_write_json(upath, {"hash": uhash, "test_error": uerr})
        unpruned.append(uerr)
    bar.close()

    rows = summarise(results, budgets)
    ft_rows = summarise(results, budgets, field="finetuned") if finetune_epochs else []
    verdicts = realdata_verdicts(rows, budgets)
    if ft_rows:
        verdicts["finetuned"] = realdata_verdicts(ft_rows, budgets)
    H, D = hidden[0], ds.input_dim
    title = f"{name}, {'-'.join(map(str, sizes))} {activation}"
    table = f"# Pruning the first hidden layer: {title}\n\n" + format_table(rows, budgets, unpruned)
    if ft_rows:
        table += "\n" + format_table(ft_rows, budgets, unpruned,
                                     title=f"test error (%) after {finetune_epochs} epochs of fine-tuning")
    table += "\nFirst-layer parameters kept per budget: " + ", ".join(
        f"{100 * r['budget']:g}%: node {first_layer_params(H, D, k=r['k'])}, edge "
        f"{first_layer_params(H, D, c=edge_count(H, D, r['k']) if r['budget'] < 1 else D)}"
        for r in rows if r["variant"] == rows[0]["variant"]) + f" (of {H * (D + 1)}).\n"
    table += "\n" + "\n".join(verdict_lines(verdicts)) + "\n"
    seconds = time.perf_counter() - t0
    paths = {"results": str(out / "results.json"), "table": str(out / "table.md")}
    if plot:
        png = _figure_png(plot_realdata(rows, unpruned, total_params=H * (D + 1), title=name))
        atomic_write_bytes(out / "test_error_vs_params.png", png)
        paths["plot"] = str(out / "test_error_vs_params.png")
    result = RealDataResult(config=config, unpruned=unpruned, rows=rows + [dict(r, finetuned=True) for r in ft_rows],
                            verdicts=verdicts, table=table, paths=paths, seconds=seconds, computed=computed,
                            reused=reused)
    atomic_write_json(out / "results.json", {**result.to_dict(), "per_seed": results})
    atomic_write_text(out / "table.md", table)
    return result
