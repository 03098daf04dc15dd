"""Pruning designed by gradient descent on the theoretical generalisation error (docs/theory.md section 7).

Three levels, one optimiser loop:

- **network**: a relaxed mask `m in [0,1]` on the `K x N` first-layer weights of a concrete student (or on its
  `K` units); the masked network's overlaps are exact dot products, so `eps_g(m)` is exact at any `N`.
  Budget by projection onto `{0 <= m <= 1, sum m = B}` after every step, or by a scheduled penalty
  `lambda_t relu(mean m - p)^2`; an optional scheduled binarisation term `beta_t mean m (1 - m)`; rounded to
  the `B` largest entries at the end and evaluated exactly (with the best per-unit rescale `c_i`).
- **population**: a per-coordinate keep rule `pi_i(z) = sigmoid(a_i + tau_i + s_i log z^2)`,
  `z = w_ij / sqrt(Q_ii)`, under the Gaussian-equivalent model of docs/theory.md 6.2 (`s = 0`: random, `s = 1`:
  the large-N limit of the DPP edge rule, `s -> inf`: magnitude); and subset distributions over units
  (k-DPP with quality weights, `L = diag(q) L0 diag(q)`, or conditional Bernoulli) whose exact expected
  error `sum_S P_theta(S) eps(S)` is differentiated by enumeration.
- **training**: prune at `alpha_p` with a relaxed unit mask, keep training with the ODEs (second-layer
  updates gated by the mask, so that pruned units stay pruned), and differentiate the final error through the
  diffrax solve.

Every optimisation runs one jitted step (loss, gradient, optax update, projection) per iteration; the Python
loop only calls it. Several restarts run side by side along a leading axis (their losses are summed, which
leaves each restart's gradient its own).

References: Acharyya et al., UAI 2021 (arXiv 2006.16617); docs/theory.md sections 6 and 7.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from .._activations import AbstractActivation, Erf, Linear, get_activation
from ..pruning._dpp import _enumerate_probs, _subset_indices, enumerate_subsets
from .._dynamics import SGDConfig, vector_field
from .._error import activation_covariance, generalisation_error
from .._overlaps import Overlaps

__all__ = [
    "DesignTrace",
    "run_design",
    "project_capped_simplex",
    "optimal_second_layer",
    "masked_network_overlaps",
    "masked_network_error",
    "NetworkDesign",
    "design_edge_mask",
    "NodeDesign",
    "design_node_mask",
    "node_subset_errors",
    "EdgeRule",
    "edge_rule_moments",
    "conditional_kernels",
    "edge_rule_state",
    "RuleDesign",
    "design_edge_rule",
    "sample_edge_rule_mask",
    "SubsetDesign",
    "design_subset_distribution",
    "subset_log_probs",
    "retrain_pruned",
    "TrainingDesign",
    "design_through_training",
]

_BUDGETS = ("projection", "penalty")


# --------------------------------------------------------------------------------------------------
# The optimiser loop
# --------------------------------------------------------------------------------------------------
#
# Compilation is the dominant cost of a design at small sizes, so everything that varies between calls
# (the network, the state, budgets, learning-rate schedules) travels as arrays: every problem is an
# `eqx.Module` whose array fields are arguments of the one module-level jitted step, not constants folded
# into it. A second design of the same shapes (another budget, another restart set, another `k`) reuses the
# compiled step; so do the exact evaluations that run through it (`_evaluate_training`).


class DesignTrace(eqx.Module):
    """The loss per optimisation step (`Float[steps]`, summed over restarts), the per-restart loss at the end,
    and `final_aux`, the loss function's auxiliary output at the final parameters."""

    loss: Float[Array, " steps"]
    final_per_restart: Float[Array, " R"]
    final_aux: Any = None


