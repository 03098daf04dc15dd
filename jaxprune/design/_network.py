"""Masks designed on a concrete network (docs/theory.md, sections 6.2 and 7): the relaxed edge mask `m in [0, 1]`
on the `K x N` first-layer weights, whose masked overlaps are exact dot products, so that `eps_g(m)` is exact at
any `N`; the optimal second layer and per-unit rescale; exact evaluation of hard masks.

Budget by projection onto `{0 <= m <= 1, sum m = B}` after every step, or by a scheduled penalty
`lambda_t relu(mean m - p)^2`; an optional scheduled binarisation term `beta_t mean m (1 - m)`; rounded to the `B`
largest entries at the end and evaluated exactly (with the best per-unit rescale `c_i`).
"""

from __future__ import annotations

import functools
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from .._activations import AbstractActivation, Erf, get_activation
from .._error import activation_covariance, generalisation_error
from .._overlaps import Overlaps, overlaps_from_weights
from ..pruning import AbstractRescale, EdgeMoments, apply_edge_moments, optimal_edge_rescale, pruning_option
from ._loop import (
    DesignTrace,
    Penalty,
    Projection,
    _adam,
    _as_budget,
    _budget_hyper,
    _check_keep,
    _check_positive,
    _check_restarts,
    _check_steps,
    _draw,
    _logit,
    _top_mask,
    project_capped_simplex,
    run_design,
)

__all__ = [
    "optimal_second_layer",
    "masked_network_overlaps",
    "masked_network_error",
    "NetworkDesign",
    "design_edge_mask",
    "edge_mask_errors",
]

def optimal_second_layer(
    state: Overlaps, activation: AbstractActivation = Erf(), *, ridge: Float[ArrayLike, " K"] | float = 0.0
) -> Float[Array, " K"]:
    """The second layer minimising `eps_g + 1/2 sum_i ridge_i v_i^2` for the given first layer (docs/theory.md 6.1):
    `v = (A + diag(ridge) + 1e-10 tr(A)/K)^{-1} B v*`, with `A = I2` among students and `B = I2` student-teacher
    ([`jaxprune.activation_covariance`][]).

    **Arguments:**

    - `state`: the [`jaxprune.Overlaps`][] of the first layer (`state.v` is not used).
    - `activation`: the activation ([`jaxprune.Erf`][] by default).
    - `ridge`: a ridge `>= 0` on each unit's weight, a scalar or `Float[K]` (default 0: the plain optimum).

    **Returns:** the optimal second layer `v`, `Float[K]`.
    """
    K = state.K
    I = activation_covariance(state, activation)
    A, B = I[:K, :K], I[:K, K:]
    ridge = jnp.diag(jnp.broadcast_to(jnp.asarray(ridge, A.dtype), (K,)))
    A = A + ridge + 1e-10 * jnp.trace(A) / K * jnp.eye(K, dtype=A.dtype)
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
    """Overlaps of the pruned concrete network `w'_i = c_i (m_i * w_i)` (docs/theory.md 6.2): `Q' = w' w'^T / N`,
    `R' = w' w*^T / N`, exact for a 0/1 mask.

    With `bernoulli=True`, `m` holds keep probabilities of independent Bernoulli masks and the result is the
    mean overlaps `Q'_ik = c_i c_k [sum_j p_ij p_kj w_ij w_kj + delta_ik sum_j p_ij (1 - p_ij) w_ij^2] / N`,
    `R' = c (p * w) w*^T / N`; every random mask drawn from `p` has these overlaps up to `O(N^-1/2)`, so the
    relaxed error is achievable, and at a 0/1 mask it is the exact error.

    **Arguments:**

    - `w`, `w_star`: the student's and the teacher's first layers, `Float[K, N]` and `Float[M, N]`.
    - `v`, `v_star`: their second layers, `Float[K]` and `Float[M]` (copied into the result).
    - `mask`: the mask `m`, `Float[K, N]` (0/1, or keep probabilities in `[0, 1]` with `bernoulli`).
    - `scale`: the per-unit rescale `c`, `Float[K]`, or `None` for `c = 1`.
    - `bernoulli`: read `mask` as Bernoulli keep probabilities (the mean overlaps above).

    **Returns:** the pruned [`jaxprune.Overlaps`][] `(Q', R', T, v, v*)`.
    """
    st = overlaps_from_weights(mask * w, w_star, v, v_star)
    Q, R = st.Q, st.R
    if bernoulli:
        Q = Q + jnp.diag(jnp.sum(mask * (1.0 - mask) * w * w, axis=1) / w.shape[-1])
    if scale is not None:
        Q = scale[:, None] * scale[None, :] * Q
        R = scale[:, None] * R
    return Overlaps(Q=Q, R=R, T=st.T, v=st.v, v_star=st.v_star)


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
        with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int32 counts and floats
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
    rescale: AbstractRescale | str = "optimal",
    refit: bool = False,
    activation: AbstractActivation = Erf(),
) -> tuple[Float[Array, ""], Float[Array, " K"], Float[Array, " K"]]:
    """Exact `eps_g` of the pruned concrete network `w'_i = c_i (m_i * w_i)` (docs/theory.md 6.2), from its
    overlaps ([`masked_network_overlaps`][]).

    **Arguments:**

    - `w`, `w_star`: the student's and the teacher's first layers, `Float[K, N]` and `Float[M, N]`.
    - `v`, `v_star`: their second layers, `Float[K]` and `Float[M]`.
    - `mask`: the hard edge mask, `Bool[K, N]` (`True`: kept weight).
    - `rescale`: `"none"` (`c = 1`), `"inverse-keep"` (`c_i = 1/keep_i`, `keep_i` the kept fraction of row `i`)
      or `"optimal"` (the per-unit `c` minimising `eps_g`: Adam on `log c` from the better of `c = 1` and
      `c = 1/keep`, never worse than either), or the matching [`jaxprune.pruning.AbstractRescale`][] object.
    - `refit`: also set the second layer to its optimum ([`optimal_second_layer`][]) for the pruned first layer.
    - `activation`: the activation ([`jaxprune.Erf`][] by default).

    **Returns:** `(eps_g, c, v')`: the error, the rescale `Float[K]` and the second layer `Float[K]` used.
    """
    rescale = pruning_option("rescale", rescale, name="rescale").name
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



