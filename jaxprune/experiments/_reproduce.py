"""`jaxprune reproduce`: every experiment of the project in one resumable run, and a report.

The run is split into *parts*; each computes plain numbers (a JSON-able dict) with library functions only:

- `ode_vs_sim`: finite-N online SGD (`simulate_seeds`) against the ODEs (`solve_ode`) started from each
  run's own initial overlaps, for a few `N` (docs/theory.md 4: the deviation should shrink like `N^-1/2`);
- `fixed_points`: fixed-point errors `eps_g*` of the soft committee machine over a grid of `(eta, sigma)`
  (`fixed_point_from_ode`), their implicit derivatives `d eps_g*/d eta`, `d eps_g*/d sigma` (`jax.grad` through
  `solve_fixed_point`) and central finite differences beside them (docs/theory.md 5);
- `paper`: the seed paper's teacher-student pruning experiment, theory beside finite-N simulation, every
  method at every budget, with and without reweighting (`_paper.simulation_check`; docs/theory.md 6);
- `winner_map`: which method wins, in theory, over `(K/M, sigma, eta, k)` (`_paper.winner_map` on
  `_paper.ode_student` states);
- `design_network`, `design_population`, `design_training`: gradient-designed pruning against the baselines
  (`_design.compare_network`, `compare_population`, `compare_training`; docs/theory.md 7);
- `realdata`: pruning MLPs trained on the digits data set (`_realdata.run_realdata`).

Each part is written atomically to `DIR/parts/<name>.json` with the settings it used; a rerun reuses a part
whose file is complete and whose settings match, and recomputes it otherwise (or when forced). A failing part
is recorded (status "error" and the message) and does not stop the others. The claims of the seed paper
(docs/theory.md 6.3) are decided from the `paper`, `winner_map` and `realdata` results. Finally `DIR/results.json`
(every number), `DIR/figures/*.png` and `DIR/report.md` (tables and figures, all generated from
`results.json`) are written.

Every error is the noise-free generalisation error `eps_g` unless a column says "test MSE" or "test error".
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .._io import atomic_write_bytes, atomic_write_json, atomic_write_text, to_jsonable

__all__ = ["MODES", "PARTS", "reproduce_settings", "reproduce", "ReproduceResult", "run_part", "build_report"]

FORMAT = 1
MODES = ("quick", "default", "full")
PARTS = ("ode_vs_sim", "fixed_points", "paper", "winner_map", "design_network", "design_population",
         "design_training", "realdata")
_DESIGN_PARTS = ("design_network", "design_population", "design_training")


# --------------------------------------------------------------------------------------------------
# Settings per mode
# --------------------------------------------------------------------------------------------------


def reproduce_settings(mode: str = "default") -> dict[str, dict]:
    """The settings of every part for `mode` in `MODES` (`quick`: a smoke run of about two minutes on two
    CPU cores; `default`: under fifteen minutes; `full`: the seed paper's sizes, N=500, 800 000 SGD steps,
    several seeds). A part is reused by a rerun only when its settings are equal to these."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    q, f = mode == "quick", mode == "full"

    def pick(quick, default, full):
        return quick if q else (full if f else default)

    paper_net = dict(M=2, v_star=4.0, eta=0.5)
    ode = dict(K=2, M=2, eta=0.5, sigma=0.0, seed=0,
               Ns=pick([100, 400], [100, 400, 1600], [100, 400, 1600, 6400]),
               seeds=pick(3, 6, 10), alpha=pick(20.0, 30.0, 50.0), records=pick(40, 60, 100), early_alpha=5.0)
    fp = dict(K=2, M=2, mode="scm", v_star=1.0, alpha=pick(500.0, 1000.0, 2000.0), fd_step=1e-5,
              etas=pick([0.5, 1.0], [0.25, 0.5, 0.75, 1.0, 1.5], [0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0]),
              sigmas=pick([0.1, 0.3], [0.05, 0.1, 0.2, 0.3, 0.5], [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7]))
    paper = dict(**paper_net, N=pick(100, 500, 500), K=pick(4, 6, 6), steps=pick(20_000, 200_000, 800_000),
                 sigmas=[0.0, 0.25], seeds=pick(1, 2, 5), masks=pick(3, 10, 20),
                 test_samples=pick(2000, 10_000, 20_000), seed=0)
    wmap = dict(**paper_net, M_units=2, ratios=pick([2], [2, 3], [2, 3, 4]),
                sigmas=pick([0.0, 0.5], [0.0, 0.25, 0.5], [0.0, 0.1, 0.25, 0.5]),
                etas=pick([0.5], [0.5], [0.25, 0.5, 1.0]), alpha=pick(200.0, 1000.0, 2000.0), N=paper["N"],
                seed=0)
    del wmap["M"]
    net = dict(**paper_net, N=pick(100, 300, 500), K=pick(4, 6, 6), steps=pick(20_000, 60_000, 200_000),
               sigma=0.0, seed=0)
    K = net["K"]
    ks = pick([2], [3], [1, 2, 3, 4, 5])
    design_network = dict(network=net, keeps=[k / K for k in ks], steps=pick(100, 300, 400),
                          restarts=pick(2, 4, 4), learning_rate=0.05, seed=0)
    design_population = dict(network=net, keeps=[k / K for k in ks], steps=pick(100, 200, 300),
                             learning_rate=0.05, seed=0)
    design_training = dict(network=net, ks=pick([2], [3], [2, 3, 4]), duration=pick(10.0, 20.0, 20.0),
                           steps=pick(20, 40, 60), restarts=pick(1, 2, 2), learning_rate=0.05,
                           sim_seeds=pick(1, 2, 3), seed=0)
    realdata = dict(dataset="digits", quick=q, hidden=None if not q else [50],
                    budgets=pick([0.25, 0.5, 0.75], [0.2, 0.4, 0.6, 0.8], None),
                    seeds=pick(1, 2, 3), masks=pick(2, 3, 5))
    return {"ode_vs_sim": ode, "fixed_points": fp, "paper": paper, "winner_map": wmap,
            "design_network": design_network, "design_population": design_population,
            "design_training": design_training, "realdata": realdata}


# --------------------------------------------------------------------------------------------------
# Parts (each returns a JSON-able dict)
# --------------------------------------------------------------------------------------------------


def _f64(x):
    import jax.numpy as jnp

    return jnp.asarray(np.asarray(x, dtype=np.float64))