def _check_positive(x, name):
    if not (isinstance(x, (int, float, np.floating, np.integer)) and math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a finite number > 0 (allowed range (0, inf)), got {x!r}")


def _check_steps(steps):
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")


def _schedule(start: float, end: float, steps: int, t: int) -> float:
    """Geometric interpolation `start (end/start)^(t/(steps-1))` (linear when one end is 0)."""
    frac = t / max(steps - 1, 1)
    if start > 0 and end > 0:
        return start * (end / start) ** frac
    return start + (end - start) * frac


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
    """Minimise `sum_r loss_fn(params, hyper_t)[r]` with `optimizer`, one jitted step per iteration.

    **Arguments:** `loss_fn(params, hyper) -> (per_restart_losses, aux)`; `params` a pytree (restarts along a
    leading axis); `hyper(t)` the scheduled scalars of step `t` (passed as arrays: no recompilation);
    `project` applied after every update (inside the jitted step); `progress(n)` called once per step.
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
        if progress is not None:
            progress(1)
    _, _, _, final, aux = _design_step(loss_fn, optimizer, project, params, opt_state,
                                       _hyper_arrays(hyper(steps - 1), dtype))
    loss = jnp.asarray(np.asarray(jax.device_get(losses), dtype=np.dtype(dtype)))
    return params, DesignTrace(loss=loss, final_per_restart=final, final_aux=aux)


@eqx.filter_jit
def project_capped_simplex(y: Float[Array, "..."], total: Float[ArrayLike, ""], *, iters: int = 80) -> Array:
    """Euclidean projection onto `{0 <= m <= 1, sum m = total}`: `clip(y - tau, 0, 1)`, `tau` by bisection."""
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


def _draw(sampler, key, shape, dtype):
    """`sampler(key, shape, dtype)` drawn as a flat vector and reshaped: the same numbers (threefry counts
    elements in row-major order, partitionable or not), but a far cheaper program to compile (XLA on CPU
    takes ~10x longer, seconds, for a multi-dimensional threefry draw)."""
    return sampler(key, (math.prod(shape),), dtype).reshape(shape)


def _top_mask(scores: Float[Array, "..."], count: Any) -> Bool[Array, "..."]:
    """A boolean mask of the `count` largest entries of `scores` (ties broken by position); `count` may be
    traced (the mask is `rank < count`)."""
    flat = scores.reshape(-1)
    order = jnp.argsort(-flat, stable=True)
    rank = jnp.zeros(flat.shape, order.dtype).at[order].set(jnp.arange(flat.size, dtype=order.dtype))
    return (rank < count).reshape(scores.shape)


def _top_mask_np(scores: np.ndarray, count: int) -> np.ndarray:
    """[`_top_mask`][] on the host."""
    flat = np.asarray(scores).reshape(-1)
    out = np.zeros(flat.shape, bool)
    out[np.argsort(-flat, kind="stable")[:count]] = True
    return out.reshape(np.shape(scores))


# --------------------------------------------------------------------------------------------------
# Shared pieces: optimal second layer, masked overlaps
# --------------------------------------------------------------------------------------------------


def optimal_second_layer(
    state: Overlaps, activation: AbstractActivation = Erf(), *, ridge: Float[ArrayLike, " K"] | float = 0.0
) -> Float[Array, " K"]:
    """`v = (A + diag(ridge) + 1e-10 tr(A)/K)^{-1} B v*` (`A = I2` among students, `B = I2` student-teacher): the
    second layer minimising `eps_g + 1/2 sum_i ridge_i v_i^2` for the given first layer (docs/theory.md 6.1)."""
    K = state.K
    I = activation_covariance(state, activation)
    A, B = I[:K, :K], I[:K, K:]
    A = A + jnp.diag(jnp.broadcast_to(jnp.asarray(ridge, A.dtype), (K,))) + 1e-10 * jnp.trace(A) / K * jnp.eye(K, dtype=A.dtype)
    return jnp.linalg.solve(A, B @ state.v_star)


def masked_network_overlaps(
    w: Float[Array, "K N"],
    w_star: Float[Array, "M N"],
    v: Float[Array, " K"],
    v_star: Float[Array, " M"],
    mask: Float[Array, "K N"],
    scale: Float[Array, " K"] | None = None,
    *,
    bernoulli: bool = False,
) -> Overlaps:
    """Overlaps of `w'_i = c_i (m_i * w_i)` (docs/theory.md 6.2), exact for the concrete network and a 0/1 mask.

    With `bernoulli=True`, `m` holds keep probabilities of independent Bernoulli masks and the result is the
    mean overlaps `Q'_ik = c_i c_k [sum_j p_ij p_kj w_ij w_kj + delta_ik sum_j p_ij (1 - p_ij) w_ij^2] / N`,
    `R' = c (p * w) w*^T / N`; every random mask drawn from `p` has these overlaps up to `O(N^-1/2)`, so the
    relaxed error is achievable, and at a 0/1 mask it is the exact error.
    """
    n = w.shape[-1]
    wp = mask * w
    Q = wp @ wp.T / n
    if bernoulli:
        Q = Q + jnp.diag(jnp.sum(mask * (1.0 - mask) * w * w, axis=1) / n)
    R = wp @ w_star.T / n
    if scale is not None:
        Q = scale[:, None] * scale[None, :] * Q
        R = scale[:, None] * R
    return Overlaps(Q=Q, R=R, T=w_star @ w_star.T / n, v=v, v_star=v_star)


def _polish_rescale(state_fn, K, dtype, refit, activation, steps=300, lr=0.05, start=None):
    """Minimise `eps_g` over per-unit log-scales (and the second layer, closed form, when `refit`)."""

    def loss(logc):
        st = state_fn(jnp.exp(logc))
        if refit:
            st = eqx.tree_at(lambda s: s.v, st, optimal_second_layer(st, activation))
        return generalisation_error(st, activation)

    opt = optax.adam(lr)
    logc0 = jnp.zeros(K, dtype)
    if start is not None:  # the better of c = 1 and c = start
        ls = jnp.log(start)
        logc0 = jnp.where(loss(ls) < loss(logc0), ls, logc0)

    def body(carry, _):
        logc, s = carry
        val, g = jax.value_and_grad(loss)(logc)
        u, s = opt.update(g, s, logc)
        return (optax.apply_updates(logc, u), s), val

    (logc, _), _ = jax.lax.scan(body, (logc0, opt.init(logc0)), None, length=steps)
    # never worse than the start
    better = loss(logc) < loss(logc0)
    logc = jnp.where(better, logc, logc0)
    c = jnp.exp(logc)
    st = state_fn(c)
    if refit:
        st = eqx.tree_at(lambda s: s.v, st, optimal_second_layer(st, activation))
    return generalisation_error(st, activation), c, st.v


@eqx.filter_jit
def masked_network_error(
    w: Float[Array, "K N"],
    w_star: Float[Array, "M N"],
    v: Float[Array, " K"],
    v_star: Float[Array, " M"],
    mask: Bool[Array, "K N"],
    *,
    rescale: Literal["none", "inverse-keep", "optimal"] = "optimal",
    refit: bool = False,
    activation: AbstractActivation = Erf(),
) -> tuple[Float[Array, ""], Float[Array, " K"], Float[Array, " K"]]:
    """Exact `eps_g` of the concrete network `w'_i = c_i (m_i * w_i)`, with `c = 1`, `c_i = 1/keep_i`, or the
    per-unit `c` minimising `eps_g` (Adam on `log c`, never worse than `c = 1`); `refit` also sets the second
    layer to its optimum (the optimal rescale starts from the better of `c = 1` and `c = 1/keep` and is never
    worse than it). **Returns:** `(eps_g, c, v')`."""
    m = mask.astype(w.dtype)
    K = w.shape[0]

    def state_fn(c):
        return masked_network_overlaps(w, w_star, v, v_star, m, c)

    if rescale == "optimal":
        inv = 1.0 / jnp.maximum(jnp.mean(m, axis=1), 1.0 / w.shape[1])
        return _polish_rescale(state_fn, K, w.dtype, refit, activation, start=inv)
    if rescale == "inverse-keep":
        c = 1.0 / jnp.maximum(jnp.mean(m, axis=1), 1.0 / w.shape[1])
    elif rescale == "none":
        c = jnp.ones(K, w.dtype)
    else:
        raise ValueError(f"rescale must be 'none', 'inverse-keep' or 'optimal', got {rescale!r}")
    st = state_fn(c)
    if refit:
        st = eqx.tree_at(lambda s: s.v, st, optimal_second_layer(st, activation))
    return generalisation_error(st, activation), c, st.v


# --------------------------------------------------------------------------------------------------
# Level 1a: edge mask of a concrete network
# --------------------------------------------------------------------------------------------------


class NetworkDesign(eqx.Module):
    """A designed hard mask with exactly the budget and its exact error.

    **Fields:** `mask` (`Bool[K, N]` for edges, `Bool[K]` for units), `scale` (per-unit rescale `c`), `v` (the
    second layer after pruning), `error` (exact `eps_g` of the hard-masked network), `relaxed_error`
    (`eps_g` of the soft mask at the end), `soft_mask`, `trace` ([`DesignTrace`][]).
    """

    mask: Bool[Array, "..."]
    scale: Float[Array, " K"]
    v: Float[Array, " K"]
    error: Float[Array, ""]
    relaxed_error: Float[Array, ""]
    soft_mask: Float[Array, "..."]
    trace: DesignTrace


def _check_keep(keep, name="keep"):
    if not (isinstance(keep, (int, float, np.floating)) and 0.0 < keep <= 1.0):
        raise ValueError(f"{name} must be a fraction in (0, 1], got {keep!r}")


def _budget_hyper(budget, steps, penalty, binarise):
    if budget not in _BUDGETS:
        raise ValueError(f"budget must be one of {_BUDGETS}, got {budget!r}")

    def hyper(t):
        # binarisation only in the second half of the run, ramping up linearly
        frac = max(0.0, (t / max(steps - 1, 1) - 0.5) * 2.0)
        return {"penalty": _schedule(penalty[0], penalty[1], steps, t), "binarise": binarise * frac}

    return hyper


def _logit(m):
    mc = jnp.clip(m, 1e-3, 1 - 1e-3)
    return jnp.log(mc) - jnp.log1p(-mc)


class _EdgeMaskLoss(eqx.Module):
    """The relaxed edge-mask problem of [`design_edge_mask`][] (arrays traced, options static)."""

    w: Float[Array, "K N"]
    w_star: Float[Array, "M N"]
    v: Float[Array, " K"]
    v_star: Float[Array, " M"]
    B: Float[Array, ""]
    activation: AbstractActivation = eqx.field(static=True)
    budget: str = eqx.field(static=True)
    rescale: bool = eqx.field(static=True)
    refit: bool = eqx.field(static=True)

    def mask(self, theta):
        return theta if self.budget == "projection" else jax.nn.sigmoid(theta)

    def one(self, theta, logc, hyp):
        K, N = self.w.shape
        m = self.mask(theta)
        c = jnp.exp(logc) if self.rescale else None
        st = masked_network_overlaps(self.w, self.w_star, self.v, self.v_star, m, c, bernoulli=True)
        if self.refit:
            st = eqx.tree_at(lambda s: s.v, st, optimal_second_layer(st, self.activation))
        err = generalisation_error(st, self.activation)
        pen = hyp["penalty"] * jnp.square(jax.nn.relu(jnp.mean(m) - self.B / (K * N))) \
            if self.budget == "penalty" else 0.0
        return err + pen + hyp["binarise"] * jnp.mean(m * (1.0 - m)), err

    def __call__(self, p, hyp):
        return jax.vmap(self.one, (0, 0, None))(p["theta"], p["logc"], hyp)

    def project(self, p):
        return {**p, "theta": jax.vmap(lambda m: project_capped_simplex(m, self.B))(p["theta"])}


@functools.partial(jax.jit, static_argnames=("restarts", "logit"))
def _edge_mask_init(w, key, B, keep, *, restarts, logit):
    """Initial soft masks: magnitude scores (restart 0) and `keep` plus noise, projected onto the budget."""
    K, N = w.shape
    score = jnp.abs(w) / jnp.sqrt(jnp.mean(w * w, axis=1, keepdims=True))
    mag0 = project_capped_simplex(0.5 * score, B)
    noise = 0.1 * _draw(jax.random.normal, key, (restarts, K, N), w.dtype)
    m0 = jnp.concatenate([mag0[None], jnp.clip(keep + noise[1:], 0.0, 1.0)], axis=0)
    m0 = jax.vmap(lambda m: project_capped_simplex(m, B))(m0)
    return _logit(m0) if logit else m0


@eqx.filter_jit
def _edge_candidates(problem: _EdgeMaskLoss, theta, key, roundings: int):
    """Rounding candidates of every restart: its top `B`, and `roundings` Gumbel-top-`B` draws on the log-odds
    (candidate `j` rounds restart `j mod R`); and the restarts' soft masks."""
    K, N = problem.w.shape
    soft = jax.vmap(problem.mask)(theta)
    pc = jnp.clip(soft, 1e-12, 1 - 1e-12)
    logit = jnp.log(pc) - jnp.log1p(-pc)
    gumbel = _draw(jax.random.gumbel, jax.random.fold_in(key, 1), (roundings,) + soft.shape, problem.w.dtype)
    cand = jnp.concatenate([soft, (logit[None] + gumbel).reshape((-1, K, N))], axis=0)
    return jax.vmap(lambda m: _top_mask(m, problem.B))(cand), soft


@eqx.filter_jit
def _refit_errors(problem: _EdgeMaskLoss, masks):
    """Exact error of every candidate with the optimal rescale and second layer (`refit`)."""
    return jax.vmap(lambda mk: masked_network_error(problem.w, problem.w_star, problem.v, problem.v_star, mk,
                                                    rescale="optimal", refit=True,
                                                    activation=problem.activation))(masks)


def design_edge_mask(
    w: Float[ArrayLike, "K N"],
    w_star: Float[ArrayLike, "M N"],
    v: Float[ArrayLike, " K"],
    v_star: Float[ArrayLike, " M"],
    keep: float,
    *,
    budget: Literal["projection", "penalty"] = "projection",
    rescale: bool = True,
    refit: bool = False,
    steps: int = 400,
    learning_rate: float = 0.05,
    restarts: int = 4,
    roundings: int = 8,
    penalty: tuple[float, float] = (1.0, 1e3),
    binarise: float = 0.05,
    key: PRNGKeyArray | None = None,
    activation: AbstractActivation | str = Erf(),
    progress: Callable[[int], None] | None = None,
) -> NetworkDesign:
    """Design an edge mask keeping `B = round(keep K N)` first-layer weights by minimising the exact error.

    Relaxed loss `eps_g(Q', R', v') + lambda_t relu(mean m - keep)^2 + beta_t mean m(1-m)` with the mean
    overlaps of independent Bernoulli(`m`) masks on `w'_i = c_i (m_i * w_i)` (see [`masked_network_overlaps`][];
    a plain `m * w` would let fractional masks rescale single weights, an error no 0/1 mask attains) (`c = exp(log c)` learned when `rescale`; `v'` the optimal second layer when
    `refit`). `budget="projection"`: `m` is projected onto `{0 <= m <= 1, sum m = B}` after each step;
    `"penalty"`: `m = sigmoid(theta)` with the geometric schedule `penalty = (lambda_0, lambda_end)`.
    Restart 0 starts from the magnitude scores, the others from `keep` plus noise. Each restart's soft mask is
    rounded to its `B` largest entries and to `roundings` conditional-Bernoulli draws; every candidate is
    evaluated exactly with the best per-unit rescale (the Newton solve of
    [`jaxprune._edge.optimal_edge_rescale`][], as for every baseline in [`compare_network`][]; with `refit`,
    [`masked_network_error`][] with the optimal second layer) and the best is returned. The compiled programs
    (start, step, rounding, per-mask evaluation) are shared by every call with the same shapes and options
    (any `keep`, any network of the same size).
    """
    activation = get_activation(activation)
    w, w_star = jnp.asarray(w), jnp.asarray(w_star)
    v, v_star = jnp.asarray(v, w.dtype), jnp.asarray(v_star, w.dtype)
    K, N = w.shape
    _check_keep(keep)
    _check_steps(steps)
    _check_positive(learning_rate, "learning_rate")
    if not (isinstance(restarts, int) and restarts >= 1):
        raise ValueError(f"restarts must be an integer >= 1, got {restarts!r}")
    B = int(round(keep * K * N))
    if not 1 <= B <= K * N:
        raise ValueError(f"keep={keep} leaves {B} weights; need 1 <= keep K N <= K N = {K * N}")
    key = jax.random.key(0) if key is None else key
    hyper = _budget_hyper(budget, steps, penalty, binarise)
    B_arr = jnp.asarray(B, w.dtype)
    theta0 = _edge_mask_init(w, key, B_arr, jnp.asarray(keep, w.dtype), restarts=restarts,
                             logit=budget != "projection")
    problem = _EdgeMaskLoss(w=w, w_star=w_star, v=v, v_star=v_star, B=B_arr, activation=activation,
                            budget=budget, rescale=bool(rescale), refit=bool(refit))
    params = {"theta": theta0, "logc": jnp.zeros((restarts, K), w.dtype)}
    params, trace = run_design(
        problem, params, optimizer=_adam(learning_rate), steps=steps, hyper=hyper,
        project=problem.project if budget == "projection" else None, progress=progress,
    )
    relaxed = np.asarray(trace.final_aux)  # the relaxed error of every restart at its final soft mask
    masks, soft = _edge_candidates(problem, params["theta"], key, int(roundings))
    masks = np.asarray(masks)
    if refit:
        errs, cs, vs = (np.asarray(x) for x in _refit_errors(problem, jnp.asarray(masks)))
    else:  # the same exact evaluation (and optimal rescale) as every baseline of `compare_network`
        ctx = _EdgeContext.of(w, w_star, v, v_star, activation)
        errs, cs = ctx.errors(masks, "optimal" if rescale else "none")
        vs = np.broadcast_to(np.asarray(v), (masks.shape[0], K))
    best = int(np.argmin(errs))
    r = best % restarts
    return NetworkDesign(mask=jnp.asarray(masks[best]), scale=jnp.asarray(cs[best]), v=jnp.asarray(vs[best]),
                         error=jnp.asarray(errs[best]), relaxed_error=jnp.asarray(relaxed[r]),
                         soft_mask=jnp.asarray(np.asarray(soft)[r]), trace=trace)


# --------------------------------------------------------------------------------------------------
# Level 1b: node (unit) mask
# --------------------------------------------------------------------------------------------------


_NODE_REWEIGHTS = ("none", "preactivation", "activation", "optimal")


def _masked_node_v(state: Overlaps, mask: Bool[Array, " K"], reweight: str, activation) -> Float[Array, " K"]:
    """Second layer of the student restricted to `S = {mask}` (zero outside S) for a reweighting rule of 6.1."""
    K = state.K
    mm = mask[:, None] & mask[None, :]
    eye = jnp.eye(K, dtype=state.Q.dtype)
    if reweight == "none":
        return jnp.where(mask, state.v, 0.0)
    if reweight in ("optimal", "activation"):
        I = activation_covariance(state, activation)
        A, Bm = I[:K, :K], I[:K, K:]
    if reweight == "optimal":
        rhs = jnp.where(mask, Bm @ state.v_star, 0.0)
        return jnp.linalg.solve(jnp.where(mm, A, eye) + 1e-12 * eye, rhs)
    G = state.Q if reweight == "preactivation" else A
    if reweight not in ("preactivation", "activation"):
        raise ValueError(f"reweight must be 'none', 'preactivation', 'activation' or 'optimal', got {reweight!r}")
    # v_S + G_SS^{-1} G_{S,Sc} v_Sc
    rhs = jnp.where(mask, G @ jnp.where(mask, 0.0, state.v), 0.0)
    ridge = 1e-10 * jnp.trace(G) / K
    delta = jnp.linalg.solve(jnp.where(mm, G, eye) + ridge * eye, rhs)
    return jnp.where(mask, state.v + delta, 0.0)


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
    reweight: Literal["none", "preactivation", "activation", "optimal"] = "optimal",
    activation: AbstractActivation | str = Erf(),
) -> Float[Array, " C"]:
    """Exact `eps_g` of the student pruned to each subset (rows of `masks`) with a reweighting rule of
    docs/theory.md 6.1 (pruned units get `v = 0`, which equals removing them). One compiled program per
    `(K, C, reweight)`."""
    activation = get_activation(activation)
    if reweight not in _NODE_REWEIGHTS:
        raise ValueError(f"reweight must be 'none', 'preactivation', 'activation' or 'optimal', got {reweight!r}")
    return _node_eval(state, jnp.asarray(masks, bool), reweight, activation)[0]


