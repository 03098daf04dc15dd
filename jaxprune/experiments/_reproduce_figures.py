"""The report's figures, drawn from the parts' results (plain numbers) by the plotting functions of
`_figures`; a figure that fails is recorded, never fatal."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from . import _figures as plots
from .._io import atomic_write_bytes
from ._realdata_summary import plot_realdata
from ._reproduce_format import num
from ._reproduce_settings import DESIGN_PARTS

__all__ = ["draw_figures"]


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt  # matplotlib loads lazily (figures only)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _best_per_method(rows, value, sigma, K):
    """`{method: [best-over-options value for k = 1..K-1]}` of simulation-check rows at one `sigma`."""
    out = {}
    for m in ("random-node", "importance-node", "dpp-node", "random-edge", "magnitude-edge", "dpp-edge"):
        vals = []
        for k in range(1, K):
            c = [num(r[value]) for r in rows if r["sigma"] == sigma and r["method"] == m and r["k"] == k]
            vals.append(min(c) if c else float("nan"))
        out[m] = vals
    return out


def draw_figures(parts: dict, fig_dir: Path, made: dict[str, str] | None = None, *,
                 ready: set[str] | None = None) -> dict[str, str]:
    """Draw the report's figures into `fig_dir`; returns `{figure: relative path or "error: ..."}`. Figures
    already in `made` are skipped (and `made` is updated); with `ready`, only figures whose parts are all in
    `ready` are drawn (the others are left for a later call)."""
    made = {} if made is None else made

    def ok(name):
        return parts.get(name, {}).get("status") == "ok"

    def paper_fig(r):
        K = r["setting"]["K"]
        sig = sorted({row["sigma"] for row in r["rows"]})
        panels = []
        for s in sig:
            pred = _best_per_method(r["rows"], "predicted", s, K)
            meas = _best_per_method(r["rows"], "measured", s, K)
            panels.append({"title": f"sigma={s:g}, N={r['setting']['N']}, K={K}", "k": list(range(1, K)),
                           "methods": {m: {"predicted": pred[m], "measured": meas[m]} for m in pred}})
        return plots.pruning_methods_figure(panels)

    jobs = []
    if ok("ode_vs_sim"):
        jobs.append(("ode_vs_sim", lambda r: plots.ode_vs_simulation_figure(r["runs"]), "ode_vs_sim", ()))
    if ok("fixed_points"):
        jobs.append(("fixed_points", lambda r: plots.fixed_point_figure(
            r["etas"], r["sigmas"], _arr(r["grid_eps_g"]), _arr(r["grid_d_eta"]), _arr(r["grid_d_sigma"])),
            "fixed_points", ()))
    if ok("paper"):
        jobs.append(("paper", paper_fig, "pruning_methods", ()))
    if ok("regime_5_20"):
        jobs.append(("regime_5_20", paper_fig, "regime_5_20", ()))
    design_levels = [n for n in DESIGN_PARTS if ok(n)]
    if design_levels:
        def design_fig(_):
            levels = []
            for n in design_levels:
                r = parts[n]["result"]
                bkey = r["budget"]
                budgets = sorted({row[bkey] for row in r["rows"] if row.get(bkey) is not None
                                  and not str(row["method"]).startswith(("unpruned", "prune at end"))
                                  and row["method"] != "unpruned"})
                names = list(dict.fromkeys(f"{row['method']} {row.get('kind', '')}".strip() for row in r["rows"]
                                           if row.get(bkey) in budgets and not str(row["method"]).startswith(
                                               ("unpruned", "prune at end", "brute", "greedy"))))
                bars = {}
                for nm in names:
                    bars[nm] = [next((num(row["error"]) for row in r["rows"] if row.get(bkey) == b and
                                      f"{row['method']} {row.get('kind', '')}".strip() == nm), float("nan"))
                                for b in budgets]
                levels.append({"title": n.replace("_", " "), "budgets": [f"{bkey}={b:.3g}" for b in budgets],
                               "bars": bars})
            return plots.design_comparison_figure(levels)
        jobs.append((design_levels[0], design_fig, "design", DESIGN_PARTS))
    if ok("realdata"):
        def rd_fig(r):
            return plot_realdata(r["rows"], r["unpruned"], title=r["config"]["dataset"])
        jobs.append(("realdata", rd_fig, "realdata", ()))
    for part, fn, fname, needs in jobs:
        if fname in made or (ready is not None and not {part, *needs} <= ready):
            continue
        path = fig_dir / f"{fname}.png"
        try:
            _save(fn(parts[part]["result"]), path)
            made[fname] = f"figures/{fname}.png"
        except Exception as e:  # noqa: BLE001 - a figure must not kill the report
            made[fname] = f"error: {type(e).__name__}: {e}"
    return made


def _arr(x):
    return np.asarray([[num(v) for v in row] for row in x], float)