def _builtin_state(K: int, M: int, v_star: float):
    """The reference tool's initial condition (as `jaxprune ode`): `Q0 = I`, `T = I`,
    `R0[i,n] = 1e-3 sin(1 + i M + n)`, `v = 1`."""
    import jax.numpy as jnp

    from .._overlaps import Overlaps

    i, n = np.arange(K)[:, None], np.arange(M)[None, :]
    return Overlaps(Q=jnp.eye(K), R=jnp.asarray(1e-3 * np.sin(1.0 + i * M + n)), T=jnp.eye(M), v=jnp.ones(K),
                    v_star=jnp.full((M,), float(v_star)))


def _jitted(fn, **static):
    """`jax.jit(fn)` built once (module-level caches keep compiled code across runs in one process)."""
    import jax

    key = (fn.__name__, tuple(sorted(static)))
    if key not in _JIT_CACHE:
        _JIT_CACHE[key] = jax.jit(fn, static_argnames=tuple(static))
    return _JIT_CACHE[key]


_JIT_CACHE: dict = {}


def _ode_batch_impl(states, cfg, alphas):
    import jax

    from .._dynamics import solve_ode

    return jax.vmap(lambda st: solve_ode(st, cfg, np.asarray(alphas), throw=False))(states)


def _ode_batch(states, cfg, alphas: tuple):
    return _jitted(_ode_batch_impl, alphas=None)(states, cfg, alphas=alphas)


def _fp_config(a, b, mode):
    from .._dynamics import SGDConfig

    return SGDConfig(eta=a, eta_v=a, sigma=b, mode=mode)


def _fp_warm_impl(state0, etas, sigmas, mode, alpha, fallback):
    import jax

    from .._fixed_point import fixed_point_from_ode

    return jax.vmap(lambda a, b: fixed_point_from_ode(state0, _fp_config(a, b, mode), alpha=alpha,
                                                      fallback=fallback, throw=False))(etas, sigmas)


def _fp_grad_impl(p, state, mode):
    """Implicit gradient at a known root: Newton only (it stops at once), which compiles ~3x faster."""
    import jax

    from .._fixed_point import solve_fixed_point

    return jax.grad(lambda q: solve_fixed_point(state, _fp_config(q[0], q[1], mode), fallback=False,
                                                throw=False).eps_g)(p)


def part_ode_vs_sim(s: dict, work: Path, log: Callable[[str], None]) -> dict:
    """Finite-N SGD (float32, `seeds` runs per `N`) beside the ODE from each run's own initial overlaps."""
    import jax
    import jax.numpy as jnp

    from .._dynamics import SGDConfig
    from .._simulate import init_student, make_teacher, simulate_seeds

    K, M, seeds = int(s["K"]), int(s["M"]), int(s["seeds"])
    cfg = SGDConfig(eta=s["eta"], sigma=s["sigma"], mode="scm")
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
        teachers = jax.vmap(lambda k: make_teacher(k, N, M, v_star=1.0))(jax.random.split(kt, seeds))
        students = jax.vmap(lambda k: init_student(k, N, K, scale=1.0))(jax.random.split(ks, seeds))
        res = simulate_seeds(jax.random.split(kr, seeds), teachers, students, cfg, steps=every * s["records"],
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
    import jax
    import jax.numpy as jnp

    from .._status import Status, describe

    mode, alpha, h = s["mode"], float(s["alpha"]), float(s["fd_step"])
    etas, sigmas = np.asarray(s["etas"], float), np.asarray(s["sigmas"], float)
    if np.any(sigmas <= h):
        raise ValueError(f"sigmas must exceed the finite-difference step {h} (the derivative at sigma = 0 is 0)")
    state0 = _builtin_state(s["K"], s["M"], s["v_star"])
    E, S = np.meshgrid(etas, sigmas)  # (n_sigma, n_eta)
    e, sg = E.ravel(), S.ravel()

    # one batch: the grid, then the central finite-difference neighbours (eta +- h, sigma +- h) of every point,
    # each from the same warm-up ODE run (one compilation serves all)
    eb = np.concatenate([e, e + h, e - h, e, e])
    sb = np.concatenate([sg, sg, sg, sg + h, sg - h])
    warm = _jitted(_fp_warm_impl, mode=None, alpha=None, fallback=None)
    allres = warm(state0, jnp.asarray(eb), jnp.asarray(sb), mode=mode, alpha=alpha, fallback=False)
    failed = np.asarray(allres.status) == Status.NOT_CONVERGED
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
        if status[i] != Status.SUCCESS:
            notes[i] = f"no gradient: {describe(status[i])}"
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
            "status_words": describe(status[i]), "slowest_eigenvalue_real": float(slow[i]),
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
            "converged": int(np.sum(status == Status.SUCCESS)), "total": int(e.size)}


class _LogProgress:
    def __init__(self, log, label, total):
        self.log, self.label, self.total, self.n = log, label, total, 0

    def update(self, n=1):
        self.n += n
        self.log(f"  {self.label}: {self.n}/{self.total} trained students pruned")


def part_paper(s: dict, work: Path, log: Callable[[str], None]) -> dict:
    """`simulation_check` at the seed paper's setting; theory rows averaged over the trained students."""
    from ._paper import PaperSetting, simulation_check

    setting = PaperSetting(N=s["N"], M=s["M"], K=s["K"], v_star=s["v_star"], eta=s["eta"], steps=s["steps"])
    out = simulation_check(setting, sigmas=tuple(s["sigmas"]), seeds=s["seeds"], masks=s["masks"],
                           test_samples=s["test_samples"], seed=s["seed"],
                           progress=_LogProgress(log, "paper", len(s["sigmas"]) * s["seeds"]))
    theory = {}
    for sigma, per_seed in out["theory_rows"].items():
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
    return {"setting": out["setting"], "rows": out["rows"], "theory": theory, "training": out["training"],
            "seeds": out["seeds"], "masks": out["masks"]}


def part_winner_map(s: dict, work: Path, log: Callable[[str], None]) -> dict:
    """`winner_map` on ODE-trained students over `K/M`, `sigma` and `eta`."""
    from .._error import generalisation_error
    from ._paper import ode_student, winner_map

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
                    "unpruned": float(generalisation_error(states[tuple(r["label"])]))})
    counts: dict[str, int] = {}
    for r in out:
        counts[r["winner"]] = counts.get(r["winner"], 0) + 1
    return {"rows": out, "winner_counts": counts, "cells": len(out)}


def _hash(obj) -> str:
    return hashlib.sha256(_canon(obj).encode()).hexdigest()[:16]


