"""The computing parts of `jaxprune reproduce` (each returns plain numbers, a JSON-able dict; docs/theory.md 4-7).

- `ode_vs_sim`: finite-N online SGD against the ODEs from each run's own initial overlaps (section 4);
- `fixed_points`: fixed points over an `(eta, sigma)` grid, implicit and finite-difference derivatives (5);
- `paper`: the seed paper's teacher-student experiment (K = 6, M = 2) under its protocol, theory beside the
  concrete pruned networks (6; `simulation_check`);
- `regime_5_20`: the paper's second regime K = 20, M = 5 in finite-N simulation (exact expectations over
  node subsets, concrete edge masks);
- `theory_claims`: the claims' theory at the idealised specialised states and on ODE-trained students;
- `winner_map`: which method (best option) wins in theory over `(K/M, sigma, eta, k)` (ours);
- `realdata`: MLPs on digits (`run_realdata`); the design parts live in `_reproduce_design`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import jaxprune as jp

from ._paper import PaperSetting, simulation_check
from ._paper_theory import idealised_rows, lean_rows, ode_student, winner_map
from ._realdata import run_realdata
from ._reproduce_design import part_design_network, part_design_population, part_design_training

__all__ = ["PART_FUNCTIONS"]


def _f64(x):
    return jnp.asarray(np.asarray(x, dtype=np.float64))


def _jitted(fn, **static):
    """`jax.jit(fn)` built once (module-level caches keep compiled code across runs in one process)."""
    key = (fn.__name__, tuple(sorted(static)))
    if key not in _JIT_CACHE:
        _JIT_CACHE[key] = jax.jit(fn, static_argnames=tuple(static))
    return _JIT_CACHE[key]


_JIT_CACHE: dict = {}


def _ode_batch_impl(states, cfg, alphas):
    return jax.vmap(lambda st: jp.solve_ode(st, cfg, np.asarray(alphas), throw=False))(states)


def _ode_batch(states, cfg, alphas: tuple):
    return _jitted(_ode_batch_impl, alphas=None)(states, cfg, alphas=alphas)


def _fp_config(a, b, mode):
    return jp.SGDConfig(eta=a, eta_v=a, sigma=b, mode=mode)


def _fp_warm_impl(state0, etas, sigmas, mode, alpha, fallback):
    return jax.vmap(lambda a, b: jp.fixed_point_from_ode(state0, _fp_config(a, b, mode), alpha=alpha,
                                                         fallback=fallback, throw=False))(etas, sigmas)


def _fp_grad_impl(p, state, mode):
    """Implicit gradient at a known root: Newton only (it stops at once), which compiles ~3x faster."""
    return jax.grad(lambda q: jp.solve_fixed_point(state, _fp_config(q[0], q[1], mode), fallback=False,
                                                   throw=False).eps_g)(p)


def part_ode_vs_sim(s: dict, work: Path, log: Callable[[str], None]) -> dict:
    """Finite-N SGD (float32, `seeds` runs per `N`) beside the ODE from each run's own initial overlaps."""
    K, M, seeds = int(s["K"]), int(s["M"]), int(s["seeds"])
    cfg = jp.SGDConfig(eta=s["eta"], sigma=s["sigma"], mode="scm")
    dalpha = s["alpha"] / s["records"]
    alphas = np.arange(s["records"] + 1) * dalpha
    runs = []
    for N in s["Ns"]:
        every = dalpha * N
        if abs(every - round(every)) > 1e-9 or round(every) < 1:
            raise ValueError(f"alpha/records * N must be a positive integer, got {every} for N={N}")
        every = int(round(every))
        key = jax.random.fold_in(jax.random.key(s["seed"]), N)
        kt, ks, kr = jax.random.split(key, 3)
        teachers = jax.vmap(lambda k: jp.make_teacher(k, N, M, v_star=1.0))(jax.random.split(kt, seeds))
        students = jax.vmap(lambda k: jp.init_student(k, N, K, scale=1.0))(jax.random.split(ks, seeds))
        res = jp.simulate_seeds(jax.random.split(kr, seeds), teachers, students, cfg, steps=every * s["records"],
                             record_every=every)
        start = jax.tree.map(lambda x: _f64(x[:, 0]), res.states)
        sol = _ode_batch(start, cfg, tuple(float(a) for a in alphas))
        sim, ode = np.asarray(res.eps_g, float), np.asarray(sol.eps_g, float)
        dev = sim - ode
        rms = np.sqrt(np.mean(dev[:, 1:] ** 2, axis=1))
        early = (alphas > 0) & (alphas <= s["early_alpha"])
        rms_early = np.sqrt(np.mean(dev[:, early] ** 2, axis=1))
        runs.append({
            "N": int(N), "seeds": seeds, "steps": every * s["records"], "alpha": alphas,
            "sim_mean": sim.mean(0), "sim_min": sim.min(0), "sim_max": sim.max(0), "ode_mean": ode.mean(0),
            "rms_deviation": float(rms.mean()), "rms_deviation_per_seed": rms,
            "max_deviation": float(np.mean(np.max(np.abs(dev), axis=1))),
            "final_sim": float(sim[:, -1].mean()), "final_ode": float(ode[:, -1].mean()),
            "final_abs_deviation": float(np.mean(np.abs(dev[:, -1]))),
            "sqrtN_rms_deviation": float(math.sqrt(N) * rms.mean()),
            "rms_deviation_early": float(rms_early.mean()),
            "sqrtN_rms_deviation_early": float(math.sqrt(N) * rms_early.mean()),
            "sim_status": np.asarray(res.status).tolist(), "ode_status": np.asarray(sol.status).tolist(),
        })
        log(f"  ode_vs_sim: N={N} rms deviation {rms.mean():.3g}")
    Ns = np.asarray([r["N"] for r in runs], float)

    def exponent(field):
        dev = np.asarray([r[field] for r in runs], float)
        ok = np.isfinite(dev) & (dev > 0)
        return float(np.polyfit(np.log(Ns[ok]), np.log(dev[ok]), 1)[0]) if ok.sum() >= 2 else float("nan")

    return {"runs": runs, "fitted_exponent": exponent("rms_deviation"),
            "fitted_exponent_early": exponent("rms_deviation_early"), "error": "noise-free eps_g"}


