"""Design against the baselines (docs/theory.md, section 7): comparison tables of the designed masks, keep rules,
subset distributions and through-training subsets beside random / importance / magnitude / DPP pruning at the
same budget, with finite-N and fresh-input checks, and the verdict per budget. Experiments built on
`jaxprune.design` and `jaxprune.pruning`.

Every row is a dict `{keep or k, kind, method, role, error, setting, ...}`; `role` is "designed", "baseline",
"reference" (brute-force optimum, unpruned network: not competitors) and `error` the exact noise-free eps_g.
Where a concrete network is given, `sim` is the finite-N check (exact eps_g of the concrete pruned network from
its overlaps; for the training level after finite-N SGD) and `half_mse` the half test MSE of the pruned network
on fresh noise-free inputs (an unbiased Monte Carlo estimate of its eps_g, the same inputs for every row of a
table). `design_verdict` says, per budget, whether the best designed row beats the best baseline.

Every table is built from a few compiled programs shared by its budgets: the design steps, one batched exact
evaluation of all concrete masks of a budget, one of all unit subsets (every reweighting at once), and the random
keys of the whole table drawn in one program (the same keys as drawing them one by one).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._activations import AbstractActivation, Erf, Linear, get_activation
from .._config import SGDConfig
from .._error import generalisation_error
from .._overlaps import Overlaps
from .._simulate import Student, simulate_seeds
from ..design import (
    conditional_kernels,
    design_edge_mask,
    design_edge_rule,
    design_node_mask,
    design_subset_distribution,
    design_through_training,
    masked_network_error,
)
from ..design._loop import _adam, _draw, _top_mask_np
from ..design._network import _EdgeContext, _network_overlaps
from ..design._node import _NODE_REWEIGHTS, _node_eval_rows
from ..design._rule import _MAX_SLOPE, _kernels_fit, _rule_masks
from ..design._training import _MODE_EXACT, _MODE_NONE, _MODE_RELAXED, _evaluate_training, _training_problem
from ..pruning import (
    apply_edge_moments,
    check_kdpp_kernel,
    dpp_edge_mask,
    dpp_moments,
    enumerate_subsets,
    importance_scores,
    kdpp_enumerate,
    kernel_matrix,
    magnitude_moments,
    optimal_edge_rescale,
    random_moments,
    top_k_mask,
)

__all__ = ["compare_network", "compare_population", "compare_training", "design_verdict", "format_verdict"]

_RESCALE_LABEL = {"none": "c = 1", "inverse-keep": "c = 1/keep", "optimal": "optimal c"}
_DPP_KERNELS = ("Q", "A", "rbf")


def _node_kernels_probs(state: Overlaps, k: int, activation):
    """The node k-DPP kernels `L = Q, A, rbf` and their exact subset probabilities
    ([`jaxprune.pruning.kdpp_enumerate`][], `enumerate_subsets(K, k)` order)."""
    Ls = [kernel_matrix(state, ker, activation=activation) for ker in _DPP_KERNELS]
    return np.stack([np.asarray(L) for L in Ls]), np.stack([np.asarray(kdpp_enumerate(L, k)[1]) for L in Ls])


def _node_tables(state: Overlaps, k: int, activation) -> dict:
    """Everything node pruning to `k` units needs, by enumeration: `masks` (`enumerate_subsets(K, k)`),
    `errs[reweight]` (exact eps_g per subset), `vs` (second layers, `(4, C, K)` in `_NODE_REWEIGHTS` order),
    the DPP kernels and their subset probabilities."""
    K = state.K
    masks = enumerate_subsets(K, k)
    errs, vs = _node_eval_rows(state, masks, activation)
    Ls, probs = _node_kernels_probs(state, k, activation)
    return dict(masks=masks, errs={rw: errs[j] for j, rw in enumerate(_NODE_REWEIGHTS)}, vs=vs,
                kernels=Ls, kernel_probs=probs)


def _node_baseline_details(state: Overlaps, k: int, activation, tables: dict | None = None):
    """`{method: (eps_g, setting, probs over enumerate_subsets(K, k), reweight)}` of the best setting
    of random / importance / DPP node pruning (exact, by enumeration)."""
    tables = _node_tables(state, k, activation) if tables is None else tables
    masks, errs = tables["masks"], tables["errs"]
    imp = _importance(state, k)
    dists = {"random": [(None, np.full(masks.shape[0], 1.0 / masks.shape[0]))],
             "importance": [(None, np.all(masks == imp, axis=1).astype(float))], "dpp": []}
    for ker, L, probs in zip(_DPP_KERNELS, tables["kernels"], tables["kernel_probs"]):
        try:  # a k-DPP needs rank >= k
            check_kdpp_kernel(L, k)
        except ValueError:
            continue
        dists["dpp"].append((ker, probs))
    out = {}
    for method, options in dists.items():
        best = (math.inf, "", None, None)
        for ker, probs in options:
            for rw in _NODE_REWEIGHTS:
                e = float(probs @ errs[rw])
                if e < best[0]:
                    best = (e, rw if ker is None else f"{rw}, L={ker}", probs, rw)
        if best[2] is not None:
            out[method] = best
    return out


def _node_k(keep: float, K: int) -> int | None:
    k = keep * K
    return int(round(k)) if abs(k - round(k)) < 1e-9 and round(k) >= 1 else None


class _Fresh(eqx.Module):
    """`P` fresh noise-free inputs `x` of a concrete teacher and its outputs `y`: the half test MSE
    `mean (phi - y)^2 / 2` of pruned students (edge: effective weights `c (m * w)`; node: the unit activations
    of the unpruned student combined with each subset's second layer). Traced methods."""

    x: Float[Array, "P N"]
    y: Float[Array, " P"]
    activation: AbstractActivation = eqx.field(static=True)

    def _scale(self):
        return 1.0 / math.sqrt(self.x.shape[1])

    def edge(self, w_eff: Float[Array, "K N"], v: Float[Array, " K"]) -> Float[Array, ""]:
        phi = self.activation(self.x @ w_eff.T * self._scale()) @ v
        return 0.5 * jnp.mean(jnp.square(phi - self.y))

    def node(self, w: Float[Array, "K N"], V: Float[Array, "C K"]) -> Float[Array, " C"]:
        G = self.activation(self.x @ w.T * self._scale())
        return 0.5 * jnp.mean(jnp.square(G @ V.T - self.y[:, None]), axis=0)


def _fresh_inputs_traced(key, w_star, v_star, activation, samples: int) -> _Fresh:
    N = w_star.shape[1]
    x = _draw(jax.random.normal, key, (samples, N), w_star.dtype)
    return _Fresh(x=x, y=activation(x @ w_star.T * (1.0 / math.sqrt(N))) @ v_star, activation=activation)


@eqx.filter_jit
def _fresh_node_all(fresh: _Fresh, w, vs):
    """Half test MSE of every subset's second layer, `vs (R, C, K) -> (R, C)`."""
    return jax.vmap(lambda V: fresh.node(w, V))(vs)


@eqx.filter_jit
def _fresh_half_batch(fresh: _Fresh, ws, vs):
    """Half test MSE of a batch of concrete students `(w, v)` (one at a time: bounded memory)."""
    return jax.lax.map(lambda wv: fresh.edge(wv[0], wv[1]), (ws, vs))


@jax.jit
def _baseline_edge_masks(keys, w, counts):
    """Random masks (one per key; as [`jaxprune.pruning.random_edge_mask`][], uniform scores drawn flat) and the
    magnitude mask ([`jaxprune.pruning.magnitude_edge_mask`][]), `counts[i]` weights per unit, in one program
    for every draw and budget."""
    K, N = w.shape
    rnd = jax.vmap(lambda kd: top_k_mask(_draw(jax.random.uniform, kd, (K, N), w.dtype), counts))(keys)
    return rnd, top_k_mask(jnp.abs(w), counts)


def _keep_counts(keep, K, N):
    """Per-unit kept count `round(keep N)`, half up (the rule of `jaxprune.pruning.random_edge_mask`)."""
    return jnp.asarray(np.floor(np.full(K, keep) * N + 0.5).astype(np.int64), jnp.int_)


def _importance(state: Overlaps, k: int) -> np.ndarray:
    """The `k` units of largest importance `|v_i| sqrt(Q_ii)`, ties to the lower index (host)."""
    return _top_mask_np(importance_scores(state), k)


@eqx.filter_jit
def _edge_halves(fresh: _Fresh, w, v, mask, cs):
    """Half test MSE of `c (m * w)` for every row `c` of `cs`."""
    return jax.vmap(lambda c: fresh.edge(c[:, None] * jnp.where(mask, w, 0.0), v))(cs)


def _edge_report(ctx: _EdgeContext, masks, c_fixed=None, fresh: _Fresh | None = None):
    """[`_EdgeContext.report`][] and the half test MSE `(n, 4)` of every mask with each of its four rescales."""
    es, cs = ctx.report(masks, c_fixed=c_fixed)
    if fresh is None:
        return es, np.full_like(es, np.nan)
    hs = [_edge_halves(fresh, ctx.w, ctx.state.v, jnp.asarray(m), jnp.asarray(c))
          for m, c in zip(np.asarray(masks, bool), cs)]
    return es, np.stack(jax.device_get(hs))


@eqx.filter_jit
def _refit_report(w, w_star, v, v_star, masks, fresh, activation):
    """Exact error with the optimal rescale and second layer, and half test MSE, of every mask (`refit`)."""

    def one(mask):
        e, c, vv = masked_network_error(w, w_star, v, v_star, mask, rescale="optimal", refit=True,
                                        activation=activation)
        return e, (fresh.edge(c[:, None] * jnp.where(mask, w, 0.0), vv) if fresh is not None else jnp.nan)

    return jax.vmap(one)(masks)


@eqx.filter_jit
def _network_setup(w, w_star, v, v_star, key, activation, samples: int, n: int, draws: int):
    """The random keys of a network table (as split one by one before), the network's overlaps and error,
    the fresh inputs and the network's half test MSE on them."""
    key, kx = jax.random.split(key)
    per_keep = []
    for _ in range(n):
        key, k1, k2, k3 = jax.random.split(key, 4)
        per_keep.append((k1, jax.random.split(k2, draws), tuple(jax.random.split(k3, 2))))
    state = _network_overlaps(w, w_star, v, v_star)
    fresh = _fresh_inputs_traced(kx, w_star, v_star, activation, samples) if samples else None
    return (per_keep, state, generalisation_error(state, activation), fresh,
            None if fresh is None else fresh.edge(w, v))


def compare_network(
    w: Float[ArrayLike, "K N"],
    w_star: Float[ArrayLike, "M N"],
    v: Float[ArrayLike, " K"],
    v_star: Float[ArrayLike, " M"],
    keeps: tuple[float, ...],
    *,
    key: PRNGKeyArray | None = None,
    steps: int = 400,
    learning_rate: float = 0.05,
    restarts: int = 4,
    budget: Any = "projection",
    refit: bool = False,
    random_draws: int = 4,
    test_samples: int = 10_000,
    activation: AbstractActivation | str = Erf(),
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Rows `{keep, k, kind, method, role, error, half_mse, setting}` for each keep fraction: the designed edge
    mask and (when `keep K` is an integer `k`) the designed node subset, beside random / magnitude / DPP edge
    masks (best rescale) and random / importance / DPP node pruning (best reweighting and kernel), all exact for
    this network; `half_mse` the half test MSE on `test_samples` fresh inputs (0: none). Edge errors use the
    per-unit optimal rescale `c` for every row alike (with `refit`, also the optimal second layer)."""
    activation = get_activation(activation)
    w, w_star = jnp.asarray(w), jnp.asarray(w_star)
    v, v_star = jnp.asarray(v, w.dtype), jnp.asarray(v_star, w.dtype)
    K, N = w.shape
    key = jax.random.key(0) if key is None else key
    per_keep, state, full, fresh, half = _network_setup(w, w_star, v, v_star, key, activation, int(test_samples),
                                                        len(keeps), int(random_draws))
    rows = [dict(keep=1.0, k=K, kind="-", method="unpruned", role="reference", error=float(full), setting="",
                 half_mse=float(half) if fresh is not None else None)]
    rescale_txt = "optimal c and second layer" if refit else "optimal c"
    D = int(random_draws)
    ctx = _EdgeContext.of(w, w_star, v, v_star, activation)
    for keep, (k1, k2s, k3s) in zip(keeps, per_keep):
        kk = _node_k(keep, K)
        d = design_edge_mask(w, w_star, v, v_star, keep, budget=budget, refit=refit, steps=steps,
                             learning_rate=learning_rate, restarts=restarts, key=k1, activation=activation,
                             progress=progress)
        rnd, mag = _baseline_edge_masks(k2s, w, _keep_counts(keep, K, N))
        dpp = [np.asarray(dpp_edge_mask(kd, w, keep, kernel="diagonal")) for kd in k3s]
        masks = np.concatenate([np.asarray(d.mask)[None], np.asarray(rnd), np.asarray(mag)[None], np.stack(dpp)])
        if refit:
            e, h = (np.asarray(x) for x in _refit_report(w, w_star, v, v_star, jnp.asarray(masks), fresh, activation))
        else:
            es, hs = _edge_report(ctx, masks, fresh=fresh)
            e, h = es[:, 2], hs[:, 2]

        def cell(x, sl):
            return float(np.mean(x[sl]))

        def hcell(sl):
            return cell(h, sl) if fresh is not None else None  # noqa: B023

        rows.append(dict(keep=keep, k=kk, kind="edge", method="designed", role="designed", error=cell(e, [0]),
                         half_mse=hcell([0]), setting=f"{rescale_txt}; relaxed {float(d.relaxed_error):.4g}",
                         mask=d.mask, loss_curve=d.trace.loss))
        sl = slice(1, 1 + D)
        rows.append(dict(keep=keep, k=kk, kind="edge", method="random", role="baseline", error=cell(e, sl),
                         half_mse=hcell(sl), setting=f"{rescale_txt}, mean of {D} masks"))
        rows.append(dict(keep=keep, k=kk, kind="edge", method="magnitude", role="baseline", error=cell(e, [1 + D]),
                         half_mse=hcell([1 + D]), setting=rescale_txt))
        sl = slice(2 + D, 4 + D)
        rows.append(dict(keep=keep, k=kk, kind="edge", method="dpp", role="baseline", error=cell(e, sl),
                         half_mse=hcell(sl), setting=f"diagonal kernel, {rescale_txt}, mean of 2 masks"))
        if kk is not None and math.comb(K, kk) <= 200_000:
            nd = design_node_mask(state, kk, activation=activation, key=k1, steps=max(steps // 2, 1),
                                  progress=progress)
            tab = _node_tables(state, kk, activation)
            hm = np.asarray(_fresh_node_all(fresh, w, jnp.asarray(tab["vs"]))) if fresh is not None else None
            hm = None if hm is None else {rw: hm[j] for j, rw in enumerate(_NODE_REWEIGHTS)}
            row = np.all(tab["masks"] == np.asarray(nd.mask), axis=1)
            rows.append(dict(keep=keep, k=kk, kind="node", method="designed", role="designed",
                             error=float(nd.error), half_mse=float(row @ hm["optimal"]) if hm else None,
                             setting="optimal reweighting", mask=nd.mask, loss_curve=nd.trace.loss))
            for m, (e, setting, probs, rw) in _node_baseline_details(state, kk, activation, tab).items():
                rows.append(dict(keep=keep, k=kk, kind="node", method=m, role="baseline", error=e,
                                 half_mse=float(probs @ hm[rw]) if hm else None, setting=setting))
    return rows


@eqx.filter_jit
def _theory_errors(state: Overlaps, moments, p, c_opt, activation):
    cs = jnp.stack([jnp.ones_like(p), 1.0 / p, c_opt])
    return jax.vmap(lambda c: generalisation_error(apply_edge_moments(state, moments, c), activation))(cs), cs


def _edge_baseline_theory(state: Overlaps, keep: float, activation) -> list[tuple[str, str, float, Array]]:
    """`(method, rescale, eps_g, c)` of random / magnitude / DPP edge pruning under the Gaussian-equivalent
    model with each rescale (moments once per method; the optimal rescale is the program shared with the
    concrete masks)."""
    p = jnp.asarray(np.full(state.K, keep), state.Q.dtype)
    out = []
    for method, fn in (("random", random_moments), ("magnitude", magnitude_moments), ("dpp", dpp_moments)):
        mom = fn(state, p)
        errs, cs = _theory_errors(state, mom, p, optimal_edge_rescale(state, mom, activation)[0], activation)
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
    fresh = _fresh_inputs_traced(kx, w_star, v_star, activation, samples)
    return per_keep, fresh, fresh.edge(w, v)


def compare_population(
    state: Overlaps,
    keeps: tuple[float, ...],
    *,
    weights: tuple[Array, Array] | None = None,
    key: PRNGKeyArray | None = None,
    steps: int = 300,
    learning_rate: float = 0.05,
    draws: int = 4,
    test_samples: int = 10_000,
    activation: AbstractActivation | str = Erf(),
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
    state is the network's own overlaps, so their `error` is already the concrete network's."""
    activation = get_activation(activation)
    K = state.K
    dtype = state.Q.dtype
    key = jax.random.key(0) if key is None else key
    rows = [dict(keep=1.0, k=K, kind="-", method="unpruned", role="reference",
                 error=float(generalisation_error(state, activation)), setting="")]
    w = w_star = None
    if weights is not None:
        w, w_star = (jnp.asarray(x) for x in weights)
        N = w.shape[1]
        ctx = _EdgeContext.of(w, w_star, state.v, state.v_star, activation)
    per_keep, fresh, half = _population_setup(key, w, w_star, state.v, state.v_star, activation, int(test_samples),
                                              len(keeps), int(draws))
    if weights is not None:
        rows[0]["half_mse"] = float(half) if fresh is not None else None
    kernels = conditional_kernels(state) if _kernels_fit(K) else None
    D = int(draws)
    for keep, (krs, kb1s, kb2s) in zip(keeps, per_keep):
        kk = _node_k(keep, K)
        designed, masks, c_fixed = [], [], []
        for alloc in ("uniform", "free"):
            r = design_edge_rule(state, keep, allocation=alloc, steps=steps, learning_rate=learning_rate,
                                 kernels=kernels, activation=activation, progress=progress)
            row = dict(keep=keep, k=kk, kind="edge", method=f"designed rule ({alloc})", role="designed",
                       error=float(r.error), loss_curve=r.trace.loss,
                       setting="own c; slopes " + ",".join(
                           f"{x:.3g}" for x in np.exp(np.minimum(np.asarray(r.rule.log_slope), math.log(_MAX_SLOPE)))))
            rows.append(row)
            designed.append(row)
            if weights is not None:
                masks.append(np.asarray(_rule_masks(krs, w, r.rule, jnp.asarray(keep, dtype),
                                                    jnp.asarray(alloc == "free"))))
                c_fixed.append(np.repeat(np.exp(np.asarray(r.rule.log_scale))[None], D, axis=0))
        theory = _edge_baseline_theory(state, keep, activation)
        if weights is not None:
            rnd, mag = _baseline_edge_masks(kb1s, w, _keep_counts(keep, K, N))
            dpp = [np.asarray(dpp_edge_mask(kd, w, keep, kernel="diagonal")) for kd in kb2s]
            masks += [np.asarray(rnd), np.asarray(mag)[None], np.stack(dpp)]
            c_fixed.append(np.ones((D + 3, K)))
            es, hs = _edge_report(ctx, np.concatenate(masks), c_fixed=np.concatenate(c_fixed), fresh=fresh)
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
                       setting=_RESCALE_LABEL[rescale])
            if weights is not None:
                row["sim"] = float(np.mean(es[where[method], col[rescale]]))
                row["half_mse"] = float(np.mean(hs[where[method], col[rescale]])) if fresh is not None else None
            rows.append(row)
        if kk is not None and math.comb(K, kk) <= 200_000:
            tab = _node_tables(state, kk, activation)
            errs = tab["errs"]["optimal"]
            hm = None
            if fresh is not None:
                hm = np.asarray(_fresh_node_all(fresh, w, jnp.asarray(tab["vs"])))
                hm = {rw: hm[j] for j, rw in enumerate(_NODE_REWEIGHTS)}
            for fam in ("kdpp", "bernoulli"):
                sd = design_subset_distribution(state, kk, family=fam, subset_errors=errs, steps=steps,
                                                progress=progress)
                rows.append(dict(keep=keep, k=kk, kind="node", method=f"designed {fam}", role="designed",
                                 error=float(sd.expected_error), loss_curve=sd.trace.loss,
                                 half_mse=float(np.asarray(sd.probs) @ hm["optimal"]) if hm else None,
                                 setting=f"optimal reweighting; mode {float(sd.mode_error):.4g}, "
                                         f"brute-force min {float(sd.best_error):.4g}"))
            for m, (e, setting, probs, rw) in _node_baseline_details(state, kk, activation, tab).items():
                rows.append(dict(keep=keep, k=kk, kind="node", method=m, role="baseline", error=e, setting=setting,
                                 half_mse=float(probs @ hm[rw]) if hm else None))
    return rows


@functools.partial(jax.jit, static_argnames=("seeds", "repeats"))
def _training_sim_keys(key, *, seeds, repeats):
    """Input streams of the finite-N retraining: the unpruned student's (`fold_in(key, 7)`), every pruned
    student's (`fold_in(key, 5)`, shared by all subsets: common random numbers, tiled `repeats` times), and the
    fresh test inputs' key (`fold_in(key, 11)`)."""
    end = jax.random.split(jax.random.fold_in(key, 7), seeds)
    sub = jax.random.split(jax.random.fold_in(key, 5), seeds)
    return end, jnp.tile(sub, repeats), jax.random.fold_in(key, 11)


def _simulate_training(network, state, config, duration, seeds, key, test_samples, subsets: dict, reweights) -> dict:
    """Finite-N SGD for `duration N` steps of the unpruned concrete student and of the student pruned to every
    subset (`subsets[k]`, rows of `enumerate_subsets(K, k)`) with each reweighting, `seeds` input streams
    (shared by all subsets), as one vmapped simulation: the pruned students keep their `K` rows, the pruned ones
    zero (with `g(0) = 0`, as for erf and linear students, a unit with zero weights and `v_i = 0` gets zero
    updates and contributes nothing, so this is the `k`-unit simulation, up to rounding); other activations
    get one simulation per unit count.

    **Returns:** `{"end": (w, v, eps, half) per seed, (k, reweight): (mean final eps_g per subset, mean final
    half test MSE per subset), "fresh": the fresh inputs}`."""
    teacher, student = network
    act = config.activation
    K, N = student.w.shape
    S = int(seeds)
    steps = max(int(round(duration * N)), 1)
    dtype = student.w.dtype
    w0, v0 = np.asarray(student.w), np.asarray(student.v)
    members = [(None, None, w0[None], v0[None])]  # (k, reweight, W (C, units, N), V (C, units))
    for k, masks in subsets.items():
        vs = _node_eval_rows(state, masks, act)[1]
        for rw in reweights:
            V = vs[_NODE_REWEIGHTS.index(rw)]
            members.append((k, rw, w0[None] * masks[:, :, None], V))
    n_sub = sum(m[2].shape[0] for m in members[1:])
    end_keys, sub_keys, fresh_key = _training_sim_keys(key, seeds=S, repeats=n_sub)
    keys = np.concatenate([np.asarray(jax.random.key_data(end_keys)), np.asarray(jax.random.key_data(sub_keys))])
    W = np.concatenate([np.repeat(m[2], S, axis=0) for m in members])
    V = np.concatenate([np.repeat(m[3], S, axis=0) for m in members])
    if isinstance(act, (Erf, Linear)):
        groups = [np.arange(W.shape[0])]
        shrink = [None]
    else:  # no padding: one simulation per number of kept units
        units = np.concatenate([np.repeat([K if m[0] is None else m[0] for m in members[:1]], S)] +
                               [np.full(m[2].shape[0] * S, m[0]) for m in members[1:]])
        groups = [np.flatnonzero(units == u) for u in np.unique(units)]
        shrink = [np.any(W[g] != 0, axis=2) for g in groups]
    final_w = [None] * W.shape[0]
    final_v = [None] * W.shape[0]
    eps = np.zeros(W.shape[0])
    impl = jax.random.key_impl(end_keys)
    for g, keep in zip(groups, shrink):
        Wg, Vg = W[g], V[g]
        if keep is not None:  # gather the kept rows of each member
            Wg = np.stack([Wg[i][keep[i]] for i in range(len(g))])
            Vg = np.stack([Vg[i][keep[i]] for i in range(len(g))])
        res = simulate_seeds(jax.random.wrap_key_data(jnp.asarray(keys[g]), impl=impl), teacher,
                             Student(w=jnp.asarray(Wg, dtype), v=jnp.asarray(Vg, dtype)), config, steps=steps,
                             record_every=steps, dtype=dtype)
        fw, fv = np.asarray(res.final.w), np.asarray(res.final.v)
        eps[g] = np.asarray(res.eps_g[:, -1])
        for j, i in enumerate(g):
            if keep is None:
                final_w[i], final_v[i] = fw[j], fv[j]
            else:  # back to K rows (zeros for pruned units), for the half test MSE
                final_w[i] = np.zeros((K, N), fw.dtype)
                final_v[i] = np.zeros((K,), fv.dtype)
                final_w[i][keep[j]], final_v[i][keep[j]] = fw[j], fv[j]
    fresh = _fresh_inputs(fresh_key, teacher.w_star, teacher.v_star, act, int(test_samples))
    half = np.asarray(_fresh_half_batch(fresh, jnp.asarray(np.stack(final_w)), jnp.asarray(np.stack(final_v))))
    out = {"end": (np.stack(final_w[:S]), np.stack(final_v[:S]), eps[:S], half[:S]), "fresh": fresh}
    pos = S
    for k, rw, Wm, _ in members[1:]:
        C = Wm.shape[0]
        out[(k, rw)] = (eps[pos:pos + C * S].reshape(C, S).mean(-1), half[pos:pos + C * S].reshape(C, S).mean(-1))
        pos += C * S
    return out


_fresh_inputs = eqx.filter_jit(_fresh_inputs_traced)


def _end_sim_tables(ws, vs, w_star, v_star, masks, fresh: _Fresh, activation):
    """For the finite-N students trained to the end (`ws (S, K, N)`): exact errors `(S, 4, C)` of every subset
    with every reweighting, from the concrete overlaps, and their half test MSEs."""
    errs, halves = [], []
    for w, v in zip(ws, vs):
        st = _network_overlaps(jnp.asarray(w), w_star, jnp.asarray(v), v_star)
        e, V = _node_eval_rows(st, masks, activation)
        errs.append(e)
        halves.append(np.asarray(_fresh_node_all(fresh, jnp.asarray(w), jnp.asarray(V))))
    return np.stack(errs), np.stack(halves)


def _end_baselines(end: Overlaps, k: int, activation, tables: dict | None = None) -> dict:
    """Pruning at the end of training: the best subset (optimal reweighting) and the random / importance / DPP
    baselines with their best reweighting and kernel, `{name: (eps_g, setting, probs, reweight)}`."""
    tables = _node_tables(end, k, activation) if tables is None else tables
    errs = tables["errs"]["optimal"]
    i = int(np.argmin(errs))
    out = {"best subset": (float(errs[i]), "optimal reweighting", np.eye(errs.shape[0])[i], "optimal")}
    out.update(_node_baseline_details(end, k, activation, tables))
    return out


def compare_training(
    state: Overlaps,
    config: SGDConfig,
    ks: tuple[int, ...],
    duration: float,
    *,
    steps: int = 60,
    learning_rate: float = 0.05,
    restarts: int = 2,
    key: PRNGKeyArray | None = None,
    network: tuple[Any, Any] | None = None,
    seeds: int = 2,
    test_samples: int = 4_000,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Rows `{k, kind, method, role, error, ...}`: prune at the time of `state` (`alpha_p`) and retrain for
    `duration` with the ODEs. Designed: the subset and reweighting (none / optimal) designed through the ODE
    solve ([`design_through_training`][] with `reweight="best"`; its candidates include the restarts' starting
    subsets, the subset best at prune time and the subset best at the end of training, each pruned at `alpha_p`
    and retrained, so it is never worse than those). Baselines: random / importance / DPP (L = Q) subsets at
    `alpha_p` then retraining (exact expected final error by enumeration, better of no and optimal
    reweighting), the subset best at prune time (greedy), and pruning at the end of training instead (the full
    student trained for `duration`, then pruned by the best subset / random / importance / DPP with their best
    reweighting and kernel, no retraining). Reference: the brute-force best subset.

    With `network = (teacher, student)` (finite-N networks, `jaxprune.Teacher` and `jaxprune.Student`, whose overlaps are `state`),
    rows also get `sim`: every subset (with each reweighting) of the concrete student is trained on by the
    finite-N simulation for `duration N` steps, `seeds` input streams shared by all subsets; a row's `sim` is
    its exact final error (mean over seeds, weighted by the row's subset distribution), `half_mse` the same on
    `test_samples` fresh inputs. End-of-training rows: the full concrete student trained on for `duration N`
    steps, then pruned.

    Compiled programs: the design step (also used for every exact retraining error, of all `ks` at once), one
    finite-N simulation of all subsets, and the small enumeration programs."""
    act = config.activation
    K = state.K
    key = jax.random.key(0) if key is None else key
    rws = ("none", "optimal")
    subsets = {k: enumerate_subsets(K, k) for k in ks}
    # exact final errors through the design step: the unpruned student (row 0) and every subset with each rule
    problem = _training_problem(state, config, 1, duration, rows=len(rws) * restarts)
    problem = eqx.tree_at(lambda p: p.modes, problem,
                          jnp.asarray(np.repeat([_MODE_NONE, _MODE_RELAXED], restarts), state.Q.dtype))
    rows_m = [np.ones((1, K), bool)] + [subsets[k] for k in ks for _ in rws]
    codes = [[_MODE_NONE]] + [[_MODE_NONE if rw == "none" else _MODE_EXACT] * len(subsets[k]) for k in ks for rw in rws]
    errs, finals = _evaluate_training(problem, _adam(learning_rate), np.concatenate(rows_m), np.concatenate(codes))
    end = jax.tree.map(lambda x: jnp.asarray(x[0]), finals)
    table, pos = {}, 1
    for k in ks:
        for rw in rws:
            table[(k, rw)] = errs[pos:pos + len(subsets[k])]
            pos += len(subsets[k])
    rows = [dict(k=K, kind="-", method="unpruned, trained on", role="reference", error=float(errs[0]), setting="")]
    sims = None
    if network is not None:
        sims = _simulate_training(network, state, config, duration, seeds, key, test_samples, subsets, rws)
        rows[0]["sim"] = float(np.mean(sims["end"][2]))
        rows[0]["half_mse"] = float(np.mean(sims["end"][3]))
    for k in ks:
        masks = subsets[k]
        final = {rw: table[(k, rw)] for rw in rws}
        index = {tuple(m): i for i, m in enumerate(masks.astype(bool))}

        def lookup(ms, rw, final=final, index=index):
            return np.asarray([final[rw][index[tuple(np.asarray(m, bool))]] for m in ms])

        at_tab = _node_tables(state, k, act)
        at_prune = at_tab["errs"]["optimal"]
        g = int(np.argmin(at_prune))
        end_tab = _node_tables(end, k, act)
        end_base = _end_baselines(end, k, act, end_tab)
        e_best = masks[int(np.argmin(end_tab["errs"]["optimal"]))]
        d = design_through_training(state, config, k, duration, reweight="best", steps=steps,
                                    learning_rate=learning_rate, restarts=restarts, key=key, exact_errors=lookup,
                                    candidates=np.stack([masks[g], e_best]), progress=progress)
        one = lambda m: np.all(masks == np.asarray(m, bool), axis=1).astype(float)  # noqa: E731
        origin = {"optimised": "an optimised restart", "start": "a restart's starting subset",
                  "candidate 0": "the subset best at alpha_p", "candidate 1": "the subset best at the end"}[d.origin]
        new = []
        new.append(dict(k=k, kind="node", method="designed (through ODE)", role="designed", error=float(d.error),
                        setting=f"{d.reweight} reweighting; from {origin} (pruned at alpha_p, retrained), "
                                f"exchange-polished; {d.evaluations} of {2 * masks.shape[0]} (subset, reweighting) "
                                f"pairs evaluated",
                        mask=d.mask, loss_curve=d.trace.loss, _probs=one(d.mask), _rw=d.reweight))
        bi = min(((final[rw].min(), rw) for rw in rws))
        bm = masks[int(np.argmin(final[bi[1]]))]
        new.append(dict(k=k, kind="node", method="brute force best", role="reference", error=float(bi[0]),
                        setting=f"{bi[1]} reweighting", mask=bm, _probs=one(bm), _rw=bi[1]))
        rw = min(rws, key=lambda r: final[r][g])
        new.append(dict(k=k, kind="node", method="greedy at alpha_p (best subset then)", role="baseline",
                        error=float(final[rw][g]), setting=f"{rw} reweighting; error at prune time {at_prune[g]:.4g}",
                        mask=masks[g], _probs=one(masks[g]), _rw=rw))
        imp = _importance(state, k)
        pdpp = at_tab["kernel_probs"][_DPP_KERNELS.index("Q")]  # the k-DPP with L = Q at alpha_p
        for name, probs in (("random", np.full(masks.shape[0], 1.0 / masks.shape[0])), ("importance", one(imp)),
                            ("dpp", pdpp)):
            e, rw = min((float(probs @ final[r]), r) for r in rws)
            new.append(dict(k=k, kind="node", method=f"{name} at alpha_p", role="baseline", error=e,
                            setting=f"{rw} reweighting" + (", L=Q" if name == "dpp" else ""), _probs=probs, _rw=rw))
        if sims is not None:
            for r in new:
                r["sim"] = float(r["_probs"] @ sims[(k, r["_rw"])][0])
                r["half_mse"] = float(r["_probs"] @ sims[(k, r["_rw"])][1])
            ws, vs = sims["end"][0], sims["end"][1]
            teacher = network[0]
            e_end, h_end = _end_sim_tables(ws, vs, teacher.w_star, teacher.v_star, masks, sims["fresh"], act)
        # prune at the end of training instead (no retraining after pruning)
        for name, (e, setting, probs, rw) in end_base.items():
            r = dict(k=k, kind="node", method=f"{name} at end (no retraining)", role="baseline", error=e,
                     setting=setting)
            if sims is not None:
                j = _NODE_REWEIGHTS.index(rw)
                r["sim"] = float(np.mean(e_end[:, j] @ probs))
                r["half_mse"] = float(np.mean(h_end[:, j] @ probs))
            new.append(r)
        for r in new:
            r.pop("_probs", None)
            r.pop("_rw", None)
        rows += new
    return rows


def design_verdict(rows: list[dict]) -> list[dict]:
    """Per budget (`keep`, else `k`) and kind (edge / node): the best designed row against the best baseline,
    exactly (`error`) and, where the rows have them, in the finite-N check (`sim`) and on fresh inputs
    (`half_mse`). **Returns:** dicts `{budget, kind, designed, designed_error, baseline, baseline_error, beats,
    margin, ...}`; `beats` is True only when the designed error is strictly lower."""
    out = []
    groups = []
    for r in rows:
        if r.get("role") in ("designed", "baseline"):
            g = (r.get("keep", r.get("k")), r.get("kind"))
            if g not in groups:
                groups.append(g)
    for budget, kind in groups:
        sel = [r for r in rows if (r.get("keep", r.get("k")), r.get("kind")) == (budget, kind)]
        des = [r for r in sel if r["role"] == "designed"]
        base = [r for r in sel if r["role"] == "baseline"]
        if not des or not base:
            continue
        d = min(des, key=lambda r: r["error"])
        b = min(base, key=lambda r: r["error"])
        v = dict(budget=budget, kind=kind, designed=d["method"], designed_error=d["error"], baseline=b["method"],
                 baseline_setting=b.get("setting", ""), baseline_error=b["error"], beats=bool(d["error"] < b["error"]),
                 margin=b["error"] - d["error"])
        v["beats"] = bool(v["beats"] and v["margin"] > 1e-9 * abs(b["error"]))
        for col in ("sim", "half_mse"):
            if d.get(col) is not None and any(r.get(col) is not None for r in base):
                bb = min((r for r in base if r.get(col) is not None), key=lambda r: r[col])
                v[f"designed_{col}"] = d[col]
                v[f"baseline_{col}"] = bb[col]
                v[f"baseline_{col}_method"] = bb["method"]
                v[f"beats_{col}"] = bool(d[col] < bb[col] - 1e-9 * abs(bb[col]))
        out.append(v)
    return out


def format_verdict(v: dict, budget_name: str = "keep") -> str:
    """One line: whether the designed row beats the best baseline, exactly and in the finite-N checks."""
    tie = abs(v["margin"]) <= 1e-9 * max(abs(v["baseline_error"]), 1e-300)
    word = "BEATS" if v["beats"] and not tie else ("TIES with (does not beat)" if tie else "does NOT beat")
    rel = v["margin"] / v["baseline_error"] if v["baseline_error"] else float("nan")
    s = (f"{budget_name}={v['budget']:.4g} {v['kind']}: {v['designed']} {v['designed_error']:.4g} {word} best baseline "
         f"{v['baseline']} ({v['baseline_setting']}) {v['baseline_error']:.4g} [{-100 * rel:+.1f}%]")
    for col, name in (("sim", "finite-N"), ("half_mse", "fresh-input MSE/2")):
        if f"beats_{col}" in v:
            s += (f"; {name}: {v[f'designed_{col}']:.4g} vs {v[f'baseline_{col}']:.4g} "
                  f"({v[f'baseline_{col}_method']}) -> {'beats' if v[f'beats_{col}'] else 'does not beat'}")
    return s