class NetworkDesign(eqx.Module):
    """An edge mask designed by [`design_edge_mask`][]: a hard mask with exactly the budget and its exact error.

    **Fields:**

    - `mask`: the designed mask, `Bool[K, N]` (`True`: kept weight).
    - `scale`: the per-unit rescale `c`, `Float[K]`.
    - `v`: the second layer after pruning, `Float[K]` (the network's own, or the refit one).
    - `error`: the exact `eps_g` of the pruned network `c (m * w)` with `v`.
    - `relaxed_error`: the relaxed (Bernoulli mean-overlap) error of the winning restart's soft mask at the end.
    - `soft_mask`: that soft mask, `Float[K, N]` in `[0, 1]`.
    - `trace`: the [`DesignTrace`][] of the run.
    """

    mask: Bool[Array, "..."]
    scale: Float[Array, " K"]
    v: Float[Array, " K"]
    error: Float[Array, ""]
    relaxed_error: Float[Array, ""]
    soft_mask: Float[Array, "..."]
    trace: DesignTrace



class _EdgeMaskLoss(eqx.Module):
    """The relaxed edge-mask problem of [`design_edge_mask`][] (arrays traced, options static)."""

    w: Float[Array, "K N"]
    w_star: Float[Array, "M N"]
    v: Float[Array, " K"]
    v_star: Float[Array, " M"]
    B: Float[Array, ""]
    activation: AbstractActivation = eqx.field(static=True)
    budget: Projection | Penalty = eqx.field(static=True)
    rescale: bool = eqx.field(static=True)
    refit: bool = eqx.field(static=True)

    def mask(self, theta):
        return theta if isinstance(self.budget, Projection) else jax.nn.sigmoid(theta)

    def one(self, theta, logc, hyp):
        K, N = self.w.shape
        m = self.mask(theta)
        c = jnp.exp(logc) if self.rescale else None
        st = masked_network_overlaps(self.w, self.w_star, self.v, self.v_star, m, c, bernoulli=True)
        if self.refit:
            st = eqx.tree_at(lambda s: s.v, st, optimal_second_layer(st, self.activation))
        err = generalisation_error(st, self.activation)
        pen = hyp["penalty"] * jnp.square(jax.nn.relu(jnp.mean(m) - self.B / (K * N))) \
            if isinstance(self.budget, Penalty) else 0.0
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
    budget: Projection | Penalty | str = Projection(),
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
    """Design an edge mask keeping `B = round(keep K N)` first-layer weights of a concrete network by minimising
    its exact error (docs/theory.md 7).

    Relaxed loss `eps_g(Q', R', v') + lambda_t relu(mean m - keep)^2 + beta_t mean m(1-m)` with the mean
    overlaps of independent Bernoulli(`m`) masks on `w'_i = c_i (m_i * w_i)` (see [`masked_network_overlaps`][];
    a plain `m * w` would let fractional masks rescale single weights, an error no 0/1 mask attains), `c =
    exp(log c)` learned when `rescale`, `v'` the optimal second layer when `refit`. Restart 0 starts from the
    magnitude scores, the others from `keep` plus noise. Each restart's soft mask is rounded to its `B` largest
    entries and to `roundings` conditional-Bernoulli draws; every candidate is evaluated exactly with the best
    per-unit rescale ([`edge_mask_errors`][], the Newton solve of [`jaxprune.pruning.optimal_edge_rescale`][],
    as for every baseline of the design comparisons; with `refit`, [`masked_network_error`][] with the optimal
    second layer) and the best is returned. The compiled programs (start, step, rounding, per-mask evaluation)
    are shared by every call with the same shapes and options (any `keep`, any network of the same size).

    **Arguments:**

    - `w`, `w_star`: the student's and the teacher's first layers, `Float[K, N]` and `Float[M, N]`.
    - `v`, `v_star`: their second layers, `Float[K]` and `Float[M]`.
    - `keep`: the kept fraction of the `K N` weights, in `(0, 1]`.
    - `budget`: [`Projection`][]`()` (`m` projected onto `{0 <= m <= 1, sum m = B}` after each step) or
      [`Penalty`][]`(start, end)` (`m = sigmoid(theta)` with the penalty schedule); the strings `"projection"`
      and `"penalty"` (with the schedule `penalty`) are accepted too.
    - `rescale`: learn a per-unit rescale `c` (and evaluate candidates with the optimal one); else `c = 1`.
    - `refit`: use the optimal second layer for the pruned first layer.
    - `steps`: optimisation steps, an integer `>= 1`.
    - `learning_rate`: the Adam learning rate, `> 0`.
    - `restarts`: parallel restarts, an integer `>= 1`.
    - `roundings`: conditional-Bernoulli rounding candidates drawn in all (candidate `j` rounds restart
      `j mod restarts`).
    - `penalty`: `(start, end)` of the penalty schedule for `budget="penalty"`.
    - `binarise`: the weight `beta` of the binarisation term `mean m (1 - m)`, ramped up over the second half.
    - `key`: PRNG key of the starts and roundings (default `jax.random.key(0)`).
    - `activation`: the activation ([`jaxprune.Erf`][] by default, or its name).
    - `progress`: `progress(n)` called after every step ([`run_design`][]).

    **Returns:** a [`NetworkDesign`][] (the mask keeps exactly `B` weights).
    """
    activation = get_activation(activation)
    w, w_star = jnp.asarray(w), jnp.asarray(w_star)
    v, v_star = jnp.asarray(v, w.dtype), jnp.asarray(v_star, w.dtype)
    K, N = w.shape
    _check_keep(keep)
    _check_steps(steps)
    _check_positive(learning_rate, "learning_rate")
    _check_restarts(restarts)
    budget = _as_budget(budget, penalty)
    B = int(round(keep * K * N))
    if not 1 <= B <= K * N:
        raise ValueError(f"keep={keep} leaves {B} weights; need 1 <= keep K N <= K N = {K * N}")
    key = jax.random.key(0) if key is None else key
    hyper = _budget_hyper(budget, steps, binarise)
    B_arr = jnp.asarray(B, w.dtype)
    theta0 = _edge_mask_init(w, key, B_arr, jnp.asarray(keep, w.dtype), restarts=restarts,
                             logit=not isinstance(budget, Projection))
    problem = _EdgeMaskLoss(w=w, w_star=w_star, v=v, v_star=v_star, B=B_arr, activation=activation,
                            budget=budget, rescale=bool(rescale), refit=bool(refit))
    params = {"theta": theta0, "logc": jnp.zeros((restarts, K), w.dtype)}
    params, trace = run_design(
        problem, params, optimizer=_adam(learning_rate), steps=steps, hyper=hyper,
        project=problem.project if isinstance(budget, Projection) else None, progress=progress,
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
# Exact evaluation of hard edge masks, one at a time, by three small compiled programs
# --------------------------------------------------------------------------------------------------


@jax.jit
def _mask_moments(w, w_star, mask):
    """`EdgeMoments` of the concrete mask: per-unit keep fraction, `Q = (m*w)(m*w)^T / N`, `R = (m*w) w*^T / N`."""
    m = mask.astype(w.dtype)
    st = overlaps_from_weights(m * w, w_star, jnp.zeros(w.shape[0], w.dtype), jnp.zeros(w_star.shape[0], w.dtype))
    return EdgeMoments(keep=jnp.maximum(jnp.mean(m, axis=1), 1.0 / w.shape[-1]), Q=st.Q, R=st.R)


@eqx.filter_jit
def _edge_eval_one(state, w, w_star, v, v_star, mask, moments, c_opt, c_fixed, activation):
    """Exact error of `c (m * w)` for `c = 1`, `1 / keep`, `c_opt` and `c_fixed`, and these four `c`."""
    cs = [jnp.ones_like(c_opt), 1.0 / moments.keep, c_opt]
    errs = [generalisation_error(apply_edge_moments(state, moments, c), activation) for c in cs]
    errs.append(generalisation_error(masked_network_overlaps(w, w_star, v, v_star, mask.astype(w.dtype), c_fixed),
                                     activation))
    return jnp.stack(errs), jnp.stack(cs + [c_fixed])


_network_overlaps = jax.jit(overlaps_from_weights)


class _EdgeContext(eqx.Module):
    """A concrete network whose edge masks are evaluated exactly one at a time by three small compiled
    programs shared by the whole run (the mask's moments, the Newton optimal rescale of
    [`jaxprune.pruning.optimal_edge_rescale`][], the errors), so that the costly rescale is compiled once
    instead of once per batch shape and caller."""

    state: Overlaps
    w: Float[Array, "K N"]
    w_star: Float[Array, "M N"]
    activation: AbstractActivation = eqx.field(static=True)

    @classmethod
    def of(cls, w, w_star, v, v_star, activation):
        return cls(state=_network_overlaps(w, w_star, v, v_star), w=w, w_star=w_star, activation=activation)

    def report(self, masks, c_fixed=None, optimal=True) -> tuple[np.ndarray, np.ndarray]:
        """Errors `(n, 4)` (columns `c = 1`, `1/keep`, optimal `c`, `c_fixed`) and the rescales `(n, 4, K)` of
        every mask; `optimal=False` skips the optimal rescale (column 2 is then `c = 1`)."""
        st = self.state
        ones = jnp.asarray(np.ones(st.K), st.Q.dtype)
        out = []
        for i, mask in enumerate(np.asarray(masks, bool)):
            mk = jnp.asarray(mask)
            mom = _mask_moments(self.w, self.w_star, mk)
            c_opt = optimal_edge_rescale(st, mom, self.activation)[0] if optimal else ones
            cf = ones if c_fixed is None else jnp.asarray(c_fixed[i], st.Q.dtype)
            out.append(_edge_eval_one(st, self.w, self.w_star, st.v, st.v_star, mk, mom, c_opt, cf, self.activation))
        got = jax.device_get(out)
        return np.stack([g[0] for g in got]), np.stack([g[1] for g in got])

    def errors(self, masks, rescale: str) -> tuple[np.ndarray, np.ndarray]:
        """`(eps_g (n,), c (n, K))` with `rescale` in `none`, `inverse-keep`, `optimal`."""
        col = {"none": 0, "inverse-keep": 1, "optimal": 2}[rescale]
        e, cs = self.report(masks, optimal=rescale == "optimal")
        return e[:, col], cs[:, col]


def edge_mask_errors(
    w: Float[ArrayLike, "K N"],
    w_star: Float[ArrayLike, "M N"],
    v: Float[ArrayLike, " K"],
    v_star: Float[ArrayLike, " M"],
    masks: Bool[ArrayLike, "..."],
    *,
    scales: Float[ArrayLike, "..."] | None = None,
    optimal: bool = True,
    activation: AbstractActivation | str = Erf(),
) -> tuple[Float[Array, "n 4"], Float[Array, "n 4 K"]]:
    """Exact `eps_g` of the concrete pruned networks `w'_i = c_i (m_i * w_i)` (second layer `v`), for every hard
    edge mask `m` and four per-unit rescales `c` each (docs/theory.md 6.2): the exact error of the concrete
    network from its overlaps, at any `N`. This is the evaluation every design comparison applies to designed
    and baseline masks alike, and the one [`design_edge_mask`][] ranks its rounding candidates with.

    **Arguments:**

    - `w`: the student's first-layer weights, `Float[K, N]`.
    - `w_star`: the teacher's first-layer weights, `Float[M, N]`.
    - `v`: the student's second layer, `Float[K]` (kept as is: no refit).
    - `v_star`: the teacher's second layer, `Float[M]`.
    - `masks`: `n` hard edge masks, `Bool[n, K, N]` (`True`: kept weight).
    - `scales`: per-unit rescales `Float[n, K]` of column 3, one row per mask (default: `c = 1`).
    - `optimal`: compute the optimal rescale of column 2 (a Newton solve per mask, the costly part); `False`
      puts `c = 1` there instead.
    - `activation`: the activation ([`jaxprune.Erf`][] by default, or its name).

    **Returns:**

    `(errors, c)`: `errors` `Float[n, 4]` and the rescales `c` `Float[n, 4, K]` they were computed with, the
    columns being `c = 1`, `c_i = 1 / keep_i` (`keep_i` the kept fraction of row `i`, at least `1/N`), the
    per-unit optimal `c` of [`jaxprune.pruning.optimal_edge_rescale`][] on the mask's exact moments, and
    `scales`. Masks run one at a time through three small compiled programs shared by every call with the same
    `K, N` (the mask's moments, the optimal rescale, the four errors).
    """
    activation = get_activation(activation)
    w, w_star = jnp.asarray(w), jnp.asarray(w_star)
    v, v_star = jnp.asarray(v, w.dtype), jnp.asarray(v_star, w.dtype)
    masks = np.asarray(masks, bool)
    if masks.ndim != 3 or masks.shape[1:] != w.shape:
        raise ValueError(f"masks must have shape (n, K, N) with (K, N) = {w.shape}, got {masks.shape}")
    if scales is not None:
        scales = np.asarray(scales)
        if scales.shape != (masks.shape[0], w.shape[0]):
            raise ValueError(f"scales must have shape (n, K) = {(masks.shape[0], w.shape[0])}, got {scales.shape}")
    ctx = _EdgeContext.of(w, w_star, v, v_star, activation)
    errors, cs = ctx.report(masks, c_fixed=scales, optimal=bool(optimal))
    return jnp.asarray(errors), jnp.asarray(cs)
