"""The design comparison at the population level (docs/theory.md, sections 6.2 and 7): designed keep rules beside
random / magnitude / DPP edge rules under the Gaussian-equivalent model, and designed subset distributions beside
random / importance / DPP node pruning, with finite-N checks on a concrete network ([`compare_population`][])."""

from __future__ import annotations

import math
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

import jaxprune as jp

from ._design_compare_common import (
    RESCALE_LABEL,
    baseline_edge_masks,
    dpp_edge_masks,
    edge_report,
    fresh_inputs,
    node_baseline_details,
    node_half_table,
    node_k,
    node_tables,
)

__all__ = ["compare_population"]


@eqx.filter_jit
def _theory_errors(state: jp.Overlaps, moments, p, c_opt, activation):
    cs = jnp.stack([jnp.ones_like(p), 1.0 / p, c_opt])
    return jax.vmap(lambda c: jp.generalisation_error(jp.pruning.apply_edge_moments(state, moments, c),
                                                      activation))(cs), cs


def _edge_baseline_theory(state: jp.Overlaps, keep: float, activation) -> list[tuple[str, str, float, Array]]:
    """`(method, rescale, eps_g, c)` of random / magnitude / DPP edge pruning under the Gaussian-equivalent model
    with each rescale (moments once per method; the optimal rescale is the program shared with the concrete
    masks)."""
    p = jnp.asarray(np.full(state.K, keep), state.Q.dtype)
    out = []
    for method, fn in (("random", jp.pruning.random_moments), ("magnitude", jp.pruning.magnitude_moments),
                       ("dpp", jp.pruning.dpp_moments)):
        mom = fn(state, p)
        errs, cs = _theory_errors(state, mom, p, jp.pruning.optimal_edge_rescale(state, mom, activation)[0],
                                  activation)
        errs = np.asarray(errs)
        out += [(method, rescale, float(errs[j]), cs[j])
                for j, rescale in enumerate(("none", "inverse-keep", "optimal"))]
    return out


@eqx.filter_jit
def _population_setup(key, w, w_star, v, v_star, activation, samples: int, n: int, draws: int):
    """The random keys of a population table (as split one by one before), the fresh inputs and the network's
    half test MSE on them (without weights: the keys only)."""
    key, kx = jax.random.split(key)
    per_keep = []
    for _ in range(n):
        key, kr, kb = jax.random.split(key, 3)
        kb1, kb2 = jax.random.split(kb)
        per_keep.append((jax.random.split(kr, draws), jax.random.split(kb1, draws), tuple(jax.random.split(kb2, 2))))
    if w is None or not samples:
        return per_keep, None, None
    fresh = fresh_inputs(kx, w_star, v_star, activation, samples)
    return per_keep, fresh, fresh.half_mse(w, v)


