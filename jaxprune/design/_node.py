"""Unit (node) masks designed by gradient (docs/theory.md, sections 6.1 and 7): a relaxed mask `m in [0, 1]^K`
with the pruned second layer `v'(m)` (`m v`, or the ridge-relaxed optimal reweighting), rounded to the top `k`
and polished by exact one-unit exchanges; and the exact errors of many unit subsets at once, with the pruning
layer's reweighting rules ([`jaxprune.pruning.reweighted_output_weights`][]).
"""

from __future__ import annotations

import functools
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from .._activations import AbstractActivation, Erf, get_activation
from .._checks import check_count
from .._error import generalisation_error
from .._overlaps import Overlaps
from ..pruning import NODE_REWEIGHTS, AbstractReweight, importance_scores, pruning_option, reweighted_output_weights
from ._loop import (
    DesignTrace,
    Penalty,
    Projection,
    _adam,
    _as_budget,
    _budget_hyper,
    _check_positive,
    _check_restarts,
    _check_steps,
    _draw,
    _logit,
    _top_mask_np,
    project_capped_simplex,
    run_design,
)
from ._network import optimal_second_layer

__all__ = ["node_subset_errors", "node_subset_table", "NodeDesign", "design_node_mask"]

_NODE_REWEIGHTS = NODE_REWEIGHTS  # ("none", "preactivation", "activation", "optimal"): the rows of `_node_eval_rows`


def _reweight_name(reweight, allowed=NODE_REWEIGHTS) -> str:
    """The rule's name for a reweighting object of [`jaxprune.pruning`][] (`OptimalReweight()`, ...) or its
    string; a one-line `ValueError` unless it is one of `allowed`."""
    name = pruning_option("reweight", reweight).name
    if name not in allowed:
        raise ValueError(f"reweight must be one of {', '.join(map(repr, allowed))} here, got {reweight!r}")
    return name


def _masked_node_v(state: Overlaps, mask: Bool[Array, " K"], reweight: str, activation) -> Float[Array, " K"]:
    """Second layer of the student restricted to `S = {mask}` (zero outside S) for a reweighting rule of 6.1:
    [`jaxprune.pruning.reweighted_output_weights`][] (singular kept blocks solved by skipping dependent pivots)."""
    return reweighted_output_weights(state, mask, reweight=reweight, activation=activation)[0]


def _node_eval_traced(state: Overlaps, masks, reweight: str, activation):
    """`(eps_g per subset, second layer per subset)` (traced; see [`node_subset_errors`][])."""

    def one(mask):
        vp = _masked_node_v(state, mask, reweight, activation)
        return generalisation_error(eqx.tree_at(lambda s: s.v, state, vp), activation), vp

    C, B = masks.shape[0], _NODE_EVAL_BATCH
    if C <= B:
        return jax.vmap(one)(masks)
    # Sequential blocks of exactly B rows (the last padded with copies of the last mask), not
    # `lax.map(..., batch_size=B)`: that one runs the remainder as a second, independent batched program, and
    # on the XLA CPU backend (jax 0.10.2) that program intermittently deadlocked (all threads idle in
    # block_until_ready; about 1 process in 4 at K = 20, C = 4845), while the padded loop did not in 160 runs.
    padded = jnp.concatenate([masks, jnp.broadcast_to(masks[-1:], ((-C) % B, masks.shape[1]))])
    e, vp = jax.lax.map(jax.vmap(one), padded.reshape(-1, B, masks.shape[1]))
    return e.reshape(-1)[:C], vp.reshape(-1, masks.shape[1])[:C]


_NODE_EVAL_BATCH = 4096


_node_eval = eqx.filter_jit(_node_eval_traced)


def _node_eval_all_traced(state: Overlaps, masks, activation):
    """[`_node_eval_traced`][] for every rule of `_NODE_REWEIGHTS` at once: `(errors (4, C), v' (4, C, K))`."""
    out = [_node_eval_traced(state, masks, rw, activation) for rw in _NODE_REWEIGHTS]
    return jnp.stack([e for e, _ in out]), jnp.stack([v for _, v in out])


_node_eval_all = eqx.filter_jit(_node_eval_all_traced)
_NODE_CHUNK = 16


