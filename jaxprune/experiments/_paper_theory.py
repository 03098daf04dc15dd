"""The seed paper's comparisons in theory: at the idealised specialised state (closed forms of
`jaxprune.pruning`), on ODE-trained students, and the winner map (docs/theory.md 5, 6.3).

Rows have the format of `pruning.compare_methods` (`method`, `option`, `k`, `p`, `mean`, `stderr`), so one
claim-cell builder serves theory and simulation alike.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax.numpy as jnp
import numpy as np

import jaxprune as jp
from jaxprune import pruning

from ._paper import importance_node_mask

__all__ = ["idealised_rows", "lean_rows", "ode_student", "winner_map", "theory_winner_map"]


def _row(method: str, option: str, k: int, K: int, mean, stderr: float = 0.0, **extra) -> dict:
    return {"method": method, "option": option, "k": k, "p": k / K, "mean": float(mean), "stderr": float(stderr),
            **extra}


def idealised_rows(K: int, M: int, v_star: float = 4.0, *, reweights: Sequence[str] = ("none", "preactivation"),
                   ) -> list[dict]:
    """Exact errors at the idealised specialised state (`pruning.specialisation(K, M, v_star)`: `K / M` exact
    copies of each teacher unit, `Q_ii = 1`, second layer `v*/z`), every budget `k = 1..K-1`: random, DPP
    (kernel `Q`, the `jitter -> 0` limit), balanced (the paper's idealisation) and importance (the `k`
    largest `v_i`, ties to the lower unit) node pruning with each of `reweights`; random, DPP and magnitude
    edge pruning at `p = k / K` (no rescale). Every value is exact (`stderr = 0`)."""
    spec = pruning.specialisation(K, M, v_star)
    rows = []
    for k in range(1, K):
        for rw in reweights:
            rows.append(_row("random-node", rw, k, K, pruning.random_node_error(spec, k, reweight=rw)))
            rows.append(_row("dpp-node", rw, k, K, pruning.dpp_node_error(spec, k, reweight=rw)))
            rows.append(_row("importance-node", rw, k, K, pruning.importance_node_error(spec, k, reweight=rw)))
        rows.append(_row("balanced-node (closed form)", "none", k, K, pruning.balanced_node_error(spec, k)))
        for method in ("random", "dpp", "magnitude"):
            rows.append(_row(f"{method}-edge", "none", k, K, pruning.edge_error(spec, k / K, method=method)))
    return rows


def lean_rows(state: jp.Overlaps, *, kernel: str = "Q", jitter: float = 1e-6, importance: str = "v",
              reweights: Sequence[str] = ("none",)) -> list[dict]:
    """Exact expected errors of one student without enumerating subsets (fit for `K = 20`): random and DPP
    node pruning without reweighting from inclusion probabilities (`expected_node_error_closed_form`),
    importance node pruning (`importance`: `"v"` or `"magnitude"`) with each of `reweights`, and random,
    DPP and magnitude edge pruning at `p = k / K` (no rescale; the Gaussian-equivalent map)."""
    K = state.K
    rows = []
    for k in range(1, K):
        for method in ("random", "dpp"):
            r = pruning.expected_node_error_closed_form(state, k, method=method, kernel=kernel, jitter=jitter)
            rows.append(_row(f"{method}-node", "none", k, K, r.mean))
        mask = jnp.asarray(importance_node_mask(state, k, importance))
        for rw in reweights:
            eps = jp.generalisation_error(pruning.prune_nodes(state, mask, reweight=rw)[0])
            rows.append(_row("importance-node", rw, k, K, eps))
        for method in ("random", "dpp", "magnitude"):
            r = pruning.edge_prune_theory(state, k / K, method=method, rescale="none")
            rows.append(_row(f"{method}-edge", "none", k, K, r.eps_g))
    return rows


def ode_student(K: int, M: int, *, sigma: float, v_star: float = 4.0, eta: float = 0.5, alpha: float = 1000.0,
                seed: int = 0, v0_scale: float = 0.1, max_steps: int = 200_000) -> jp.Overlaps:
    """A student trained by the ODEs (two-layer mode, `eta_v = eta`) from the overlaps of a random
    initialisation at large N (`Q0 = I + O(N^-1/2)`, small random `R0`, `v0 ~ v0_scale N(0, 1)`; the seed
    paper initialises `v` as `N(0, 1)`), float64."""
    rng = np.random.default_rng(seed)
    n = 4000
    w = rng.normal(size=(K, n))
    ws = rng.normal(size=(M, n))
    ws = np.linalg.qr(ws.T)[0].T * math.sqrt(n)  # T = I exactly
    state = jp.overlaps_from_weights(jnp.asarray(w), jnp.asarray(ws), jnp.asarray(v0_scale * rng.normal(size=K)),
                                     jnp.full((M,), v_star))
    cfg = jp.SGDConfig(eta=eta, eta_v=eta, sigma=sigma, mode="two-layer")
    return jp.solve_ode(state, cfg, [0.0, alpha], max_steps=max_steps, throw=False).final


def winner_map(states: dict, *, kernel: str = "Q", jitter: float = 1e-6, N: int = 500) -> list[dict]:
    """Which method (best option) has the lowest expected error for each labelled state and budget.

    `states` maps a label (e.g. `(K/M, sigma)`) to an [`Overlaps`][]; returns rows
    `{label, k, p, winner, errors: {method: eps}}` over `k = 1..K-1`.
    """
    out = []
    for label, state in states.items():
        rows = pruning.compare_methods(state, kernel=kernel, jitter=jitter, N=N)
        best = pruning.best_by_method(rows)
        for k in range(1, state.K):
            errs = {m: best[(m, k)]["mean"] for (m, kk) in best if kk == k}
            out.append({"label": label, "k": k, "p": k / state.K, "winner": min(errs, key=errs.get),
                        "errors": errs})
    return out


def theory_winner_map(*, ratios: Sequence[int] = (2, 3), sigmas: Sequence[float] = (0.0, 0.25, 0.5), M: int = 2,
                      v_star: float = 4.0, eta: float = 0.5, alpha: float = 1000.0, seed: int = 0) -> list[dict]:
    """[`winner_map`][] over `K/M` in `ratios` and label noise `sigmas`, on ODE-trained students."""
    states = {(r, s): ode_student(r * M, M, sigma=s, v_star=v_star, eta=eta, alpha=alpha, seed=seed)
              for r in ratios for s in sigmas}
    return winner_map(states)