def compare_population(
    state: jp.Overlaps,
    keeps: tuple[float, ...],
    *,
    weights: tuple[Array, Array] | None = None,
    key: PRNGKeyArray | None = None,
    steps: int = 300,
    learning_rate: float = 0.05,
    draws: int = 4,
    test_samples: int = 10_000,
    activation: jp.AbstractActivation | str = jp.Erf(),
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Rows for designed keep rules (uniform and free allocation) beside random / magnitude / DPP edge rules
    with each rescale (`c = 1`, `c = 1/keep`, optimal `c`; Gaussian-equivalent model of docs/theory.md 6.2), and
    designed subset distributions (k-DPP quality weights, conditional Bernoulli) beside random / importance /
    DPP node pruning (best reweighting and kernel; exact by enumeration).

    With `weights = (w, w_star)` of a concrete network whose overlaps are `state`, edge rows also get `sim`:
    the exact error of concrete masks drawn from the rule on that network (mean over `draws`; the designed rule
    with its own rescale, and `sim_rescaled` with the network's optimal rescale; baselines: random / magnitude /
    DPP masks with the row's rescale), and every row `half_mse` (fresh inputs). Node rows need no `sim`: the
    state is the network's own overlaps, so their `error` is already the concrete network's.

    **Arguments:**

    - `state`: the student's [`jaxprune.Overlaps`][].
    - `keeps`: keep fractions in `(0, 1]`; node rows where `keep K` is an integer.
    - `weights`: `(w, w_star)`, the concrete first layers (`Float[K, N]`, `Float[M, N]`) whose overlaps are
      `state`, or `None` (theory only).
    - `key`: the PRNG key of the whole table (masks, fresh inputs); default `jax.random.key(0)`.
    - `steps`, `learning_rate`: options of [`jaxprune.design.design_edge_rule`][] (and `steps` of
      [`jaxprune.design.design_subset_distribution`][]).
    - `draws`: concrete masks per rule and keep fraction.
    - `test_samples`: fresh inputs of the half test MSE (0: no `half_mse`).
    - `activation`: the activation ([`jaxprune.Erf`][] by default, or its name).
    - `progress`: called with the number of design steps done, as they finish.

    **Returns:** the rows, the unpruned network first (`role="reference"`).
    """
    activation = jp.get_activation(activation)
    K = state.K
    key = jax.random.key(0) if key is None else key
    rows = [dict(keep=1.0, k=K, kind="-", method="unpruned", role="reference",
                 error=float(jp.generalisation_error(state, activation)), setting="")]
    w = w_star = None
    if weights is not None:
        w, w_star = (jnp.asarray(x) for x in weights)
    per_keep, fresh, half = _population_setup(key, w, w_star, state.v, state.v_star, activation, int(test_samples),
                                              len(keeps), int(draws))
    if weights is not None:
        rows[0]["half_mse"] = float(half) if fresh is not None else None
    kernels = jp.design.conditional_kernels(state) if jp.design.conditional_kernels_fit(K) else None
    D = int(draws)
    for keep, (krs, kb1s, kb2s) in zip(keeps, per_keep):
        kk = node_k(keep, K)
        designed, masks, c_fixed = [], [], []
        for alloc in ("uniform", "free"):
            r = jp.design.design_edge_rule(state, keep, allocation=alloc, steps=steps, learning_rate=learning_rate,
                                           kernels=kernels, activation=activation, progress=progress)
            row = dict(keep=keep, k=kk, kind="edge", method=f"designed rule ({alloc})", role="designed",
                       error=float(r.error), loss_curve=r.trace.loss,
                       setting="own c; slopes " + ",".join(f"{x:.3g}" for x in np.asarray(r.rule.slope())))
            rows.append(row)
            designed.append(row)
            if weights is not None:
                masks.append(np.asarray(jp.design.sample_edge_rule_mask(krs, w, r.rule, keep, allocation=alloc)))
                c_fixed.append(np.repeat(np.exp(np.asarray(r.rule.log_scale))[None], D, axis=0))
        theory = _edge_baseline_theory(state, keep, activation)
        if weights is not None:
            rnd, mag = baseline_edge_masks(kb1s, w, keep)
            masks += [rnd, mag[None], dpp_edge_masks(kb2s, w, keep)]
            c_fixed.append(np.ones((D + 3, K)))
            es, hs = edge_report(w, w_star, state.v, state.v_star, np.concatenate(masks), activation,
                                 scales=np.concatenate(c_fixed), fresh=fresh)
            for j, row in enumerate(designed):
                sl = slice(j * D, (j + 1) * D)
                row["sim"] = float(np.mean(es[sl, 3]))
                row["half_mse"] = float(np.mean(hs[sl, 3])) if fresh is not None else None
                row["sim_rescaled"] = float(np.mean(es[sl, 2]))
            where = {"random": slice(2 * D, 3 * D), "magnitude": slice(3 * D, 3 * D + 1),
                     "dpp": slice(3 * D + 1, 3 * D + 3)}
            col = {"none": 0, "inverse-keep": 1, "optimal": 2}
        for method, rescale, e, _ in theory:
            row = dict(keep=keep, k=kk, kind="edge", method=method, role="baseline", error=e,
                       setting=RESCALE_LABEL[rescale])
            if weights is not None:
                row["sim"] = float(np.mean(es[where[method], col[rescale]]))
                row["half_mse"] = float(np.mean(hs[where[method], col[rescale]])) if fresh is not None else None
            rows.append(row)
        if kk is not None and math.comb(K, kk) <= 200_000:
            tab = node_tables(state, kk, activation)
            errs = tab["errs"]["optimal"]
            hm = node_half_table(fresh, w, tab)
            for fam in ("kdpp", "bernoulli"):
                sd = jp.design.design_subset_distribution(state, kk, family=fam, subset_errors=errs, steps=steps,
                                                          progress=progress)
                rows.append(dict(keep=keep, k=kk, kind="node", method=f"designed {fam}", role="designed",
                                 error=float(sd.expected_error), loss_curve=sd.trace.loss,
                                 half_mse=float(np.asarray(sd.probs) @ hm["optimal"]) if hm else None,
                                 setting=f"optimal reweighting; mode {float(sd.mode_error):.4g}, "
                                         f"brute-force min {float(sd.best_error):.4g}"))
            for m, (e, setting, probs, rw) in node_baseline_details(state, kk, activation, tab).items():
                rows.append(dict(keep=keep, k=kk, kind="node", method=m, role="baseline", error=e, setting=setting,
                                 half_mse=float(probs @ hm[rw]) if hm else None))
    return rows
