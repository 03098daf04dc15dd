"""The seed paper's teacher-student experiment, in theory and in finite-N simulation (docs/theory.md 6.3).

Students are trained by online SGD (`jaxprune._simulate`) at the seed paper's settings (N = 500, M = 2, K = 6,
two-layer mode, `v* = 4`, eta = 0.5, 800 000 samples); each trained network is pruned by every method at
every budget, and two numbers are set side by side:

- *predicted*: the order-parameter theory applied to the trained student's overlaps (exact expectation over
  subsets for node methods; the Gaussian-equivalent large-N map for edge methods);
- *measured*: the concrete pruned network (masks applied to the actual weights; random and DPP masks drawn
  many times), its exact error from its own overlaps, and its empirical noisy test MSE on fresh inputs.

For node pruning the pruned network's overlaps are exactly the theory's `Q_SS, R_S`, so predicted and
measured differ only by mask sampling; for edge pruning they differ because trained weights are not exactly
Gaussian per coordinate and `N` is finite: that gap is the test of docs/theory.md 6.2. Every error is the noise-free
`eps_g` unless a column says "test MSE" (noisy labels: `2 eps_g + sigma^2`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..pruning._compare import NODE_REWEIGHTS, best_by_method, compare_methods
from ..pruning._dpp import kdpp_eigen, sample_kdpp_mask, sample_uniform_subset_mask
from .._dynamics import SGDConfig
from ..pruning._edge import (
    apply_edge_mask,
    dpp_edge_mask,
    edge_prune_theory,
    magnitude_edge_mask,
    matched_keep_fraction,
    random_edge_mask,
)
from .._error import generalisation_error
from ..pruning._node import importance_mask, kernel_matrix, prune_nodes
from .._overlaps import Overlaps, overlaps_from_weights
from .._simulate import init_student, make_teacher, simulate_seeds

__all__ = [
    "PaperSetting",
    "train_students",
    "simulation_check",
    "gap_rows",
    "gap_vs_N",
    "claims_from_rows",
    "winner_map",
    "ode_student",
    "theory_winner_map",
]


@dataclasses.dataclass(frozen=True)
class PaperSetting:
    """The seed paper's teacher-student setting (its simulations: N=500, M=2, K=6, v*=4, 800 000 samples)."""

    N: int = 500
    M: int = 2
    K: int = 6
    v_star: float = 4.0
    eta: float = 0.5
    steps: int = 800_000
    init_scale: float = 1.0

    def config(self, sigma: float) -> SGDConfig:
        return SGDConfig(eta=self.eta, eta_v=self.eta, sigma=sigma, mode="two-layer")


def train_students(setting: PaperSetting, sigma: float, seeds: int, *, seed: int = 0, records: int = 20):
    """Train `seeds` students (each with its own teacher) in float32; returns `(teachers, students, result)`
    with a leading seed axis, the students being the final weights."""
    key = jax.random.key(seed)
    kt, ks, kr = jax.random.split(key, 3)
    teachers = jax.vmap(lambda k: make_teacher(k, setting.N, setting.M, v_star=setting.v_star))(
        jax.random.split(kt, seeds))
    students = jax.vmap(lambda k: init_student(k, setting.N, setting.K, scale=setting.init_scale,
                                               v0="random", v0_scale=0.1))(jax.random.split(ks, seeds))
    record_every = setting.steps // records
    steps = record_every * records
    res = simulate_seeds(jax.random.split(kr, seeds), teachers, students, setting.config(sigma), steps=steps,
                         record_every=record_every)
    return teachers, res.final, res


def _state64(w, w_star, v, v_star) -> Overlaps:
    f = lambda a: jnp.asarray(np.asarray(a, dtype=np.float64))
    return overlaps_from_weights(f(w), f(w_star), f(v), f(v_star))


@functools.partial(jax.jit, static_argnames="samples")
def _fresh_test_mse(key, w, v, w_star, v_star, sigma, samples):
    """Empirical noisy test MSE `mean (phi - y)^2` on fresh Gaussian inputs (float64)."""
    N = w.shape[1]
    x = jax.random.normal(key, (samples, N), jnp.float64) / math.sqrt(N)
    g = lambda z: jax.scipy.special.erf(z / math.sqrt(2.0))
    phi = g(x @ w.T) @ v
    y = g(x @ w_star.T) @ v_star + sigma * jax.random.normal(jax.random.fold_in(key, 1), (samples,), jnp.float64)
    return jnp.mean(jnp.square(phi - y))


