"""The optimiser loop shared by every design (docs/theory.md, section 7): one jitted step (loss, gradient, optax
update, projection) per iteration, the projection onto the budget `{0 <= m <= 1, sum m = B}`, the budget
handling (`Projection`, `Penalty`) and the small helpers every level uses.

Compilation is the dominant cost of a design at small sizes, so everything that varies between calls (the
network, the state, budgets, learning-rate schedules) travels as arrays: every problem is an `eqx.Module` whose
array fields are arguments of the one module-level jitted step, not constants folded into it. A second design of
the same shapes (another budget, another restart set, another `k`) reuses the compiled step.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Bool, Float

from ..pruning import top_k_mask

__all__ = ["DesignTrace", "run_design", "project_capped_simplex", "Projection", "Penalty"]


class DesignTrace(eqx.Module):
    """The record of one design run ([`run_design`][]).

    **Fields:**

    - `loss`: the loss per optimisation step, summed over restarts, `Float[steps]`.
    - `final_per_restart`: the loss of each restart at the final parameters, `Float[R]`.
    - `final_aux`: the loss function's auxiliary output at the final parameters (any pytree; e.g. the relaxed
      error of each restart).
    """

    loss: Float[Array, " steps"]
    final_per_restart: Float[Array, " R"]
    final_aux: Any = None


# --------------------------------------------------------------------------------------------------
# Argument checks (host level, one line each)
# --------------------------------------------------------------------------------------------------


def _check_positive(x, name):
    if isinstance(x, bool) or not (isinstance(x, (int, float, np.floating, np.integer)) and math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a finite number > 0 (allowed range (0, inf)), got {x!r}")


def _check_steps(steps):
    if isinstance(steps, bool) or not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"steps must be an integer >= 1 (allowed range [1, inf)), got {steps!r}")


def _check_restarts(restarts):
    if isinstance(restarts, bool) or not (isinstance(restarts, (int, np.integer)) and restarts >= 1):
        raise ValueError(f"restarts must be an integer >= 1 (allowed range [1, inf)), got {restarts!r}")


def _check_keep(keep, name="keep"):
    if isinstance(keep, bool) or not (isinstance(keep, (int, float, np.floating)) and 0.0 < keep <= 1.0):
        raise ValueError(f"{name} must be a fraction in (0, 1], got {keep!r}")


# --------------------------------------------------------------------------------------------------
# Budgets: projection onto the capped simplex, or a scheduled penalty
# --------------------------------------------------------------------------------------------------


class Projection(eqx.Module):
    """Budget by projection: the relaxed mask `m` is projected onto `{0 <= m <= 1, sum m = B}` after every
    step (inside the jitted step; [`project_capped_simplex`][]). No arguments: `Projection()`."""

    name = "projection"


class Penalty(eqx.Module):
    """Budget by a penalty `lambda_t relu(mean m - p)^2` on `m = sigmoid(theta)` (`p` the keep fraction), with
    `lambda_t` geometric from `start` to `end` over the run (linear when one of them is 0).

    **Arguments:**

    - `start`: the penalty weight at the first step, a finite number `>= 0`.
    - `end`: the penalty weight at the last step, a finite number `>= 0`.
    """

    start: float = 1.0
    end: float = 1e3
    name = "penalty"

    def __check_init__(self):
        for nm, x in (("start", self.start), ("end", self.end)):
            if isinstance(x, bool) or not (isinstance(x, (int, float, np.floating)) and math.isfinite(x) and x >= 0):
                raise ValueError(f"Penalty.{nm} must be a finite number >= 0 (allowed range [0, inf)), got {x!r}")


def _as_budget(budget, penalty=(1.0, 1e3)) -> Projection | Penalty:
    """`budget` as a budget object; the strings `"projection"` and `"penalty"` (with the schedule `penalty`) are
    accepted for compatibility."""
    if isinstance(budget, (Projection, Penalty)):
        return budget
    if budget == "projection":
        return Projection()
    if budget == "penalty":
        return Penalty(float(penalty[0]), float(penalty[1]))
    raise ValueError(f"budget must be Projection(), Penalty(...), 'projection' or 'penalty', got {budget!r}")


def _schedule(start: float, end: float, steps: int, t: int) -> float:
    """Geometric interpolation `start (end/start)^(t/(steps-1))` (linear when one end is 0)."""
    frac = t / max(steps - 1, 1)
    if start > 0 and end > 0:
        return start * (end / start) ** frac
    return start + (end - start) * frac


def _budget_hyper(budget: Projection | Penalty, steps: int, binarise: float):
    """The scheduled scalars of step `t`: the penalty weight (0 under projection) and the binarisation weight
    (zero in the first half of the run, then ramping up linearly to `binarise`)."""
    start, end = (budget.start, budget.end) if isinstance(budget, Penalty) else (0.0, 0.0)

    def hyper(t):
        frac = max(0.0, (t / max(steps - 1, 1) - 0.5) * 2.0)
        return {"penalty": _schedule(start, end, steps, t), "binarise": binarise * frac}

    return hyper


def _logit(m):
    mc = jnp.clip(m, 1e-3, 1 - 1e-3)
    return jnp.log(mc) - jnp.log1p(-mc)


@eqx.filter_jit
def project_capped_simplex(y: Float[Array, "..."], total: Float[ArrayLike, ""], *, iters: int = 80) -> Array:
    """Euclidean projection onto the capped simplex `{0 <= m <= 1, sum m = total}`: `clip(y - tau, 0, 1)`, the
    shift `tau` found by bisection (the budget step of every design, docs/theory.md 7).

    **Arguments:**

    - `y`: the point to project, any shape (the sum runs over all entries).
    - `total`: the budget `B`, a scalar in `[0, y.size]`.
    - `iters`: bisection steps (static); 80 halve the initial bracket to float64 resolution.

    **Returns:** the projection, the shape of `y`.
    """
    y = jnp.asarray(y)
    lo = jnp.min(y) - 1.0
    hi = jnp.max(y)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        over = jnp.sum(jnp.clip(y - mid, 0.0, 1.0)) > total
        return jnp.where(over, mid, lo), jnp.where(over, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
    return jnp.clip(y - 0.5 * (lo + hi), 0.0, 1.0)


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _adam(learning_rate: float) -> optax.GradientTransformation:
    """One `optax.adam` per learning rate: the compiled step is cached on the optimizer's identity."""
    return optax.adam(learning_rate)


