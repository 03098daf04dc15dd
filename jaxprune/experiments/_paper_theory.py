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
    """Exact pruned errors at the idealised specialised state, every budget `k = 1..K-1` (docs/theory.md
    sections 5, 6.1 "Closed forms at the specialised state", 6.2 and 6.3).

    The state is [`specialisation`][jaxprune.pruning.specialisation]`(K, M, v_star)`: `z = K / M` exact copies
    of each teacher unit, `Q_ii = T_nn = 1`, `T = I`, second layer `v*/z`. Node methods, each with every rule of
    `reweights`: random (uniform subsets), DPP (k-DPP with kernel `L = Q`, the `jitter -> 0` limit) and
    importance (the `k` largest `|v_i| sqrt(Q_ii)`; all tie here, so ties go to the lower unit and whole groups
    are filled in order). The balanced closed form `(v*^2/6) sum_n (1 - m_n/z)^2` of the paper (claim C3) is
    the row `"balanced-node (closed form)"`, option `"none"`. Edge methods random, DPP and magnitude at
    `p = k / K`, no rescale (Gaussian-equivalent map, section 6.2).

    **Arguments:**

    - `K`: student units, a multiple of `M`, `K > M` for a nonempty range of budgets.
    - `M`: teacher units.
    - `v_star`: the teacher's second-layer weight (every unit).
    - `reweights`: node reweighting rules (`"none"`, `"preactivation"`, `"activation"`, `"optimal"`).

    **Returns:** a list of rows `{method, option, k, p, mean, stderr}` (`mean` the exact noise-free `eps_g`,
    `stderr = 0`), the format that [`decide_claims`][jaxprune.experiments.decide_claims] reads.

    **Example:**

    ```python
    rows = jpx.idealised_rows(6, 2)
    eps = {(r["method"], r["k"]): r["mean"] for r in rows if r["option"] == "none"}
    eps[("dpp-node", 4)], eps[("balanced-node (closed form)", 4)]   # 0.790 (64/81), 0.593 (16/27)
    ```
    """
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
    """Exact expected pruned errors of one student at every budget `k = 1..K-1`, without enumerating subsets
    (fit for `K = 20`; docs/theory.md sections 6.1 and 6.2).

    Random and DPP node pruning without reweighting from inclusion probabilities
    ([`expected_node_error_closed_form`][jaxprune.pruning.expected_node_error_closed_form]); importance node
    pruning with each of `reweights`; random, DPP and magnitude edge pruning at `p = k / K`, no rescale
    ([`edge_prune_theory`][jaxprune.pruning.edge_prune_theory], the Gaussian-equivalent map). The state is used
    as given: normalise it first ([`normalise_student`][jaxprune.normalise_student]) for the paper's protocol.

    **Arguments:**

    - `state`: the student's [`Overlaps`][jaxprune.Overlaps] (`Q: Float[Array, "K K"]`, `R: "K M"`, `T: "M M"`,
      `v: "K"`, `v_star: "M"`).
    - `kernel`: the node k-DPP kernel, `"Q"`, `"A"` or `"rbf"` (docs/theory.md 6.1).
    - `jitter`: `>= 0`, added to the kernel's diagonal.
    - `importance`: the importance score, `"v"` (the `k` largest `v_i`, the paper's rule) or `"magnitude"`
      (`|v_i| sqrt(Q_ii)`); ties to the lower unit.
    - `reweights`: reweighting rules for the importance rows (`"none"`, `"preactivation"`, `"activation"`,
      `"optimal"`).

    **Returns:** a list of rows `{method, option, k, p, mean, stderr}` (`mean` the exact noise-free `eps_g`,
    `stderr = 0`).
    """
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
    """A student trained by the order-parameter ODEs of online SGD (docs/theory.md section 4), in float64.

    Two-layer mode, `eta_v = eta`, erf activation, teacher `T = I` and `v* = v_star` for every unit. The
    initial overlaps are those of random weights at an internal width `n = 4000` drawn from `seed`
    (`Q0 = I + O(n^-1/2)`, `R0 = O(n^-1/2)` random), second layer `v0 ~ v0_scale N(0, 1)` (the seed paper
    initialises `v` as `N(0, 1)`, i.e. `v0_scale = 1`). The solve uses `throw=False`: check the solution's
    status when it matters (the returned state is the last one reached).

    **Arguments:**

    - `K`: student units.
    - `M`: teacher units.
    - `sigma`: label-noise standard deviation `>= 0`.
    - `v_star`: the teacher's second-layer weight.
    - `eta`: learning rate of both layers, `> 0`.
    - `alpha`: training time `alpha = steps / N` to integrate to.
    - `seed`: seed of the random initial weights (NumPy generator).
    - `v0_scale`: standard deviation of the initial second layer.
    - `max_steps`: step budget of the ODE solver ([`solve_ode`][jaxprune.solve_ode]).

    **Returns:** the final [`Overlaps`][jaxprune.Overlaps] (`Q: Float[Array, "K K"]`, `R: "K M"`, `T: "M M"`,
    `v: "K"`, `v_star: "M"`).
    """
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
    """Which pruning method, each at its best option, has the lowest expected error, for each labelled state
    and budget `k = 1..K-1` (docs/theory.md sections 6.1 and 6.2).

    Every method of [`compare_methods`][jaxprune.pruning.compare_methods] with its default options (node
    methods with every reweighting, edge methods at `p = k / K` with every rescale), reduced to the best option
    by [`best_by_method`][jaxprune.pruning.best_by_method]. The states are used as given: no row
    normalisation, importance by the library's default magnitude score `|v_i| sqrt(Q_ii)` (this project's
    earlier protocol, not the paper's).

    **Arguments:**

    - `states`: a dict mapping a label (any hashable, e.g. `(K/M, sigma)`) to an
      [`Overlaps`][jaxprune.Overlaps].
    - `kernel`: the node k-DPP kernel, `"Q"`, `"A"` or `"rbf"`.
    - `jitter`: `>= 0`, added to the kernel's diagonal.
    - `N`: the input dimension used for the parameter counts of the rows.

    **Returns:** a list of rows `{label, k, p, winner, errors}`, `errors` a dict `{method: eps_g}` of each
    method's best option and `winner` the method with the lowest one.
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
    """The rows of [`winner_map`][jaxprune.experiments.winner_map] on ODE-trained students
    ([`ode_student`][jaxprune.experiments.ode_student], default `v0_scale`), one per `K/M` in `ratios` and
    label noise in `sigmas`.

    **Arguments:**

    - `ratios`: integer ratios `K / M`; the students have `K = ratio * M` units.
    - `sigmas`: label-noise standard deviations.
    - `M`: teacher units.
    - `v_star`: the teacher's second-layer weight.
    - `eta`: learning rate of both layers.
    - `alpha`: training time of the ODEs.
    - `seed`: seed of the random initial weights.

    **Returns:** the rows `{label, k, p, winner, errors}` of [`winner_map`][jaxprune.experiments.winner_map],
    `label = (ratio, sigma)`.
    """
    states = {(r, s): ode_student(r * M, M, sigma=s, v_star=v_star, eta=eta, alpha=alpha, seed=seed)
              for r in ratios for s in sigmas}
    return winner_map(states)