def _node_masks(key, state, method, k, n_masks, kernel, jitter):
    K = state.K
    if method == "importance-node":
        return np.asarray(importance_mask(state, k))[None, :]
    keys = jax.random.split(key, n_masks)
    if method == "random-node":  # k traced: one compilation for every budget
        return np.asarray(jax.vmap(sample_uniform_subset_mask, in_axes=(0, None, None))(keys, K, k))
    eig = kdpp_eigen(kernel_matrix(state, kernel, jitter=jitter))
    return np.asarray(jax.vmap(sample_kdpp_mask, in_axes=(0, None, None))(keys, eig, k))


@jax.jit
def _masked_network_errors(w, vs, w_star, v_star, masks):
    """Exact `eps_g` of concrete networks `w * mask` (rows or entries) with second layers `vs`, from their
    own overlaps (`overlaps_from_weights`), for a batch of masks."""

    def one(mask, v):
        wm = jnp.where(mask if mask.ndim == 2 else mask[:, None], w, 0.0)
        return generalisation_error(overlaps_from_weights(wm, w_star, v, v_star))

    return jax.vmap(one)(masks, vs)


@functools.partial(jax.jit, static_argnames="reweights")
def _node_second_layers(state, masks, reweights):
    """Reweighted second layers `(len(reweights), masks, K)` for a batch of node masks (from the network's own
    overlaps); one compilation per number of masks serves every reweighting."""
    return jnp.stack([jax.vmap(lambda m: prune_nodes(state, m, reweight=rw)[0].v)(masks) for rw in reweights])


def _pad_rows(x, n: int):
    """`x` with its first row repeated up to `n` rows (one compiled shape for one mask and for many)."""
    x = np.asarray(x)
    return x if x.shape[0] >= n else np.concatenate([x, np.repeat(x[:1], n - x.shape[0], axis=0)])