def _node_eval_rows(state: Overlaps, masks, activation) -> tuple[np.ndarray, np.ndarray]:
    """[`_node_eval_all`][] on the host, in chunks of one fixed size (16 rows, padded; 1024 beyond 256 rows),
    so that every unit-subset evaluation of a run (enumerations, design roundings, polish exchanges, the
    finite-N checks) shares one compiled program. **Returns:** NumPy `(errors (4, n), v' (4, n, K))`."""
    masks = np.asarray(masks, bool).reshape(-1, state.K)
    n = masks.shape[0]
    B = _NODE_CHUNK if n <= 16 * _NODE_CHUNK else 1024
    padded = np.concatenate([masks, np.repeat(masks[-1:], (-n) % B, axis=0)])
    got = jax.device_get([_node_eval_all(state, jnp.asarray(padded[s:s + B]), activation)
                          for s in range(0, padded.shape[0], B)])
    errs = np.concatenate([e for e, _ in got], axis=1)[:, :n]
    return errs, np.concatenate([v for _, v in got], axis=1)[:, :n]


def node_subset_errors(
    state: Overlaps,
    masks: Bool[ArrayLike, "C K"],
    *,
    reweight: AbstractReweight | str = "optimal",
    activation: AbstractActivation | str = Erf(),
) -> Float[Array, " C"]:
    """Exact `eps_g` of the student pruned to each subset (rows of `masks`) with a reweighting rule of
    docs/theory.md 6.1 (pruned units get `v = 0`, which equals removing them). One compiled program per
    `(K, C, reweight)`; [`node_subset_table`][] gives every rule at once, with the second layers.

    **Arguments:**

    - `state`: the student's [`jaxprune.Overlaps`][] before pruning.
    - `masks`: `C` unit subsets, `Bool[C, K]` (`True`: kept unit).
    - `reweight`: the second layer of the kept units, `"none"`, `"preactivation"`, `"activation"` or
      `"optimal"` ([`jaxprune.pruning.reweighted_output_weights`][]), or the matching
      [`jaxprune.pruning.AbstractReweight`][] object.
    - `activation`: the activation ([`jaxprune.Erf`][] by default, or its name).

    **Returns:** the exact errors, `Float[C]`.
    """
    activation = get_activation(activation)
    reweight = _reweight_name(reweight)
    return _node_eval(state, jnp.asarray(masks, bool), reweight, activation)[0]


def node_subset_table(
    state: Overlaps,
    masks: Bool[ArrayLike, "..."],
    *,
    activation: AbstractActivation | str = Erf(),
) -> tuple[Float[Array, "4 C"], Float[Array, "4 C K"]]:
    """Exact `eps_g` and pruned second layer of the student pruned to each subset, under every reweighting rule
    of docs/theory.md 6.1 at once (what an enumeration of subsets, a table of baselines or a finite-N check of
    pruned students needs).

    **Arguments:**

    - `state`: the student's [`jaxprune.Overlaps`][] before pruning.
    - `masks`: `C` unit subsets, `Bool[C, K]` (`True`: kept unit), e.g. rows of
      [`jaxprune.pruning.enumerate_subsets`][].
    - `activation`: the activation ([`jaxprune.Erf`][] by default, or its name).

    **Returns:**

    `(errors, v)`: `errors` `Float[4, C]` and the pruned second layers `v` `Float[4, C, K]` (zero outside each
    subset), row `j` for the rule `jaxprune.pruning.NODE_REWEIGHTS[j]` (`"none"`, `"preactivation"`,
    `"activation"`, `"optimal"`); row `j` of `errors` equals [`node_subset_errors`][] with that rule. The
    subsets run in padded chunks of one fixed size (16 rows; 1024 beyond 256 rows), so every call with up to
    256 subsets of `K` units shares one compiled program.
    """
    activation = get_activation(activation)
    masks = np.asarray(masks, bool)
    if masks.ndim != 2 or masks.shape[1] != state.K or masks.shape[0] == 0:
        raise ValueError(f"masks must have shape (C, K) with C >= 1 and K = {state.K}, got {masks.shape}")
    errors, vs = _node_eval_rows(state, masks, activation)
    return jnp.asarray(errors), jnp.asarray(vs)



class NodeDesign(eqx.Module):
    """A unit subset designed by [`design_node_mask`][].

    **Fields:**

    - `mask`: the subset, `Bool[K]` with exactly `k` entries `True`.
    - `v`: the pruned second layer, `Float[K]` (zero outside the subset).
    - `error`: the exact `eps_g` of the pruned student.
    - `relaxed_error`: the relaxed error of the winning restart's soft mask at the end.
    - `soft_mask`: that soft mask, `Float[K]` in `[0, 1]`.
    - `trace`: the [`DesignTrace`][] of the run.
    """

    mask: Bool[Array, " K"]
    v: Float[Array, " K"]
    error: Float[Array, ""]
    relaxed_error: Float[Array, ""]
    soft_mask: Float[Array, " K"]
    trace: DesignTrace