class NodeDesign(eqx.Module):
    """A designed unit subset: `mask: Bool[K]`, `v` (second layer, zero outside the subset), `error` (exact),
    `relaxed_error`, `soft_mask`, `trace`."""

    mask: Bool[Array, " K"]
    v: Float[Array, " K"]
    error: Float[Array, ""]
    relaxed_error: Float[Array, ""]
    soft_mask: Float[Array, " K"]
    trace: DesignTrace


def _check_k(k, K):
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= K):
        raise ValueError(f"k must be an integer in [1, K={K}], got {k!r}")


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
    budget: str = eqx.field(static=True)
    activation: AbstractActivation = eqx.field(static=True)

    def mask(self, theta):
        return theta if self.budget == "projection" else jax.nn.sigmoid(theta)

    def one(self, theta, hyp):
        m = self.mask(theta)
        st = eqx.tree_at(lambda s: s.v, self.state,
                         _relaxed_node_v(self.state, m, self.reweight, self.rho, self.activation))
        err = generalisation_error(st, self.activation)
        pen = hyp["penalty"] * jnp.square(jax.nn.relu(jnp.sum(m) - self.k)) if self.budget == "penalty" else 0.0
        return err + pen + hyp["binarise"] * jnp.mean(m * (1 - m)), err

    def __call__(self, p, hyp):
        return jax.vmap(self.one, (0, None))(p, hyp)

    def project(self, p):
        return jax.vmap(lambda m: project_capped_simplex(m, self.k))(p)