def _design_network(net: dict, work: Path, log) -> tuple:
    """A student trained by finite-N SGD at the paper setting (`_paper.train_students`, one seed), float64;
    cached in `work/design_network_<hash>.npz`."""
    import jax

    from ._paper import PaperSetting, train_students

    path = work / f"design_network_{_hash(net)}.npz"
    if path.exists():
        try:
            with np.load(path) as d:
                return tuple(_f64(d[k]) for k in ("w", "w_star", "v", "v_star"))
        except (OSError, ValueError, KeyError):
            pass
    setting = PaperSetting(N=net["N"], M=net["M"], K=net["K"], v_star=net["v_star"], eta=net["eta"],
                           steps=net["steps"])
    teachers, students, _ = train_students(setting, net["sigma"], 1, seed=net["seed"])
    arrays = {"w": students.w[0], "w_star": teachers.w_star[0], "v": students.v[0], "v_star": teachers.v_star[0]}
    arrays = {k: np.asarray(jax.device_get(v), np.float64) for k, v in arrays.items()}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    log(f"  design: trained the network (N={net['N']}, K={net['K']}, {net['steps']} steps)")
    return tuple(_f64(arrays[k]) for k in ("w", "w_star", "v", "v_star"))


def _clean_rows(rows) -> list[dict]:
    out = []
    for r in rows:
        r = {k: v for k, v in r.items() if k not in ("mask", "loss_curve")}
        out.append(r)
    return out


_BASELINES = ("random", "magnitude", "dpp", "importance")


def _design_summary(rows: Sequence[dict], budget_key: str) -> list[dict]:
    """For each designed row: the best baseline of the same kind at the same budget and whether the design
    beats it (exact error; and in simulation where both have one)."""
    out = []
    for r in rows:
        if not str(r["method"]).startswith("designed"):
            continue
        kind = r.get("kind", "node")
        base = [b for b in rows if b["method"] in _BASELINES and b.get(budget_key) == r.get(budget_key)
                and b.get("kind", "node") == kind]
        if not base:
            continue
        best = min(base, key=lambda b: b["error"])
        item = {"budget": r.get(budget_key), "kind": kind, "designed": r["method"], "designed_error": r["error"],
                "best_baseline": best["method"], "baseline_error": best["error"],
                "beats": bool(r["error"] < best["error"]),
                "relative_gain": float(1 - r["error"] / best["error"]) if best["error"] else float("nan")}
        sims = [b for b in base if isinstance(b.get("sim"), (int, float))]
        if isinstance(r.get("sim"), (int, float)) and sims:
            bs = min(sims, key=lambda b: b["sim"])
            item.update(designed_sim=r["sim"], baseline_sim=bs["sim"], baseline_sim_method=bs["method"],
                        beats_in_simulation=bool(r["sim"] < bs["sim"]))
        out.append(item)
    return out


def part_design_network(s: dict, work: Path, log: Callable[[str], None]) -> dict:
    import jax

    from ..design._design import compare_network

    w, ws, v, vs = _design_network(s["network"], work, log)
    rows = compare_network(w, ws, v, vs, tuple(s["keeps"]), key=jax.random.key(s["seed"]), steps=s["steps"],
                           restarts=s["restarts"], learning_rate=s["learning_rate"])
    rows = _clean_rows(rows)
    return {"rows": rows, "summary": _design_summary(rows, "keep"), "budget": "keep"}


def part_design_population(s: dict, work: Path, log: Callable[[str], None]) -> dict:
    import jax

    from ..design._design import compare_population
    from .._overlaps import overlaps_from_weights

    w, ws, v, vs = _design_network(s["network"], work, log)
    state = overlaps_from_weights(w, ws, v, vs)
    rows = compare_population(state, tuple(s["keeps"]), weights=(w, ws), key=jax.random.key(s["seed"]),
                              steps=s["steps"], learning_rate=s["learning_rate"])
    rows = _clean_rows(rows)
    return {"rows": rows, "summary": _design_summary(rows, "keep"), "budget": "keep"}


def part_design_training(s: dict, work: Path, log: Callable[[str], None]) -> dict:
    import jax

    from ..design._design import compare_training
    from .._overlaps import overlaps_from_weights
    from ._paper import PaperSetting
    from .._simulate import Student, Teacher

    net = s["network"]
    w, ws, v, vs = _design_network(net, work, log)
    state = overlaps_from_weights(w, ws, v, vs)
    config = PaperSetting(N=net["N"], M=net["M"], K=net["K"], v_star=net["v_star"], eta=net["eta"]).config(
        net["sigma"])
    rows = compare_training(state, config, tuple(int(k) for k in s["ks"]), float(s["duration"]), steps=s["steps"],
                            learning_rate=s["learning_rate"], restarts=s["restarts"],
                            key=jax.random.key(s["seed"]), network=(Teacher(w_star=ws, v_star=vs), Student(w=w, v=v)),
                            seeds=s["sim_seeds"])
    rows = _clean_rows(rows)
    return {"rows": rows, "summary": _design_summary(rows, "k"), "budget": "k",
            "alpha_p": net["steps"] / net["N"], "duration": s["duration"]}


def part_realdata(s: dict, work: Path, log: Callable[[str], None]) -> dict:
    from ._realdata import run_realdata

    res = run_realdata(work / "realdata", dataset=s["dataset"], hidden=s["hidden"], budgets=s["budgets"],
                       seeds=s["seeds"], masks=s["masks"], quick=s["quick"], progress=False, plot=False,
                       log=lambda m: log("  realdata: " + m))
    rows = [dict(r, mean_pct=100 * r["mean"], std_pct=100 * r["std"]) for r in res.rows]
    u = np.asarray(res.unpruned, float)
    return {"config": res.config, "unpruned": res.unpruned, "unpruned_mean_pct": float(100 * u.mean()),
            "unpruned_std_pct": float(100 * (u.std(ddof=1) if u.size > 1 else 0.0)), "rows": rows,
            "verdicts": res.verdicts, "budgets": res.config["budgets"], "computed": res.computed,
            "reused": res.reused}


_PART_FUNCTIONS = {
    "ode_vs_sim": part_ode_vs_sim,
    "fixed_points": part_fixed_points,
    "paper": part_paper,
    "winner_map": part_winner_map,
    "design_network": part_design_network,
    "design_population": part_design_population,
    "design_training": part_design_training,
    "realdata": part_realdata,
}


# --------------------------------------------------------------------------------------------------
# Running parts: atomic, resumable, failures recorded
# --------------------------------------------------------------------------------------------------


def _canon(obj) -> str:
    return json.dumps(to_jsonable(obj), sort_keys=True)


def _normalise(obj):
    """What the object looks like after a JSON round trip (so fresh and reused parts are handled alike)."""
    return json.loads(json.dumps(to_jsonable(obj)))