def part_fixed_points(s: dict, work: Path, log: Callable[[str], None]) -> dict:
    """Fixed points over the `(eta, sigma)` grid, implicit gradients and finite differences."""
    mode, alpha, h = s["mode"], float(s["alpha"]), float(s["fd_step"])
    etas, sigmas = np.asarray(s["etas"], float), np.asarray(s["sigmas"], float)
    if np.any(sigmas <= h):
        raise ValueError(f"sigmas must exceed the finite-difference step {h} (the derivative at sigma = 0 is 0)")
    state0 = jp.Overlaps.reference(s["K"], s["M"], v_star=s["v_star"])
    E, S = np.meshgrid(etas, sigmas)  # (n_sigma, n_eta)
    e, sg = E.ravel(), S.ravel()

    # one batch: the grid, then the central finite-difference neighbours (eta +- h, sigma +- h) of every point,
    # each from the same warm-up ODE run (one compilation serves all)
    eb = np.concatenate([e, e + h, e - h, e, e])
    sb = np.concatenate([sg, sg, sg, sg + h, sg - h])
    warm = _jitted(_fp_warm_impl, mode=None, alpha=None, fallback=None)
    allres = warm(state0, jnp.asarray(eb), jnp.asarray(sb), mode=mode, alpha=alpha, fallback=False)
    failed = np.asarray(allres.status) == jp.Status.NOT_CONVERGED
    if failed.any():  # Levenberg-Marquardt only where Newton failed (compiled only when needed)
        idx = np.flatnonzero(failed)
        again = warm(state0, jnp.asarray(eb[idx]), jnp.asarray(sb[idx]), mode=mode, alpha=alpha, fallback=True)
        allres = jax.tree.map(lambda a, b: a.at[idx].set(b), allres, again)
    G = e.size
    res = jax.tree.map(lambda x: x[:G], allres)
    status = np.asarray(res.status)
    eps = np.asarray(res.eps_g, float)
    slow = np.real(np.asarray(res.slowest_eigenvalue))
    vals = np.asarray(allres.eps_g, float)[G:].reshape(4, G)
    fd_eta = (vals[0] - vals[1]) / (2 * h)
    fd_sigma = (vals[2] - vals[3]) / (2 * h)
    # implicit-function-theorem gradients, point by point (a singular Jacobian raises inside the solve)
    grad = _jitted(_fp_grad_impl, mode=None)
    d_eta, d_sigma, notes = np.full(e.size, np.nan), np.full(e.size, np.nan), [""] * e.size
    for i in range(e.size):
        if status[i] != jp.Status.SUCCESS:
            notes[i] = f"no gradient: {jp.describe(status[i])}"
            continue
        st = jax.tree.map(lambda x: x[i], res.state)
        try:
            g = np.asarray(grad(jnp.asarray([e[i], sg[i]]), st, mode=mode), float)
            d_eta[i], d_sigma[i] = g
        except Exception as ex:  # noqa: BLE001 - recorded per point
            notes[i] = f"gradient failed: {type(ex).__name__}"
    points = []
    for i in range(e.size):
        points.append({
            "eta": float(e[i]), "sigma": float(sg[i]), "eps_g": float(eps[i]), "status": int(status[i]),
            "status_words": jp.describe(status[i]), "slowest_eigenvalue_real": float(slow[i]),
            "d_eps_d_eta": float(d_eta[i]), "d_eps_d_sigma": float(d_sigma[i]),
            "fd_d_eps_d_eta": float(fd_eta[i]), "fd_d_eps_d_sigma": float(fd_sigma[i]), "note": notes[i],
        })

    def rel(a, b):
        ok = np.isfinite(a) & np.isfinite(b)
        return float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-12))) if ok.any() else float("nan")

    shape = (len(sigmas), len(etas))
    return {"points": points, "etas": etas, "sigmas": sigmas, "grid_eps_g": eps.reshape(shape),
            "grid_d_eta": d_eta.reshape(shape), "grid_d_sigma": d_sigma.reshape(shape),
            "max_rel_diff_eta": rel(d_eta, fd_eta), "max_rel_diff_sigma": rel(d_sigma, fd_sigma),
            "converged": int(np.sum(status == jp.Status.SUCCESS)), "total": int(e.size)}


