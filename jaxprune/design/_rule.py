"""Population-level keep rules (docs/theory.md, sections 6.2 and 7): a per-coordinate rule
`pi_i(z) = sigmoid(a_i + tau_i + s_i log z^2)` on `z = w_ij / sqrt(Q_ii)` under the Gaussian-equivalent model
(`s = 0`: random, `s = 1`: the large-N limit of the DPP edge rule, `s -> inf`: magnitude), its moments by
quadrature, concrete masks drawn from it, and its design by gradient for a keep fraction.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Key, UInt32

from .._activations import AbstractActivation, Erf, get_activation
from .._error import generalisation_error
from .._overlaps import Overlaps
from ._loop import DesignTrace, _adam, _check_keep, _check_positive, _check_steps, _draw, _top_mask, run_design
from ._network import optimal_second_layer

__all__ = [
    "EdgeRule",
    "UniformAllocation",
    "FreeAllocation",
    "edge_rule_moments",
    "conditional_kernels",
    "conditional_kernels_fit",
    "edge_rule_state",
    "sample_edge_rule_mask",
    "RuleDesign",
    "design_edge_rule",
]

_GRID_N = 400
_GRID_Z = np.linspace(-7.0, 7.0, _GRID_N)
_GRID_W = np.exp(-0.5 * _GRID_Z**2)
_GRID_W = _GRID_W / _GRID_W.sum()
_MAX_SLOPE = 12.0


class EdgeRule(eqx.Module):
    """Keep rule `pi_i(z) = sigmoid(a_i + tau_i + s_i log z^2)` on the standardised weights `z = w_ij / sqrt(Q_ii)`,
    with per-unit rescale `c_i` (docs/theory.md 6.2). `tau` is not a field: it is solved so that the keep
    fractions meet the budget ([`edge_rule_moments`][]).

    `s = 0` is random pruning, `s = 1` the large-N DPP edge rule `mu w^2 / (1 + mu w^2)`, `s -> inf` magnitude
    pruning.

    **Arguments:**

    - `a`: per-unit offsets `a_i`, `Float[K]` (or `Float[R, K]` for `R` rules at once, as the restarts of
      [`design_edge_rule`][]; they matter under [`FreeAllocation`][] only: a uniform allocation
      solves one `tau_i` per unit).
    - `log_slope`: per-unit `log s_i`, `Float[K]` (the slope is capped at 12, see `slope()`).
    - `log_scale`: per-unit `log c_i`, `Float[K]`.
    """

    a: Float[Array, "*R K"]
    log_slope: Float[Array, "*R K"]
    log_scale: Float[Array, "*R K"]

    def slope(self) -> Float[Array, "*R K"]:
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


class UniformAllocation(eqx.Module):
    """Budget allocation of a keep rule: every unit keeps the fraction `keep` of its weights. No arguments:
    `UniformAllocation()` (the string `"uniform"` is accepted too)."""

    name: ClassVar[str] = "uniform"


class FreeAllocation(eqx.Module):
    """Budget allocation of a keep rule: only the mean keep fraction over units is `keep` (units may differ). No
    arguments: `FreeAllocation()` (the string `"free"` is accepted too)."""

    name: ClassVar[str] = "free"


def _free_flag(allocation) -> Any:
    """`allocation` as the flag of the shared code path: `False` for [`UniformAllocation`][] or `"uniform"`
    (every unit meets the budget), `True` for [`FreeAllocation`][] or `"free"` (only the mean keep fraction
    does); a boolean array passes through (traced).
    `True` for `"free"` (only the mean keep fraction does); a boolean array passes through (traced)."""
    if isinstance(allocation, (UniformAllocation, FreeAllocation)):
        return isinstance(allocation, FreeAllocation)
    if isinstance(allocation, str):
        if allocation not in ("uniform", "free"):
            raise ValueError(f"allocation must be UniformAllocation(), FreeAllocation(), 'uniform' or 'free', "
                             f"got {allocation!r}")
        return allocation == "free"
    if not (isinstance(allocation, bool) or (hasattr(allocation, "dtype") and allocation.dtype == bool)):
        raise ValueError(f"allocation must be UniformAllocation(), FreeAllocation(), 'uniform' or 'free', "
                         f"got {allocation!r}")
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
    """The symmetrised pair kernels `S_ik` of [`edge_rule_moments`][]: for every pair `i < k` (in
    `np.triu_indices(K, 1)` order) the `400 x 400` grid weight of `z_1 = z_a` times the row-normalised
    conditional density of `z_2 = z_b` given `z_1 = z_a`, at the correlation `Q_ik / sqrt(Q_ii Q_kk)`. They
    depend on `state.Q` only (no gradient flows through them): compute them once outside a loop and pass them to
    [`edge_rule_moments`][], [`edge_rule_state`][] or [`design_edge_rule`][].

    **Arguments:**

    - `state`: the student's [`jaxprune.Overlaps`][] (only `Q` is used).

    **Returns:**

    The kernels, `Float[P, 400, 400]` with `P = K (K - 1) / 2` (`P * 400^2` floats: 243 MB at K = 20 in float64;
    see [`conditional_kernels_fit`][]).
    """
    return _pair_kernels(jax.lax.stop_gradient(state.Q))


def conditional_kernels_fit(K: int) -> bool:
    """Whether the [`conditional_kernels`][] of `K` units fit the 256 MB (float64) within which
    [`design_edge_rule`][] precomputes them by default (true up to `K = 20`); above, the kernels are rebuilt in
    chunks inside every step instead.

    **Arguments:**

    - `K`: the number of student units (an integer `>= 1`).

    **Returns:** `True` when `K (K - 1) / 2 * 400^2 * 8` bytes are at most `2^28`.
    """
    return _kernels_fit(K)


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
    state: Overlaps,
    rule: EdgeRule,
    keep: Float[ArrayLike, ""],
    *,
    allocation: UniformAllocation | FreeAllocation | str = "uniform",
    kernels: Float[Array, "P n n"] | None = None,
) -> tuple[Float[Array, "K K"], Float[Array, "K M"], Float[Array, " K"]]:
    """Gaussian-equivalent moments of the pruned first layer under the keep rule (docs/theory.md 6.2), rescale
    included: `Q'_ii = c_i^2 Q_ii E[pi_i z^2]`, `R'_in = c_i R_in E[pi_i z^2]`,
    `Q'_ik = c_i c_k sqrt(Q_ii Q_kk) E[pi_i(z_1) z_1 pi_k(z_2) z_2]` with `corr(z_1, z_2) = Q_ik/sqrt(Q_ii Q_kk)`
    (a uniform 400-point grid on [-7, 7] for `z_1`, and the row-normalised conditional density of `z_2 | z_1`
    on the same grid; the `(i, k)` and `(k, i)` quadratures averaged). The shift `tau` is solved for the budget
    (bisection, then one Newton step that carries its implicit derivative), so the result is differentiable in
    the rule.

    **Arguments:**

    - `state`: the student's [`jaxprune.Overlaps`][].
    - `rule`: the [`EdgeRule`][].
    - `keep`: the keep fraction, in `(0, 1]`.
    - `allocation`: [`UniformAllocation`][]`()` (every unit keeps `keep`) or [`FreeAllocation`][]`()` (the mean
      over units is `keep`), or `"uniform"` / `"free"`.
    - `kernels`: the output of [`conditional_kernels`][]`(state)`, or `None` (built here, chunk by chunk).

    **Returns:** `(Q', R', kappa)`: `Float[K, K]`, `Float[K, M]` and the keep fractions `Float[K]`.
    """
    return _edge_rule_moments(state, rule, keep, _free_flag(allocation), kernels)


def edge_rule_state(
    state: Overlaps,
    rule: EdgeRule,
    keep: Float[ArrayLike, ""],
    *,
    allocation: UniformAllocation | FreeAllocation | str = "uniform",
    refit: bool = False,
    activation: AbstractActivation = Erf(),
    kernels: Float[Array, "P n n"] | None = None,
) -> Overlaps:
    """The pruned state `(Q', R', T, v or refit v, v*)` of [`edge_rule_moments`][] (docs/theory.md 6.2), whose
    [`jaxprune.generalisation_error`][] is the rule's Gaussian-equivalent error.

    **Arguments:**

    - `state`, `rule`, `keep`, `allocation`, `kernels`: as for [`edge_rule_moments`][].
    - `refit`: replace `v` by the optimal second layer of the pruned state ([`optimal_second_layer`][]).
    - `activation`: the activation of the refit ([`jaxprune.Erf`][] by default).

    **Returns:** the pruned [`jaxprune.Overlaps`][].
    """
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


def sample_edge_rule_mask(
    key: Key[Array, "*D"] | UInt32[Array, "*D _"],
    w: Float[ArrayLike, "K N"],
    rule: EdgeRule,
    keep: Float[ArrayLike, ""],
    *,
    allocation: UniformAllocation | FreeAllocation | str = "uniform",
    exact_budget: bool = True,
) -> Bool[Array, "*D K N"]:
    """A concrete mask drawn from the keep rule: `m_ij ~ Bernoulli(pi_i(w_ij / sqrt(Q_ii)))`, `Q_ii = |w_i|^2 / N`
    (docs/theory.md 6.2).

    With `exact_budget` the mask keeps exactly `round(keep N)` weights per unit (uniform allocation) or
    `round(keep K N)` in all (free allocation): the top-k of `logit pi_ij + L_ij` with iid standard logistic
    `L_ij`. Thresholding these scores at 0 is exactly the independent Bernoulli draw; the top-k moves the
    threshold by `O(1/sqrt N)`, so every weight keeps the marginal `pi` as `N -> infinity` (the
    Gaussian-equivalent moments of [`edge_rule_moments`][] apply). Note: Gumbel-top-k on the log-odds would be
    *successive* sampling (Plackett-Luce), whose large-N inclusion probability is `1 - exp(-t odds_ij)`, not `pi`.

    **Arguments:**

    - `key`: a PRNG key, or a batch of keys (`Key[D]`, or legacy raw keys `UInt32[D, 2]`) for `D` independent
      masks drawn in one compiled program (mask `d` is the mask of `key[d]` alone).
    - `w`: the concrete first-layer weights, `Float[K, N]`.
    - `rule`: the [`EdgeRule`][] (e.g. `RuleDesign.rule` of [`design_edge_rule`][]).
    - `keep`: the keep fraction in `(0, 1]`; the shift `tau` of the rule is solved for it.
    - `allocation`: [`UniformAllocation`][] (every unit keeps `keep`) or [`FreeAllocation`][] (only the mean
      over units is `keep`), or `"uniform"` / `"free"`.
    - `exact_budget`: keep exactly the budget (top-k, above) or draw independent Bernoulli masks.

    **Returns:** the mask `Bool[K, N]` (`True`: kept weight), or `Bool[D, K, N]` for a batch of keys.
    """
    w = jnp.asarray(w)
    free = _free_flag(allocation)
    key = jnp.asarray(key)
    batched = key.ndim == (1 if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else 2)
    masks = _rule_masks(key if batched else key[None], w, rule, jnp.asarray(keep, w.dtype), jnp.asarray(free),
                        exact_budget=bool(exact_budget))
    return masks if batched else masks[0]


class RuleDesign(eqx.Module):
    """A keep rule designed by [`design_edge_rule`][].

    **Fields:**

    - `rule`: the designed [`EdgeRule`][].
    - `error`: its `eps_g` under the Gaussian-equivalent model ([`edge_rule_state`][]).
    - `keep_fractions`: the keep fraction of each unit, `Float[K]` (all `keep` under a uniform allocation).
    - `trace`: the [`DesignTrace`][] of the run.
    """

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
    allocation: UniformAllocation | FreeAllocation | str = "uniform",
    rescale: bool = True,
    refit: bool = False,
    slopes: tuple[float, ...] = (1.0, 3.0, 8.0),
    steps: int = 300,
    learning_rate: float = 0.05,
    kernels: Float[Array, "P n n"] | None = None,
    activation: AbstractActivation | str = Erf(),
    progress: Callable[[int], None] | None = None,
) -> RuleDesign:
    """Design a population-level keep rule: optimise the per-unit slopes, offsets (they matter for the free
    allocation) and rescales of an [`EdgeRule`][] for its Gaussian-equivalent error at keep fraction `keep`
    (docs/theory.md 6.2 and 7), one restart per initial slope in `slopes`. Both allocations and every `keep`
    share one compiled step.

    **Arguments:**

    - `state`: the student's [`jaxprune.Overlaps`][].
    - `keep`: the keep fraction, in `(0, 1]`.
    - `allocation`: [`UniformAllocation`][]`()` or [`FreeAllocation`][]`()` (or `"uniform"` / `"free"`).
    - `rescale`: learn the per-unit rescales `c` (else `c = 1`).
    - `refit`: use the optimal second layer of the pruned state.
    - `slopes`: the initial slope `s` of each restart (the same for every unit).
    - `steps`: optimisation steps, an integer `>= 1`.
    - `learning_rate`: the Adam learning rate, `> 0`.
    - `kernels`: [`conditional_kernels`][]`(state)`, to share between calls on the same state; by default they
      are computed here when they fit ([`conditional_kernels_fit`][], `K <= 20`) and rebuilt inside every step
      otherwise.
    - `activation`: the activation ([`jaxprune.Erf`][] by default, or its name).
    - `progress`: `progress(n)` called after every step ([`run_design`][]).

    **Returns:** a [`RuleDesign`][] (the best restart).
    """
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