def _load_part(path: Path) -> dict | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("format") != FORMAT or rec.get("status") != "ok" or "result" not in rec:
        return None
    return rec


def _work_paths(name: str, work: Path) -> list[Path]:
    if name == "realdata":
        return [work / "realdata"]
    if name in _DESIGN_PARTS:
        return list(work.glob("design_network_*.npz"))
    return []


def _reusable(name: str, settings: dict, parts_dir: Path, log: Callable[[str], None] | None = None) -> dict | None:
    """The finished record of part `name` in `parts_dir` if its settings equal `settings` (marked reused), else
    `None` (missing, unreadable, or computed with other settings)."""
    old = _load_part(parts_dir / f"{name}.json")
    if old is None or _canon(old.get("settings")) != _canon(settings):
        return None
    if log is not None:
        log(f"[{name}] reused (computed earlier in {old.get('seconds', float('nan')):.1f} s)")
    return dict(old, reused=True, wall_seconds=0.0)


def _remove(paths) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def run_part(name: str, settings: dict, parts_dir: Path, *, force: bool = False, clean_work: bool = True,
             log: Callable[[str], None] = print) -> dict:
    """Run (or reuse) one part; returns its record `{name, status, settings, result | error, seconds,
    reused}` after a JSON round trip. The record is written atomically to `parts_dir/<name>.json`. `force`
    recomputes, and with `clean_work` first deletes the part's cached intermediates (e.g. a trained network)."""
    path = parts_dir / f"{name}.json"
    work = parts_dir / "work"
    if not force:
        old = _reusable(name, settings, parts_dir, log)
        if old is not None:
            return old
    elif clean_work:
        _remove(_work_paths(name, work))
    work.mkdir(parents=True, exist_ok=True)
    log(f"[{name}] running ...")
    t0, c0 = time.perf_counter(), time.process_time()
    rec = {"format": FORMAT, "name": name, "settings": settings}
    try:
        result = _PART_FUNCTIONS[name](settings, work, log)
        rec.update(status="ok", result=result)
    except Exception as e:  # noqa: BLE001 - one failing part must not stop the others
        rec.update(status="error", error=f"{type(e).__name__}: {e}".strip(),
                   traceback=traceback.format_exc(limit=8))
    rec["seconds"] = time.perf_counter() - t0
    rec["cpu_seconds"] = time.process_time() - c0
    atomic_write_json(path, rec)
    if rec["status"] == "ok":
        log(f"[{name}] done in {rec['seconds']:.1f} s (CPU {rec['cpu_seconds']:.1f} s)")
    else:
        log(f"[{name}] FAILED after {rec['seconds']:.1f} s: {rec['error']}")
    return dict(_normalise(rec), reused=False, wall_seconds=rec["seconds"])


# --------------------------------------------------------------------------------------------------
# Claims (docs/theory.md 6.3)
# --------------------------------------------------------------------------------------------------


def _count_verdict(flags: Sequence[bool], *, some: bool) -> dict:
    n, m = len(flags), int(sum(bool(x) for x in flags))
    if n == 0:
        word = "not tested"
    elif some:
        word = "holds" if m > 0 else "does not hold"
    else:
        word = "holds" if m == n else ("does not hold" if m == 0 else "holds only in part")
    return {"holds_at": m, "cells": n, "verdict": word}


def decide_claims(paper: dict | None, wmap: dict | None, realdata: dict | None) -> dict:
    """The seed paper's claims decided from the results: per `(sigma, k)` cells of `claims_from_rows` (from
    the predicted and from the measured errors), the theory winner map, and the real-data verdicts."""
    from ._paper import claims_from_rows

    out: dict[str, Any] = {"statements": []}
    if paper is not None:
        rows = [dict(r, predicted=_num(r["predicted"]), measured=_num(r["measured"])) for r in paper["rows"]]
        cells = {v: claims_from_rows(rows, v) for v in ("predicted", "measured")}
        out["cells"] = cells
        for cid, field, text, some in (
            ("1a", "claim1_dpp_beats_random", "DPP node pruning with reweighting has lower error than random node "
             "pruning (each with its best reweighting)", False),
            ("1b", "claim1_dpp_beats_importance", "DPP node pruning with reweighting has lower error than importance "
             "node pruning (each with its best reweighting)", False),
            ("1c", "claim1_plain_dpp_beats_random", "without reweighting, DPP node pruning has lower error than "
             "random node pruning", False),
            ("1d", "claim1_plain_dpp_beats_importance", "without reweighting, DPP node pruning has lower error than "
             "importance node pruning", False),
            ("2", "claim2_random_edge_beats_dpp_node", "at equal parameter count, random edge pruning has lower "
             "error than DPP node pruning in some regimes", True),
        ):
            item = {"id": cid, "statement": text, "source": "teacher-student (paper part)",
                    "paper_claim": cid in ("1a", "1b", "2")}
            for v in ("predicted", "measured"):
                item[v] = _count_verdict([c[field] for c in cells[v]], some=some)
            item["where"] = {v: [[c["sigma"], c["k"]] for c in cells[v] if c[field]] for v in ("predicted", "measured")}
            out["statements"].append(item)
    if wmap is not None:
        rows = wmap["rows"]
        edge = [r for r in rows if r["winner"] == "random-edge"]
        dpp = [r for r in rows if r["winner"] == "dpp-node"]
        beats = [r["errors"]["random-edge"] < r["errors"]["dpp-node"] for r in rows]
        out["winner_map"] = {
            "cells": len(rows), "random_edge_wins": len(edge), "dpp_node_wins": len(dpp),
            "random_edge_beats_dpp_node": int(sum(beats)),
            "where_random_edge_beats_dpp_node": [[r["K_over_M"], r["sigma"], r["eta"], r["k"]]
                                                 for r, b in zip(rows, beats) if b],
            "counts": wmap["winner_counts"],
        }
        item = {"id": "2-map", "statement": "random edge pruning beats DPP node pruning (best options) somewhere "
                "on the theory map over (K/M, sigma, eta, k)", "source": "theory winner map",
                "predicted": _count_verdict(beats, some=True)}
        out["statements"].append(item)
    if realdata is not None:
        v = realdata["verdicts"]
        for cid, key, text in (("3a", "dpp_node_beats_random_and_importance", "real data: DPP node pruning with "
                                "fusing beats random and importance node pruning (majority of budgets)"),
                               ("3b", "random_edge_beats_dpp_node", "real data: random edge pruning beats DPP node "
                                "pruning at equal first-layer parameters (majority of budgets)")):
            if key in v:
                out["statements"].append({"id": cid, "statement": text, "source": "real data (digits)",
                                          "measured": {"verdict": "holds" if v[key]["holds"] else "does not hold",
                                                       "summary": v[key].get("summary", "")}})
    return out


