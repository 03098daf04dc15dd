"""Unit subsets designed through training (docs/theory.md, sections 4, 6.1 and 7): prune at `alpha_p` with a relaxed
unit mask, keep training with the ODEs (second-layer updates gated by the mask, so that pruned units stay pruned),
and differentiate the final error through the diffrax solve.

The derivative of the final error in the `K` mask entries is taken in forward mode (one tangent per unit,
[`diffrax.ForwardMode`][]) for small `K`, where it is cheap to compile and to run, and in reverse mode
(`diffrax.RecursiveCheckpointAdjoint`) for larger `K`, where `K` tangents through every stage of the solve cost
more than one backward pass: at `K = 20` a forward-mode step pushes 20 tangents through the Jacobian of the
vector field at every Runge-Kutta stage (vmapped, about 40 ms a stage on CPU), a reverse-mode step one
cotangent (see `benchmarks/bench_design.py`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from .._config import SGDConfig
from .._checks import check_count
from .._error import generalisation_error
from .._overlaps import Overlaps
from .._vector_field import vector_field
from ._loop import (
    DesignTrace,
    _adam,
    _budget_hyper,
    _check_positive,
    _check_restarts,
    _check_steps,
    _design_step,
    _hyper_arrays,
    _top_mask_np,
    Projection,
    project_capped_simplex,
    run_design,
)
from ..pruning import AbstractReweight
from ._node import _masked_node_v, _node_mask_init, _relaxed_node_v, _reweight_name, _swap_polish

__all__ = ["retrain_pruned", "retrain_subsets", "TrainingDesign", "design_through_training", "training_subset_errors"]

#: up to this many units, derivatives through the ODE solve are taken in forward mode by default
FORWARD_MODE_MAX_K = 10

def _retrain_field(t, y, args):
    config, mask = args
    d = vector_field(y, config)
    return eqx.tree_at(lambda s: s.v, d, d.v * mask)


# module level: `diffeqsolve` is compiled on its static arguments (the term among them), so a fresh closure per
# call would compile it again on every eager call; the mask and configuration travel in `args`
_RETRAIN_TERM = diffrax.ODETerm(_retrain_field)


def retrain_pruned(
    state: Overlaps,
    mask: Float[Array, " K"],
    config: SGDConfig,
    duration: float | Float[Array, ""],
    *,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 4096,
    adjoint: diffrax.AbstractAdjoint | None = None,
) -> Overlaps:
    """Train the pruned student (second layer `state.v`, already zero on pruned units) for `duration` with the
    ODEs of docs/theory.md 4, second-layer updates gated by `mask` (`dv_i -> m_i dv_i`), so that at a binary mask
    the pruned units stay pruned; first-layer updates of a unit with `v_i = 0` vanish on their own.
    Differentiable in `state`, `mask` and `duration`.

    **Arguments:**

    - `state`: the pruned student's [`jaxprune.Overlaps`][] at prune time.
    - `mask`: the (relaxed) unit mask `m`, `Float[K]` in `[0, 1]`.
    - `config`: the [`jaxprune.SGDConfig`][] of the training.
    - `duration`: the training time `alpha - alpha_p > 0` (a float or a traced scalar).
    - `rtol`, `atol`: tolerances of the adaptive Tsit5 solve.
    - `max_steps`: the solver's step limit (no error is raised when it is reached: the state then holds NaN or
      the last step).
    - `adjoint`: the diffrax adjoint (default `diffrax.RecursiveCheckpointAdjoint()`; `diffrax.ForwardMode()`
      for forward-mode derivatives, as [`design_through_training`][] uses at small `K`).

    **Returns:** the [`jaxprune.Overlaps`][] at the end of the training.
    """
    t1 = float(duration) if isinstance(duration, (int, float, np.integer, np.floating)) else duration
    sol = diffrax.diffeqsolve(
        _RETRAIN_TERM, diffrax.Tsit5(), t0=0.0, t1=t1, dt0=None, y0=state, args=(config, mask),
        saveat=diffrax.SaveAt(t1=True), stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps, adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
        throw=False,
    )
    return jax.tree.map(lambda x: x[-1], sol.ys)


class TrainingDesign(eqx.Module):
    """A unit subset designed for the error after retraining by [`design_through_training`][].

    **Fields:**

    - `mask`: the subset, `Bool[K]` with exactly `k` entries `True`.
    - `error`: the exact final `eps_g` of the hard subset after retraining.
    - `relaxed_error`: the relaxed final error of the restart the subset came from (NaN for a given candidate).
    - `soft_mask`: that restart's soft mask (or the starting / given subset), `Float[K]`.
    - `trace`: the [`DesignTrace`][] of the run.
    - `reweight`: the reweighting applied at prune time, `"none"` or `"optimal"`.
    - `origin`: which candidate won before polishing: `"optimised"` (a restart's final soft mask), `"start"` (a
      restart's starting subset) or `"candidate i"` (row `i` of the `candidates` passed in).
    - `evaluations`: how many (subset, reweighting) pairs were evaluated exactly (ODE) on the way (brute force:
      `2 C(K, k)`).
    """

    mask: Bool[Array, " K"]
    error: Float[Array, ""]
    relaxed_error: Float[Array, ""]
    soft_mask: Float[Array, " K"]
    trace: DesignTrace
    reweight: str = eqx.field(static=True, default="optimal")
    origin: str = eqx.field(static=True, default="optimised")
    evaluations: int = eqx.field(static=True, default=0)


def _pruned_start(state, m, reweight, rho, activation):
    return eqx.tree_at(lambda s: s.v, state, _relaxed_node_v(state, m, reweight, rho, activation))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _forward_mode(fn, x, data):
    """`fn(x, data)` whose reverse-mode derivative in `x` is computed in forward mode: one JVP per coordinate
    of `x` (pushed through together with the primal, vmapped), contracted with the cotangent. For a few
    parameters through a long ODE solve this is cheaper to compile than reverse mode through diffrax's
    checkpointed loop. No derivative to `data`."""
    return fn(x, data)


def _forward_mode_fwd(fn, x, data):
    n = x.size
    basis = jnp.eye(n, dtype=x.dtype).reshape((n,) + x.shape)
    out, tangents = jax.vmap(lambda t: jax.jvp(lambda y: fn(y, data), (x,), (t,)), out_axes=(None, 0))(basis)
    return out, (tangents, jnp.zeros_like(x))


def _forward_mode_bwd(fn, res, g):
    tangents, x0 = res
    gx = sum(jnp.tensordot(t, c, axes=c.ndim) for t, c in zip(jax.tree.leaves(tangents), jax.tree.leaves(g)))
    return gx.reshape(x0.shape), None


_forward_mode.defvjp(_forward_mode_fwd, _forward_mode_bwd)

# how the second layer is set at prune time, per row (a traced code, so that all kinds share one program):
# `m v`; the ridge-relaxed optimum of `_relaxed_node_v`; the exact optimal reweighting of the subset `m > 1/2`
_MODE_NONE, _MODE_RELAXED, _MODE_EXACT = 0.0, 1.0, 2.0


def _training_final(m, data):
    problem, mode = data
    st, act = problem.state, problem.config.activation
    v0 = jnp.where(mode == _MODE_NONE, m * st.v,
                   jnp.where(mode == _MODE_RELAXED, _relaxed_node_v(st, m, "optimal", problem.rho, act),
                             _masked_node_v(st, m > 0.5, "optimal", act)))
    final = retrain_pruned(eqx.tree_at(lambda s: s.v, st, v0), m, problem.config, problem.duration,
                           rtol=problem.rtol, atol=problem.atol, adjoint=problem.adjoint)
    return generalisation_error(final, act), final


def _default_adjoint(K: int) -> diffrax.AbstractAdjoint:
    """Forward mode up to `FORWARD_MODE_MAX_K` units (cheap to compile; `K` tangents), reverse mode above (one
    backward pass through diffrax's checkpointed loop; at K = 20 it measured about 15x faster per step)."""
    return diffrax.ForwardMode() if K <= FORWARD_MODE_MAX_K else diffrax.RecursiveCheckpointAdjoint()


def _check_adjoint(adjoint, K: int) -> diffrax.AbstractAdjoint:
    if adjoint is None:
        return _default_adjoint(K)
    if not isinstance(adjoint, (diffrax.ForwardMode, diffrax.RecursiveCheckpointAdjoint, diffrax.BacksolveAdjoint)):
        raise ValueError("adjoint must be None, diffrax.ForwardMode(), diffrax.RecursiveCheckpointAdjoint(...) or "
                         f"diffrax.BacksolveAdjoint(...), got {adjoint!r}")
    return adjoint


class _TrainingLoss(eqx.Module):
    """The through-training problem: rows of relaxed masks, each with its prune-time reweighting code
    (`modes`); the final error after the ODE solve, differentiated in forward or reverse mode (`adjoint`)."""

    state: Overlaps
    config: SGDConfig
    duration: Float[Array, ""]
    rho: Float[Array, ""]
    k: Float[Array, ""]
    modes: Float[Array, " R"]
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True, default=1e-9)
    adjoint: diffrax.AbstractAdjoint = eqx.field(static=True, default=diffrax.ForwardMode())

    def one(self, m, mode, hyp):
        if isinstance(self.adjoint, diffrax.ForwardMode):
            err, final = _forward_mode(_training_final, m, (self, mode))
        else:  # reverse mode through the solve
            err, final = _training_final(m, (self, mode))
        return err + hyp["binarise"] * jnp.mean(m * (1 - m)), (err, final)

    def __call__(self, p, hyp):
        return jax.vmap(self.one, (0, 0, None))(p, self.modes, hyp)

    def project(self, p):
        return jax.vmap(lambda m: project_capped_simplex(m, self.k))(p)


def _training_problem(state, config, k, duration, *, rows, rho=10.0, rtol=1e-6, atol=1e-9,
                      adjoint=None) -> _TrainingLoss:
    dtype = state.Q.dtype
    return _TrainingLoss(state=state, config=config, duration=jnp.asarray(duration, dtype),
                         rho=jnp.asarray(rho, dtype), k=jnp.asarray(k, dtype),
                         modes=jnp.asarray(np.zeros(rows), dtype), rtol=float(rtol), atol=float(atol),
                         adjoint=_check_adjoint(adjoint, state.K))


def _evaluate_training(problem: _TrainingLoss, optimizer, masks, modes) -> tuple[np.ndarray, Overlaps]:
    """Exact final `eps_g` (and final states) of hard subsets (rows of `masks`, prune-time reweighting code per
    row), through the compiled design step itself (`R` rows per call, its update discarded), so that no second
    ODE program is compiled."""
    dtype = np.dtype(problem.state.Q.dtype)
    R = problem.modes.shape[0]
    masks = np.asarray(masks, dtype)
    modes = np.broadcast_to(np.asarray(modes, dtype), (masks.shape[0],))
    n = masks.shape[0]
    pad = (-n) % R
    if pad:
        masks = np.concatenate([masks, np.repeat(masks[-1:], pad, axis=0)])
        modes = np.concatenate([modes, np.repeat(modes[-1:], pad)])
    hyp = _hyper_arrays({"penalty": 0.0, "binarise": 0.0}, dtype)
    opt_state = optimizer.init(jnp.asarray(masks[:R]))
    errs, finals = [], []
    for s in range(0, masks.shape[0], R):
        prob = eqx.tree_at(lambda p: p.modes, problem, jnp.asarray(modes[s:s + R]))
        out = _design_step(prob, optimizer, prob.project, jnp.asarray(masks[s:s + R]), opt_state, hyp)
        err, final = out[4]
        errs.append(np.asarray(err))
        finals.append(jax.device_get(final))
    final = jax.tree.map(lambda *x: np.concatenate(x)[:n], *finals)
    return np.concatenate(errs)[:n], final


def design_through_training(
    state: Overlaps,
    config: SGDConfig,
    k: int,
    duration: float,
    *,
    reweight: AbstractReweight | str = "optimal",
    steps: int = 100,
    learning_rate: float = 0.05,
    restarts: int = 4,
    rho: float = 10.0,
    binarise: float = 0.05,
    polish: bool = True,
    key: PRNGKeyArray | None = None,
    rtol: float = 1e-6,
    exact_errors: Callable[[np.ndarray, str], np.ndarray] | None = None,
    candidates: Bool[ArrayLike, "E K"] | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
    progress: Callable[[int], None] | None = None,
) -> TrainingDesign:
    """Design the subset of `k` units kept at `alpha_p` (the time of `state`) so that the error after retraining
    for `duration` is minimal (docs/theory.md 4, 6.1 and 7): relaxed mask `m` (projected onto `sum m = k`),
    pruned start `v'(m)` as in [`design_node_mask`][], gradients through the ODE solve of [`retrain_pruned`][],
    rounding as in [`design_node_mask`][] (top `k` of each restart, then exact one-unit exchanges when
    `polish`).

    The candidates evaluated exactly are the rounded restarts, the restarts' starting subsets (so the result is
    never worse than where the optimiser started) and `candidates`, each with the restarts' reweighting(s); with
    `polish`, every distinct candidate is improved by exact one-unit exchanges (a local search; each subset is
    evaluated once) and the best result is kept; `origin` says which kind of candidate it came from,
    `evaluations` how many exact evaluations were used.

    **Arguments:**

    - `state`: the student's [`jaxprune.Overlaps`][] at prune time `alpha_p`.
    - `config`: the [`jaxprune.SGDConfig`][] of the retraining.
    - `k`: the number of units to keep, in `[1, K]`.
    - `duration`: the retraining time `alpha - alpha_p > 0`.
    - `reweight`: the second layer at prune time, `"none"` (`v'(m) = m v`) or `"optimal"` (the relaxed optimal
      reweighting), or `"best"`: `restarts` restarts of each run side by side (one compiled step) and the
      better hard result kept.
    - `steps`: optimisation steps, an integer `>= 1`.
    - `learning_rate`: the Adam learning rate, `> 0`.
    - `restarts`: restarts per reweighting, an integer `>= 1`.
    - `rho`: the ridge scale of the relaxed optimal reweighting.
    - `binarise`: the weight of the binarisation term `mean m (1 - m)`, ramped up over the second half.
    - `polish`: improve every distinct candidate by exact one-unit exchanges.
    - `key`: PRNG key of the random starts (default `jax.random.key(0)`).
    - `rtol`: the relative tolerance of the ODE solve.
    - `exact_errors`: `exact_errors(masks, reweight) -> errors`, replacing the exact evaluation of hard subsets
      (default: the ODE through the compiled design step itself, as [`retrain_subsets`][]), e.g. a lookup in a
      table of all subsets already computed.
    - `candidates`: extra subsets to evaluate and polish, `Bool[E, K]` (e.g. the best subset at prune time).
    - `adjoint`: `diffrax.ForwardMode()` (one tangent per unit), `diffrax.RecursiveCheckpointAdjoint()` (reverse
      mode) or `diffrax.BacksolveAdjoint()`; by default forward mode for `K <= FORWARD_MODE_MAX_K = 10` and
      reverse mode above.
    - `progress`: `progress(n)` called after every step ([`run_design`][]).

    **Returns:** a [`TrainingDesign`][].
    """
    K = state.K
    check_count(k, K)
    _check_steps(steps)
    _check_positive(learning_rate, "learning_rate")
    _check_positive(duration, "duration")
    if not (isinstance(reweight, str) and reweight == "best"):
        reweight = _reweight_name(reweight, ("none", "optimal"))
    _check_restarts(restarts)
    key = jax.random.key(0) if key is None else key
    dtype = state.Q.dtype
    kinds = ("none", "optimal") if reweight == "best" else (reweight,)
    problem = _training_problem(state, config, k, duration, rows=len(kinds) * restarts, rho=rho, rtol=rtol,
                                adjoint=adjoint)
    modes = np.repeat([_MODE_NONE if kd == "none" else _MODE_RELAXED for kd in kinds], restarts)
    problem = eqx.tree_at(lambda p: p.modes, problem, jnp.asarray(modes, dtype))
    m0 = np.asarray(_node_mask_init(state, key, problem.k, restarts=restarts, logit=False))
    m0 = np.concatenate([m0] * len(kinds), axis=0)
    hyper = _budget_hyper(Projection(), steps, binarise)
    optimizer = _adam(learning_rate)

    if exact_errors is None:
        def exact_errors(ms, rw):
            code = _MODE_NONE if rw == "none" else _MODE_EXACT
            return _evaluate_training(problem, optimizer, ms, code)[0]

    memo: dict = {}

    def exact(ms, kd):  # every subset evaluated at most once per reweighting (and counted)
        ms = np.asarray(ms, bool).reshape(-1, K)
        todo = [m for m in dict.fromkeys(map(tuple, ms)) if (kd, m) not in memo]
        if todo:
            for m, e in zip(todo, np.asarray(exact_errors(np.asarray(todo, bool), kd))):
                memo[(kd, m)] = float(e)
        return np.asarray([memo[(kd, tuple(m))] for m in ms])

    params, trace = run_design(problem, jnp.asarray(m0), optimizer=optimizer, steps=steps, hyper=hyper,
                               project=problem.project, progress=progress)
    params = np.asarray(params)
    relaxed = np.asarray(trace.final_aux[0])
    extra = np.zeros((0, K), bool) if candidates is None else np.asarray(candidates, bool).reshape(-1, K)
    best = None
    for j, kd in enumerate(kinds):
        rows = range(j * restarts, (j + 1) * restarts)
        cands = [(_top_mask_np(params[r], k), "optimised", r) for r in rows]
        cands += [(_top_mask_np(m0[r], k), "start", r) for r in rows]
        cands += [(m, f"candidate {i}", None) for i, m in enumerate(extra)]
        errs = exact(np.stack([c[0] for c in cands]), kd)
        seen = set()
        for i in np.argsort(errs, kind="stable"):  # every distinct candidate, best first, polished in turn
            mask, err = cands[i][0], float(errs[i])
            if tuple(mask) in seen:
                continue
            seen.add(tuple(mask))
            if polish:
                mask, err, _ = _swap_polish(lambda ms, kd=kd: exact(ms, kd), mask, K)
            if best is None or err < best[1]:
                best = (mask, err, kd, cands[i][1], cands[i][2])
            if not polish:
                break
    mask, err, kd, origin, r = best
    rel = relaxed[r] if r is not None else np.nan
    soft = params[r] if origin == "optimised" else (
        m0[r] if origin == "start" else extra[int(origin[10:])].astype(dtype))
    return TrainingDesign(mask=jnp.asarray(mask), error=jnp.asarray(err, dtype), relaxed_error=jnp.asarray(rel, dtype),
                          soft_mask=jnp.asarray(soft), trace=trace, reweight=kd, origin=origin, evaluations=len(memo))


@eqx.filter_jit
def training_subset_errors(
    state: Overlaps, config: SGDConfig, masks: Bool[Array, "C K"], duration: float, *,
    reweight: AbstractReweight | str = "optimal", rtol: float = 1e-6,
) -> Float[Array, " C"]:
    """Exact (ODE) `eps_g` after pruning to each subset (reweighting of docs/theory.md 6.1 at prune time) and
    retraining for `duration` with [`retrain_pruned`][], as one vmapped program (see [`retrain_subsets`][] for
    the same numbers through the design step, with the final states).

    **Arguments:**

    - `state`: the student's [`jaxprune.Overlaps`][] at prune time.
    - `config`: the [`jaxprune.SGDConfig`][] of the retraining.
    - `masks`: `C` unit subsets, `Bool[C, K]` (`True`: kept unit).
    - `duration`: the retraining time `> 0`.
    - `reweight`: the second layer at prune time, a rule of [`jaxprune.pruning.NODE_REWEIGHTS`][] or its object.
    - `rtol`: the relative tolerance of the ODE solve.

    **Returns:** the final errors, `Float[C]`.
    """
    act = config.activation
    reweight = _reweight_name(reweight)

    def one(mask):
        v0 = _masked_node_v(state, mask, reweight, act)
        final = retrain_pruned(eqx.tree_at(lambda s: s.v, state, v0), mask.astype(state.Q.dtype), config,
                               duration, rtol=rtol)
        return generalisation_error(final, act)

    return jax.vmap(one)(masks)



def retrain_subsets(
    state: Overlaps,
    config: SGDConfig,
    masks: Bool[ArrayLike, "..."],
    duration: float | int,
    *,
    reweight: AbstractReweight | str | Sequence[str] = "optimal",
    batch: int = 8,
    learning_rate: float = 0.05,
    rtol: float = 1e-6,
    adjoint: diffrax.AbstractAdjoint | None = None,
) -> tuple[Float[Array, " C"], Overlaps]:
    """Prune the student to each subset at the time of `state` (`alpha_p`), set its second layer by a
    reweighting rule of docs/theory.md 6.1, retrain it for `duration` with the ODEs of section 4
    ([`retrain_pruned`][]), and return its exact final error and final state.

    The same numbers as [`training_subset_errors`][] (to the ODE tolerance's rounding), computed by the
    compiled step of [`design_through_training`][] itself, `batch` subsets per call (the last call padded), so
    that a table of many subsets and the designs on the same state share one compiled program: a call with
    `batch = 2 restarts`, the same `learning_rate`, `rtol` and `adjoint` reuses the program of
    `design_through_training(..., reweight="best", restarts=restarts)` (any `k`), and the other way round.

    **Arguments:**

    - `state`: the student's [`jaxprune.Overlaps`][] at prune time.
    - `config`: the [`jaxprune.SGDConfig`][] of the retraining (its activation is the network's).
    - `masks`: `C` unit subsets, `Bool[C, K]` (`True`: kept unit); a row of all `True` retrains the unpruned
      student.
    - `duration`: the retraining time `alpha - alpha_p > 0`.
    - `reweight`: the second layer at prune time, `"none"` (`v` restricted to the subset) or `"optimal"` (the
      optimal reweighting of the kept units), or its [`jaxprune.pruning.AbstractReweight`][] object, for every
      row, or a list of `C` of them, one per row.
    - `batch`: subsets per call of the compiled step (an integer `>= 1`).
    - `learning_rate`: the Adam learning rate of the design whose program is shared (it changes no number
      here: the step's update is discarded).
    - `rtol`: the relative tolerance of the ODE solve.
    - `adjoint`: as in [`design_through_training`][] (only to share its program; no derivative is taken).

    **Returns:**

    `(errors, final)`: the final `eps_g` `Float[C]` and the final states, an [`jaxprune.Overlaps`][] whose
    leaves carry a leading axis `C`.
    """
    K = state.K
    masks = np.asarray(masks, bool)
    if masks.ndim != 2 or masks.shape[1] != K or masks.shape[0] == 0:
        raise ValueError(f"masks must have shape (C, K) with C >= 1 and K = {K}, got {masks.shape}")
    _check_positive(duration, "duration")
    _check_positive(learning_rate, "learning_rate")
    if isinstance(batch, bool) or not (isinstance(batch, (int, np.integer)) and batch >= 1):
        raise ValueError(f"batch must be an integer >= 1 (allowed range [1, inf)), got {batch!r}")
    names = list(reweight) if isinstance(reweight, (list, tuple)) else [reweight] * masks.shape[0]
    if len(names) != masks.shape[0]:
        raise ValueError(f"reweight must be one name or one per row of masks ({masks.shape[0]}), got {len(names)}")
    codes = [_MODE_NONE if _reweight_name(rw, ("none", "optimal")) == "none" else _MODE_EXACT for rw in names]
    problem = _training_problem(state, config, 1, duration, rows=int(batch), rtol=rtol, adjoint=adjoint)
    errors, final = _evaluate_training(problem, _adam(learning_rate), masks, np.asarray(codes))
    return jnp.asarray(errors), jax.tree.map(jnp.asarray, final)