def _hyper_arrays(values: dict[str, float], dtype) -> dict[str, Array]:
    return {k: jnp.asarray(v, dtype=dtype) for k, v in values.items()}


@eqx.filter_jit
def _design_step(loss_fn, optimizer, project, params, opt_state, hyp):
    """Loss, gradient, optax update and projection. `loss_fn`, `optimizer` and `project` are static where they
    are plain callables and traced where they are modules (their arrays are arguments, not constants)."""

    def total(p):
        per, aux = loss_fn(p, hyp)
        return jnp.sum(per), (per, aux)

    (loss, (per, aux)), grads = jax.value_and_grad(total, has_aux=True)(params)
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int32 counts and floats
        updates, opt_state = optimizer.update(grads, opt_state, params)
    new = optax.apply_updates(params, updates)
    if project is not None:
        new = project(new)
    return new, opt_state, loss, per, aux


def run_design(
    loss_fn: Callable[[Any, dict], tuple[Float[Array, " R"], Any]],
    params: Any,
    *,
    optimizer: optax.GradientTransformation,
    steps: int,
    hyper: Callable[[int], dict[str, float]] = lambda t: {},
    project: Callable[[Any], Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Any, DesignTrace]:
    """Minimise `sum_r loss_fn(params, hyper_t)[r]` with `optimizer`, one jitted step (loss, gradient, optax
    update, projection) per iteration: the loop every design of docs/theory.md 7 runs.

    **Arguments:**

    - `loss_fn`: `loss_fn(params, hyper) -> (per_restart_losses Float[R], aux)`; a plain callable (static) or an
      `eqx.Module` (its arrays traced).
    - `params`: the initial parameters, a pytree (restarts along a leading axis).
    - `optimizer`: an `optax.GradientTransformation`.
    - `steps`: the number of steps, an integer `>= 1`.
    - `hyper`: `hyper(t)`, the scheduled scalars of step `t` (a dict of floats, passed as arrays: no
      recompilation).
    - `project`: applied to the parameters after every update (inside the jitted step), or `None`.
    - `progress`: `progress(n)` called once per step, once the step's result is ready (so that it also times
      the steps), or `None`.

    The step is one module-level compiled function, cached on `(loss_fn, optimizer, project)` and the shapes:
    pass the same objects (or `eqx.Module`s of the same structure) to reuse it across calls.

    **Returns:** `(params, DesignTrace)`; the trace's `final_per_restart` and `final_aux` come from one more
    call of the same compiled step at the final parameters (its update discarded; no second program).
    """
    _check_steps(steps)
    dtype = jax.tree.leaves(params)[0].dtype
    opt_state = optimizer.init(params)
    losses = []
    for t in range(steps):
        params, opt_state, loss, _, _ = _design_step(loss_fn, optimizer, project, params, opt_state,
                                                     _hyper_arrays(hyper(t), dtype))
        losses.append(loss)
        if progress is not None:  # a progress report means the step is done (no async run-ahead)
            jax.block_until_ready(loss)
            progress(1)
    _, _, _, final, aux = _design_step(loss_fn, optimizer, project, params, opt_state,
                                       _hyper_arrays(hyper(steps - 1), dtype))
    loss = jnp.asarray(np.asarray(jax.device_get(losses), dtype=np.dtype(dtype)))
    return params, DesignTrace(loss=loss, final_per_restart=final, final_aux=aux)


# --------------------------------------------------------------------------------------------------
# Small shared helpers
# --------------------------------------------------------------------------------------------------


def _draw(sampler, key, shape, dtype):
    """`sampler(key, shape, dtype)` drawn as a flat vector and reshaped: the same numbers (threefry counts
    elements in row-major order, partitionable or not), but a far cheaper program to compile (XLA on CPU
    takes ~10x longer, seconds, for a multi-dimensional threefry draw)."""
    return sampler(key, (math.prod(shape),), dtype).reshape(shape)


def _top_mask(scores: Float[Array, "..."], count: Any) -> Bool[Array, "..."]:
    """The `count` largest entries of `scores` over all its axes ([`jaxprune.pruning.top_k_mask`][] of the
    flattened scores; ties to the lower position; `count` may be traced)."""
    count = jnp.asarray(count).astype(jnp.int_)  # the rank dtype (a float budget is an exact integer)
    return top_k_mask(jnp.reshape(scores, (-1,)), count).reshape(jnp.shape(scores))


def _top_mask_np(scores, count: int) -> np.ndarray:
    """[`_top_mask`][] as a NumPy array (host callers)."""
    return np.asarray(_top_mask(jnp.asarray(scores), int(count)))