def _importance_start(state, key, k, restarts):
    """Restart 0 from the importance scores `|v_i| sqrt(Q_ii)`, the others uniform; projected onto `sum m = k`."""
    K = state.K
    imp = jnp.abs(state.v) * jnp.sqrt(jnp.diag(state.Q))
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
    reweight: Literal["none", "optimal"] = "optimal",
    budget: Literal["projection", "penalty"] = "projection",
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
    """Design a subset of `k` units by gradient descent on the relaxed exact error (`v'(m) = m v` for
    `reweight="none"`; for `"optimal"` the ridge relaxation `v'(m) = (A + rho diag(1/m - 1))^{-1} B v*`, equal to
    the optimal reweighting of the kept units at a 0/1 mask), then take the top `k` of every restart, keep the
    best exactly evaluated one and (`polish`) improve it by exact one-unit exchanges."""
    activation = get_activation(activation)
    K = state.K
    _check_k(k, K)
    _check_steps(steps)
    _check_positive(learning_rate, "learning_rate")
    if reweight not in ("none", "optimal"):
        raise ValueError(f"reweight must be 'none' or 'optimal' for design, got {reweight!r}")
    key = jax.random.key(0) if key is None else key
    hyper = _budget_hyper(budget, steps, penalty, binarise)
    dtype = state.Q.dtype
    k_arr = jnp.asarray(k, dtype)
    theta0 = _node_mask_init(state, key, k_arr, restarts=restarts, logit=budget != "projection")
    problem = _NodeMaskLoss(state=state, k=k_arr, rho=jnp.asarray(rho, dtype), reweight=reweight, budget=budget,
                            activation=activation)
    params, trace = run_design(problem, theta0, optimizer=_adam(learning_rate), steps=steps, hyper=hyper,
                               project=problem.project if budget == "projection" else None, progress=progress)
    soft = np.asarray(params if budget == "projection" else jax.nn.sigmoid(params))
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


# --------------------------------------------------------------------------------------------------
# Level 2a: per-coordinate keep rule under the Gaussian-equivalent model
# --------------------------------------------------------------------------------------------------

_GRID_N = 400
_GRID_Z = np.linspace(-7.0, 7.0, _GRID_N)
_GRID_W = np.exp(-0.5 * _GRID_Z**2)
_GRID_W = _GRID_W / _GRID_W.sum()
_MAX_SLOPE = 12.0


class EdgeRule(eqx.Module):
    """Keep rule `pi_i(z) = sigmoid(a_i + tau_i + s_i log z^2)` on `z = w_ij / sqrt(Q_ii)`, with per-unit
    rescale `c_i`. `s = exp(log_slope)`; `tau` is solved so that the keep fractions meet the budget.

    `s = 0` is random pruning, `s = 1` the large-N DPP edge rule `mu w^2 / (1 + mu w^2)` (docs/theory.md 6.2),
    `s -> inf` magnitude pruning.
    """

    a: Float[Array, " K"]
    log_slope: Float[Array, " K"]
    log_scale: Float[Array, " K"]

    def slope(self) -> Float[Array, " K"]:
        """`s_i = min(exp(log_slope_i), 12)` (capped so that the grid quadrature resolves the transition)."""
        return jnp.exp(jnp.minimum(self.log_slope, math.log(_MAX_SLOPE)))

    def keep_logit(self, z: Float[Array, "..."], shift: Float[Array, " K"]) -> Float[Array, "K ..."]:
        """`logit pi_i(z) = a_i + tau_i + s_i log z^2` for every unit `i` (leading axis)."""
        logit_a = (self.a + shift).reshape((-1,) + (1,) * z.ndim)
        s = self.slope().reshape((-1,) + (1,) * z.ndim)
        return logit_a + s * jnp.log(z * z + 1e-300)[None]

    def keep_prob(self, z: Float[Array, "..."], shift: Float[Array, " K"]) -> Float[Array, "K ..."]:
        """`pi_i(z)` for every unit `i` (leading axis) at the standardised weights `z` (any shape)."""
        return jax.nn.sigmoid(self.keep_logit(z, shift))


def _keep_fractions(rule: EdgeRule, shift):
    """`kappa_i = E_z[pi_i(z)]`, `z ~ N(0,1)` (uniform-grid quadrature)."""
    z = jnp.asarray(_GRID_Z)
    return rule.keep_prob(z, shift) @ jnp.asarray(_GRID_W)


def _free_flag(allocation) -> Any:
    """`allocation` as the flag of the shared code path: `False` for `"uniform"` (every unit meets the budget),
    `True` for `"free"` (only the mean keep fraction does); a boolean array passes through (traced)."""
    if isinstance(allocation, str):
        if allocation not in ("uniform", "free"):
            raise ValueError(f"allocation must be 'uniform' or 'free', got {allocation!r}")
        return allocation == "free"
    return allocation


def _solve_shift(rule: EdgeRule, keep, free):
    """`tau` meeting the budget, per unit (`free` false) or on average with one common shift (`free` true):
    bisection on stopped gradients, then one Newton step carrying the implicit-function derivative
    `d tau = -d kappa / kappa'`. `free` may be traced, so that both allocations share one compiled program."""
    K = rule.a.shape[0]
    r0 = jax.lax.stop_gradient(rule)
    dtype = rule.a.dtype

    def gap(kap):
        return jnp.where(free, jnp.mean(kap) - keep, kap - keep)

    def body(_, b):
        lo, hi = b
        mid = 0.5 * (lo + hi)
        over = gap(_keep_fractions(r0, mid)) > 0
        return jnp.where(over, lo, mid), jnp.where(over, mid, hi)

    lo, hi = jax.lax.fori_loop(0, 100, body, (jnp.full(K, -200.0, dtype), jnp.full(K, 200.0, dtype)))
    tau = jax.lax.stop_gradient(0.5 * (lo + hi))
    kap = _keep_fractions(rule, tau)
    # kappa_i depends on tau_i only: one forward derivative with a ones tangent is the diagonal of the Jacobian
    dk = jax.lax.stop_gradient(jax.jvp(lambda t: _keep_fractions(r0, t), (tau,), (jnp.ones_like(tau),))[1])
    return tau - gap(kap) / jnp.where(free, jnp.mean(dk), dk)


# The off-diagonal moment `E[pi_i(z_1) z_1 pi_k(z_2) z_2]` of a pair `i < k` is the bilinear form
# `f_i^T S_ik f_k` of `f_i = pi_i(z) z` on the grid, with `S_ik = (W + W^T) / 2`, `W[a, b] = wz_a D(b | a)` the
# grid weight of `z_1 = z_a` times the row-normalised conditional density of `z_2 = z_b` given `z_1 = z_a`
# (correlation `rho_ik`). `S` depends on the state only: it is built once, outside the optimisation, for the
# `K (K - 1) / 2` pairs (`(K - 1) K / 2 * 400^2` floats) when that fits in `_KERNEL_BYTES`, and otherwise
# rebuilt inside the step in chunks. Symmetrising `W` changes nothing: `Q'` is symmetrised anyway (the `(i, k)`
# and `(k, i)` moments differ only by quadrature error), and a symmetric `S` makes one pass over it give both
# gradients (`d/df_i = S f_k`, `d/df_k = S f_i`, the latter exact up to the rounding asymmetry of `S`).

_KERNEL_BYTES = 2**28
_PAIR_BATCH = 16


def _pair_correlations(Q):
    """`(rho, sq)` of every pair `i < k`: the correlation and `max(sqrt(1 - rho^2), 1e-3)`."""
    K = Q.shape[0]
    d = jnp.sqrt(jnp.diag(Q))
    rho = jnp.clip(Q / (d[:, None] * d[None, :]), -1.0, 1.0)
    sq = jnp.maximum(jnp.sqrt(jnp.clip(1.0 - rho * rho, 0.0, 1.0)), 1e-3)
    iu, ku = np.triu_indices(K, 1)
    return rho[iu, ku], sq[iu, ku]


def _pair_kernel(rho, sq):
    """`S[a, b]` of one pair (see above)."""
    z = jnp.asarray(_GRID_Z)
    logd = -0.5 * jnp.square((z[None, :] - rho * z[:, None]) / sq)
    logd = logd - jnp.max(logd, axis=1, keepdims=True)
    dens = jnp.exp(logd)
    W = jnp.asarray(_GRID_W)[:, None] * (dens / jnp.sum(dens, axis=1, keepdims=True))
    return 0.5 * (W + W.T)  # symmetric up to rounding (XLA may evaluate exp differently in the two positions)


