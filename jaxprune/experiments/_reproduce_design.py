"""The design parts of `jaxprune reproduce`: gradient-designed pruning against the baselines at three levels
(network, population, training; docs/theory.md 7), on one student trained at the paper's setting."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import jaxprune as jp

from .._io import atomic_write_bytes, to_jsonable
from ._design_compare import compare_network, compare_population, compare_training
from ._paper import PaperSetting, train_students

__all__ = ["part_design_network", "part_design_population", "part_design_training"]


def _f64(x):
    return jnp.asarray(np.asarray(x, dtype=np.float64))


def _net_hash(obj) -> str:
    return hashlib.sha256(json.dumps(to_jsonable(obj), sort_keys=True).encode()).hexdigest()[:16]


def _design_network(net: dict, work: Path, log) -> tuple:
    """A student trained by finite-N SGD at the paper setting (`_paper.train_students`, one seed), float64;
    cached in `work/design_network_<hash>.npz`."""
    path = work / f"design_network_{_net_hash(net)}.npz"
    if path.exists():
        try:
            with np.load(path) as d:
                return tuple(_f64(d[k]) for k in ("w", "w_star", "v", "v_star"))
        except (OSError, ValueError, KeyError):
            pass
    # the design parts keep this project's earlier training protocol (v initialised 0.1 N(0, 1))
    setting = PaperSetting(N=net["N"], M=net["M"], K=net["K"], v_star=net["v_star"], eta=net["eta"],
                           steps=net["steps"], protocol="legacy")
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
    w, ws, v, vs = _design_network(s["network"], work, log)
    rows = compare_network(w, ws, v, vs, tuple(s["keeps"]), key=jax.random.key(s["seed"]), steps=s["steps"],
                           restarts=s["restarts"], learning_rate=s["learning_rate"])
    rows = _clean_rows(rows)
    return {"rows": rows, "summary": _design_summary(rows, "keep"), "budget": "keep"}


def part_design_population(s: dict, work: Path, log: Callable[[str], None]) -> dict:
    w, ws, v, vs = _design_network(s["network"], work, log)
    state = jp.overlaps_from_weights(w, ws, v, vs)
    rows = compare_population(state, tuple(s["keeps"]), weights=(w, ws), key=jax.random.key(s["seed"]),
                              steps=s["steps"], learning_rate=s["learning_rate"])
    rows = _clean_rows(rows)
    return {"rows": rows, "summary": _design_summary(rows, "keep"), "budget": "keep"}


def part_design_training(s: dict, work: Path, log: Callable[[str], None]) -> dict:
    net = s["network"]
    w, ws, v, vs = _design_network(net, work, log)
    state = jp.overlaps_from_weights(w, ws, v, vs)
    config = PaperSetting(N=net["N"], M=net["M"], K=net["K"], v_star=net["v_star"], eta=net["eta"]).config(
        net["sigma"])
    rows = compare_training(state, config, tuple(int(k) for k in s["ks"]), float(s["duration"]), steps=s["steps"],
                            learning_rate=s["learning_rate"], restarts=s["restarts"],
                            key=jax.random.key(s["seed"]), network=(jp.Teacher(w_star=ws, v_star=vs), jp.Student(w=w, v=v)),
                            seeds=s["sim_seeds"])
    rows = _clean_rows(rows)
    return {"rows": rows, "summary": _design_summary(rows, "k"), "budget": "k",
            "alpha_p": net["steps"] / net["N"], "duration": s["duration"]}