class _LogProgress:
    def __init__(self, log, label, total):
        self.log, self.label, self.total, self.n = log, label, total, 0

    def update(self, n=1):
        self.n += n
        self.log(f"  {self.label}: {self.n}/{self.total} trained students pruned")


def _average_theory(theory_rows: dict) -> dict:
    """Theory rows averaged over the trained students, per noise level."""
    theory = {}
    for sigma, per_seed in theory_rows.items():
        groups: dict[tuple, list] = {}
        for rows in per_seed:
            for r in rows:
                groups.setdefault((r["method"], r["option"], r.get("budget_k")), []).append(r)
        avg = []
        for (m, o, bk), rs in groups.items():
            row = {"method": m, "option": o, "k": rs[0]["k"], "p": rs[0]["p"],
                   "params_kept": rs[0]["params_kept"], "mean": float(np.mean([r["mean"] for r in rs])),
                   "std": float(np.mean([r["std"] for r in rs])),
                   "seed_std": float(np.std([r["mean"] for r in rs])), "n_students": len(rs)}
            if bk is not None:
                row["budget_k"] = bk
            avg.append(row)
        theory[sigma] = avg
    return theory


def _simulation_part(s: dict, log, label: str, **check) -> dict:
    setting = PaperSetting(N=s["N"], M=s["M"], K=s["K"], v_star=s["v_star"], eta=s["eta"], steps=s["steps"],
                           protocol=s["protocol"])
    out = simulation_check(setting, sigmas=tuple(s["sigmas"]), seeds=s["seeds"], masks=s["masks"],
                           test_samples=s["test_samples"], seed=s["seed"], test_mse_masks=s["test_mse_masks"],
                           progress=_LogProgress(log, label, len(s["sigmas"]) * s["seeds"]), **check)
    return {"setting": out["setting"], "protocol": out["protocol"], "rows": out["rows"],
            "theory": _average_theory(out["theory_rows"]), "training": out["training"], "seeds": out["seeds"],
            "masks": out["masks"], "node_masks": out["node_masks"]}


def part_paper(s: dict, work: Path, log: Callable[[str], None]) -> dict:
    """`simulation_check` at the seed paper's setting and protocol (K = 6, M = 2); theory rows averaged over
    the trained students."""
    return _simulation_part(s, log, "paper", reweights=tuple(s["reweights"]), rescales=tuple(s["rescales"]))