# --------------------------------------------------------------------------------------------------
# Figures (drawn from the results)
# --------------------------------------------------------------------------------------------------


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _best_per_method(rows, value, sigma, K):
    """`{method: [best-over-options value for k = 1..K-1]}` of simulation-check rows at one `sigma`."""
    out = {}
    for m in ("random-node", "importance-node", "dpp-node", "random-edge", "magnitude-edge", "dpp-edge"):
        vals = []
        for k in range(1, K):
            c = [_num(r[value]) for r in rows if r["sigma"] == sigma and r["method"] == m and r["k"] == k]
            vals.append(min(c) if c else float("nan"))
        out[m] = vals
    return out


def _figures(parts: dict, fig_dir: Path, made: dict[str, str] | None = None, *,
             ready: set[str] | None = None) -> dict[str, str]:
    """Draw the report's figures into `fig_dir`; returns `{figure: relative path or "error: ..."}`. Figures
    already in `made` are skipped (and `made` is updated); with `ready`, only figures whose parts are all in
    `ready` are drawn (the others are left for a later call)."""
    from . import _figures as plots

    made = {} if made is None else made

    def ok(name):
        return parts.get(name, {}).get("status") == "ok"

    jobs = []
    if ok("ode_vs_sim"):
        jobs.append(("ode_vs_sim", lambda r: plots.ode_vs_simulation_figure(r["runs"]), "ode_vs_sim", ()))
    if ok("fixed_points"):
        jobs.append(("fixed_points", lambda r: plots.fixed_point_figure(
            r["etas"], r["sigmas"], _arr(r["grid_eps_g"]), _arr(r["grid_d_eta"]), _arr(r["grid_d_sigma"])),
            "fixed_points", ()))
    if ok("paper"):
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
        jobs.append(("paper", paper_fig, "pruning_methods", ()))
    design_levels = [n for n in _DESIGN_PARTS if ok(n)]
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
                    bars[nm] = [next((_num(row["error"]) for row in r["rows"] if row.get(bkey) == b and
                                      f"{row['method']} {row.get('kind', '')}".strip() == nm), float("nan"))
                                for b in budgets]
                levels.append({"title": n.replace("_", " "), "budgets": [f"{bkey}={b:.3g}" for b in budgets],
                               "bars": bars})
            return plots.design_comparison_figure(levels)
        jobs.append((design_levels[0], design_fig, "design", _DESIGN_PARTS))
    if ok("realdata"):
        def rd_fig(r):
            from ._realdata import plot_realdata

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
    return np.asarray([[_num(v) for v in row] for row in x], float)


# --------------------------------------------------------------------------------------------------
# The report (markdown, every number taken from results.json)
# --------------------------------------------------------------------------------------------------


def _fmt(x, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, str):
        return x
    return f"{float(x):.{digits}g}"


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in r) + " |")
    return "\n".join(lines)


def _failed(rec: dict | None, name: str) -> str | None:
    if rec is None:
        return f"*Part `{name}` was not run.*"
    if rec.get("status") != "ok":
        return f"**Part `{name}` failed**: `{rec.get('error', 'unknown error')}` (see `parts/{name}.json`)."
    return None


def _fig(results, name, caption) -> str:
    p = results["figures"].get(name)
    if p is None or p.startswith("error"):
        return f"*(figure {name} not drawn: {p})*" if p else ""
    return f"![{caption}]({p})"


def _sec_ode(results) -> str:
    rec = results["parts"].get("ode_vs_sim")
    out = ["## 1. ODE against finite-N simulation", ""]
    bad = _failed(rec, "ode_vs_sim")
    if bad:
        return "\n".join(out + [bad])
    s, r = rec["settings"], rec["result"]
    out.append(f"Soft committee machine, K = {s['K']}, M = {s['M']}, eta = {_fmt(s['eta'])}, sigma = "
               f"{_fmt(s['sigma'])}, trained to alpha = {_fmt(s['alpha'])} by online SGD (float32) with "
               f"{s['seeds']} seeds per N; the ODE of each run starts from that run's own initial overlaps. "
               "The deviation is simulation minus ODE in the noise-free eps_g, root mean square over the "
               "recorded alpha, averaged over seeds. Theory (docs/theory.md 4) expects it to shrink like N^-1/2.")
    out += ["", _table(["N", "seeds", "SGD steps", "final eps_g sim", "final eps_g ODE", "rms deviation",
                        "max deviation", "sqrt(N) x rms deviation", f"rms deviation, alpha <= {_fmt(s['early_alpha'])}",
                        "sqrt(N) x early rms deviation"],
                       [[x["N"], x["seeds"], x["steps"], x["final_sim"], x["final_ode"], x["rms_deviation"],
                         x["max_deviation"], x["sqrtN_rms_deviation"], x["rms_deviation_early"],
                         x["sqrtN_rms_deviation_early"]] for x in r["runs"]]), ""]
    for field, what in (("fitted_exponent", "over the whole run"),
                        ("fitted_exponent_early", f"over alpha <= {_fmt(s['early_alpha'])} (before any plateau escape)")):
        exp = _num(r[field])
        if math.isfinite(exp):
            verdict = "consistent with" if -0.75 <= exp <= -0.25 else "NOT consistent with"
            out.append(f"- Fitted exponent of the rms deviation against N, {what}: {_fmt(exp, 3)}, {verdict} "
                       "the expected -0.5.")
    out.append("")
    out.append("Where the student escapes a symmetric plateau, the escape time is set by O(N^-1/2) fluctuations "
               "that the deterministic ODE does not follow, so the deviation there need not shrink like N^-1/2.")
    out += ["", _fig(results, "ode_vs_sim", "ODE vs simulation")]
    return "\n".join(out)


