"""Does the predicted-vs-measured gap of the seed paper's experiment close as `N` grows? (docs/theory.md 6.2)

[`gap_rows`][] turns [`simulation_check`][] rows into per-seed gaps; [`gap_vs_N`][] runs the check at several
input sizes at the same `alpha = steps / N` and fits how the gaps shrink.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Sequence

import numpy as np

from ._paper import EDGE_METHODS, NODE_METHODS, PaperSetting, simulation_check

__all__ = ["gap_rows", "gap_vs_N"]


def gap_rows(rows: Sequence[dict]) -> list[dict]:
    """Predicted-vs-measured gaps of [`simulation_check`][jaxprune.experiments.simulation_check] rows, one per
    `(sigma, method, option, k)`: how well the order-parameter theory (docs/theory.md 6.1, 6.2) predicts the
    concrete pruned networks.

    **Arguments:**

    - `rows`: the `"rows"` of [`simulation_check`][jaxprune.experiments.simulation_check] (with the per-seed
      lists `predicted_per_seed`, `measured_mean_per_seed`, `measured_std_per_seed`, `masks_per_seed`).

    **Returns:** a list of dicts, one per row, with `sigma`, `method`, `option`, `k`, `p`, `family`
    (`"node"` or `"edge"`), `predicted`, `measured`, `masks_per_seed` (the smallest over seeds) and the gap
    statistics below.

    Per seed `s` (one trained student): `pred_s` (theory on its overlaps), `meas_s` and `std_s` (mean and std
    of the exact `eps_g` over that student's concrete masks, `n_s` of them). Returned, averaged over seeds:

    - `abs_gap = mean_s |meas_s - pred_s|`, `rel_gap = mean_s |meas_s - pred_s| / meas_s` (the error of the
      prediction of the *expected* pruned error), `signed_rel_gap = mean_s (meas_s - pred_s) / meas_s`;
    - `spread = mean_s std_s`, `rel_spread = mean_s std_s / meas_s` (mask-to-mask spread of the measured error);
    - `rms_rel_gap = mean_s sqrt((meas_s - pred_s)^2 + std_s^2) / meas_s`: the typical relative error of the
      prediction for *one* pruned network;
    - `z`: the seed-averaged signed gap over its mask-sampling standard error
      `sqrt(sum_s std_s^2 / (n_s - 1)) / S` (`nan` for deterministic masks, `n_s = 1`, or zero spread). `|z|`
      of order 1 means the gap is mask sampling only.
    """
    out = []
    for r in rows:
        pr = np.asarray(r["predicted_per_seed"], float)
        me = np.asarray(r["measured_mean_per_seed"], float)
        sd = np.asarray(r["measured_std_per_seed"], float)
        n = np.asarray(r["masks_per_seed"], float)
        d = me - pr
        S = d.size
        with np.errstate(divide="ignore", invalid="ignore"):
            se = math.sqrt(float(np.sum(np.where(n > 1, sd**2 / np.maximum(n - 1, 1), np.nan)))) / S
            z = float(np.mean(d) / se) if se > 0 else float("nan")
        out.append({
            "sigma": r["sigma"], "method": r["method"], "option": r["option"], "k": r["k"], "p": r["p"],
            "family": "node" if r["method"] in NODE_METHODS else "edge",
            "predicted": float(pr.mean()), "measured": float(me.mean()),
            "abs_gap": float(np.mean(np.abs(d))), "rel_gap": float(np.mean(np.abs(d) / me)),
            "signed_rel_gap": float(np.mean(d / me)),
            "spread": float(sd.mean()), "rel_spread": float(np.mean(sd / me)),
            "rms_rel_gap": float(np.mean(np.sqrt(d**2 + sd**2) / me)),
            "z": z, "masks_per_seed": int(n.min()),
        })
    return out


def _median(xs):
    xs = [x for x in xs if np.isfinite(x)]
    return float(np.median(xs)) if xs else float("nan")


def _loglog_slope(Ns, ys):
    Ns, ys = np.asarray(Ns, float), np.asarray(ys, float)
    ok = np.isfinite(ys) & (ys > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(Ns[ok]), np.log(ys[ok]), 1)[0])


def gap_vs_N(
    base: PaperSetting = PaperSetting(),
    Ns: Sequence[int] = (250, 500, 1000, 2000),
    *,
    alpha: float | None = None,
    sigmas: Sequence[float] = (0.0,),
    seeds: int = 2,
    masks: int = 10,
    test_mse_masks: int = 0,
    seed: int = 0,
    log=None,
    **check_kwargs,
) -> dict:
    """Does the predicted-vs-measured gap close as `N` grows?
    [`simulation_check`][jaxprune.experiments.simulation_check] at every `N` in `Ns` with the same
    `alpha = steps / N` (default `base.steps / base.N`, the seed paper's 1600), everything else as in `base`;
    then [`gap_rows`][jaxprune.experiments.gap_rows] per `N` and a summary (docs/theory.md 6.2).

    Node methods: the pruned network's overlaps are exactly the theory's, so the gap is mask sampling only
    (zero for the deterministic importance rule). Edge methods: the Gaussian-equivalent map is a large-`N`
    statement; for masks drawn independently per coordinate the pruned overlaps fluctuate by `O(N^-1/2)`
    around the map, so the mask spread and a single network's gap should fall like `N^-1/2`, and the gap of
    the mask-averaged error like `N^-1/2` (sampling, `masks` draws) or faster (`O(1/N)` bias).

    Returns `{"alpha", "Ns", "rows": [gap rows with N and steps], "summary": [one per N], "slopes": {...},
    "checks": {N: simulation_check rows and training info}, ...}`. Summary per `N`: medians over rows of
    `rel_gap` for node and edge methods, of `|z|` (random/DPP masks), of the edge `rel_spread` and
    `rms_rel_gap`, the largest importance-node `abs_gap`, per-method medians, and wall-clock seconds.
    `slopes`: least-squares log-log slopes of those medians against `N` (`-0.5` is `N^-1/2`).

    **Arguments:**

    - `base`: the [`PaperSetting`][jaxprune.experiments.PaperSetting] whose `N` and `steps` are replaced.
    - `Ns`: input dimensions, integers `>= 2`.
    - `alpha`: training time `steps / N` at every `N`, `> 0` (at least 20 steps are taken).
    - `sigmas`: label-noise standard deviations.
    - `seeds`: trained students per noise level and `N`.
    - `masks`: concrete masks per student and method.
    - `test_mse_masks`: masks whose noisy test MSE is measured (`0`, the default, skips it).
    - `seed`: the integer all PRNG keys derive from (the same at every `N`).
    - `log`: if given, called with one line of text after each `N`.
    - `**check_kwargs`: further keyword arguments of `simulation_check` (e.g. `reweights`, `rescales`).
    """
    Ns = [int(n) for n in Ns]
    if len(Ns) < 1 or min(Ns) < 2:
        raise ValueError(f"Ns must be integers >= 2, got {Ns}")
    alpha = base.steps / base.N if alpha is None else float(alpha)
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    rows, summary, checks = [], [], {}
    for N in Ns:
        steps = max(int(round(alpha * N)), 20)
        setting = dataclasses.replace(base, N=N, steps=steps)
        t0 = time.perf_counter()
        out = simulation_check(setting, sigmas=sigmas, seeds=seeds, masks=masks, test_mse_masks=test_mse_masks,
                               seed=seed, **check_kwargs)
        secs = time.perf_counter() - t0
        g = [dict(r, N=N, steps=steps) for r in gap_rows(out["rows"])]
        rows.extend(g)
        checks[str(N)] = {"rows": out["rows"], "training": out["training"]}
        node = [r for r in g if r["family"] == "node"]
        edge = [r for r in g if r["family"] == "edge"]
        sampled = lambda rs: [abs(r["z"]) for r in rs if r["method"] not in ("importance-node", "magnitude-edge")]
        per_method = {}
        for m in NODE_METHODS + EDGE_METHODS:
            rm = [r for r in g if r["method"] == m]
            if rm:
                per_method[m] = {"median_rel_gap": _median([r["rel_gap"] for r in rm]),
                                 "median_rel_spread": _median([r["rel_spread"] for r in rm]),
                                 "median_rms_rel_gap": _median([r["rms_rel_gap"] for r in rm]),
                                 "median_abs_z": _median([abs(r["z"]) for r in rm])}
        imp = [r["abs_gap"] for r in node if r["method"] == "importance-node"]
        summary.append({
            "N": N, "steps": steps, "seconds": secs,
            "eps_g_trained": {s: float(np.mean(v["eps_g_final"])) for s, v in out["training"].items()},
            "node_median_rel_gap": _median([r["rel_gap"] for r in node]),
            "node_median_abs_z": _median(sampled(node)),
            "importance_node_max_abs_gap": float(max(imp)) if imp else float("nan"),
            "edge_median_rel_gap": _median([r["rel_gap"] for r in edge]),
            "edge_median_abs_z": _median(sampled(edge)),
            "edge_median_rel_spread": _median([r["rel_spread"] for r in edge]),
            "edge_median_rms_rel_gap": _median([r["rms_rel_gap"] for r in edge]),
            "per_method": per_method,
        })
        if log is not None:
            s = summary[-1]
            log(f"N={N} (steps {steps}, {secs:.0f} s): median relative gap node {s['node_median_rel_gap']:.3g}, "
                f"edge {s['edge_median_rel_gap']:.3g}; edge spread {s['edge_median_rel_spread']:.3g}")
    slopes = {}
    for key in ("node_median_rel_gap", "edge_median_rel_gap", "edge_median_rel_spread", "edge_median_rms_rel_gap"):
        slopes[key] = _loglog_slope(Ns, [s[key] for s in summary])
    for m in NODE_METHODS + EDGE_METHODS:
        if m == "importance-node":  # deterministic and exact: its gap is rounding only
            continue
        for key in (("median_rel_gap", "median_rms_rel_gap") if m == "magnitude-edge" else
                    ("median_rel_gap", "median_rel_spread", "median_rms_rel_gap")):
            vals = [s["per_method"].get(m, {}).get(key, float("nan")) for s in summary]
            slopes[f"{m}:{key}"] = _loglog_slope(Ns, vals)
    return {"setting": dataclasses.asdict(base), "alpha": alpha, "Ns": Ns, "sigmas": list(sigmas), "seeds": seeds,
            "masks": masks, "rows": rows, "summary": summary, "slopes": slopes, "checks": checks}