def _pair_apply(src, V):
    """`S_p V_p` for every pair: `src` the kernels `(P, n, n)`, or `(rho, sq)` to build them chunk by chunk."""
    if isinstance(src, tuple):
        rho, sq = src
        return jax.lax.map(lambda a: _pair_kernel(a[0], a[1]) @ a[2], (rho, sq, V), batch_size=_PAIR_BATCH)
    return jnp.einsum("pab,pbc->pac", src, V)


@jax.custom_vjp
def _pair_bilinear(src, fi, fk):
    """`f_i^T S_p f_k` per pair `p = (i, k)`; no gradient to `src` (the kernels are a function of the state)."""
    return _pair_bilinear_fwd(src, fi, fk)[0]


def _pair_bilinear_fwd(src, fi, fk):
    Y = _pair_apply(src, jnp.stack([fk, fi], axis=-1))  # (P, n, 2): S f_k and S f_i, one pass over S
    return jnp.sum(fi * Y[..., 0], axis=-1), Y


def _pair_bilinear_bwd(Y, g):
    return None, g[:, None] * Y[..., 0], g[:, None] * Y[..., 1]


_pair_bilinear.defvjp(_pair_bilinear_fwd, _pair_bilinear_bwd)


@jax.jit
def _pair_kernels(Q):
    rho, sq = _pair_correlations(Q)
    if rho.shape[0] == 0:
        return jnp.zeros((0, _GRID_N, _GRID_N), Q.dtype)
    return jax.lax.map(lambda a: _pair_kernel(a[0], a[1]), (rho, sq), batch_size=_PAIR_BATCH)


def conditional_kernels(state: Overlaps) -> Float[Array, "P n n"]:
    """The symmetrised pair kernels `S_ik` (pairs `i < k` in `np.triu_indices(K, 1)` order, `400 x 400` each)
    of [`edge_rule_moments`][], to compute once outside a loop (`K (K - 1) / 2 * 400^2` floats; K = 20: 243 MB)."""
    return _pair_kernels(jax.lax.stop_gradient(state.Q))


def _kernels_fit(K: int) -> bool:
    return K * (K - 1) // 2 * _GRID_N**2 * 8 <= _KERNEL_BYTES


def _edge_rule_moments(state: Overlaps, rule: EdgeRule, keep, free, kernels):
    tau = _solve_shift(rule, keep, free)
    z = jnp.asarray(_GRID_Z)
    wz = jnp.asarray(_GRID_W)
    pz = rule.keep_prob(z, tau)  # (K, n)
    kappa = pz @ wz
    m2 = (pz * (z * z)[None]) @ wz  # E[pi z^2]
    d = jnp.sqrt(jnp.diag(state.Q))
    K = state.K
    fz = pz * z[None]  # f_i(z) = pi_i(z) z on the grid
    iu, ku = np.triu_indices(K, 1)
    off = jnp.zeros((K, K), fz.dtype)
    if iu.size:
        src = _pair_correlations(jax.lax.stop_gradient(state.Q)) if kernels is None else kernels
        cross = _pair_bilinear(src, fz[iu], fz[ku])
        off = off.at[iu, ku].set(cross).at[ku, iu].set(cross)
    c = jnp.exp(rule.log_scale)
    eye = jnp.eye(K, dtype=bool)
    Qp = jnp.where(eye, jnp.diag(d * d * m2), d[:, None] * d[None, :] * off)
    Qp = c[:, None] * c[None, :] * Qp
    Rp = (c * m2)[:, None] * state.R
    return Qp, Rp, kappa


def edge_rule_moments(
    state: Overlaps, rule: EdgeRule, keep: Float[ArrayLike, ""], *, allocation: Literal["uniform", "free"] = "uniform",
    kernels: Float[Array, "P n n"] | None = None,
) -> tuple[Float[Array, "K K"], Float[Array, "K M"], Float[Array, " K"]]:
    """Gaussian-equivalent moments of the rule (docs/theory.md 6.2), rescale included:
    `Q'_ii = c_i^2 Q_ii E[pi_i z^2]`, `R'_in = c_i R_in E[pi_i z^2]`,
    `Q'_ik = c_i c_k sqrt(Q_ii Q_kk) E[pi_i(z_1) z_1 pi_k(z_2) z_2]` with `corr(z_1, z_2) = Q_ik/sqrt(Q_ii Q_kk)`
    (a uniform 400-point grid on [-7, 7] for `z_1`, and the row-normalised conditional density of `z_2 | z_1`
    on the same grid; the `(i, k)` and `(k, i)` quadratures averaged). `kernels`: the output of
    [`conditional_kernels`][] (else built here, chunk by chunk). **Returns:** `(Q', R', kappa)`."""
    return _edge_rule_moments(state, rule, keep, _free_flag(allocation), kernels)


def edge_rule_state(state: Overlaps, rule: EdgeRule, keep, *, allocation="uniform", refit=False,
                    activation: AbstractActivation = Erf(), kernels=None) -> Overlaps:
    """The pruned state `(Q', R', T, v or refit v, v*)` of [`edge_rule_moments`][]."""
    Qp, Rp, _ = edge_rule_moments(state, rule, keep, allocation=allocation, kernels=kernels)
    st = Overlaps(Q=Qp, R=Rp, T=state.T, v=state.v, v_star=state.v_star)
    if refit:
        st = eqx.tree_at(lambda s: s.v, st, optimal_second_layer(st, activation))
    return st


def _rule_mask(key, w, rule: EdgeRule, keep, free, exact_budget: bool):
    """One concrete mask of [`sample_edge_rule_mask`][] (traced `free`; the exact budgets `round(keep N)` per
    unit and `round(keep K N)` in all are both computed and the flag picks one)."""
    tau = _solve_shift(rule, keep, free)
    z = w / jnp.sqrt(jnp.mean(w * w, axis=1, keepdims=True))
    K, N = w.shape
    logit = jax.vmap(lambda zi, i: rule.keep_logit(zi, tau)[i])(z, jnp.arange(K))
    if not exact_budget:
        return _draw(jax.random.uniform, key, (K, N), w.dtype) < jax.nn.sigmoid(logit)
    score = logit + _draw(jax.random.logistic, key, (K, N), w.dtype)
    per_unit = jax.vmap(lambda s: _top_mask(s, jnp.round(keep * N)))(score)
    total = _top_mask(score, jnp.round(keep * K * N))
    return jnp.where(free, total, per_unit)


@functools.partial(jax.jit, static_argnames=("exact_budget",))
def _rule_masks(keys, w, rule, keep, free, *, exact_budget=True):
    return jax.vmap(lambda kd: _rule_mask(kd, w, rule, keep, free, exact_budget))(keys)


def sample_edge_rule_mask(key: PRNGKeyArray, w: Float[Array, "K N"], rule: EdgeRule, keep, *,
                          allocation="uniform", exact_budget: bool = True) -> Bool[Array, "K N"]:
    """A concrete mask from the rule: `m_ij ~ Bernoulli(pi_i(w_ij / sqrt(Q_ii)))`, `Q_ii = |w_i|^2 / N`.

    With `exact_budget` the mask keeps exactly `round(keep N)` weights per unit (`"uniform"`) or
    `round(keep K N)` in all (`"free"`): the top-k of `logit pi_ij + L_ij` with iid standard logistic `L_ij`.
    Thresholding these scores at 0 is exactly the independent Bernoulli draw; the top-k moves the threshold
    by `O(1/sqrt N)`, so every weight keeps the marginal `pi` as `N -> infinity` (the Gaussian-equivalent
    moments of [`edge_rule_moments`][] apply). Note: Gumbel-top-k on the log-odds would be *successive*
    sampling (Plackett-Luce), whose large-N inclusion probability is `1 - exp(-t odds_ij)`, not `pi`.
    """
    w = jnp.asarray(w)
    free = _free_flag(allocation)
    return _rule_masks(jnp.asarray(key)[None], w, rule, jnp.asarray(keep, w.dtype), jnp.asarray(free),
                       exact_budget=bool(exact_budget))[0]


class RuleDesign(eqx.Module):
    """A designed keep rule: `rule` ([`EdgeRule`][]), `error` (`eps_g` under the Gaussian-equivalent model),
    `keep_fractions` (per unit), `trace`."""

    rule: EdgeRule
    error: Float[Array, ""]
    keep_fractions: Float[Array, " K"]
    trace: DesignTrace