def _swap_polish(evaluate, mask: np.ndarray, max_rounds: int):
    """Rounding polish: best-improvement exchanges of one kept and one pruned unit (all `k (K - k)` swaps
    evaluated exactly at once, with the current subset as row 0 of the same batch so that every call has one
    shape), until none improves or `max_rounds` is reached.

    `evaluate(masks) -> errors` or `(errors, payload)` with one payload row per mask. **Returns:**
    `(mask, error, payload row of the mask or None)`."""

    def call(cands):
        out = evaluate(cands)
        errs, payload = out if isinstance(out, tuple) else (out, None)
        return np.asarray(errs), payload

    mask = np.asarray(mask, bool)
    kept, out = np.flatnonzero(mask), np.flatnonzero(~mask)
    if kept.size == 0 or out.size == 0:
        errs, payload = call(mask[None])
        return mask, float(errs[0]), None if payload is None else np.asarray(payload)[0]
    for r in range(max_rounds + 1):
        kept, out = np.flatnonzero(mask), np.flatnonzero(~mask)
        cands = np.repeat(mask[None], 1 + kept.size * out.size, axis=0)
        ii, jj = np.meshgrid(kept, out, indexing="ij")
        rows = np.arange(1, cands.shape[0])
        cands[rows, ii.ravel()] = False
        cands[rows, jj.ravel()] = True
        errs, payload = call(cands)
        j = 1 + int(np.argmin(errs[1:]))
        if r == max_rounds or not errs[j] < errs[0]:
            return mask, float(errs[0]), None if payload is None else np.asarray(payload)[0]
        mask = cands[j]


def _relaxed_node_v(state, m, reweight, rho, activation):
    """`v'(m)`: `m * v` (`none`) or the ridge-relaxed optimum `(A + rho diag(1/m - 1))^{-1} B v*`, which at a
    binary `m` is the optimal reweighting of the kept units (zero on the pruned ones)."""
    if reweight == "none":
        return m * state.v
    mc = jnp.clip(m, 1e-6, 1.0)
    return optimal_second_layer(state, activation, ridge=rho * (1.0 / mc - 1.0))


class _NodeMaskLoss(eqx.Module):
    """The relaxed unit-mask problem of [`design_node_mask`][]."""

    state: Overlaps
    k: Float[Array, ""]
    rho: Float[Array, ""]
    reweight: str = eqx.field(static=True)
    budget: Projection | Penalty = eqx.field(static=True)
    activation: AbstractActivation = eqx.field(static=True)

    def mask(self, theta):
        return theta if isinstance(self.budget, Projection) else jax.nn.sigmoid(theta)

    def one(self, theta, hyp):
        m = self.mask(theta)
        st = eqx.tree_at(lambda s: s.v, self.state,
                         _relaxed_node_v(self.state, m, self.reweight, self.rho, self.activation))
        err = generalisation_error(st, self.activation)
        pen = hyp["penalty"] * jnp.square(jax.nn.relu(jnp.sum(m) - self.k)) if isinstance(self.budget, Penalty) else 0.0
        return err + pen + hyp["binarise"] * jnp.mean(m * (1 - m)), err

    def __call__(self, p, hyp):
        return jax.vmap(self.one, (0, None))(p, hyp)

    def project(self, p):
        return jax.vmap(lambda m: project_capped_simplex(m, self.k))(p)


def _importance_start(state, key, k, restarts):
    """Restart 0 from the importance scores `|v_i| sqrt(Q_ii)`, the others uniform; projected onto `sum m = k`."""
    K = state.K
    imp = importance_scores(state)  # |v_i| sqrt(Q_ii)
    m0 = jnp.concatenate(
        [project_capped_simplex(imp / jnp.max(imp), k)[None],
         _draw(jax.random.uniform, key, (restarts - 1, K), state.Q.dtype)], axis=0)
    return jax.vmap(lambda m: project_capped_simplex(m, k))(m0)


@functools.partial(jax.jit, static_argnames=("restarts", "logit"))
def _node_mask_init(state, key, k, *, restarts, logit):
    m0 = _importance_start(state, key, k, restarts)
    return _logit(m0) if logit else m0


