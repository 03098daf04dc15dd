"""Pruning designed by gradient descent on the theoretical generalisation error (THEORY.md section 7).

Three levels, one optimiser loop:

- **network**: a relaxed mask `m in [0,1]` on the `K x N` first-layer weights of a concrete student (or on its
  `K` units); the masked network's overlaps are exact dot products, so `eps_g(m)` is exact at any `N`.
  Budget by projection onto `{0 <= m <= 1, sum m = B}` after every step, or by a scheduled penalty
  `lambda_t relu(mean m - p)^2`; an optional scheduled binarisation term `beta_t mean m (1 - m)`; rounded to
  the `B` largest entries at the end and evaluated exactly (with the best per-unit rescale `c_i`).
- **population**: a per-coordinate keep rule `pi_i(z) = sigmoid(a_i + tau_i + s_i log z^2)`,
  `z = w_ij / sqrt(Q_ii)`, under the Gaussian-equivalent model of THEORY.md 6.2 (`s = 0`: random, `s = 1`:
  the large-N limit of the DPP edge rule, `s -> inf`: magnitude); and subset distributions over units
  (k-DPP with quality weights, `L = diag(q) L0 diag(q)`, or conditional Bernoulli) whose exact expected
  error `sum_S P_theta(S) eps(S)` is differentiated by enumeration.
- **training**: prune at `alpha_p` with a relaxed unit mask, keep training with the ODEs (second-layer
  updates gated by the mask, so that pruned units stay pruned), and differentiate the final error through the
  diffrax solve.

Every optimisation runs one jitted step (loss, gradient, optax update, projection) per iteration; the Python
loop only calls it. Several restarts run side by side along a leading axis (their losses are summed, which
leaves each restart's gradient its own).

References: Acharyya et al., UAI 2021 (arXiv 2006.16617); THEORY.md sections 6 and 7.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from ._activations import AbstractActivation, Erf, get_activation
from ._dpp import enumerate_subsets
from ._dynamics import SGDConfig, vector_field
from ._error import activation_covariance, generalisation_error
from ._overlaps import Overlaps

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


class DesignTrace(eqx.Module):
    """The loss per optimisation step (`Float[steps]`, summed over restarts) and per restart at the end."""

    loss: Float[Array, " steps"]
    final_per_restart: Float[Array, " R"]


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

    **Returns:** `(params, DesignTrace)`.
    """
    _check_steps(steps)
    dtype = jax.tree.leaves(params)[0].dtype

    @eqx.filter_jit
    def step(params, opt_state, hyp):
        def total(p):
            per, _ = loss_fn(p, hyp)
            return jnp.sum(per), per

        (loss, per), grads = jax.value_and_grad(total, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if project is not None:
            params = project(params)
        return params, opt_state, loss, per

    opt_state = optimizer.init(params)
    losses = []
    per = None
    for t in range(steps):
        hyp = {k: jnp.asarray(v, dtype=dtype) for k, v in hyper(t).items()}
        params, opt_state, loss, per = step(params, opt_state, hyp)
        losses.append(loss)
        if progress is not None:
            progress(1)
    hyp = {k: jnp.asarray(v, dtype=dtype) for k, v in hyper(steps - 1).items()}
    final = loss_fn(params, hyp)[0]
    return params, DesignTrace(loss=jnp.stack(losses), final_per_restart=final)


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


def _top_mask(scores: Float[Array, "..."], count: int) -> Bool[Array, "..."]:
    """A boolean mask of the `count` largest entries of `scores` (ties broken by position)."""
    flat = scores.reshape(-1)
    idx = jnp.argsort(-flat, stable=True)[:count]
    return jnp.zeros(flat.shape, bool).at[idx].set(True).reshape(scores.shape)


# --------------------------------------------------------------------------------------------------
# Shared pieces: optimal second layer, masked overlaps
# --------------------------------------------------------------------------------------------------


def optimal_second_layer(
    state: Overlaps, activation: AbstractActivation = Erf(), *, ridge: Float[ArrayLike, " K"] | float = 0.0
) -> Float[Array, " K"]:
    """`v = (A + diag(ridge) + 1e-10 tr(A)/K)^{-1} B v*` (`A = I2` among students, `B = I2` student-teacher): the
    second layer minimising `eps_g + 1/2 sum_i ridge_i v_i^2` for the given first layer (THEORY.md 6.1)."""
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
    """Overlaps of `w'_i = c_i (m_i * w_i)` (THEORY.md 6.2), exact for the concrete network and a 0/1 mask.

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
    evaluated exactly (best per-unit rescale) and the best is returned.
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

    # initial soft masks: magnitude scores (restart 0) and keep + noise
    score = jnp.abs(w) / jnp.sqrt(jnp.mean(w * w, axis=1, keepdims=True))
    mag0 = project_capped_simplex(0.5 * score, B)
    noise = 0.1 * jax.random.normal(key, (restarts, K, N), w.dtype)
    m0 = jnp.concatenate([mag0[None], jnp.clip(keep + noise[1:], 0.0, 1.0)], axis=0)
    m0 = jax.vmap(lambda m: project_capped_simplex(m, B))(m0)
    if budget == "projection":
        theta0 = m0
        to_mask = lambda th: th  # noqa: E731
        project = lambda p: {**p, "theta": jax.vmap(lambda m: project_capped_simplex(m, B))(p["theta"])}  # noqa: E731
    else:
        theta0 = jnp.log(jnp.clip(m0, 1e-3, 1 - 1e-3)) - jnp.log1p(-jnp.clip(m0, 1e-3, 1 - 1e-3))
        to_mask = jax.nn.sigmoid
        project = None
    params = {"theta": theta0, "logc": jnp.zeros((restarts, K), w.dtype)}

    def one_loss(theta, logc, hyp):
        m = to_mask(theta)
        c = jnp.exp(logc) if rescale else None
        st = masked_network_overlaps(w, w_star, v, v_star, m, c, bernoulli=True)
        if refit:
            st = eqx.tree_at(lambda s: s.v, st, optimal_second_layer(st, activation))
        err = generalisation_error(st, activation)
        pen = hyp["penalty"] * jnp.square(jax.nn.relu(jnp.mean(m) - B / (K * N))) if budget == "penalty" else 0.0
        return err + pen + hyp["binarise"] * jnp.mean(m * (1.0 - m)), err

    def loss_fn(p, hyp):
        total, err = jax.vmap(one_loss, (0, 0, None))(p["theta"], p["logc"], hyp)
        return total, err

    params, trace = run_design(
        loss_fn, params, optimizer=optax.adam(learning_rate), steps=steps, hyper=hyper, project=project,
        progress=progress,
    )
    soft = jax.vmap(to_mask)(params["theta"])
    # candidates: the top-B entries of each restart's soft mask, and `roundings` conditional-Bernoulli draws
    # (Gumbel top-B on the log-odds) from each
    pc = jnp.clip(soft, 1e-12, 1 - 1e-12)
    logit = jnp.log(pc) - jnp.log1p(-pc)
    gumbel = jax.random.gumbel(jax.random.fold_in(key, 1), (roundings,) + soft.shape, w.dtype)
    cand = jnp.concatenate([soft, (logit[None] + gumbel).reshape((-1, K, N))], axis=0)
    masks = jax.vmap(lambda m: _top_mask(m, B))(cand)
    soft = jnp.concatenate([soft] * (roundings + 1), axis=0)
    theta_all = jnp.concatenate([params["theta"]] * (roundings + 1), axis=0)
    logc_all = jnp.concatenate([params["logc"]] * (roundings + 1), axis=0)
    errs, cs, vs = jax.vmap(
        lambda mk: masked_network_error(w, w_star, v, v_star, mk, rescale="optimal" if rescale else "none",
                                        refit=refit, activation=activation)
    )(masks)
    best = int(jnp.argmin(errs))
    relaxed = jax.vmap(one_loss, (0, 0, None))(theta_all, logc_all, hyper(steps - 1))[1]
    return NetworkDesign(mask=masks[best], scale=cs[best], v=vs[best], error=errs[best],
                         relaxed_error=relaxed[best], soft_mask=soft[best], trace=trace)


# --------------------------------------------------------------------------------------------------
# Level 1b: node (unit) mask
# --------------------------------------------------------------------------------------------------


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


def node_subset_errors(
    state: Overlaps,
    masks: Bool[ArrayLike, "C K"],
    *,
    reweight: Literal["none", "preactivation", "activation", "optimal"] = "optimal",
    activation: AbstractActivation | str = Erf(),
) -> Float[Array, " C"]:
    """Exact `eps_g` of the student pruned to each subset (rows of `masks`) with a reweighting rule of
    THEORY.md 6.1 (pruned units get `v = 0`, which equals removing them)."""
    activation = get_activation(activation)
    masks = jnp.asarray(masks, bool)

    def one(mask):
        vp = _masked_node_v(state, mask, reweight, activation)
        return generalisation_error(eqx.tree_at(lambda s: s.v, state, vp), activation)

    return jax.lax.map(one, masks, batch_size=4096) if masks.shape[0] > 4096 else jax.vmap(one)(masks)


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


def _swap_polish(errors_fn, mask: np.ndarray, max_rounds: int) -> tuple[np.ndarray, float]:
    """Rounding polish: best-improvement exchanges of one kept and one pruned unit (all `k (K - k)` swaps
    evaluated exactly at once by `errors_fn(masks)`), until none improves or `max_rounds` is reached."""
    mask = np.asarray(mask, bool)
    err = float(errors_fn(mask[None])[0])
    for _ in range(max_rounds):
        kept, out = np.flatnonzero(mask), np.flatnonzero(~mask)
        if kept.size == 0 or out.size == 0:
            break
        cands = np.repeat(mask[None], kept.size * out.size, axis=0)
        ii, jj = np.meshgrid(kept, out, indexing="ij")
        rows = np.arange(cands.shape[0])
        cands[rows, ii.ravel()] = False
        cands[rows, jj.ravel()] = True
        errs = np.asarray(errors_fn(cands))
        j = int(np.argmin(errs))
        if not errs[j] < err:
            break
        mask, err = cands[j], float(errs[j])
    return mask, err


def _relaxed_node_v(state, m, reweight, rho, activation):
    """`v'(m)`: `m * v` (`none`) or the ridge-relaxed optimum `(A + rho diag(1/m - 1))^{-1} B v*`, which at a
    binary `m` is the optimal reweighting of the kept units (zero on the pruned ones)."""
    if reweight == "none":
        return m * state.v
    mc = jnp.clip(m, 1e-6, 1.0)
    return optimal_second_layer(state, activation, ridge=rho * (1.0 / mc - 1.0))


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
    imp = jnp.abs(state.v) * jnp.sqrt(jnp.diag(state.Q))
    m0 = jnp.concatenate(
        [project_capped_simplex(imp / jnp.max(imp), k)[None],
         jax.random.uniform(key, (restarts - 1, K), dtype)], axis=0)
    m0 = jax.vmap(lambda m: project_capped_simplex(m, k))(m0)
    if budget == "projection":
        theta0, to_mask = m0, (lambda th: th)
        project = lambda p: jax.vmap(lambda m: project_capped_simplex(m, k))(p)  # noqa: E731
    else:
        mc = jnp.clip(m0, 1e-3, 1 - 1e-3)
        theta0, to_mask, project = jnp.log(mc) - jnp.log1p(-mc), jax.nn.sigmoid, None

    def one_loss(theta, hyp):
        m = to_mask(theta)
        err = generalisation_error(
            eqx.tree_at(lambda s: s.v, state, _relaxed_node_v(state, m, reweight, rho, activation)), activation)
        pen = hyp["penalty"] * jnp.square(jax.nn.relu(jnp.sum(m) - k)) if budget == "penalty" else 0.0
        return err + pen + hyp["binarise"] * jnp.mean(m * (1 - m)), err

    params, trace = run_design(lambda p, h: jax.vmap(one_loss, (0, None))(p, h), theta0,
                               optimizer=optax.adam(learning_rate), steps=steps, hyper=hyper, project=project,
                               progress=progress)
    soft = jax.vmap(to_mask)(params)
    masks = jax.vmap(lambda m: _top_mask(m, k))(soft)
    errs = node_subset_errors(state, masks, reweight=reweight, activation=activation)
    best = int(jnp.argmin(errs))
    relaxed = jax.vmap(one_loss, (0, None))(params, hyper(steps - 1))[1]
    mask, err = np.asarray(masks[best]), errs[best]
    if polish:
        mask, err = _swap_polish(lambda ms: node_subset_errors(state, ms, reweight=reweight, activation=activation),
                                 mask, K)
        mask, err = jnp.asarray(mask), jnp.asarray(err, dtype)
    v_best = _masked_node_v(state, jnp.asarray(mask), reweight, activation)
    return NodeDesign(mask=jnp.asarray(mask), v=v_best, error=err, relaxed_error=relaxed[best],
                      soft_mask=soft[best], trace=trace)


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

    `s = 0` is random pruning, `s = 1` the large-N DPP edge rule `mu w^2 / (1 + mu w^2)` (THEORY.md 6.2),
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


def _solve_shift(rule: EdgeRule, keep, allocation):
    """`tau` meeting the budget (bisection on stopped gradients, then one Newton step carrying the
    implicit-function derivative `d tau = -d kappa / kappa'`)."""
    K = rule.a.shape[0]
    r0 = jax.lax.stop_gradient(rule)
    dtype = rule.a.dtype

    def excess(tau):
        kap = _keep_fractions(r0, tau)
        return kap - keep if allocation == "uniform" else jnp.broadcast_to(jnp.mean(kap) - keep, (K,))

    def body(_, b):
        lo, hi = b
        mid = 0.5 * (lo + hi)
        over = excess(mid) > 0
        return jnp.where(over, lo, mid), jnp.where(over, mid, hi)

    lo, hi = jax.lax.fori_loop(0, 100, body, (jnp.full(K, -200.0, dtype), jnp.full(K, 200.0, dtype)))
    tau = jax.lax.stop_gradient(0.5 * (lo + hi))
    kap = _keep_fractions(rule, tau)
    if allocation == "uniform":
        g = kap - keep
        d = jax.lax.stop_gradient(jax.jacfwd(lambda t: _keep_fractions(r0, t))(tau).diagonal())
        return tau - g / d
    g = jnp.mean(kap) - keep
    d = jax.lax.stop_gradient(jax.grad(lambda t: jnp.mean(_keep_fractions(r0, jnp.broadcast_to(t, (K,)))))(tau[0]))
    return tau - g / d


def _conditional_kernels(Q):
    """`D_ik[a, b]`: the row-normalised density of `z_2 = z_b` given `z_1 = z_a` on the grid, for
    `corr(z_1, z_2) = rho_ik` (a function of the state only, not of the rule)."""
    d = jnp.sqrt(jnp.diag(Q))
    rho = jnp.clip(Q / (d[:, None] * d[None, :]), -1.0, 1.0)
    sq = jnp.maximum(jnp.sqrt(jnp.clip(1.0 - rho * rho, 0.0, 1.0)), 1e-3)
    z = jnp.asarray(_GRID_Z)

    def kern(i, k):
        logd = -0.5 * jnp.square((z[None, :] - rho[i, k] * z[:, None]) / sq[i, k])
        logd = logd - jnp.max(logd, axis=1, keepdims=True)
        dens = jnp.exp(logd)
        return dens / jnp.sum(dens, axis=1, keepdims=True)

    return kern


def conditional_kernels(state: Overlaps) -> Float[Array, "K K n n"]:
    """All `D_ik` of [`edge_rule_moments`][] at once (`K^2 400^2` floats), to precompute outside a loop."""
    kern = _conditional_kernels(state.Q)
    K = state.K
    return jax.vmap(lambda i: jax.vmap(lambda k: kern(i, k))(jnp.arange(K)))(jnp.arange(K))


def edge_rule_moments(
    state: Overlaps, rule: EdgeRule, keep: Float[ArrayLike, ""], *, allocation: Literal["uniform", "free"] = "uniform",
    kernels: Float[Array, "K K n n"] | None = None,
) -> tuple[Float[Array, "K K"], Float[Array, "K M"], Float[Array, " K"]]:
    """Gaussian-equivalent moments of the rule (THEORY.md 6.2), rescale included:
    `Q'_ii = c_i^2 Q_ii E[pi_i z^2]`, `R'_in = c_i R_in E[pi_i z^2]`,
    `Q'_ik = c_i c_k sqrt(Q_ii Q_kk) E[pi_i(z_1) z_1 pi_k(z_2) z_2]` with `corr(z_1, z_2) = Q_ik/sqrt(Q_ii Q_kk)`
    (a uniform 400-point grid on [-7, 7] for `z_1`, and the row-normalised conditional density of `z_2 | z_1`
    on the same grid). **Returns:** `(Q', R', kappa)`."""
    tau = _solve_shift(rule, keep, allocation)
    z = jnp.asarray(_GRID_Z)
    wz = jnp.asarray(_GRID_W)
    pz = rule.keep_prob(z, tau)  # (K, n)
    kappa = pz @ wz
    m2 = (pz * (z * z)[None]) @ wz  # E[pi z^2]
    d = jnp.sqrt(jnp.diag(state.Q))
    K = state.K
    fz = pz * z[None]  # f_i(z) = pi_i(z) z on the grid
    if kernels is None:
        kern = _conditional_kernels(jax.lax.stop_gradient(state.Q))

        def row(i):  # cross[i, k] = sum_a wz_a f_i(z_a) sum_b D_ik[a, b] f_k(z_b)
            return jnp.einsum("a,kab,kb->k", wz * fz[i], jax.lax.map(lambda k: kern(i, k), jnp.arange(K)), fz)

        cross = jax.lax.map(row, jnp.arange(K))
    else:
        cross = jnp.einsum("ia,ikab,kb->ik", wz[None] * fz, kernels, fz)
    c = jnp.exp(rule.log_scale)
    eye = jnp.eye(K, dtype=bool)
    Qp = jnp.where(eye, jnp.diag(d * d * m2), d[:, None] * d[None, :] * cross)
    Qp = 0.5 * (Qp + Qp.T)
    Qp = c[:, None] * c[None, :] * Qp
    Rp = (c * m2)[:, None] * state.R
    return Qp, Rp, kappa


def edge_rule_state(state: Overlaps, rule: EdgeRule, keep, *, allocation="uniform", refit=False,
                    activation: AbstractActivation = Erf(), kernels=None) -> Overlaps:
    """The pruned state `(Q', R', T, v or refit v, v*)` of [`edge_rule_moments`][]."""
    Qp, Rp, _ = edge_rule_moments(state, rule, keep, allocation=allocation, kernels=kernels)
    st = Overlaps(Q=Qp, R=Rp, T=state.T, v=state.v, v_star=state.v_star)
    if refit:
        st = eqx.tree_at(lambda s: s.v, st, optimal_second_layer(st, activation))
    return st


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
    tau = _solve_shift(rule, keep, allocation)
    z = w / jnp.sqrt(jnp.mean(w * w, axis=1, keepdims=True))
    K, N = w.shape
    logit = jax.vmap(lambda zi, i: rule.keep_logit(zi, tau)[i])(z, jnp.arange(K))
    if not exact_budget:
        return jax.random.uniform(key, (K, N), w.dtype) < jax.nn.sigmoid(logit)
    score = logit + jax.random.logistic(key, (K, N), w.dtype)
    if allocation == "uniform":
        kk = int(round(keep * N))
        return jax.vmap(lambda s: _top_mask(s, kk))(score)
    return _top_mask(score, int(round(keep * K * N)))


class RuleDesign(eqx.Module):
    """A designed keep rule: `rule` ([`EdgeRule`][]), `error` (`eps_g` under the Gaussian-equivalent model),
    `keep_fractions` (per unit), `trace`."""

    rule: EdgeRule
    error: Float[Array, ""]
    keep_fractions: Float[Array, " K"]
    trace: DesignTrace


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
    activation: AbstractActivation | str = Erf(),
    progress: Callable[[int], None] | None = None,
) -> RuleDesign:
    """Optimise the keep rule's per-unit slopes, offsets (for `allocation="free"`) and rescales for the
    Gaussian-equivalent error at keep fraction `keep` (one restart per initial slope in `slopes`)."""
    activation = get_activation(activation)
    _check_keep(keep)
    _check_steps(steps)
    _check_positive(learning_rate, "learning_rate")
    if allocation not in ("uniform", "free"):
        raise ValueError(f"allocation must be 'uniform' or 'free', got {allocation!r}")
    K, dtype = state.K, state.Q.dtype
    R = len(slopes)
    rules = EdgeRule(a=jnp.zeros((R, K), dtype), log_slope=jnp.log(jnp.asarray(slopes, dtype))[:, None] * jnp.ones((R, K), dtype),
                     log_scale=jnp.zeros((R, K), dtype))
    keep_arr = jnp.asarray(keep, dtype)
    # precompute the conditional kernels when they fit in 256 MB (else they are rebuilt inside every step)
    kernels = conditional_kernels(state) if K * K * _GRID_N**2 * 8 <= 2**28 else None

    def one(rule, kern):
        if not rescale:
            rule = eqx.tree_at(lambda r: r.log_scale, rule, jax.lax.stop_gradient(rule.log_scale))
        st = edge_rule_state(state, rule, keep_arr, allocation=allocation, refit=refit, activation=activation,
                             kernels=kern)
        return generalisation_error(st, activation)

    def loss_fn(p, hyp):  # the kernels enter as an argument, not as a constant folded by XLA
        e = jax.vmap(one, (0, None))(p, hyp.get("kernels"))
        return e, e

    params, trace = run_design(loss_fn, rules, optimizer=optax.adam(learning_rate), steps=steps,
                               hyper=(lambda t: {"kernels": kernels}) if kernels is not None else (lambda t: {}),
                               progress=progress)
    errs = jax.vmap(one, (0, None))(params, kernels)
    best = int(jnp.argmin(errs))
    rule = jax.tree.map(lambda x: x[best], params)
    _, _, kappa = edge_rule_moments(state, rule, keep_arr, allocation=allocation)
    return RuleDesign(rule=rule, error=errs[best], keep_fractions=kappa, trace=trace)


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
    masks = jnp.asarray(enumerate_subsets(K, k))
    errs = node_subset_errors(state, masks, reweight=reweight, activation=activation) if subset_errors is None \
        else jnp.asarray(subset_errors)
    if family == "kdpp":
        L0 = state.Q if kernel == "Q" else activation_covariance(state, activation)[:K, :K]
        eye = jnp.eye(K, dtype=L0.dtype)
        sign, ld = jax.vmap(lambda m: jnp.linalg.slogdet(jnp.where(m[:, None] & m[None, :], L0, eye)))(masks)
        base = jnp.where(sign > 0, ld, -1e30)
    elif family == "bernoulli":
        base = jnp.zeros(masks.shape[0], state.Q.dtype)
    else:
        raise ValueError(f"family must be 'kdpp' or 'bernoulli', got {family!r}")

    def loss_fn(theta, hyp):
        e = jnp.exp(subset_log_probs(theta, masks, base)) @ errs
        return e[None], e

    theta0 = jnp.zeros(K, state.Q.dtype)
    theta, trace = run_design(loss_fn, theta0, optimizer=optax.adam(learning_rate), steps=steps, progress=progress)
    probs = jnp.exp(subset_log_probs(theta, masks, base))
    mode = int(jnp.argmax(probs))
    return SubsetDesign(theta=theta, expected_error=probs @ errs, mode=masks[mode], mode_error=errs[mode],
                        best_error=jnp.min(errs), probs=probs, masks=masks, trace=trace)


# --------------------------------------------------------------------------------------------------
# Level 3: through training
# --------------------------------------------------------------------------------------------------


def retrain_pruned(
    state: Overlaps,
    mask: Float[Array, " K"],
    config: SGDConfig,
    duration: float,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 4096,
    adjoint: diffrax.AbstractAdjoint | None = None,
) -> Overlaps:
    """Train the pruned student (second layer `state.v`, already zero on pruned units) for `duration` with the
    ODEs of THEORY.md 4, second-layer updates gated by `mask` (`dv_i -> m_i dv_i`), so that at a binary mask the
    pruned units stay pruned; first-layer updates of a unit with `v_i = 0` vanish on their own.
    Differentiable (diffrax `RecursiveCheckpointAdjoint` by default). **Returns:** the state at the end."""

    def field(t, y, args):
        d = vector_field(y, config)
        return eqx.tree_at(lambda s: s.v, d, d.v * mask)

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), diffrax.Tsit5(), t0=0.0, t1=float(duration), dt0=None, y0=state,
        saveat=diffrax.SaveAt(t1=True), stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps, adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
        throw=False,
    )
    return jax.tree.map(lambda x: x[-1], sol.ys)


class TrainingDesign(eqx.Module):
    """A unit subset designed for the error after retraining: `mask`, `error` (exact final `eps_g` of the hard
    subset after retraining), `relaxed_error`, `soft_mask`, `trace`, and `reweight` (the reweighting applied at
    prune time: `"none"` or `"optimal"`)."""

    mask: Bool[Array, " K"]
    error: Float[Array, ""]
    relaxed_error: Float[Array, ""]
    soft_mask: Float[Array, " K"]
    trace: DesignTrace
    reweight: str = eqx.field(static=True, default="optimal")


def _pruned_start(state, m, reweight, rho, activation):
    return eqx.tree_at(lambda s: s.v, state, _relaxed_node_v(state, m, reweight, rho, activation))


def _pruned_start_flag(state, m, use_optimal, rho, activation):
    """[`_pruned_start`][] with the reweighting picked by a traced flag (`True`: ridge-relaxed optimal,
    `False`: `m v`), so that restarts of both kinds share one compiled step."""
    v = jnp.where(use_optimal, _relaxed_node_v(state, m, "optimal", rho, activation), m * state.v)
    return eqx.tree_at(lambda s: s.v, state, v)


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
    progress: Callable[[int], None] | None = None,
) -> TrainingDesign:
    """Design the subset of `k` units kept at `alpha_p` (the time of `state`) so that the error after
    retraining for `duration` is minimal: relaxed mask `m` (projected onto `sum m = k`), pruned start
    `v'(m)` as in [`design_node_mask`][], gradients through the ODE solve of [`retrain_pruned`][]; rounding as
    in [`design_node_mask`][] (top `k` of each restart, then exact one-unit exchanges when `polish`).

    `reweight="best"` designs the reweighting too: `restarts` restarts with `v'(m) = m v` and `restarts` with
    the relaxed optimal reweighting run side by side (one compiled step), and the better hard result is kept.
    `exact_errors(masks, reweight) -> errors` replaces the exact evaluation of hard subsets (default
    [`training_subset_errors`][]), e.g. a table of all subsets already computed."""
    activation = config.activation
    K = state.K
    _check_k(k, K)
    _check_steps(steps)
    _check_positive(learning_rate, "learning_rate")
    _check_positive(duration, "duration")
    if reweight not in ("none", "optimal", "best"):
        raise ValueError(f"reweight must be 'none', 'optimal' or 'best', got {reweight!r}")
    key = jax.random.key(0) if key is None else key
    dtype = state.Q.dtype
    imp = jnp.abs(state.v) * jnp.sqrt(jnp.diag(state.Q))
    m0 = jnp.concatenate(
        [project_capped_simplex(imp / jnp.max(imp), k)[None],
         jax.random.uniform(key, (restarts - 1, K), dtype)], axis=0)
    m0 = jax.vmap(lambda m: project_capped_simplex(m, k))(m0)
    kinds = ("none", "optimal") if reweight == "best" else (reweight,)
    flags = jnp.repeat(jnp.asarray([kd == "optimal" for kd in kinds]), restarts)
    m0 = jnp.concatenate([m0] * len(kinds), axis=0)
    hyper = _budget_hyper("projection", steps, (0.0, 0.0), binarise)

    if exact_errors is None:
        def exact_errors(ms, rw):
            return np.asarray(training_subset_errors(state, config, jnp.asarray(ms), duration, reweight=rw,
                                                     rtol=rtol))

    def one_loss(m, flag, hyp):
        final = retrain_pruned(_pruned_start_flag(state, m, flag, rho, activation), m, config, duration, rtol=rtol)
        err = generalisation_error(final, activation)
        return err + hyp["binarise"] * jnp.mean(m * (1 - m)), err

    params, trace = run_design(
        lambda p, h: jax.vmap(one_loss, (0, 0, None))(p, flags, h), m0, optimizer=optax.adam(learning_rate),
        steps=steps, hyper=hyper, project=lambda p: jax.vmap(lambda m: project_capped_simplex(m, k))(p),
        progress=progress)
    masks = np.asarray(jax.vmap(lambda m: _top_mask(m, k))(params))
    relaxed = np.asarray(jax.vmap(one_loss, (0, 0, None))(params, flags, hyper(steps - 1))[1])
    best = None
    for j, kd in enumerate(kinds):
        sl = slice(j * restarts, (j + 1) * restarts)
        errs = np.asarray(exact_errors(masks[sl], kd))
        i = int(np.argmin(errs))
        mask, err = masks[sl][i], float(errs[i])
        if polish:
            mask, err = _swap_polish(lambda ms, kd=kd: exact_errors(ms, kd), mask, K)
        if best is None or err < best[1]:
            best = (mask, err, kd, j * restarts + i)
    mask, err, kd, i = best
    return TrainingDesign(mask=jnp.asarray(mask), error=jnp.asarray(err, dtype), relaxed_error=jnp.asarray(relaxed[i]),
                          soft_mask=params[i], trace=trace, reweight=kd)


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

_NODE_REWEIGHTS = ("none", "preactivation", "activation", "optimal")
_RESCALE_LABEL = {"none": "c = 1", "inverse-keep": "c = 1/keep", "optimal": "optimal c"}


def _best_node_baselines(state: Overlaps, k: int, activation) -> dict[str, tuple[float, str]]:
    """Best (over reweighting rules and DPP kernels) exact expected error of random, importance and DPP node
    pruning to `k` units: `{method: (eps_g, setting)}`."""
    return {m: (e, s) for m, (e, s, _, _) in _node_baseline_details(state, k, activation).items()}


def _node_baseline_details(state: Overlaps, k: int, activation):
    """`{method: (eps_g, setting, probs over enumerate_subsets(K, k) or None, reweight)}` of the best setting
    of random / importance / DPP node pruning (exact, by enumeration)."""
    from ._dpp import check_kdpp_kernel, kdpp_enumerate
    from ._node import importance_mask, kernel_matrix

    K = state.K
    masks = np.asarray(enumerate_subsets(K, k))
    errs = {rw: np.asarray(node_subset_errors(state, jnp.asarray(masks), reweight=rw, activation=activation))
            for rw in _NODE_REWEIGHTS}
    imp = np.asarray(importance_mask(state, k))
    dists = {"random": [(None, np.full(masks.shape[0], 1.0 / masks.shape[0]))],
             "importance": [(None, np.all(masks == imp, axis=1).astype(float))], "dpp": []}
    for ker in ("Q", "A", "rbf"):
        L = kernel_matrix(state, ker, activation=activation)
        try:  # a k-DPP needs rank >= k
            check_kdpp_kernel(L, k)
        except ValueError:
            continue
        dists["dpp"].append((ker, np.asarray(kdpp_enumerate(L, k)[1])))
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


class _FreshInputs:
    """`P` fresh noise-free inputs of a concrete teacher: the half test MSE `mean (phi - y)^2 / 2` of pruned
    students (edge: effective weights `c (m * w)`; node: the unit activations of the unpruned student
    combined with each subset's second layer)."""

    def __init__(self, key, w_star, v_star, activation, samples: int = 10_000):
        N = w_star.shape[1]
        self.scale = 1.0 / math.sqrt(N)
        self.x = jax.random.normal(key, (samples, N), w_star.dtype)
        self.y = activation(self.x @ w_star.T * self.scale) @ v_star
        self.act = activation

    def edge(self, w_eff: Float[Array, "K N"], v: Float[Array, " K"]) -> float:
        phi = self.act(self.x @ w_eff.T * self.scale) @ v
        return float(0.5 * jnp.mean(jnp.square(phi - self.y)))

    def node(self, w: Float[Array, "K N"], V: Float[Array, "C K"]) -> np.ndarray:
        G = self.act(self.x @ w.T * self.scale)
        return np.asarray(0.5 * jnp.mean(jnp.square(G @ V.T - self.y[:, None]), axis=0))


@eqx.filter_jit
def _concrete_edge_error(w, w_star, v, v_star, mask, rescale: str, activation):
    """Exact `eps_g` of `c (m * w)` on a concrete network with `c = 1`, `1/keep_i`, or the per-unit optimum
    (the Newton rescale of [`jaxprune._edge.optimal_edge_rescale`][], from the better of the other two).
    **Returns:** `(eps_g, c)`."""
    from ._edge import EdgeMoments, apply_edge_moments, optimal_edge_rescale

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


def _node_subset_vs(state, masks, reweight, activation):
    return jax.vmap(lambda m: _masked_node_v(state, m, reweight, activation))(jnp.asarray(masks, bool))


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
    from ._edge import dpp_edge_mask, magnitude_edge_mask, random_edge_mask

    activation = get_activation(activation)
    w, w_star = jnp.asarray(w), jnp.asarray(w_star)
    v, v_star = jnp.asarray(v, w.dtype), jnp.asarray(v_star, w.dtype)
    K, N = w.shape
    key = jax.random.key(0) if key is None else key
    key, kx = jax.random.split(key)
    fresh = _FreshInputs(kx, w_star, v_star, activation, test_samples) if test_samples else None
    state = Overlaps(Q=w @ w.T / N, R=w @ w_star.T / N, T=w_star @ w_star.T / N, v=v, v_star=v_star)
    full = float(generalisation_error(state, activation))
    rows = [dict(keep=1.0, k=K, kind="-", method="unpruned", role="reference", error=full, setting="",
                 half_mse=fresh.edge(w, v) if fresh else None)]

    def edge_eval(mask):
        if refit:
            e, c, vv = masked_network_error(w, w_star, v, v_star, mask, rescale="optimal", refit=True,
                                            activation=activation)
        else:
            (e, c), vv = _concrete_edge_error(w, w_star, v, v_star, mask, "optimal", activation), v
        h = fresh.edge(c[:, None] * jnp.where(mask, w, 0.0), vv) if fresh else None
        return float(e), h

    def mean_eval(ms):
        res = [edge_eval(m) for m in ms]
        return float(np.mean([r[0] for r in res])), (float(np.mean([r[1] for r in res])) if fresh else None)

    rescale_txt = "optimal c and second layer" if refit else "optimal c"
    for keep in keeps:
        kk = _node_k(keep, K)
        key, k1, k2, k3 = jax.random.split(key, 4)
        d = design_edge_mask(w, w_star, v, v_star, keep, budget=budget, refit=refit, steps=steps,
                             learning_rate=learning_rate, restarts=restarts, key=k1, activation=activation,
                             progress=progress)
        e, h = edge_eval(d.mask)
        rows.append(dict(keep=keep, k=kk, kind="edge", method="designed", role="designed", error=e, half_mse=h,
                         setting=f"{rescale_txt}; relaxed {float(d.relaxed_error):.4g}", mask=d.mask,
                         loss_curve=d.trace.loss))
        e, h = mean_eval([random_edge_mask(kd, w, keep) for kd in jax.random.split(k2, random_draws)])
        rows.append(dict(keep=keep, k=kk, kind="edge", method="random", role="baseline", error=e, half_mse=h,
                         setting=f"{rescale_txt}, mean of {random_draws} masks"))
        e, h = edge_eval(magnitude_edge_mask(w, keep))
        rows.append(dict(keep=keep, k=kk, kind="edge", method="magnitude", role="baseline", error=e, half_mse=h,
                         setting=rescale_txt))
        e, h = mean_eval([dpp_edge_mask(kd, w, keep, kernel="diagonal") for kd in jax.random.split(k3, 2)])
        rows.append(dict(keep=keep, k=kk, kind="edge", method="dpp", role="baseline", error=e, half_mse=h,
                         setting=f"diagonal kernel, {rescale_txt}, mean of 2 masks"))
        if kk is not None and math.comb(K, kk) <= 200_000:
            nd = design_node_mask(state, kk, activation=activation, key=k1, steps=max(steps // 2, 1),
                                  progress=progress)
            masks = np.asarray(enumerate_subsets(K, kk))
            Vs = {rw: _node_subset_vs(state, masks, rw, activation) for rw in _NODE_REWEIGHTS}
            hm = {rw: fresh.node(w, Vs[rw]) for rw in Vs} if fresh else None
            row = np.all(masks == np.asarray(nd.mask), axis=1)
            rows.append(dict(keep=keep, k=kk, kind="node", method="designed", role="designed",
                             error=float(nd.error), half_mse=float(row @ hm["optimal"]) if fresh else None,
                             setting="optimal reweighting", mask=nd.mask, loss_curve=nd.trace.loss))
            for m, (e, setting, probs, rw) in _node_baseline_details(state, kk, activation).items():
                rows.append(dict(keep=keep, k=kk, kind="node", method=m, role="baseline", error=e,
                                 half_mse=float(probs @ hm[rw]) if fresh else None, setting=setting))
    return rows


def _edge_baseline_theory(state: Overlaps, keep: float, activation) -> list[tuple[str, str, float, Array]]:
    """`(method, rescale, eps_g, c)` of random / magnitude / DPP edge pruning under the Gaussian-equivalent
    model with each rescale (moments computed once per method; one compiled optimal-rescale solve)."""
    from ._edge import apply_edge_moments, dpp_moments, edge_rescale, magnitude_moments, random_moments

    K = state.K
    p = jnp.full((K,), keep, state.Q.dtype)
    out = []
    for method, fn in (("random", random_moments), ("magnitude", magnitude_moments), ("dpp", dpp_moments)):
        mom = fn(state, p)
        for rescale in ("none", "inverse-keep", "optimal"):
            c, _ = edge_rescale(state, mom, p, rescale, activation)
            out.append((method, rescale, float(generalisation_error(apply_edge_moments(state, mom, c), activation)),
                        c))
    return out


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
    with each rescale (`c = 1`, `c = 1/keep`, optimal `c`; Gaussian-equivalent model of THEORY.md 6.2), and
    designed subset distributions (k-DPP quality weights, conditional Bernoulli) beside random / importance /
    DPP node pruning (best reweighting and kernel; exact by enumeration).

    With `weights = (w, w_star)` of a concrete network whose overlaps are `state`, edge rows also get `sim`:
    the exact error of concrete masks drawn from the rule on that network (mean over `draws`; the designed rule
    with its own rescale, and `sim_rescaled` with the network's optimal rescale; baselines: random / magnitude /
    DPP masks with the row's rescale), and every row `half_mse` (fresh inputs). Node rows need no `sim`: the
    state is the network's own overlaps, so their `error` is already the concrete network's."""
    from ._edge import dpp_edge_mask, magnitude_edge_mask, random_edge_mask

    activation = get_activation(activation)
    K = state.K
    key = jax.random.key(0) if key is None else key
    key, kx = jax.random.split(key)
    rows = [dict(keep=1.0, k=K, kind="-", method="unpruned", role="reference",
                 error=float(generalisation_error(state, activation)), setting="")]
    fresh = None
    if weights is not None:
        w, w_star = (jnp.asarray(x) for x in weights)
        v, v_star = state.v, state.v_star
        fresh = _FreshInputs(kx, w_star, v_star, activation, test_samples) if test_samples else None
        rows[0]["half_mse"] = fresh.edge(w, v) if fresh else None

        def sim_eval(ms, rescale, c=None):
            es, hs = [], []
            for m in ms:
                if c is None:
                    e, cc = _concrete_edge_error(w, w_star, v, v_star, m, rescale, activation)
                else:
                    cc = c
                    e = generalisation_error(masked_network_overlaps(w, w_star, v, v_star, m.astype(w.dtype), c),
                                             activation)
                es.append(float(e))
                if fresh:
                    hs.append(fresh.edge(cc[:, None] * jnp.where(m, w, 0.0), v))
            return float(np.mean(es)), (float(np.mean(hs)) if fresh else None)

    for keep in keeps:
        kk = _node_k(keep, K)
        key, kr, kb = jax.random.split(key, 3)
        for alloc in ("uniform", "free"):
            r = design_edge_rule(state, keep, allocation=alloc, steps=steps, learning_rate=learning_rate,
                                 activation=activation, progress=progress)
            row = dict(keep=keep, k=kk, kind="edge", method=f"designed rule ({alloc})", role="designed",
                       error=float(r.error), loss_curve=r.trace.loss,
                       setting="own c; slopes " + ",".join(f"{x:.3g}" for x in np.asarray(r.rule.slope())))
            if weights is not None:
                ms = [sample_edge_rule_mask(kd, w, r.rule, keep, allocation=alloc)
                      for kd in jax.random.split(kr, draws)]
                row["sim"], row["half_mse"] = sim_eval(ms, None, jnp.exp(r.rule.log_scale))
                row["sim_rescaled"] = sim_eval(ms, "optimal")[0]
            rows.append(row)
        if weights is not None:
            kb1, kb2 = jax.random.split(kb)
            concrete = {"random": [random_edge_mask(kd, w, keep) for kd in jax.random.split(kb1, draws)],
                        "magnitude": [magnitude_edge_mask(w, keep)],
                        "dpp": [dpp_edge_mask(kd, w, keep, kernel="diagonal") for kd in jax.random.split(kb2, 2)]}
        for method, rescale, e, _ in _edge_baseline_theory(state, keep, activation):
            row = dict(keep=keep, k=kk, kind="edge", method=method, role="baseline", error=e,
                       setting=_RESCALE_LABEL[rescale])
            if weights is not None:
                row["sim"], row["half_mse"] = sim_eval(concrete[method], rescale)
            rows.append(row)
        if kk is not None and math.comb(K, kk) <= 200_000:
            masks = jnp.asarray(enumerate_subsets(K, kk))
            errs = node_subset_errors(state, masks, reweight="optimal", activation=activation)
            hm = None
            if fresh:
                hm = {rw: fresh.node(w, _node_subset_vs(state, masks, rw, activation)) for rw in _NODE_REWEIGHTS}
            for fam in ("kdpp", "bernoulli"):
                sd = design_subset_distribution(state, kk, family=fam, subset_errors=errs, steps=steps,
                                                progress=progress)
                rows.append(dict(keep=keep, k=kk, kind="node", method=f"designed {fam}", role="designed",
                                 error=float(sd.expected_error), loss_curve=sd.trace.loss,
                                 half_mse=float(np.asarray(sd.probs) @ hm["optimal"]) if hm else None,
                                 setting=f"optimal reweighting; mode {float(sd.mode_error):.4g}, "
                                         f"brute-force min {float(sd.best_error):.4g}"))
            for m, (e, setting, probs, rw) in _node_baseline_details(state, kk, activation).items():
                rows.append(dict(keep=keep, k=kk, kind="node", method=m, role="baseline", error=e, setting=setting,
                                 half_mse=float(probs @ hm[rw]) if hm else None))
    return rows


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
    solve ([`design_through_training`][] with `reweight="best"`). Baselines: random / importance / DPP
    (L = Q) subsets at `alpha_p` then retraining (exact expected final error by enumeration, better of no and
    optimal reweighting), the subset best at prune time (greedy), and pruning at the end of training instead
    (the full student trained for `duration`, then pruned by the best subset / random / importance / DPP with
    their best reweighting and kernel, no retraining). Reference: the brute-force best subset.

    With `network = (teacher, student)` (finite-N networks from `jaxprune._simulate` whose overlaps are `state`),
    rows also get `sim`: every subset (with each reweighting) of the concrete student is trained on by the
    finite-N simulation for `duration N` steps, `seeds` input streams shared by all subsets; a row's `sim` is
    its exact final error (mean over seeds, weighted by the row's subset distribution), `half_mse` the same on
    `test_samples` fresh inputs. End-of-training rows: the full concrete student trained on for `duration N`
    steps, then pruned."""
    from ._dpp import kdpp_enumerate
    from ._node import importance_mask

    act = config.activation
    K = state.K
    key = jax.random.key(0) if key is None else key
    end = jax.jit(lambda s: retrain_pruned(s, jnp.ones(K, s.Q.dtype), config, duration))(state)
    rows = [dict(k=K, kind="-", method="unpruned, trained on", role="reference",
                 error=float(generalisation_error(end, act)), setting="")]
    sim_end = None
    if network is not None:
        sim_end = _simulate_end(network, config, duration, seeds, key, test_samples)
        rows[0]["sim"] = float(np.mean(sim_end["eps"]))
        rows[0]["half_mse"] = float(np.mean(sim_end["half_mse_full"]))
    rws = ("none", "optimal")
    for k in ks:
        masks = np.asarray(enumerate_subsets(K, k))
        final = {rw: np.asarray(training_subset_errors(state, config, jnp.asarray(masks), duration, reweight=rw))
                 for rw in rws}
        index = {tuple(m): i for i, m in enumerate(masks.astype(bool))}

        def lookup(ms, rw):
            return np.asarray([final[rw][index[tuple(np.asarray(m, bool))]] for m in ms])

        at_prune = np.asarray(node_subset_errors(state, jnp.asarray(masks), reweight="optimal", activation=act))
        d = design_through_training(state, config, k, duration, reweight="best", steps=steps,
                                    learning_rate=learning_rate, restarts=restarts, key=key, exact_errors=lookup,
                                    progress=progress)
        one = lambda m: np.all(masks == np.asarray(m, bool), axis=1).astype(float)  # noqa: E731
        new = []
        new.append(dict(k=k, kind="node", method="designed (through ODE)", role="designed", error=float(d.error),
                        setting=f"{d.reweight} reweighting", mask=d.mask, loss_curve=d.trace.loss,
                        _probs=one(d.mask), _rw=d.reweight))
        bi = min(((final[rw].min(), rw) for rw in rws))
        bm = masks[int(np.argmin(final[bi[1]]))]
        new.append(dict(k=k, kind="node", method="brute force best", role="reference", error=float(bi[0]),
                        setting=f"{bi[1]} reweighting", mask=bm, _probs=one(bm), _rw=bi[1]))
        g = int(np.argmin(at_prune))
        rw = min(rws, key=lambda r: final[r][g])
        new.append(dict(k=k, kind="node", method="greedy at alpha_p (best subset then)", role="baseline",
                        error=float(final[rw][g]), setting=f"{rw} reweighting; error at prune time {at_prune[g]:.4g}",
                        mask=masks[g], _probs=one(masks[g]), _rw=rw))
        imp = np.asarray(importance_mask(state, k))
        _, pdpp = kdpp_enumerate(state.Q, k)
        for name, probs in (("random", np.full(masks.shape[0], 1.0 / masks.shape[0])), ("importance", one(imp)),
                            ("dpp", np.asarray(pdpp))):
            e, rw = min((float(probs @ final[r]), r) for r in rws)
            new.append(dict(k=k, kind="node", method=f"{name} at alpha_p", role="baseline", error=e,
                            setting=f"{rw} reweighting" + (", L=Q" if name == "dpp" else ""), _probs=probs, _rw=rw))
        if network is not None:
            sims = _simulate_subsets(network, state, masks, rws, config, duration, seeds, key, test_samples)
            for r in new:
                r["sim"] = float(r["_probs"] @ sims[r["_rw"]][0])
                r["half_mse"] = float(r["_probs"] @ sims[r["_rw"]][1])
        # prune at the end of training instead (no retraining after pruning)
        for name, (e, setting, probs, rw) in _end_baselines(end, k, act).items():
            r = dict(k=k, kind="node", method=f"{name} at end (no retraining)", role="baseline", error=e,
                     setting=setting)
            if sim_end is not None:
                r["sim"], r["half_mse"] = _end_sim_row(network, sim_end, masks, probs, rw, act)
            new.append(r)
        for r in new:
            r.pop("_probs", None)
            r.pop("_rw", None)
        rows += new
    return rows


def _end_baselines(end: Overlaps, k: int, activation) -> dict:
    """Pruning at the end of training: the best subset (optimal reweighting) and the random / importance / DPP
    baselines with their best reweighting and kernel, `{name: (eps_g, setting, probs, reweight)}`."""
    masks = np.asarray(enumerate_subsets(end.K, k))
    errs = np.asarray(node_subset_errors(end, jnp.asarray(masks), reweight="optimal", activation=activation))
    i = int(np.argmin(errs))
    out = {"best subset": (float(errs[i]), "optimal reweighting", np.eye(masks.shape[0])[i], "optimal")}
    out.update(_node_baseline_details(end, k, activation))
    return out


def _simulate_end(network, config, duration, seeds, key, test_samples) -> dict:
    """The full concrete student trained on for `duration N` more steps (`seeds` streams): final weights,
    overlaps, exact errors and the unpruned half test MSE."""
    from ._simulate import Student, simulate_seeds

    teacher, student = network
    N = student.w.shape[1]
    steps = max(int(round(duration * N)), 1)
    keys = jax.random.split(jax.random.fold_in(key, 7), seeds)
    res = simulate_seeds(keys, teacher, Student(w=student.w, v=student.v), config, steps=steps, record_every=steps,
                         dtype=student.w.dtype)
    fresh = _FreshInputs(jax.random.fold_in(key, 11), teacher.w_star, teacher.v_star, config.activation,
                         test_samples)
    w, v = res.final.w, res.final.v
    return dict(w=w, v=v, eps=np.asarray(res.eps_g[:, -1]), fresh=fresh,
                half_mse_full=[fresh.edge(w[s], v[s]) for s in range(w.shape[0])])


def _end_sim_row(network, sim_end, masks, probs, reweight, activation) -> tuple[float, float]:
    """`sim` and `half_mse` of pruning the finite-N end-of-training networks by a subset distribution."""
    from ._overlaps import overlaps_from_weights

    teacher, _ = network
    es, hs = [], []
    for s in range(sim_end["w"].shape[0]):
        st = overlaps_from_weights(sim_end["w"][s], teacher.w_star, sim_end["v"][s], teacher.v_star)
        es.append(float(probs @ np.asarray(node_subset_errors(st, jnp.asarray(masks), reweight=reweight,
                                                              activation=activation))))
        hs.append(float(probs @ sim_end["fresh"].node(sim_end["w"][s],
                                                      _node_subset_vs(st, masks, reweight, activation))))
    return float(np.mean(es)), float(np.mean(hs))


def _simulate_subsets(network, state, masks, reweights, config, duration, seeds, key, test_samples) -> dict:
    """Finite-N retraining of the concrete student pruned to every subset (rows of `masks`) with each
    reweighting: `{reweight: (mean final eps_g per subset, mean final half test MSE per subset)}`. All subsets
    share the `seeds` input streams (common random numbers) and run as one vmapped simulation."""
    from ._simulate import Student, simulate_seeds

    teacher, student = network
    K, N = student.w.shape
    idx = np.stack([np.flatnonzero(m) for m in np.asarray(masks, bool)])  # (C, k)
    steps = max(int(round(duration * N)), 1)
    C = idx.shape[0]
    W, V = [], []
    for rw in reweights:
        vs = np.asarray(_node_subset_vs(state, masks, rw, config.activation))
        W.append(np.asarray(student.w)[idx])
        V.append(np.take_along_axis(vs, idx, axis=1))
    W = np.repeat(np.concatenate(W)[:, None], seeds, axis=1).reshape((-1,) + idx.shape[1:] + (N,))
    V = np.repeat(np.concatenate(V)[:, None], seeds, axis=1).reshape(-1, idx.shape[1])
    keys = jax.random.split(jax.random.fold_in(key, 5), seeds)
    keys = jnp.tile(keys, len(reweights) * C)
    dtype = student.w.dtype
    res = simulate_seeds(keys, teacher, Student(w=jnp.asarray(W, dtype), v=jnp.asarray(V, dtype)), config,
                         steps=steps, record_every=steps, dtype=dtype)
    fresh = _FreshInputs(jax.random.fold_in(key, 11), teacher.w_star, teacher.v_star, config.activation,
                         test_samples)
    half = np.asarray(jax.lax.map(
        lambda wv: 0.5 * jnp.mean(jnp.square(config.activation(fresh.x @ wv[0].T * fresh.scale) @ wv[1] - fresh.y)),
        (res.final.w, res.final.v)))
    eps = np.asarray(res.eps_g[:, -1]).reshape(len(reweights), C, seeds).mean(-1)
    half = half.reshape(len(reweights), C, seeds).mean(-1)
    return {rw: (eps[j], half[j]) for j, rw in enumerate(reweights)}


def _simulate_retrained(network, state, mask, config, duration, seeds, key) -> float:
    """Mean final exact `eps_g` of the finite-N student pruned to `mask` (optimal reweighting) and trained on."""
    from ._simulate import Student, simulate

    teacher, student = network
    idx = np.flatnonzero(mask)
    v_new = _masked_node_v(state, jnp.asarray(mask), "optimal", config.activation)
    pruned = Student(w=student.w[idx], v=v_new[idx].astype(student.w.dtype))
    steps = max(int(round(duration * student.w.shape[1])), 1)
    errs = [float(simulate(kd, teacher, pruned, config, steps=steps, record_every=steps,
                           dtype=student.w.dtype).eps_g[-1]) for kd in jax.random.split(key, seeds)]
    return float(np.mean(errs))


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