class _RuleLoss(eqx.Module):
    """The keep-rule problem of [`design_edge_rule`][]: both allocations share one compiled step (`free` is an
    array), and the pair kernels are an argument (or `None`: rebuilt in chunks inside the step)."""

    state: Overlaps
    kernels: Float[Array, "P n n"] | None
    keep: Float[Array, ""]
    free: Bool[Array, ""]
    rescale: bool = eqx.field(static=True)
    refit: bool = eqx.field(static=True)
    activation: AbstractActivation = eqx.field(static=True)

    def one(self, rule):
        if not self.rescale:
            rule = eqx.tree_at(lambda r: r.log_scale, rule, jax.lax.stop_gradient(rule.log_scale))
        Qp, Rp, kappa = _edge_rule_moments(self.state, rule, self.keep, self.free, self.kernels)
        st = Overlaps(Q=Qp, R=Rp, T=self.state.T, v=self.state.v, v_star=self.state.v_star)
        if self.refit:
            st = eqx.tree_at(lambda s: s.v, st, optimal_second_layer(st, self.activation))
        return generalisation_error(st, self.activation), kappa

    def __call__(self, p, hyp):
        e, kappa = jax.vmap(self.one)(p)
        return e, (e, kappa)


def design_edge_rule(
    state: Overlaps,
    keep: float,
    *,
    allocation: Literal["uniform", "free"] = "uniform",
    rescale: bool = True,
    refit: bool = False,
    slopes: tuple[float, ...] = (1.0, 3.0, 8.0),
    steps: int = 300,
    learning_rate: float = 0.05,
    kernels: Float[Array, "P n n"] | None = None,
    activation: AbstractActivation | str = Erf(),
    progress: Callable[[int], None] | None = None,
) -> RuleDesign:
    """Optimise the keep rule's per-unit slopes, offsets (for `allocation="free"`) and rescales for the
    Gaussian-equivalent error at keep fraction `keep` (one restart per initial slope in `slopes`).

    `kernels`: [`conditional_kernels`][]`(state)`, to share between calls on the same state; by default they
    are computed here when they fit in 256 MB (`K <= 20`) and rebuilt inside every step otherwise. Both
    allocations and every `keep` share one compiled step."""
    activation = get_activation(activation)
    _check_keep(keep)
    _check_steps(steps)
    _check_positive(learning_rate, "learning_rate")
    free = _free_flag(allocation)
    K, dtype = state.K, state.Q.dtype
    R = len(slopes)
    log_slope = np.log(np.asarray(slopes, np.float64))[:, None] * np.ones((R, K))
    rules = EdgeRule(a=jnp.zeros((R, K), dtype), log_slope=jnp.asarray(log_slope, dtype),
                     log_scale=jnp.zeros((R, K), dtype))
    if kernels is None and _kernels_fit(K):
        kernels = conditional_kernels(state)
    problem = _RuleLoss(state=state, kernels=kernels, keep=jnp.asarray(keep, dtype), free=jnp.asarray(free),
                        rescale=bool(rescale), refit=bool(refit), activation=activation)
    params, trace = run_design(problem, rules, optimizer=_adam(learning_rate), steps=steps, progress=progress)
    errs, kappas = (np.asarray(x) for x in trace.final_aux)
    best = int(np.argmin(errs))
    rule = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)[best]), params)
    return RuleDesign(rule=rule, error=jnp.asarray(errs[best]), keep_fractions=jnp.asarray(kappas[best]),
                      trace=trace)


# --------------------------------------------------------------------------------------------------
# Level 2b: distributions over unit subsets, exact by enumeration
# --------------------------------------------------------------------------------------------------


def subset_log_probs(theta: Float[Array, " K"], masks: Bool[Array, "C K"], base_logdet: Float[Array, " C"]) -> Float[Array, " C"]:
    """`log P(S) = base_S + 2 theta . 1_S - logsumexp(...)`: a k-DPP with `L = diag(q) L0 diag(q)`,
    `q = exp(theta)`, has `base_S = log det L0_S`; conditional Bernoulli has `base = 0` (logits `2 theta`)."""
    logits = base_logdet + 2.0 * masks.astype(theta.dtype) @ theta
    return logits - jax.scipy.special.logsumexp(logits)


class SubsetDesign(eqx.Module):
    """A designed subset distribution: `theta` (log-quality), `expected_error` (exact), `mode` (most likely
    subset), `mode_error`, `best_error` (brute-force minimum over subsets), `probs`, `masks`, `trace`."""

    theta: Float[Array, " K"]
    expected_error: Float[Array, ""]
    mode: Bool[Array, " K"]
    mode_error: Float[Array, ""]
    best_error: Float[Array, ""]
    probs: Float[Array, " C"]
    masks: Bool[Array, "C K"]
    trace: DesignTrace


@eqx.filter_jit
def _kdpp_base(state: Overlaps, masks, kernel: str, activation):
    """`log det L0_S` of every subset (`-1e30` where the minor is not positive)."""
    K = state.K
    L0 = state.Q if kernel == "Q" else activation_covariance(state, activation)[:K, :K]
    eye = jnp.eye(K, dtype=L0.dtype)
    sign, ld = jax.vmap(lambda m: jnp.linalg.slogdet(jnp.where(m[:, None] & m[None, :], L0, eye)))(masks)
    return jnp.where(sign > 0, ld, -1e30)


class _SubsetLoss(eqx.Module):
    """Exact expected error of a subset distribution (both families share one compiled step)."""

    masks: Bool[Array, "C K"]
    base: Float[Array, " C"]
    errors: Float[Array, " C"]

    def __call__(self, theta, hyp):
        probs = jnp.exp(subset_log_probs(theta, self.masks, self.base))
        e = probs @ self.errors
        return e[None], probs


def design_subset_distribution(
    state: Overlaps,
    k: int,
    *,
    family: Literal["kdpp", "bernoulli"] = "kdpp",
    kernel: Literal["Q", "A"] = "Q",
    reweight: Literal["none", "preactivation", "activation", "optimal"] = "optimal",
    steps: int = 300,
    learning_rate: float = 0.1,
    subset_errors: Float[ArrayLike, " C"] | None = None,
    activation: AbstractActivation | str = Erf(),
    progress: Callable[[int], None] | None = None,
) -> SubsetDesign:
    """Minimise the exact expected error `sum_S P_theta(S) eps(S)` over quality weights (k-DPP) or logits
    (conditional Bernoulli), by enumeration of all `C(K, k)` subsets (at most 2e5)."""
    activation = get_activation(activation)
    K = state.K
    _check_k(k, K)
    _check_steps(steps)
    _check_positive(learning_rate, "learning_rate")
    if math.comb(K, k) > 200_000:
        raise ValueError(f"C(K={K}, k={k}) = {math.comb(K, k)} subsets exceeds 2e5; choose k closer to 0 or K")
    if family not in ("kdpp", "bernoulli"):
        raise ValueError(f"family must be 'kdpp' or 'bernoulli', got {family!r}")
    masks_np = enumerate_subsets(K, k)
    masks = jnp.asarray(masks_np)
    errs = node_subset_errors(state, masks, reweight=reweight, activation=activation) if subset_errors is None \
        else jnp.asarray(subset_errors)
    if family == "kdpp":
        base = _kdpp_base(state, masks, kernel, activation)
    else:
        base = jnp.zeros(masks.shape[0], state.Q.dtype)
    theta0 = jnp.zeros(K, state.Q.dtype)
    theta, trace = run_design(_SubsetLoss(masks=masks, base=base, errors=errs), theta0,
                              optimizer=_adam(learning_rate), steps=steps, progress=progress)
    probs, errs_np = np.asarray(trace.final_aux), np.asarray(errs)
    mode = int(np.argmax(probs))
    return SubsetDesign(theta=theta, expected_error=jnp.asarray(probs @ errs_np), mode=jnp.asarray(masks_np[mode]),
                        mode_error=jnp.asarray(errs_np[mode]), best_error=jnp.asarray(errs_np.min()),
                        probs=jnp.asarray(probs), masks=masks, trace=trace)