def simulation_check(
    setting: PaperSetting = PaperSetting(),
    *,
    sigmas: Sequence[float] = (0.0, 0.25),
    seeds: int = 3,
    masks: int = 20,
    test_samples: int = 20_000,
    kernel: str = "Q",
    jitter: float = 1e-6,
    reweights: Sequence[str] = ("none", "preactivation", "optimal"),
    rescales: Sequence[str] = ("none", "optimal"),
    seed: int = 0,
    progress=None,
    test_mse_masks: int = 3,
) -> dict:
    """Train, prune by every method at every budget `k = 1..K-1` (edges at `p = k/K`), and compare
    predicted with measured errors. Returns `{"rows": [...], "theory_rows": {sigma: [...]}, ...}`.

    Each row: `sigma, method, option, k, p, predicted (mean, std over seeds), measured eps_g (mean, std over
    seeds and masks), measured noisy test MSE on fresh inputs (mean over the first `test_mse_masks` masks of
    each seed; `nan` when `test_mse_masks = 0`, which skips that check) beside `2 eps_g + sigma^2` of the same
    masks' overlaps (`test_mse_from_overlaps`); and per seed (lists in seed order) `predicted_per_seed`,
    `measured_mean_per_seed`, `measured_std_per_seed` (mean and std over that seed's masks), `masks_per_seed`.
    """
    K, N = setting.K, setting.N
    rows, theory_rows, train_info = [], {}, {}
    key = jax.random.key(seed + 1)
    for sigma in sigmas:
        teachers, students, res = train_students(setting, sigma, seeds, seed=seed)
        eps_trained = np.asarray(res.eps_g[:, -1], dtype=float)
        train_info[str(sigma)] = {"eps_g_final": eps_trained.tolist(), "status": np.asarray(res.status).tolist()}
        per = {}  # (method, option, k) -> lists over seeds
        theory_rows[str(sigma)] = []
        for s in range(seeds):
            w = jnp.asarray(np.asarray(students.w[s], np.float64))
            v = jnp.asarray(np.asarray(students.v[s], np.float64))
            w_star = jnp.asarray(np.asarray(teachers.w_star[s], np.float64))
            v_star = jnp.asarray(np.asarray(teachers.v_star[s], np.float64))
            state = _state64(w, w_star, v, v_star)
            trows = compare_methods(state, reweights=reweights, rescales=rescales, kernel=kernel, jitter=jitter,
                                    N=N)
            theory_rows[str(sigma)].append(trows)
            pred = {(r["method"], r["option"], r.get("budget_k", K)): r["mean"] for r in trows}
            for k in range(1, K):
                p = matched_keep_fraction(K, N, k)
                for method in ("random-node", "importance-node", "dpp-node"):
                    key, sub = jax.random.split(key)
                    mk = _node_masks(sub, state, method, k, masks, kernel, jitter)
                    padded = jnp.asarray(_pad_rows(mk, masks))
                    vs_all = _node_second_layers(state, padded, tuple(reweights))
                    for rw, vs in zip(reweights, vs_all):
                        errs = np.asarray(_masked_network_errors(w, vs, w_star, v_star, padded))[: len(mk)]
                        mses, mse_pred = [], []
                        for j in range(min(test_mse_masks, len(mk))):
                            key, kk = jax.random.split(key)
                            wp = jnp.where(jnp.asarray(mk[j])[:, None], w, 0.0)
                            mses.append(float(_fresh_test_mse(kk, wp, vs[j], w_star, v_star, sigma, test_samples)))
                            mse_pred.append(2 * float(errs[j]) + sigma**2)
                        d = per.setdefault((method, rw, k), {"pred": [], "meas": [], "mse": [], "mse_pred": [],
                                                             "seed_meas": []})
                        d["seed_meas"].append(errs)
                        d["mse_pred"].extend(mse_pred)
                        d["pred"].append(pred[(method, rw, k)])
                        d["meas"].extend(errs.tolist())
                        d["mse"].extend(mses)
                for method in ("random-edge", "magnitude-edge", "dpp-edge"):
                    key, sub = jax.random.split(key)
                    n_m = masks if method != "magnitude-edge" else 1
                    if method == "random-edge":
                        mk = jax.vmap(lambda kk: random_edge_mask(kk, w, p))(jax.random.split(sub, n_m))
                    elif method == "magnitude-edge":
                        mk = magnitude_edge_mask(w, p)[None]
                    else:
                        mk = dpp_edge_mask(sub, w, p, kernel="diagonal", num_samples=n_m)
                    for rs in rescales:
                        th = edge_prune_theory(state, p, method=method.removesuffix("-edge"), rescale=rs)
                        wc = w * th.c[:, None]
                        padded = jnp.asarray(_pad_rows(mk, masks))
                        vs = jnp.broadcast_to(v, (padded.shape[0], K))
                        errs = np.asarray(_masked_network_errors(wc, vs, w_star, v_star, padded))[:n_m]
                        mses, mse_pred = [], []
                        for j in range(min(test_mse_masks, n_m)):
                            key, kk = jax.random.split(key)
                            wp = apply_edge_mask(w, mk[j], th.c)
                            mses.append(float(_fresh_test_mse(kk, wp, v, w_star, v_star, sigma, test_samples)))
                            mse_pred.append(2 * float(errs[j]) + sigma**2)
                        d = per.setdefault((method, rs, k), {"pred": [], "meas": [], "mse": [], "mse_pred": [],
                                                             "seed_meas": []})
                        d["seed_meas"].append(errs)
                        d["mse_pred"].extend(mse_pred)
                        d["pred"].append(float(th.eps_g))
                        d["meas"].extend(errs.tolist())
                        d["mse"].extend(mses)
            if progress is not None:
                progress.update(1)
        for (method, opt, k), d in per.items():
            pr, me = np.asarray(d["pred"]), np.asarray(d["meas"])
            rows.append({
                "sigma": sigma, "method": method, "option": opt, "k": k, "p": k / K,
                "predicted": float(pr.mean()), "predicted_std": float(pr.std()),
                "measured": float(me.mean()), "measured_std": float(me.std()),
                "measured_test_mse": float(np.mean(d["mse"])) if d["mse"] else float("nan"),
                "test_mse_from_overlaps": float(np.mean(d["mse_pred"])) if d["mse_pred"] else float("nan"),
                "n_masks": len(d["meas"]),
                "predicted_per_seed": pr.tolist(),
                "measured_mean_per_seed": [float(np.mean(e)) for e in d["seed_meas"]],
                "measured_std_per_seed": [float(np.std(e)) for e in d["seed_meas"]],
                "masks_per_seed": [int(np.size(e)) for e in d["seed_meas"]],
            })
    return {"setting": dataclasses.asdict(setting), "rows": rows, "theory_rows": theory_rows,
            "training": train_info, "seeds": seeds, "masks": masks}