def part_regime_5_20(s: dict, work: Path, log: Callable[[str], None]) -> dict:
    """The paper's second regime (K = 20, M = 5) in finite-N simulation: node methods by their exact
    expectation over subsets (closed form, no reweighting), edge methods by concrete masks."""
    return _simulation_part(s, log, "regime_5_20", reweights=("none",), rescales=("none",), node_masks=0,
                            node_theory="closed-form")


def part_theory_claims(s: dict, work: Path, log: Callable[[str], None]) -> dict:
    """Exact theory for the claims: the idealised specialised states, and ODE-trained students (rows
    normalised before pruning, as the paper's protocol)."""
    idealised = []
    for K, M in s["regimes"]:
        rws = ("none", "preactivation") if K <= 8 else ("none",)
        idealised.append({"K": K, "M": M, "v_star": s["v_star"], "rows": idealised_rows(K, M, s["v_star"],
                                                                                         reweights=rws)})
        log(f"  theory_claims: idealised K={K}, M={M}")
    ode = []
    for K, M in s["ode_regimes"]:
        rows, unpruned = {}, {}
        for sigma in s["sigmas"]:
            st = ode_student(K, M, sigma=sigma, v_star=s["v_star"], eta=s["eta"], alpha=s["alpha"], seed=s["seed"],
                             v0_scale=1.0)
            unpruned[str(sigma)] = float(jp.generalisation_error(st))
            rows[str(sigma)] = lean_rows(jp.normalise_student(st), importance="v")
        ode.append({"K": K, "M": M, "label": f"K = {K}, M = {M}, v* = {s['v_star']:g}, eta = {s['eta']:g}, "
                    f"alpha = {s['alpha']:g}", "rows": rows, "unpruned": unpruned})
        log(f"  theory_claims: ODE students K={K}, M={M}")
    return {"idealised": idealised, "ode": ode}


def part_winner_map(s: dict, work: Path, log: Callable[[str], None]) -> dict:
    """`winner_map` on ODE-trained students over `K/M`, `sigma` and `eta`."""
    M = int(s["M_units"])
    states = {}
    for r in s["ratios"]:
        for sig in s["sigmas"]:
            for eta in s["etas"]:
                states[(int(r), float(sig), float(eta))] = ode_student(
                    int(r) * M, M, sigma=sig, v_star=s["v_star"], eta=eta, alpha=s["alpha"], seed=s["seed"])
    rows = winner_map(states, N=s["N"])
    out = []
    for r in rows:
        ratio, sig, eta = r["label"]
        out.append({"K_over_M": ratio, "K": ratio * M, "sigma": sig, "eta": eta, "k": r["k"], "p": r["p"],
                    "winner": r["winner"], "errors": r["errors"],
                    "unpruned": float(jp.generalisation_error(states[tuple(r["label"])]))})
    counts: dict[str, int] = {}
    for r in out:
        counts[r["winner"]] = counts.get(r["winner"], 0) + 1
    return {"rows": out, "winner_counts": counts, "cells": len(out)}

def part_realdata(s: dict, work: Path, log: Callable[[str], None]) -> dict:
    res = run_realdata(work / "realdata", dataset=s["dataset"], hidden=s["hidden"], budgets=s["budgets"],
                       seeds=s["seeds"], masks=s["masks"], quick=s["quick"], progress=False, plot=False,
                       log=lambda m: log("  realdata: " + m))
    rows = [dict(r, mean_pct=100 * r["mean"], std_pct=100 * r["std"]) for r in res.rows]
    u = np.asarray(res.unpruned, float)
    return {"config": res.config, "unpruned": res.unpruned, "unpruned_mean_pct": float(100 * u.mean()),
            "unpruned_std_pct": float(100 * (u.std(ddof=1) if u.size > 1 else 0.0)), "rows": rows,
            "verdicts": res.verdicts, "budgets": res.config["budgets"], "computed": res.computed,
            "reused": res.reused}


PART_FUNCTIONS = {
    "ode_vs_sim": part_ode_vs_sim,
    "fixed_points": part_fixed_points,
    "paper": part_paper,
    "regime_5_20": part_regime_5_20,
    "theory_claims": part_theory_claims,
    "winner_map": part_winner_map,
    "design_network": part_design_network,
    "design_population": part_design_population,
    "design_training": part_design_training,
    "realdata": part_realdata,
}