# --------------------------------------------------------------------------------------------------
# Level 3: through training
# --------------------------------------------------------------------------------------------------


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
    ODEs of docs/theory.md 4, second-layer updates gated by `mask` (`dv_i -> m_i dv_i`), so that at a binary mask the
    pruned units stay pruned; first-layer updates of a unit with `v_i = 0` vanish on their own.
    Differentiable (diffrax `RecursiveCheckpointAdjoint` by default; `diffrax.ForwardMode()` for forward-mode
    derivatives, as [`design_through_training`][] uses). **Returns:** the state at the end."""
    t1 = float(duration) if isinstance(duration, (int, float, np.integer, np.floating)) else duration
    sol = diffrax.diffeqsolve(
        _RETRAIN_TERM, diffrax.Tsit5(), t0=0.0, t1=t1, dt0=None, y0=state, args=(config, mask),
        saveat=diffrax.SaveAt(t1=True), stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps, adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
        throw=False,
    )
    return jax.tree.map(lambda x: x[-1], sol.ys)


class TrainingDesign(eqx.Module):
    """A unit subset designed for the error after retraining: `mask`, `error` (exact final `eps_g` of the hard
    subset after retraining), `relaxed_error` (of the restart the subset came from; NaN for a given candidate),
    `soft_mask`, `trace`, `reweight` (the reweighting applied at prune time: `"none"` or `"optimal"`), and
    `origin`: which candidate won before polishing (`"optimised"`: a restart's final soft mask, `"start"`: a
    restart's starting subset, `"candidate i"`: row `i` of the `candidates` passed in), and `evaluations`: how
    many (subset, reweighting) pairs were evaluated exactly (ODE) on the way (brute force: `2 C(K, k)`)."""

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
                           rtol=problem.rtol, atol=problem.atol, adjoint=diffrax.ForwardMode())
    return generalisation_error(final, act), final


class _TrainingLoss(eqx.Module):
    """The through-training problem: rows of relaxed masks, each with its prune-time reweighting code
    (`modes`); the final error after the ODE solve, differentiated in forward mode."""

    state: Overlaps
    config: SGDConfig
    duration: Float[Array, ""]
    rho: Float[Array, ""]
    k: Float[Array, ""]
    modes: Float[Array, " R"]
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True, default=1e-9)

    def one(self, m, mode, hyp):
        err, final = _forward_mode(_training_final, m, (self, mode))
        return err + hyp["binarise"] * jnp.mean(m * (1 - m)), (err, final)

    def __call__(self, p, hyp):
        return jax.vmap(self.one, (0, 0, None))(p, self.modes, hyp)

    def project(self, p):
        return jax.vmap(lambda m: project_capped_simplex(m, self.k))(p)


def _training_problem(state, config, k, duration, *, rows, rho=10.0, rtol=1e-6, atol=1e-9) -> _TrainingLoss:
    dtype = state.Q.dtype
    return _TrainingLoss(state=state, config=config, duration=jnp.asarray(duration, dtype),
                         rho=jnp.asarray(rho, dtype), k=jnp.asarray(k, dtype),
                         modes=jnp.asarray(np.zeros(rows), dtype), rtol=float(rtol), atol=float(atol))


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
    reweight: Literal["none", "optimal", "best"] = "optimal",
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
    progress: Callable[[int], None] | None = None,
) -> TrainingDesign:
    """Design the subset of `k` units kept at `alpha_p` (the time of `state`) so that the error after
    retraining for `duration` is minimal: relaxed mask `m` (projected onto `sum m = k`), pruned start
    `v'(m)` as in [`design_node_mask`][], gradients through the ODE solve of [`retrain_pruned`][] (forward
    mode: one tangent per unit); rounding as in [`design_node_mask`][] (top `k` of each restart, then exact
    one-unit exchanges when `polish`).

    `reweight="best"` designs the reweighting too: `restarts` restarts with `v'(m) = m v` and `restarts` with
    the relaxed optimal reweighting run side by side (one compiled step), and the better hard result is kept.
    The candidates evaluated exactly are the rounded restarts, the restarts' starting subsets (so the result is
    never worse than where the optimiser started) and `candidates` (extra subsets, e.g. the best subset at
    prune time), each with the restarts' reweighting(s); with `polish`, every distinct candidate is improved by
    exact one-unit exchanges (a local search; each subset is evaluated once) and the best result is kept;
    `origin` says which kind of candidate it came from, `evaluations` how many exact evaluations were used.
    `exact_errors(masks, reweight) -> errors` replaces the exact evaluation of hard subsets (default: the ODE
    through the compiled design step itself), e.g. a table of all subsets already computed."""
    K = state.K
    _check_k(k, K)
    _check_steps(steps)
    _check_positive(learning_rate, "learning_rate")
    _check_positive(duration, "duration")
    if reweight not in ("none", "optimal", "best"):
        raise ValueError(f"reweight must be 'none', 'optimal' or 'best', got {reweight!r}")
    if not (isinstance(restarts, int) and restarts >= 1):
        raise ValueError(f"restarts must be an integer >= 1, got {restarts!r}")
    key = jax.random.key(0) if key is None else key
    dtype = state.Q.dtype
    kinds = ("none", "optimal") if reweight == "best" else (reweight,)
    problem = _training_problem(state, config, k, duration, rows=len(kinds) * restarts, rho=rho, rtol=rtol)
    modes = np.repeat([_MODE_NONE if kd == "none" else _MODE_RELAXED for kd in kinds], restarts)
    problem = eqx.tree_at(lambda p: p.modes, problem, jnp.asarray(modes, dtype))
    m0 = np.asarray(_node_mask_init(state, key, problem.k, restarts=restarts, logit=False))
    m0 = np.concatenate([m0] * len(kinds), axis=0)
    hyper = _budget_hyper("projection", steps, (0.0, 0.0), binarise)
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
    soft = params[r] if origin == "optimised" else (m0[r] if origin == "start" else extra[int(origin[10:])].astype(dtype))
    return TrainingDesign(mask=jnp.asarray(mask), error=jnp.asarray(err, dtype), relaxed_error=jnp.asarray(rel, dtype),
                          soft_mask=jnp.asarray(soft), trace=trace, reweight=kd, origin=origin, evaluations=len(memo))


@eqx.filter_jit
def training_subset_errors(
    state: Overlaps, config: SGDConfig, masks: Bool[Array, "C K"], duration: float, *,
    reweight: str = "optimal", rtol: float = 1e-6,
) -> Float[Array, " C"]:
    """Exact (ODE) `eps_g` after pruning to each subset (rows of `masks`, reweighting of 6.1 at prune time)
    and retraining for `duration`."""
    act = config.activation

    def one(mask):
        v0 = _masked_node_v(state, mask, reweight, act)
        final = retrain_pruned(eqx.tree_at(lambda s: s.v, state, v0), mask.astype(state.Q.dtype), config,
                               duration, rtol=rtol)
        return generalisation_error(final, act)

    return jax.vmap(one)(masks)


__all__.append("training_subset_errors")


# --------------------------------------------------------------------------------------------------
# Comparison tables against every baseline at the same budget
# --------------------------------------------------------------------------------------------------
#
# Every row is a dict `{keep or k, kind, method, role, error, setting, ...}`; `role` is "designed", "baseline",
# "reference" (brute-force optimum, unpruned network: not competitors) and `error` the exact noise-free eps_g.
# Where a concrete network is given, `sim` is the finite-N check (exact eps_g of the concrete pruned network
# from its overlaps; for the training level after finite-N SGD) and `half_mse` the half test MSE of the pruned
# network on fresh noise-free inputs (an unbiased Monte Carlo estimate of its eps_g, the same inputs for every
# row of a table). `design_verdict` says, per budget, whether the best designed row beats the best baseline.

#
# Every table is built from a few compiled programs shared by its budgets: the design steps, one batched
# exact evaluation of all concrete masks of a budget, one of all unit subsets (every reweighting at once),
# and the random keys of the whole table drawn in one program (the same keys as drawing them one by one).

_RESCALE_LABEL = {"none": "c = 1", "inverse-keep": "c = 1/keep", "optimal": "optimal c"}
_DPP_KERNELS = ("Q", "A", "rbf")


@eqx.filter_jit
def _node_kernels_probs(state: Overlaps, idx, activation):
    """The node k-DPP kernels `L = Q, A, rbf` and their exact subset probabilities (rows of `idx`)."""
    from ..pruning._node import kernel_matrix

    Ls = jnp.stack([kernel_matrix(state, ker, activation=activation) for ker in _DPP_KERNELS])
    return Ls, jax.vmap(lambda L: _enumerate_probs(0.5 * (L + L.T), idx))(Ls)


def _node_tables(state: Overlaps, k: int, activation) -> dict:
    """Everything node pruning to `k` units needs, by enumeration: `masks` (`enumerate_subsets(K, k)`),
    `errs[reweight]` (exact eps_g per subset), `vs` (second layers, `(4, C, K)` in `_NODE_REWEIGHTS` order),
    the DPP kernels and their subset probabilities."""
    K = state.K
    masks = enumerate_subsets(K, k)
    errs, vs = _node_eval_rows(state, masks, activation)
    Ls, probs = _node_kernels_probs(state, jnp.asarray(_subset_indices(K, k)), activation)
    return dict(masks=masks, errs={rw: errs[j] for j, rw in enumerate(_NODE_REWEIGHTS)}, vs=vs,
                kernels=np.asarray(Ls), kernel_probs=np.asarray(probs))


def _node_baseline_details(state: Overlaps, k: int, activation, tables: dict | None = None):
    """`{method: (eps_g, setting, probs over enumerate_subsets(K, k), reweight)}` of the best setting
    of random / importance / DPP node pruning (exact, by enumeration)."""
    from ..pruning._dpp import check_kdpp_kernel

    tables = _node_tables(state, k, activation) if tables is None else tables
    masks, errs = tables["masks"], tables["errs"]
    # importance: the k largest |v_i| sqrt(Q_ii), ties to the lower index (as jaxprune._node.importance_mask)
    scores = np.abs(np.asarray(state.v)) * np.sqrt(np.maximum(np.diag(np.asarray(state.Q)), 0.0))
    imp = _top_mask_np(scores, k)
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


@eqx.filter_jit
def _concrete_edge_error(w, w_star, v, v_star, mask, rescale: str, activation):
    """Exact `eps_g` of `c (m * w)` on a concrete network with `c = 1`, `1/keep_i`, or the per-unit optimum
    (the Newton rescale of [`jaxprune._edge.optimal_edge_rescale`][], from the better of the other two).
    **Returns:** `(eps_g, c)`."""
    from ..pruning._edge import EdgeMoments, apply_edge_moments, optimal_edge_rescale

    n = w.shape[-1]
    m = mask.astype(w.dtype)
    wp = m * w
    st = Overlaps(Q=w @ w.T / n, R=w @ w_star.T / n, T=w_star @ w_star.T / n, v=v, v_star=v_star)
    mom = EdgeMoments(keep=jnp.maximum(jnp.mean(m, axis=1), 1.0 / n), Q=wp @ wp.T / n, R=wp @ w_star.T / n)
    if rescale == "none":
        c = jnp.ones(w.shape[0], w.dtype)
    elif rescale == "inverse-keep":
        c = 1.0 / mom.keep
    else:
        c, _ = optimal_edge_rescale(st, mom, activation)
    return generalisation_error(apply_edge_moments(st, mom, c), activation), c


@jax.jit
def _baseline_edge_masks(keys, w, counts):
    """Random masks (one per key; `jaxprune._edge.random_edge_mask`) and the magnitude mask
    (`magnitude_edge_mask`), `counts[i]` weights per unit, in one program for every draw and budget."""
    from ..pruning._edge import _rank_mask

    K, N = w.shape
    rnd = jax.vmap(lambda kd: _rank_mask(_draw(jax.random.uniform, kd, (K, N), w.dtype), counts))(keys)
    return rnd, _rank_mask(jnp.abs(w), counts)


def _keep_counts(keep, K, N):
    from ..pruning._edge import _keep_counts as counts

    return jnp.asarray(counts(keep, K, N))


def _network_overlaps_traced(w, w_star, v, v_star) -> Overlaps:
    n = w.shape[-1]
    return Overlaps(Q=w @ w.T / n, R=w @ w_star.T / n, T=w_star @ w_star.T / n, v=v, v_star=v_star)


_network_overlaps = jax.jit(_network_overlaps_traced)


@jax.jit
def _mask_moments(w, w_star, mask):
    """`EdgeMoments` of the concrete mask: per-unit keep fraction, `Q = (m*w)(m*w)^T / N`, `R = (m*w) w*^T / N`."""
    from ..pruning._edge import EdgeMoments

    n = w.shape[-1]
    m = mask.astype(w.dtype)
    wp = m * w
    return EdgeMoments(keep=jnp.maximum(jnp.mean(m, axis=1), 1.0 / n), Q=wp @ wp.T / n, R=wp @ w_star.T / n)


@eqx.filter_jit
def _edge_eval_one(state, w, w_star, v, v_star, mask, moments, c_opt, c_fixed, activation):
    """Exact error of `c (m * w)` for `c = 1`, `1 / keep`, `c_opt` and `c_fixed`, and these four `c`."""
    from ..pruning._edge import apply_edge_moments

    cs = [jnp.ones_like(c_opt), 1.0 / moments.keep, c_opt]
    errs = [generalisation_error(apply_edge_moments(state, moments, c), activation) for c in cs]
    errs.append(generalisation_error(masked_network_overlaps(w, w_star, v, v_star, mask.astype(w.dtype), c_fixed),
                                     activation))
    return jnp.stack(errs), jnp.stack(cs + [c_fixed])


@eqx.filter_jit
def _edge_halves(fresh: _Fresh, w, v, mask, cs):
    """Half test MSE of `c (m * w)` for every row `c` of `cs`."""
    return jax.vmap(lambda c: fresh.edge(c[:, None] * jnp.where(mask, w, 0.0), v))(cs)


class _EdgeContext(eqx.Module):
    """A concrete network whose edge masks are evaluated exactly one at a time by three small compiled
    programs shared by the whole run (the mask's moments, the Newton optimal rescale of
    [`jaxprune._edge.optimal_edge_rescale`][], the errors): the same numbers as `_concrete_edge_error`, with
    the costly rescale compiled once instead of once per batch shape and caller."""

    state: Overlaps
    w: Float[Array, "K N"]
    w_star: Float[Array, "M N"]
    activation: AbstractActivation = eqx.field(static=True)

    @classmethod
    def of(cls, w, w_star, v, v_star, activation):
        return cls(state=_network_overlaps(w, w_star, v, v_star), w=w, w_star=w_star, activation=activation)

    def report(self, masks, c_fixed=None, fresh=None, optimal=True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Errors and half test MSEs `(n, 4)` (columns `c = 1`, `1/keep`, optimal `c`, `c_fixed`) and the
        rescales `(n, 4, K)` of every mask; `optimal=False` skips the optimal rescale (column 2 is then `c = 1`)."""
        from ..pruning._edge import optimal_edge_rescale

        st = self.state
        ones = jnp.asarray(np.ones(st.K), st.Q.dtype)
        out = []
        for i, mask in enumerate(np.asarray(masks, bool)):
            mk = jnp.asarray(mask)
            mom = _mask_moments(self.w, self.w_star, mk)
            c_opt = optimal_edge_rescale(st, mom, self.activation)[0] if optimal else ones
            cf = ones if c_fixed is None else jnp.asarray(c_fixed[i], st.Q.dtype)
            e, cs = _edge_eval_one(st, self.w, self.w_star, st.v, st.v_star, mk, mom, c_opt, cf, self.activation)
            h = _edge_halves(fresh, self.w, st.v, mk, cs) if fresh is not None else jnp.full_like(e, jnp.nan)
            out.append((e, h, cs))
        got = jax.device_get(out)
        return tuple(np.stack([g[j] for g in got]) for j in range(3))

    def errors(self, masks, rescale: str) -> tuple[np.ndarray, np.ndarray]:
        """`(eps_g (n,), c (n, K))` with `rescale` in `none`, `inverse-keep`, `optimal`."""
        col = {"none": 0, "inverse-keep": 1, "optimal": 2}[rescale]
        e, _, cs = self.report(masks, optimal=rescale == "optimal")
        return e[:, col], cs[:, col]


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
    state = _network_overlaps_traced(w, w_star, v, v_star)
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
    budget: str = "projection",
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
    from ..pruning._edge import dpp_edge_mask

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
            es, hs, _ = ctx.report(masks, fresh=fresh)
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
    from ..pruning._edge import apply_edge_moments

    cs = jnp.stack([jnp.ones_like(p), 1.0 / p, c_opt])
    return jax.vmap(lambda c: generalisation_error(apply_edge_moments(state, moments, c), activation))(cs), cs


def _edge_baseline_theory(state: Overlaps, keep: float, activation) -> list[tuple[str, str, float, Array]]:
    """`(method, rescale, eps_g, c)` of random / magnitude / DPP edge pruning under the Gaussian-equivalent
    model with each rescale (moments once per method; the optimal rescale is the program shared with the
    concrete masks)."""
    from ..pruning._edge import dpp_moments, magnitude_moments, optimal_edge_rescale, random_moments

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
    from ..pruning._edge import dpp_edge_mask

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
            es, hs, _ = ctx.report(np.concatenate(masks), c_fixed=np.concatenate(c_fixed), fresh=fresh)
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
    from .._simulate import Student, simulate_seeds

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

    With `network = (teacher, student)` (finite-N networks from `jaxprune._simulate` whose overlaps are `state`),
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
        imp = _top_mask_np(np.abs(np.asarray(state.v)) * np.sqrt(np.maximum(np.diag(np.asarray(state.Q)), 0.0)), k)
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


__all__ += ["compare_network", "compare_population", "compare_training", "design_verdict", "format_verdict"]
