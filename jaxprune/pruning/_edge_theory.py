"""Edge pruning in theory, the rescaling and the entry point (docs/theory.md 6.2): the optimal per-unit rescale
`c` of a kept first layer, the rescale rules, and [`edge_prune_theory`][], which maps a state through an edge
rule's moments ([`edge_moments`][] and the closed forms of `_edge`) and a rescale to the pruned state and its
error.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from .._activations import AbstractActivation, Erf, get_activation
from .._error import generalisation_error
from .._overlaps import Overlaps
from .._status import Status
from ._budgets import _check_p, _per_unit
from ._edge import EdgeMoments, apply_edge_moments, dpp_moments, magnitude_moments, random_moments
from ._linalg import solve_small
from ._options import AbstractEdgeRule, AbstractRescale, pruning_option

__all__ = ["EdgePruningResult", "edge_prune_theory", "edge_rescale", "optimal_edge_rescale"]


# --------------------------------------------------------------------------------------------------
# Rescaling and the entry point
# --------------------------------------------------------------------------------------------------


def _rescaled_error(state: Overlaps, moments: EdgeMoments, activation: AbstractActivation):
    """`c -> eps_g(apply_edge_moments(state, moments, c)) = 1/2 u^T I2 u` written with broadcasting
    (no vmapped blocks), a small graph for the Newton iteration; equal to `generalisation_error`."""
    qd_m, td = jnp.diagonal(moments.Q), jnp.diagonal(state.T)
    a_tt = activation.i2(td[:, None], td[None, :], state.T)
    teacher = jnp.einsum("n,nm,m->", state.v_star, a_tt, state.v_star)

    def f(c):
        qd = c * c * qd_m
        a_ss = activation.i2(qd[:, None], qd[None, :], c[:, None] * moments.Q * c[None, :])
        a_st = activation.i2(qd[:, None], td[None, :], c[:, None] * moments.R)
        return 0.5 * (
            jnp.einsum("i,ik,k->", state.v, a_ss, state.v)
            - 2.0 * jnp.einsum("i,in,n->", state.v, a_st, state.v_star)
            + teacher
        )

    return f


@eqx.filter_jit
def optimal_edge_rescale(
    state: Overlaps,
    moments: EdgeMoments,
    activation: AbstractActivation = Erf(),
    *,
    c0: Float[ArrayLike, " K"] | None = None,
    steps: int = 60,
    gtol: float = 1e-9,
) -> tuple[Float[Array, " K"], Int[Array, ""]]:
    """Per-unit `c` minimising `eps_g(apply_edge_moments(state, moments, c))` (Levenberg-Marquardt Newton).

    Starts from `c0` (default: the better of `1` and `1 / keep`), accepts only steps that lower `eps_g`,
    so the result is never worse than the start. The returned `c` carries no gradient (by the envelope
    theorem the gradient of the optimal error is the partial one at fixed optimal `c`). Docs/theory.md
    section 6.2, "Rescale".

    **Arguments:**

    - `state`: the [`Overlaps`][] before pruning.
    - `moments`: the [`EdgeMoments`][] of the edge rule.
    - `activation`: the [`AbstractActivation`][] (default [`Erf`][]).
    - `c0`: starting rescale `Float[K]` (or a scalar), default as above.
    - `steps`: static number of Levenberg-Marquardt iterations.
    - `gtol`: tolerance on the largest gradient component for `Status.SUCCESS`.

    **Returns:**

    `(c, status)`: the rescale `Float[K]` and an int32 [`Status`][] code, `NOT_CONVERGED` if the gradient
    norm stays above `gtol`.
    """
    state = jax.lax.stop_gradient(state)
    moments = jax.lax.stop_gradient(moments)
    K = state.K
    dtype = moments.Q.dtype

    f = _rescaled_error(state, moments, activation)

    if c0 is None:
        ones = jnp.ones((K,), dtype)
        inv = 1.0 / moments.keep
        c0 = jnp.where(f(inv) < f(ones), inv, ones)
    c0 = jnp.broadcast_to(jnp.asarray(c0, dtype), (K,))
    grad, hess = jax.grad(f), jax.hessian(f)
    eye = jnp.eye(K, dtype=dtype)

    def body(carry, _):
        c, fc, lam = carry
        g, H = grad(c), hess(c)
        scale = jnp.maximum(jnp.max(jnp.abs(jnp.diagonal(H))), 1e-12)
        step = solve_small(H + lam * scale * eye, -g)
        cn = c + step
        fn = f(cn)
        ok = jnp.isfinite(fn) & jnp.all(jnp.isfinite(step)) & (fn <= fc)
        return (
            jnp.where(ok, cn, c),
            jnp.where(ok, fn, fc),
            jnp.where(ok, jnp.maximum(lam * 0.2, 1e-12), lam * 10.0),
        ), None

    (c, fc, _), _ = jax.lax.scan(body, (c0, f(c0), jnp.asarray(1e-3, dtype)), None, length=steps)
    gnorm = jnp.max(jnp.abs(grad(c)))
    status = jnp.where(gnorm <= gtol, Status.SUCCESS, Status.NOT_CONVERGED).astype(jnp.int32)
    return c, status


def edge_rescale(
    state: Overlaps, moments: EdgeMoments, p: Float[Array, " K"], rescale: str | AbstractRescale, activation=Erf()
) -> tuple[Float[Array, " K"], Int[Array, ""]]:
    """Per-unit rescale `c` of the kept weights (docs/theory.md section 6.2, "Rescale").

    **Arguments:**

    - `state`: the [`Overlaps`][] before pruning.
    - `moments`: the [`EdgeMoments`][] of the edge rule.
    - `p`: the per-unit keep fraction `Float[K]`.
    - `rescale`: an [`AbstractRescale`][] or its name: `"none"` (`c = 1`), `"inverse-keep"` (`c = 1/p`) or
      `"optimal"` ([`optimal_edge_rescale`][]).
    - `activation`: the [`AbstractActivation`][] used by the optimal rescale (default [`Erf`][]).

    **Returns:**

    `(c, status)`: the rescale `Float[K]` and an int32 [`Status`][] code (SUCCESS unless the optimal solve did
    not converge).
    """
    rescale = pruning_option("rescale", rescale, name="rescale").name
    if rescale == "none":
        return jnp.ones((state.K,), state.Q.dtype), jnp.asarray(Status.SUCCESS, jnp.int32)
    if rescale == "inverse-keep":
        return 1.0 / p, jnp.asarray(Status.SUCCESS, jnp.int32)
    return optimal_edge_rescale(state, moments, activation)


class EdgePruningResult(eqx.Module):
    """Outcome of [`edge_prune_theory`][].

    **Fields:**

    - `state`: the pruned, rescaled [`Overlaps`][].
    - `eps_g`: the noise-free generalisation error of `state` (scalar).
    - `c`: the per-unit rescale `Float[K]`.
    - `status`: an int32 [`Status`][] code (`DIVERGED` if the pruned state is not finite).
    - `moments`: the unrescaled [`EdgeMoments`][].
    - `keep`: the per-unit keep fraction `Float[K]`.
    """

    state: Overlaps
    eps_g: Float[Array, ""]
    c: Float[Array, " K"]
    status: Int[Array, ""]
    moments: EdgeMoments
    keep: Float[Array, " K"]


@eqx.filter_jit
def _edge_moments(state, p, method):
    if method == "random":
        return random_moments(state, p)
    if method == "magnitude":
        return magnitude_moments(state, p)
    return dpp_moments(state, p)


@eqx.filter_jit
def _edge_apply(state, moments, p, rescale, activation):
    c, status = edge_rescale(state, moments, p, rescale, activation)
    new = apply_edge_moments(state, moments, c)
    eps = generalisation_error(new, activation)
    bad = ~(jnp.isfinite(eps) & jnp.all(jnp.isfinite(new.Q)) & jnp.all(jnp.isfinite(new.R)))
    status = jnp.where(bad, jnp.int32(Status.DIVERGED), status)
    return EdgePruningResult(state=new, eps_g=eps, c=c, status=status, moments=moments, keep=moments.keep)


def _edge_prune_theory(state, p, method, rescale, activation):
    # two compiled pieces: the moments per method, and the rescale (the costly optimal one is compiled once
    # and shared by every method, instead of once per (method, rescale) pair)
    p = _per_unit(p, state.K)
    return _edge_apply(state, _edge_moments(state, p, method), p, rescale, activation)


def edge_prune_theory(
    state: Overlaps,
    p: float | Sequence[float] | Float[ArrayLike, "..."],
    *,
    method: str | AbstractEdgeRule = "random",
    rescale: str | AbstractRescale = "none",
    activation: AbstractActivation | str = Erf(),
) -> EdgePruningResult:
    """Edge pruning as a map on order parameters (docs/theory.md 6.2), with an optional per-unit rescale.

    `w'_i = c_i (m_i * w_i)`; `Q'_ik = c_i c_k E[m_i m_k w_i w_k]`, `R'_in = c_i E[m_i w_i w*_n]`.

    **Arguments:**

    - `state`: overlaps before pruning.
    - `p`: keep fraction in `(0, 1]`, scalar or per unit (`ValueError` otherwise; not checked when traced).
    - `method`: an edge rule or its name: [`RandomEdges`][] `"random"` (Bernoulli(p)), [`MagnitudeEdges`][]
      `"magnitude"` (`|w_ij| > t_i`, `P(|w_i| > t_i) = p`) or [`DPPEdges`][] `"dpp"` (large-N diagonal-kernel
      k-DPP, `pi_i(w) = mu_i w^2 / (1 + mu_i w^2)`).
    - `rescale`: a rescaling or its name: [`NoRescale`][] `"none"` (`c = 1`), [`InverseKeepRescale`][]
      `"inverse-keep"` (`c = 1/p`) or [`OptimalRescale`][] `"optimal"` (per-unit `c` minimising `eps_g`; never
      worse than the other two).
    - `activation`: [`Erf`][] (default), [`Linear`][] or their names.

    **Returns:**

    An [`EdgePruningResult`][]. Differentiable in `p` and in `state`.

    Example: `edge_prune_theory(state, 0.5, method="magnitude", rescale="optimal").eps_g`.
    """
    method = pruning_option("edge", method, name="method").name
    rescale = pruning_option("rescale", rescale, name="rescale").name
    activation = get_activation(activation)
    p = _check_p(p, state.K).astype(state.Q.dtype)
    return _edge_prune_theory(state, p, method, rescale, activation)