def _sec_fp(results) -> str:
    rec = results["parts"].get("fixed_points")
    out = ["## 2. Fixed points and their implicit gradients", ""]
    bad = _failed(rec, "fixed_points")
    if bad:
        return "\n".join(out + [bad])
    s, r = rec["settings"], rec["result"]
    out.append(f"Soft committee machine K = {s['K']}, M = {s['M']} (v* = {_fmt(s['v_star'])}): the ODEs are run to "
               f"alpha = {_fmt(s['alpha'])}, then the end state is polished by Newton "
               "(`fixed_point_from_ode`). The derivatives come from the implicit function theorem (`jax.grad` "
               f"through `solve_fixed_point`); beside them central finite differences with step {_fmt(s['fd_step'])}. "
               f"{r['converged']} of {r['total']} grid points converged to a stable fixed point. Largest relative "
               f"difference between implicit and finite-difference derivatives: {_fmt(r['max_rel_diff_eta'], 3)} "
               f"(eta), {_fmt(r['max_rel_diff_sigma'], 3)} (sigma).")
    out += ["", _table(["eta", "sigma", "eps_g*", "d eps*/d eta", "(finite diff.)", "d eps*/d sigma",
                        "(finite diff.)", "slowest eigenvalue (real part)", "status"],
                       [[p["eta"], p["sigma"], p["eps_g"], p["d_eps_d_eta"], p["fd_d_eps_d_eta"], p["d_eps_d_sigma"],
                         p["fd_d_eps_d_sigma"], p["slowest_eigenvalue_real"],
                         p["status_words"] + (f" ({p['note']})" if p["note"] else "")] for p in r["points"]]),
            "", _fig(results, "fixed_points", "fixed points")]
    return "\n".join(out)


def _sec_paper(results) -> str:
    from ..pruning._compare import format_compare_table

    rec = results["parts"].get("paper")
    out = ["## 3. Pruning at the seed paper's teacher-student setting", ""]
    bad = _failed(rec, "paper")
    if bad:
        return "\n".join(out + [bad])
    s, r = rec["settings"], rec["result"]
    st = r["setting"]
    out.append(f"Students trained by finite-N online SGD (two-layer mode) at N = {st['N']}, M = {st['M']}, "
               f"K = {st['K']}, v* = {_fmt(st['v_star'])}, eta = {_fmt(st['eta'])}, {st['steps']} SGD steps, "
               f"{r['seeds']} student(s) per noise level, then pruned by every method at every budget k = 1..K-1 "
               f"(edge methods at p = k/K). *Theory*: the expected error from the trained student's overlaps (exact "
               f"enumeration over subsets for node methods, the Gaussian-equivalent large-N map for edge methods). "
               f"*Measured*: concrete pruned networks ({r['masks']} masks per random or DPP method), their exact "
               "error from their own overlaps; the test MSE on fresh noisy inputs is set beside 2 eps_g + sigma^2.")
    for sigma, rows in r["theory"].items():
        tr = r["training"].get(sigma, {})
        fin = ", ".join(_fmt(x) for x in tr.get("eps_g_final", []))
        out += ["", f"### sigma = {_fmt(_num(sigma))}: theory (mean over students; ± std over subsets)", "",
                f"Trained students' final eps_g: {fin}.", "", format_compare_table(rows)]
    out += ["", "### Theory against measurement (every method, option and budget)", "",
            _table(["sigma", "method", "option", "k", "predicted", "measured", "measured std", "test MSE measured",
                    "2 eps_g + sigma^2"],
                   [[x["sigma"], x["method"], x["option"], x["k"], x["predicted"], x["measured"], x["measured_std"],
                     x["measured_test_mse"], x["test_mse_from_overlaps"]]
                    for x in sorted(r["rows"], key=lambda x: (x["sigma"], x["k"], x["method"], x["option"]))]),
            "", _fig(results, "pruning_methods", "pruning methods")]
    return "\n".join(out)


def _sec_claims(results) -> str:
    c = results.get("claims", {})
    out = ["## 4. The seed paper's claims", ""]
    out.append("Each claim is decided at every (sigma, k) cell of the teacher-student experiment, once from the "
               "predicted (theory) errors and once from the measured errors of the concrete pruned networks; "
               "a claim that the paper states generally *holds* only if it holds at every cell. Claim 2 is stated "
               "for *some* regimes, so it holds if it holds anywhere. Verdicts:")
    out.append("")
    for it in c.get("statements", []):
        parts = []
        for v in ("predicted", "measured"):
            if v in it:
                d = it[v]
                if "cells" in d:
                    parts.append(f"{v}: **{d['verdict'].upper()}** ({d['holds_at']} of {d['cells']} cells)")
                else:
                    parts.append(f"{v}: **{d['verdict'].upper()}**" + (f" — {d['summary']}" if d.get("summary") else ""))
        agree = ""
        if "predicted" in it and "measured" in it and "cells" in it["measured"]:
            if it["predicted"]["verdict"] != it["measured"]["verdict"]:
                agree = " Theory and measurement disagree here."
        paper_view = " (the paper says it holds)" if it.get("paper_claim", True) else " (an extra check, not a claim of the paper)"
        disagree = it.get("paper_claim", True) and any(
            it[v]["verdict"] != "holds" for v in ("predicted", "measured") if v in it)
        out.append(f"- Claim {it['id']} ({it['source']}): {it['statement']}{paper_view}. " + "; ".join(parts) + "."
                   + (" **Our results disagree with the paper here.**" if disagree else "") + agree)
    cells = c.get("cells")
    if cells:
        for v in ("predicted", "measured"):
            out += ["", f"### Per cell, from the {v} errors", "",
                    _table(["sigma", "k", "DPP node (rw)", "random node (rw)", "importance node (rw)", "DPP node (plain)",
                            "random node (plain)", "importance node (plain)", "random edge (best)", "DPP<random",
                            "DPP<importance", "plain DPP<random", "plain DPP<importance", "edge<DPP node"],
                           [[x["sigma"], x["k"], x["dpp_node_reweighted"], x["random_node_reweighted"],
                             x["importance_node_reweighted"], x["dpp_node_plain"], x["random_node_plain"],
                             x["importance_node_plain"], x["random_edge_best"], x["claim1_dpp_beats_random"],
                             x["claim1_dpp_beats_importance"], x["claim1_plain_dpp_beats_random"],
                             x["claim1_plain_dpp_beats_importance"], x["claim2_random_edge_beats_dpp_node"]]
                            for x in cells[v]])]
    elif "paper" in results["parts"]:
        out += ["", "*No teacher-student claims: the `paper` part has no results.*"]
    rec = results["parts"].get("winner_map")
    out += ["", "### Theory winner map", ""]
    bad = _failed(rec, "winner_map")
    if bad:
        out.append(bad)
    else:
        s, r = rec["settings"], rec["result"]
        wm = c.get("winner_map", {})
        out.append(f"Students trained by the ODEs (two-layer, v* = {_fmt(s['v_star'])}, alpha = {_fmt(s['alpha'])}); "
                   "for each state and budget the method (best option) with the lowest expected error. Random edge "
                   f"pruning beats DPP node pruning at {wm.get('random_edge_beats_dpp_node', '-')} of "
                   f"{wm.get('cells', '-')} cells and is the overall winner at {wm.get('random_edge_wins', '-')}; "
                   f"DPP node pruning is the overall winner at {wm.get('dpp_node_wins', '-')}.")
        methods = ["random-node", "importance-node", "dpp-node", "random-edge", "magnitude-edge", "dpp-edge"]
        out += ["", _table(["K/M", "sigma", "eta", "k", "k/K", "unpruned"] + methods + ["winner"],
                           [[x["K_over_M"], x["sigma"], x["eta"], x["k"], x["p"], x["unpruned"]]
                            + [x["errors"].get(m) for m in methods] + [x["winner"]] for x in r["rows"]])]
    return "\n".join(out)


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
        bad = _failed(rec, name)
        if bad:
            out.append(bad)
            continue
        r = rec["result"]
        net = rec["settings"]["network"]
        out.append(f"Network: N = {net['N']}, K = {net['K']}, M = {net['M']}, {net['steps']} SGD steps, sigma = "
                   f"{_fmt(net['sigma'])}." + (f" Pruned at alpha_p = {_fmt(r['alpha_p'])}, retrained for "
                                                f"{_fmt(r['duration'])}." if "alpha_p" in r else ""))
        bkey = r["budget"]
        out += ["", _table([bkey, "kind", "method", "eps_g", "sim", "setting"],
                           [[x.get(bkey), x.get("kind", "node"), x["method"], x["error"], x.get("sim"),
                             x.get("setting", "")] for x in r["rows"]]), ""]
        for sm in r["summary"]:
            line = (f"- {bkey} = {_fmt(sm['budget'])}, {sm['kind']}: {sm['designed']} "
                    f"{'BEATS' if sm['beats'] else 'does NOT beat'} the best baseline ({sm['best_baseline']}): "
                    f"{_fmt(sm['designed_error'])} vs {_fmt(sm['baseline_error'])}")
            if "beats_in_simulation" in sm:
                line += (f"; in simulation {_fmt(sm['designed_sim'])} vs {_fmt(sm['baseline_sim'])} "
                         f"({'beats' if sm['beats_in_simulation'] else 'does not beat'})")
            out.append(line + ".")
    out += ["", _fig(results, "design", "designed pruning")]
    return "\n".join(out)