def design_node_mask(
    state: Overlaps,
    k: int,
    *,
    reweight: AbstractReweight | str = "optimal",
    budget: Projection | Penalty | str = Projection(),
    steps: int = 300,
    learning_rate: float = 0.05,
    restarts: int = 16,
    rho: float = 10.0,
    penalty: tuple[float, float] = (1.0, 1e3),
    binarise: float = 0.05,
    polish: bool = True,
    key: PRNGKeyArray | None = None,
    activation: AbstractActivation | str = Erf(),
    progress: Callable[[int], None] | None = None,
) -> NodeDesign:
    """Design a subset of `k` units by gradient descent on the relaxed exact error (docs/theory.md 6.1 and 7):
    `v'(m) = m v` for `reweight="none"`; for `"optimal"` the ridge relaxation
    `v'(m) = (A + rho diag(1/m - 1))^{-1} B v*`, equal to the optimal reweighting of the kept units at a 0/1 mask.
    Restart 0 starts from the importance scores, the others uniformly at random; the top `k` of every restart is
    evaluated exactly, the best kept and (`polish`) improved by exact one-unit exchanges.

    **Arguments:**

    - `state`: the student's [`jaxprune.Overlaps`][].
    - `k`: the number of units to keep, in `[1, K]`.
    - `reweight`: `"none"` or `"optimal"` (or [`jaxprune.pruning.NoReweight`][]`()` /
      [`jaxprune.pruning.OptimalReweight`][]`()`).
    - `budget`: [`Projection`][]`()` (onto `sum m = k`) or [`Penalty`][]`(start, end)` (or the strings
      `"projection"` / `"penalty"`, the latter with the schedule `penalty`).
    - `steps`: optimisation steps, an integer `>= 1`.
    - `learning_rate`: the Adam learning rate, `> 0`.
    - `restarts`: parallel restarts, an integer `>= 1`.
    - `rho`: the ridge scale of the relaxed optimal reweighting.
    - `penalty`: `(start, end)` of the penalty schedule for `budget="penalty"`.
    - `binarise`: the weight of the binarisation term `mean m (1 - m)`, ramped up over the second half.
    - `polish`: improve the rounded subset by best-improvement one-unit exchanges.
    - `key`: PRNG key of the random starts (default `jax.random.key(0)`).
    - `activation`: the activation ([`jaxprune.Erf`][] by default, or its name).
    - `progress`: `progress(n)` called after every step ([`run_design`][]).

    **Returns:** a [`NodeDesign`][].
    """
    activation = get_activation(activation)
    K = state.K
    check_count(k, K)
    _check_steps(steps)
    _check_positive(learning_rate, "learning_rate")
    _check_restarts(restarts)
    budget = _as_budget(budget, penalty)
    reweight = _reweight_name(reweight, ("none", "optimal"))
    key = jax.random.key(0) if key is None else key
    hyper = _budget_hyper(budget, steps, binarise)
    dtype = state.Q.dtype
    k_arr = jnp.asarray(k, dtype)
    theta0 = _node_mask_init(state, key, k_arr, restarts=restarts, logit=not isinstance(budget, Projection))
    problem = _NodeMaskLoss(state=state, k=k_arr, rho=jnp.asarray(rho, dtype), reweight=reweight, budget=budget,
                            activation=activation)
    params, trace = run_design(problem, theta0, optimizer=_adam(learning_rate), steps=steps, hyper=hyper,
                               project=problem.project if isinstance(budget, Projection) else None, progress=progress)
    soft = np.asarray(params if isinstance(budget, Projection) else jax.nn.sigmoid(params))
    masks = np.stack([_top_mask_np(m, k) for m in soft])
    row = _NODE_REWEIGHTS.index(reweight)

    def evaluate(ms):
        e, vs = _node_eval_rows(state, ms, activation)
        return e[row], vs[row]

    errs, vs = evaluate(masks)
    best = int(np.argmin(errs))
    mask, err, v_best = masks[best], errs[best], vs[best]
    if polish:
        mask, err, v_best = _swap_polish(evaluate, mask, K)
    return NodeDesign(mask=jnp.asarray(mask), v=jnp.asarray(v_best), error=jnp.asarray(err, dtype),
                      relaxed_error=jnp.asarray(np.asarray(trace.final_aux)[best]), soft_mask=jnp.asarray(soft[best]),
                      trace=trace)