NODE_METHODS = ("random-node", "importance-node", "dpp-node")
EDGE_METHODS = ("random-edge", "magnitude-edge", "dpp-edge")


def gap_rows(rows: Sequence[dict]) -> list[dict]:
    """Predicted-vs-measured gaps of [`simulation_check`][] rows, one per `(sigma, method, option, k)`.

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
    """Does the predicted-vs-measured gap close as `N` grows? [`simulation_check`][] at every `N` in `Ns` with
    the same `alpha = steps / N` (default `base.steps / base.N`, the seed paper's 1600), everything else as
    in `base`; then [`gap_rows`][] per `N` and a summary.

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
    `log`, if given, is called with one line of text after each `N`.
    """
    import time

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


def claims_from_rows(rows: Sequence[dict], value: str = "predicted") -> list[dict]:
    """Decide the seed paper's claims at every `(sigma, k)` from simulation-check rows.

    Claim 1: DPP node pruning with reweighting (its best rule) has lower error than random node pruning and
    than importance node pruning (each with its best rule; also each without reweighting).
    Claim 2: at equal parameter count, random edge pruning (best rescale) has lower error than DPP node
    pruning (best reweighting).
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

        rw = [o for o in NODE_REWEIGHTS if o != "none"]
        dpp_rw, rand_rw, imp_rw = best("dpp-node", rw), best("random-node", rw), best("importance-node", rw)
        dpp0, rand0, imp0 = (best(m, ["none"]) for m in ("dpp-node", "random-node", "importance-node"))
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


def winner_map(states: dict, *, kernel: str = "Q", jitter: float = 1e-6, N: int = 500) -> list[dict]:
    """Which method (best option) has the lowest expected error for each labelled state and budget.

    `states` maps a label (e.g. `(K/M, sigma)`) to an [`Overlaps`][]; returns rows
    `{label, k, p, winner, errors: {method: eps}}` over `k = 1..K-1`.
    """
    out = []
    for label, state in states.items():
        rows = compare_methods(state, kernel=kernel, jitter=jitter, N=N)
        best = best_by_method(rows)
        for k in range(1, state.K):
            errs = {m: best[(m, k)]["mean"] for (m, kk) in best if kk == k}
            out.append({"label": label, "k": k, "p": k / state.K, "winner": min(errs, key=errs.get),
                        "errors": errs})
    return out


def ode_student(K: int, M: int, *, sigma: float, v_star: float = 4.0, eta: float = 0.5, alpha: float = 1000.0,
                seed: int = 0) -> Overlaps:
    """A student trained by the ODEs (two-layer mode, `eta_v = eta`) from the overlaps of a random
    initialisation at large N (`Q0 = I + O(N^-1/2)`, small random `R0` and `v0`), float64."""
    from .._dynamics import solve_ode

    rng = np.random.default_rng(seed)
    n = 4000
    w = rng.normal(size=(K, n))
    ws = rng.normal(size=(M, n))
    ws = np.linalg.qr(ws.T)[0].T * math.sqrt(n)  # T = I exactly
    state = overlaps_from_weights(jnp.asarray(w), jnp.asarray(ws), jnp.asarray(0.1 * rng.normal(size=K)),
                                  jnp.full((M,), v_star))
    cfg = SGDConfig(eta=eta, eta_v=eta, sigma=sigma, mode="two-layer")
    return solve_ode(state, cfg, [0.0, alpha], max_steps=200_000, throw=False).final


def theory_winner_map(*, ratios: Sequence[int] = (2, 3), sigmas: Sequence[float] = (0.0, 0.25, 0.5), M: int = 2,
                      v_star: float = 4.0, eta: float = 0.5, alpha: float = 1000.0, seed: int = 0) -> list[dict]:
    """[`winner_map`][] over `K/M` in `ratios` and label noise `sigmas`, on ODE-trained students."""
    states = {(r, s): ode_student(r * M, M, sigma=s, v_star=v_star, eta=eta, alpha=alpha, seed=seed)
              for r in ratios for s in sigmas}
    return winner_map(states)