def _sec_realdata(results) -> str:
    from ._realdata import format_table

    rec = results["parts"].get("realdata")
    out = ["## 6. Real data", ""]
    bad = _failed(rec, "realdata")
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
    out += ["", _fig(results, "realdata", "real data")]
    return "\n".join(out)


def build_report(results: dict) -> str:
    """The markdown report, generated from `results` (the content of `results.json`) only."""
    out = [f"# jaxprune reproduce ({results['mode']} mode)", ""]
    failed = [n for n, p in results["parts"].items() if p.get("status") != "ok"]
    missing = [n for n in PARTS if n not in results["parts"]]
    out.append("Every number below is generated from `results.json`; errors are the noise-free generalisation "
               "error eps_g unless a column says otherwise. "
               + (f"**{len(failed)} part(s) failed: {', '.join(failed)}.** " if failed else "")
               + (f"Not run: {', '.join(missing)}. " if missing else "")
               + ("All parts succeeded." if not failed and not missing else ""))
    out += ["", _table(["part", "status", "computed in (s, wall)", "(s, CPU)", "this run (s, wall)"],
                       [[n, ("reused" if p.get("reused") else p.get("status", "?")) if p.get("status") == "ok"
                         else "FAILED", p.get("seconds"), p.get("cpu_seconds"), p.get("wall_seconds")]
                        for n, p in results["parts"].items()])]
    for sec in (_sec_ode, _sec_fp, _sec_paper, _sec_claims, _sec_design, _sec_realdata):
        try:
            out += ["", sec(results)]
        except Exception as e:  # noqa: BLE001 - a broken section must not lose the rest of the report
            out += ["", f"*(section {sec.__name__} could not be written: {type(e).__name__}: {e})*"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


class ReproduceResult(dict):
    """The content of `results.json` (a dict) with `ok` (no part failed) and `paths` (files written)."""

    @property
    def ok(self) -> bool:
        return bool(self["ok"])

    @property
    def paths(self) -> dict:
        return self["paths"]


# Parts that run in one process, in this order (they share a trained network or compiled functions); groups
# are listed longest first, which is the order they are handed to workers.
_GROUPS = (("design_network", "design_population", "design_training"), ("paper", "winner_map"),
           ("fixed_points",), ("realdata",), ("ode_vs_sim",))
assert sorted(n for g in _GROUPS for n in g) == sorted(PARTS)


def _use_compile_cache(folder: str | Path) -> None:
    """Keep XLA compilations in `folder` (JAX's persistent cache; entries of compilations over 0.2 s)."""
    import jax

    Path(folder).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def _worker_init(compile_cache: str | None) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    if compile_cache is not None:
        _use_compile_cache(compile_cache)


def _run_group(names: tuple, settings: dict, parts_dir: str, verbose: bool) -> dict[str, dict]:
    """Worker: run the parts of one group in order (each written atomically by `run_part`)."""
    log = (lambda m: print(m, flush=True)) if verbose else (lambda m: None)
    return {n: run_part(n, settings[n], Path(parts_dir), force=True, clean_work=False, log=log) for n in names}


def _run_groups_parallel(groups, settings, parts_dir: Path, jobs: int, log, verbose: bool,
                         compile_cache, quick_compile: bool = False, on_idle=None) -> dict[str, dict]:
    """Groups of parts in `jobs` spawned worker processes; a worker that dies leaves its unfinished parts
    recorded as failed (finished ones are on disk and are read back). `quick_compile` lowers XLA's backend
    optimisation level in the workers (compiles ~20% faster; for the small quick mode, where compiling
    dominates). At that level XLA CPU computes some float64 operations less exactly: numbers can differ from a
    default-level run at the 1e-7 relative level, which a smoke run tolerates. `on_idle(finished records)` is
    called in this process each time a group finishes while a worker has nothing left to start (the report's
    figures are drawn there, on the idle core, instead of after the last part)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    cache = None if compile_cache is None else str(compile_cache)
    log(f"running {sum(len(g) for g in groups)} parts in {min(jobs, len(groups))} worker processes")
    saved = os.environ.get("XLA_FLAGS")
    if quick_compile:  # the workers inherit this environment (read when their XLA backend starts)
        os.environ["XLA_FLAGS"] = ((saved or "") + " --xla_backend_optimization_level=0").strip()
    try:
        return _pool(groups, settings, parts_dir, jobs, log, verbose, cache, ctx, on_idle)
    finally:
        if quick_compile:
            if saved is None:
                os.environ.pop("XLA_FLAGS", None)
            else:
                os.environ["XLA_FLAGS"] = saved


def _pool(groups, settings, parts_dir, jobs, log, verbose, cache, ctx, on_idle=None) -> dict[str, dict]:
    from concurrent.futures import ProcessPoolExecutor, as_completed

    out: dict[str, dict] = {}
    started = time.time()
    with ProcessPoolExecutor(max_workers=min(jobs, len(groups)), mp_context=ctx, initializer=_worker_init,
                             initargs=(cache,)) as pool:
        finished = 0
        futures = {pool.submit(_run_group, g, {n: settings[n] for n in g}, str(parts_dir), verbose): g
                   for g in groups}
        for fut in as_completed(futures):
            g = futures[fut]
            try:
                out.update(fut.result())
            except Exception as e:  # noqa: BLE001 - a crashed worker: keep what it finished
                for n in g:
                    path = parts_dir / f"{n}.json"
                    rec = _load_part(path) if path.exists() and path.stat().st_mtime >= started else None
                    if rec is not None and _canon(rec.get("settings")) == _canon(settings[n]):
                        out[n] = dict(_normalise(rec), reused=False, wall_seconds=rec.get("seconds", 0.0))
                    else:
                        out[n] = _normalise({"format": FORMAT, "name": n, "settings": settings[n],
                                             "status": "error", "error": f"worker failed: {type(e).__name__}: {e}",
                                             "seconds": 0.0, "reused": False, "wall_seconds": 0.0})
                        log(f"[{n}] FAILED: worker process ended ({type(e).__name__})")
            finished += 1
            if on_idle is not None and len(groups) - finished < min(jobs, len(groups)):
                try:
                    on_idle(out)
                except Exception as e:  # noqa: BLE001 - drawing early is an optimisation; the end draws again
                    log(f"(early figures skipped: {type(e).__name__}: {e})")
    return out


def reproduce(out_dir: str | Path, mode: str = "default", force: bool | Sequence[str] = False, *,
              parts: Sequence[str] | None = None, jobs: int = 1, compile_cache: str | Path | None = None,
              log: Callable[[str], None] | None = print) -> ReproduceResult:
    """Run every part (or reuse it), decide the claims, draw the figures and write the report.

    **Arguments:**
    - `out_dir`: output folder: `parts/<name>.json`, `figures/*.png`, `results.json`, `report.md`.
    - `mode`: `"quick"`, `"default"` or `"full"` (see [`reproduce_settings`][]).
    - `force`: `True` to recompute every part, or a list of part names to recompute.
    - `parts`: run only these parts (the report still includes the other parts' finished files whose
      settings match).
    - `jobs`: worker processes; with `jobs > 1` independent groups of parts (`_GROUPS`: parts that share a
      trained network or compiled code stay together) run side by side in fresh processes (`spawn`), longest
      first. Each part's file is written by its worker, so an interrupted run keeps every finished part.
    - `compile_cache`: a folder for JAX's persistent compilation cache (in this process and in the workers):
      a later run skips most compile time.
    - `log`: progress messages (default `print`; `None` for silence).

    **Returns:** a [`ReproduceResult`][]. A part that raises is recorded as failed and the others go on.
    """
    verbose = log is not None  # workers print their own progress
    log = log or (lambda m: None)
    settings = reproduce_settings(mode)
    if compile_cache is not None:
        _use_compile_cache(compile_cache)
    if isinstance(force, (list, tuple, set)):
        unknown = sorted(set(force) - set(PARTS))
        if unknown:
            raise ValueError(f"unknown parts {unknown}; parts are {PARTS}")
        forced = set(force)
    else:
        forced = set(PARTS) if force else set()
    selected = PARTS if parts is None else tuple(p for p in PARTS if p in set(parts))
    if parts is not None and set(parts) - set(PARTS):
        raise ValueError(f"unknown parts {sorted(set(parts) - set(PARTS))}; parts are {PARTS}")
    out = Path(out_dir)
    parts_dir = out / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    if not (isinstance(jobs, int) and jobs >= 1):
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    t0 = time.perf_counter()
    records: dict[str, dict] = {}
    todo = []
    for name in PARTS:
        run = name in selected
        old = None if run and name in forced else _reusable(name, settings[name], parts_dir, log if run else None)
        if old is not None:
            records[name] = old
        elif run:
            todo.append(name)
    # forced parts' intermediates are deleted once, up front (a group's later parts reuse its first one's)
    _remove({p for name in todo if name in forced for p in _work_paths(name, parts_dir / "work")})
    groups = [g for g in (tuple(n for n in grp if n in todo) for grp in _GROUPS) if g]
    fig_dir, made = out / "figures", {}  # figures drawn so far
    if jobs == 1 or len(groups) <= 1:
        for name in todo:
            records[name] = run_part(name, settings[name], parts_dir, force=True, clean_work=False, log=log)
    else:
        def draw_ready(done: dict[str, dict]) -> None:
            ready = {**records, **done}
            _figures(ready, fig_dir, made, ready=set(ready))

        records.update(_run_groups_parallel(groups, settings, parts_dir, jobs, log, verbose, compile_cache,
                                            quick_compile=mode == "quick", on_idle=draw_ready))
    ok_result = {n: r["result"] for n, r in records.items() if r.get("status") == "ok"}
    try:
        claims = _normalise(decide_claims(ok_result.get("paper"), ok_result.get("winner_map"),
                                          ok_result.get("realdata")))
    except Exception as e:  # noqa: BLE001
        claims = {"error": f"{type(e).__name__}: {e}", "statements": []}
    figures = _figures(records, fig_dir, made)
    failed = [n for n in selected if records[n].get("status") != "ok"]
    results = {
        "format": FORMAT, "mode": mode, "ok": not failed, "failed_parts": failed,
        "total_seconds": time.perf_counter() - t0,
        "parts": {n: {k: v for k, v in r.items() if k != "format"} for n, r in records.items()},
        "claims": claims, "figures": figures,
        "paths": {"results": str(out / "results.json"), "report": str(out / "report.md"),
                  "figures": str(out / "figures")},
    }
    results = _normalise(results)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "report.md", build_report(results))
    log(f"wrote {out / 'report.md'} and {out / 'results.json'} ({results['total_seconds']:.1f} s"
        + (f"; FAILED parts: {', '.join(failed)})" if failed else ")"))
    return ReproduceResult(results)
