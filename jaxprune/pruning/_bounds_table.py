"""The bounds table: every closed form of the specialised state (`_bounds`, `_bounds_edge`) beside the exact value
from the general machinery (`prune_nodes`, `expected_node_error`, `edge_prune_theory`) on the same state, at
every budget `k` (edge keep fraction `p = k/K`: equal parameter count); docs/theory.md, section 6.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_count
from .._error import generalisation_error
from .._overlaps import Overlaps
from ._bounds import (
    _REWEIGHTS,
    Specialised,
    _all_counts,
    _node_summary_jit,
    count_vectors,
)
from ._bounds_node import importance_counts
from ._bounds_edge import _EDGE_METHODS, _RESCALES, _edge_summary_jit
from ._dpp import check_kdpp_kernel
from ._edge import apply_edge_moments
from ._edge_theory import edge_prune_theory
from ._node import expected_node_error, importance_mask, kernel_matrix, prune_nodes

__all__ = ["bounds_table"]


def _class_representatives(spec: Specialised, counts: np.ndarray) -> np.ndarray:
    """One boolean unit mask per count vector (the first `m_n` units of each group)."""
    starts = np.concatenate([[0], np.cumsum(spec.group_sizes)[:-1]])
    pos = np.arange(spec.K) - starts[spec.assignment()]  # position of each unit inside its group
    return pos[None, :] < np.asarray(counts)[:, spec.assignment()]


def _machinery_errors(state: Overlaps, masks: np.ndarray, reweight: str) -> np.ndarray:
    """`generalisation_error(prune_nodes(state, mask, reweight=...))` for a batch of masks (one compilation)."""
    fn = jax.jit(jax.vmap(lambda msk: generalisation_error(prune_nodes(state, msk, reweight=reweight)[0])))
    return np.asarray(fn(jnp.asarray(masks)))


def _fmt_none(x):
    return None if x is None else float(x)


def bounds_table(
    spec: Specialised,
    *,
    ks=None,
    jitter: float = 1e-6,
    kernel: str = "Q",
    beta: float = 1.0,
    exact: str = "classes",
    edge_methods=_EDGE_METHODS,
    rescales=_RESCALES,
    reweights=_REWEIGHTS,
) -> dict:
    """For every budget `k` (edge keep fraction `p = k/K`: equal parameter count) and method: the closed form,
    the exact value from the general machinery (`jaxprune._node`, `jaxprune._edge`) on `spec.state()`, and
    the bounds over subsets. Every error is the noise-free `eps_g`.

    `exact`:
    - `"classes"` (default, fast): per-subset errors from `prune_nodes` + `generalisation_error` on one subset
      per count class (all subsets of a class are within-group permutations of each other, hence have the
      same error and the same `det(L_S)`), class weights `prod_n C(K_n, m_n)` times (k-DPP) `det(L_S)` of the
      general `kernel_matrix`; importance by `importance_mask`.
    - `"full"`: `expected_node_error` enumerating all `C(K, k)` subsets (slow: one compilation per call).
    - `"none"`: closed forms only.

    The k-DPP's exact value is at `jitter = 0` where `L` has rank `>= k`, else at `jitter`; the closed form is
    given at the same jitter (`dpp`) and in the limit `jitter -> 0` (`dpp-limit`); `balanced` is the seed
    paper's idealisation, compared with the exact k-DPP value.

    **Arguments:**

    - `spec`: the [`Specialised`][] state (see [`specialisation`][]).
    - `ks`: the budgets `k` (units kept, each in `1..K`); default every `k = 1..K`.
    - `jitter`: the k-DPP ridge `> 0` used where `rank L < k`.
    - `kernel`: the node k-DPP kernel, `"Q"` (default), `"A"` or `"rbf"` (see [`kernel_matrix`][]).
    - `beta`: the RBF kernel's inverse width, `> 0`.
    - `exact`: `"classes"` (default), `"full"` or `"none"`, as above.
    - `edge_methods`: edge rules to tabulate, a subset of `("random", "magnitude", "dpp")`.
    - `rescales`: edge rescalings, a subset of `("none", "inverse-keep")`.
    - `reweights`: node reweighting rules, a subset of `("none", "preactivation", "activation", "optimal")`.

    **Returns:**

    A JSON-ready dict: the state's parameters (`K`, `M`, `group_sizes`, `v_star`, `rho`, `alignment`,
    `cross`, `T`, `kernel`, `beta`, `jitter`, `exact_mode`) and `rows`, one per budget, each with `k`, `p`,
    `dpp_jitter`, `node` (closed form, exact value and their difference per method and reweighting),
    `bounds` (best and worst subsets), `edge` (per edge method and rescale),
    `optimal_reweight_lower_bound`, `dpp_limit_balanced_mass` and `dpp_limit_counts`.

    Example: `bounds_table(specialisation(6, 2, 4.0), ks=[2, 3])["rows"][0]["node"]`.
    """
    if exact not in ("full", "classes", "none"):
        raise ValueError(f"exact must be 'classes', 'full' or 'none', got {exact!r}")
    if not (math.isfinite(jitter) and jitter > 0):
        raise ValueError(f"jitter must be > 0 (the value used where rank L < k), got {jitter}")
    state = spec.state()
    K = spec.K
    ks = list(range(1, K + 1)) if ks is None else [check_count(k, spec.K) for k in ks]
    L0 = np.asarray(kernel_matrix(state, kernel, beta=beta))
    jit_used = {}
    for k in ks:
        try:
            check_kdpp_kernel(L0, k)
            jit_used[k] = 0.0
        except ValueError:
            jit_used[k] = float(jitter)

    # general machinery, batched over every count class of every budget
    mach = {}
    if exact == "classes":
        per_k = {k: count_vectors(spec, k) for k in ks}
        imp = {k: np.asarray(importance_mask(state, k)) for k in ks}
        reps = {k: _class_representatives(spec, per_k[k][0]) for k in ks}
        all_masks = np.concatenate([np.concatenate([reps[k], imp[k][None, :]]) for k in ks])
        sizes = [reps[k].shape[0] + 1 for k in ks]
        offs = np.concatenate([[0], np.cumsum(sizes)])
        errs_all = {r: _machinery_errors(state, all_masks, r) for r in reweights}
        for i, k in enumerate(ks):
            counts, logmult = per_k[k]
            Lj = L0 + jit_used[k] * np.eye(K)
            sl = np.array([np.linalg.slogdet(Lj[np.ix_(m, m)]) for m in reps[k]])
            logw = np.where(sl[:, 0] > 0, sl[:, 1], -np.inf) + logmult
            p_rand = np.exp(logmult - np.logaddexp.reduce(logmult))
            p_dpp = np.exp(logw - np.logaddexp.reduce(logw))
            for r in reweights:
                e = errs_all[r][offs[i] : offs[i + 1]]
                ec, ei = e[:-1], e[-1]
                mach[k, r] = dict(random=float(p_rand @ ec), dpp=float(np.sum(np.where(p_dpp > 0, p_dpp * ec, 0.0))),
                                  importance=float(ei), best=float(ec.min()), worst=float(ec.max()))
    elif exact == "full":
        for k in ks:
            for r in reweights:
                res = expected_node_error(state, k, method="random", reweight=r, max_enumerate=10**9)
                dpp = expected_node_error(state, k, method="dpp", reweight=r, kernel=kernel, beta=beta,
                                          jitter=jit_used[k], max_enumerate=10**9)
                imp = expected_node_error(state, k, method="importance", reweight=r)
                mach[k, r] = dict(random=float(res.mean), dpp=float(dpp.mean), importance=float(imp.mean),
                                  best=float(res.min), worst=float(res.max))

    edge_exact = {}
    if exact != "none":
        for m in edge_methods:
            for k in ks:
                p = k / K
                res = edge_prune_theory(state, p, method=m, rescale="none")
                for rs in rescales:  # inverse-keep from the same moments: no second compilation
                    c = 1.0 if rs == "none" else 1.0 / p
                    edge_exact[m, rs, k] = float(generalisation_error(apply_edge_moments(state, res.moments, c)))

    dtype = spec.T.dtype
    counts_all, _ = _all_counts(spec.group_sizes)
    errs, (means, best, worst, ib, iw, dpp0) = _node_summary_jit(
        spec, jnp.asarray(ks), jnp.asarray([jit_used[k] for k in ks], dtype), kernel, jnp.asarray(beta, dtype)
    )
    errs, means, best, worst, ib, iw, dpp0 = map(np.asarray, (errs, means, best, worst, ib, iw, dpp0))
    edge_cf = np.asarray(_edge_summary_jit(spec, jnp.asarray([k / K for k in ks], dtype)))
    index = {tuple(c): i for i, c in enumerate(counts_all.tolist())}
    rows = []
    for i, k in enumerate(ks):
        p = k / K
        j = jit_used[k]
        entry = {"k": k, "p": p, "dpp_jitter": j, "node": [], "bounds": [], "edge": []}
        imp = index[tuple(importance_counts(spec, k).tolist())]
        for ir, r in enumerate(reweights):
            r_all = _REWEIGHTS.index(r)
            ex = mach.get((k, r), {})
            closed = (
                ("random", means[i, 0, r_all], ex.get("random"), True),
                ("dpp", means[i, 1, r_all], ex.get("dpp"), True),
                ("dpp-limit", means[i, 2, r_all], ex.get("dpp"), j == 0.0),
                ("balanced", means[i, 3, r_all], ex.get("dpp"), False),
                ("importance", errs[r_all, imp], ex.get("importance"), True),
            )
            for method, cf, xv, is_exact in closed:
                cf = float(cf)
                entry["node"].append({
                    "method": method, "reweight": r, "closed_form": cf, "exact": _fmt_none(xv),
                    "closed_form_is_exact": is_exact, "abs_diff": None if xv is None else abs(cf - xv),
                })
            bx, wx = ex.get("best"), ex.get("worst")
            b_, w_ = float(best[i, r_all]), float(worst[i, r_all])
            entry["bounds"].append({
                "reweight": r, "best": b_, "worst": w_,
                "best_counts": counts_all[ib[i, r_all]].tolist(), "worst_counts": counts_all[iw[i, r_all]].tolist(),
                "exact_best": bx, "exact_worst": wx,
                "abs_diff": None if bx is None else max(abs(b_ - bx), abs(w_ - wx)),
            })
        entry["optimal_reweight_lower_bound"] = float(best[i, _REWEIGHTS.index("optimal")])
        keep = dpp0[i] > 1e-15
        sel = counts_all.sum(axis=1) == k
        dist = np.sum((counts_all - k * np.asarray(spec.group_sizes) / K) ** 2, axis=1)
        balanced = sel & (dist <= np.min(np.where(sel, dist, np.inf)) + 1e-9)
        entry["dpp_limit_balanced_mass"] = float(np.sum(dpp0[i][balanced]))
        entry["dpp_limit_counts"] = {"counts": counts_all[keep].tolist(), "probs": dpp0[i][keep].tolist()}
        for im, m in enumerate(_EDGE_METHODS):
            if m not in edge_methods:
                continue
            for irs, rs in enumerate(_RESCALES):
                if rs not in rescales:
                    continue
                cf = float(edge_cf[i, im, irs])
                xv = edge_exact.get((m, rs, k))
                entry["edge"].append({"method": m, "rescale": rs, "closed_form": cf, "exact": xv,
                                      "abs_diff": None if xv is None else abs(cf - xv)})
        rows.append(entry)
    return {
        "K": K, "M": spec.M, "group_sizes": list(spec.group_sizes), "v_star": np.asarray(spec.v_star).tolist(),
        "rho": float(spec.rho), "alignment": float(spec.alignment), "cross": float(spec.cross),
        "T": np.asarray(spec.T).tolist(), "kernel": kernel, "beta": beta, "jitter": jitter,
        "exact_mode": exact, "error": "eps_g (noise-free generalisation error)", "rows": rows,
    }
