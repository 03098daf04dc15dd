"""Edge pruning: masks on individual first-layer weights, as a map on order parameters (docs/theory.md 6.2).

Two levels meet here.

- **Theory** (Gaussian-equivalent model): the per-coordinate vectors `(w_1j..w_Kj, w*_1j..w*_Mj)` are iid
  `N(0, Omega)`, `Omega = [[Q, R], [R^T, T]]`. A rule that keeps coordinate `j` of unit `i` with
  probability `pi_i(z)`, `z = w_ij / sqrt(Q_ii)` the standardised weight (plus independent randomness),
  and rescales `w'_i = c_i (m_i * w_i)` maps the overlaps to
  `Q'_ii = c_i^2 E[m_i w_i^2]`, `Q'_ik = c_i c_k E[m_i m_k w_i w_k]`, `R'_in = c_i E[m_i w_i w*_n]`
  `= c_i (R_in / Q_ii) E[m_i w_i^2]` (`E[w*_n | w_i]` is linear in `w_i`); `T`, `v`, `v*` are unchanged.
  [`edge_moments`][] does any smooth `pi` by Gauss-Hermite quadrature; random, magnitude (hard threshold)
  and the large-N diagonal k-DPP have dedicated closed forms / one-dimensional quadratures.
- **Concrete networks**: masks on actual weights `w` (`K x N`), the seed paper's data-kernel k-DPP over
  each unit's incoming edges, least-squares edge reweighting, and parameter counting against node pruning.

References: Acharyya, Chattoraj, Zhang, Das, Stefankovic, UAI 2021 (arXiv 2006.16617); Kulesza & Taskar
2012 (k-DPPs); Rosenbaum, J. R. Stat. Soc. B 23 (1961) (truncated bivariate normal moments); Owen,
Ann. Math. Stat. 27 (1956) (bivariate normal orthant probabilities via `T(h, a)`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._overlaps import Overlaps
from ._budgets import _per_unit
from ._budgets import edge_params as edge_params
from ._budgets import matched_keep_fraction as matched_keep_fraction
from ._budgets import node_params as node_params
from ._edge_masks import _as_weights, _keep_counts, _rank_mask  # noqa: F401  (kept importable from here)
from ._edge_masks import apply_edge_mask as apply_edge_mask
from ._edge_masks import dpp_edge_mask as dpp_edge_mask
from ._edge_masks import edge_dpp_kernels as edge_dpp_kernels
from ._edge_masks import magnitude_edge_mask as magnitude_edge_mask
from ._edge_masks import random_edge_mask as random_edge_mask
from ._edge_masks import reweight_edges as reweight_edges

__all__ = [
    "EdgeMoments",
    "apply_edge_mask",
    "apply_edge_moments",
    "dpp_edge_mask",
    "dpp_keep_prob",
    "dpp_mu",
    "dpp_moments",
    "edge_dpp_kernels",
    "edge_moments",
    "edge_params",
    "magnitude_edge_mask",
    "magnitude_moments",
    "magnitude_threshold",
    "matched_keep_fraction",
    "node_params",
    "random_edge_mask",
    "random_moments",
    "reweight_edges",
]

_METHODS = ("random", "magnitude", "dpp")
_RESCALES = ("none", "inverse-keep", "optimal")
_SQRT_PI = math.sqrt(math.pi)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


# --------------------------------------------------------------------------------------------------
# Moments and their application
# --------------------------------------------------------------------------------------------------


class EdgeMoments(eqx.Module):
    """Moments of an edge rule before rescaling (docs/theory.md 6.2), in the units of the overlaps.

    **Fields:**

    - `keep`: `Float[K]`, the keep fraction `E[m_i]` of each unit.
    - `Q`: `Float[K, K]`, `Q_ii = E[m_i w_i^2]` and `Q_ik = E[m_i m_k w_i w_k]` (`i != k`).
    - `R`: `Float[K, M]`, `R_in = E[m_i w_i w*_n]`.

    Produced by [`edge_moments`][], [`random_moments`][], [`magnitude_moments`][] and [`dpp_moments`][];
    [`apply_edge_moments`][] turns them into pruned overlaps.
    """

    keep: Float[Array, " K"]
    Q: Float[Array, "K K"]
    R: Float[Array, "K M"]


def apply_edge_moments(
    state: Overlaps, moments: EdgeMoments, c: Float[ArrayLike, "..."] | None = None
) -> Overlaps:
    """Rescaled pruned overlaps `Q'_ik = c_i c_k E[m_i m_k w_i w_k]`, `R'_in = c_i E[m_i w_i w*_n]`
    (docs/theory.md section 6.2).

    **Arguments:**

    - `state`: the [`Overlaps`][] before pruning (its `T`, `v`, `v*` are kept).
    - `moments`: the [`EdgeMoments`][] of the edge rule.
    - `c`: the rescale, a scalar or one per unit (`Float[K]`); `None` (default) means `c = 1`.

    **Returns:**

    The pruned [`Overlaps`][]: `Q'`, `R'` as above; `T`, `v`, `v*` unchanged.
    """
    K = state.K
    c = jnp.ones((K,), moments.Q.dtype) if c is None else jnp.broadcast_to(jnp.asarray(c), (K,))
    return Overlaps(
        Q=c[:, None] * moments.Q * c[None, :],
        R=c[:, None] * moments.R,
        T=state.T,
        v=state.v,
        v_star=state.v_star,
    )


def _standardise(state: Overlaps):
    """`sqrt(Q_ii)` and the correlations `rho_ik = Q_ik / sqrt(Q_ii Q_kk)` (0 for a zero unit)."""
    q = jnp.diagonal(state.Q)
    sd = jnp.sqrt(jnp.maximum(q, 0.0))
    den = sd[:, None] * sd[None, :]
    rho = jnp.where(den > 0, state.Q / jnp.where(den > 0, den, 1.0), 0.0)
    return sd, jnp.clip(rho, -1.0, 1.0)


def _moments_from_standardised(
    state: Overlaps, keep: Array, diag: Float[Array, " K"], offdiag: Float[Array, "K K"]
) -> EdgeMoments:
    """Scale standardised moments back: `Q'_ik = sqrt(Q_ii Q_kk) S_ik`, `R'_in = R_in E[pi_i z^2]`."""
    sd, _ = _standardise(state)
    K = state.K
    scale = sd[:, None] * sd[None, :]
    S = jnp.where(jnp.eye(K, dtype=bool), jnp.diag(diag), offdiag)
    return EdgeMoments(keep=keep, Q=scale * S, R=diag[:, None] * state.R)


@functools.lru_cache(maxsize=16)
def _hermite_e(n: int):
    """Probabilists' Gauss-Hermite nodes and weights normalised to `E_{z~N(0,1)}`."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / _SQRT_2PI


@functools.lru_cache(maxsize=16)
def _legendre(n: int):
    return np.polynomial.legendre.leggauss(n)


@eqx.filter_jit
def edge_moments(
    state: Overlaps,
    keep_prob_fn: Callable[[Array, object], Array],
    params,
    *,
    nodes: int = 96,
) -> EdgeMoments:
    """Moments of a smooth per-coordinate keep rule `m_ij ~ Bernoulli(pi_i(w_ij / sqrt(Q_ii)))` by quadrature.

    `E[m_i] = E[pi_i(z)]`, `E[m_i w_i^2] = Q_ii E[pi_i(z) z^2]`, `R'_in = R_in E[pi_i(z) z^2]` and
    `E[m_i m_k w_i w_k] = sqrt(Q_ii Q_kk) E[pi_i(z_i) pi_k(z_k) z_i z_k]`, `corr(z_i, z_k) = rho_ik`,
    computed by conditioning `z_k = rho z_i + sqrt(1 - rho^2) y` and a `nodes x nodes` Gauss-Hermite
    tensor rule (vmapped over pairs). Accurate for `pi` analytic in a wide strip around the real axis;
    hard thresholds (magnitude) and nearly-hard rules need their own treatment.

    **Arguments:**

    - `state`: the overlaps before pruning.
    - `keep_prob_fn`: `keep_prob_fn(z, theta_i) -> pi_i(z)`, elementwise in the standardised weight `z`.
    - `params`: a pytree whose leaves have a leading axis `K` (per-unit parameters `theta_i`).
    - `nodes`: static number of Gauss-Hermite nodes per dimension.

    **Returns:**

    The [`EdgeMoments`][] of the rule.

    Example: `edge_moments(state, lambda z, p: p + 0 * z, jnp.full((K,), 0.5))` reproduces
    `random_moments(state, 0.5)`.
    """
    dtype = state.Q.dtype
    xn, wn = (jnp.asarray(a, dtype) for a in _hermite_e(nodes))
    _, rho = _standardise(state)

    def unit_table(theta):
        return keep_prob_fn(xn, theta)

    pi_nodes = jax.vmap(unit_table)(params)  # (K, n)
    keep = pi_nodes @ wn
    diag = pi_nodes @ (wn * xn * xn)

    def pair(theta_i, theta_k, r):
        s = jnp.sqrt(jnp.maximum(1.0 - r * r, 0.0))
        zk = r * xn[:, None] + s * xn[None, :]  # (x, y)
        fi = keep_prob_fn(xn, theta_i) * xn
        fk = keep_prob_fn(zk, theta_k) * zk
        return jnp.einsum("a,b,a,ab->", wn, wn, fi, fk)

    over_k = jax.vmap(pair, in_axes=(None, 0, 0))
    offdiag = jax.vmap(over_k, in_axes=(0, None, 0))(params, params, rho)
    offdiag = 0.5 * (offdiag + offdiag.T)
    return _moments_from_standardised(state, keep, diag, offdiag)


@eqx.filter_jit
def random_moments(state: Overlaps, p: Float[ArrayLike, "..."]) -> EdgeMoments:
    """Moments of random edge pruning (docs/theory.md section 6.2, "random(p)"): each weight kept independently
    with probability `p_i`, so `E[m_i w_i^2] = p_i Q_ii`, `E[m_i m_k w_i w_k] = p_i p_k Q_ik`, `R' = p_i R`.

    **Arguments:**

    - `state`: the [`Overlaps`][] before pruning.
    - `p`: keep fraction in `(0, 1]`, a scalar or one per unit (`Float[K]`).

    **Returns:**

    The [`EdgeMoments`][] of the rule.
    """
    K = state.K
    p = _per_unit(jnp.asarray(p, state.Q.dtype), K)
    Qm = jnp.where(jnp.eye(K, dtype=bool), p[:, None] * state.Q, p[:, None] * state.Q * p[None, :])
    return EdgeMoments(keep=p, Q=Qm, R=p[:, None] * state.R)


# ---- magnitude (hard threshold) ---------------------------------------------------------------


def magnitude_threshold(p: Float[ArrayLike, "..."]) -> Float[Array, "..."]:
    """Standardised magnitude threshold `t = Phi^{-1}(1 - p/2)`, so that `P(|z| > t) = p` for `z ~ N(0, 1)`
    (docs/theory.md section 6.2, "magnitude(p)").

    **Arguments:**

    - `p`: keep fraction in `(0, 1]`, any shape (`p = 1` gives `t = 0`: every weight kept).

    **Returns:**

    The threshold `t`, of the shape of `p`. Example: `magnitude_threshold(0.3173)` is about `1.0`.
    """
    return jsp.ndtri(1.0 - 0.5 * jnp.asarray(p))


def _upper_orthant(a, b, rho, s):
    """`P(X > a, Y > b)` for `a, b > 0`, unit variances, correlation `rho` (Owen 1956):
    `(Phi(-a) + Phi(-b))/2 - T(a, (b - rho a)/(a s)) - T(b, (a - rho b)/(b s))`, `s = sqrt(1 - rho^2)`."""
    h = jnp.stack([a, b])
    t = jsp.owens_t(h, jnp.stack([(b - rho * a) / (a * s), (a - rho * b) / (b * s)]))  # one call site
    return 0.5 * (jsp.ndtr(-a) + jsp.ndtr(-b)) - t[0] - t[1]


def _truncated_cross_moment(a, b, rho):
    """`G(a, b, rho) = E[X Y 1{X > a, Y > b}]` (Rosenbaum 1961):
    `rho L + rho a phi(a) Phi(-b*) + rho b phi(b) Phi(-a*) + s phi(a) phi(b*)`, `b* = (b - rho a)/s`."""
    rho = jnp.clip(rho, -1.0 + 1e-15, 1.0 - 1e-15)
    s = jnp.sqrt((1.0 - rho) * (1.0 + rho))
    L = _upper_orthant(a, b, rho, s)
    a_star = (a - rho * b) / s
    b_star = (b - rho * a) / s
    phi = jax.scipy.stats.norm.pdf
    return (
        rho * L
        + rho * a * phi(a) * jsp.ndtr(-b_star)
        + rho * b * phi(b) * jsp.ndtr(-a_star)
        + s * phi(a) * phi(b_star)
    )


@eqx.filter_jit
def magnitude_moments(state: Overlaps, p: Float[ArrayLike, "..."]) -> EdgeMoments:
    """Magnitude pruning `m_ij = 1{|w_ij| > t_i sqrt(Q_ii)}`, `t_i = Phi^{-1}(1 - p_i/2)`, in closed form.

    `E[m_i z_i^2] = 2 t phi(t) + p`; `E[m_i m_k z_i z_k] = 2 [G(t_i, t_k, rho) - G(t_i, t_k, -rho)]` with
    `G(a, b, rho) = E[X Y 1{X > a, Y > b}]` (Rosenbaum 1961; the orthant probability by Owen's `T`).
    `p_i = 1` keeps everything exactly. Docs/theory.md section 6.2, "magnitude(p)".

    **Arguments:**

    - `state`: the [`Overlaps`][] before pruning.
    - `p`: keep fraction in `(0, 1]`, a scalar or one per unit (`Float[K]`).

    **Returns:**

    The [`EdgeMoments`][] of the rule.
    """
    K = state.K
    dtype = state.Q.dtype
    p = _per_unit(jnp.asarray(p, dtype), K)
    full = p >= 1.0
    p_safe = jnp.where(full, 0.5, p)
    t = magnitude_threshold(p_safe)
    diag = jnp.where(full, 1.0, 2.0 * t * jax.scipy.stats.norm.pdf(t) + p_safe)
    _, rho = _standardise(state)

    ti = jnp.broadcast_to(t[:, None], (2, K, K))
    tk = jnp.broadcast_to(t[None, :], (2, K, K))
    g = _truncated_cross_moment(ti, tk, jnp.stack([rho, -rho]))  # elementwise over (sign, i, k)
    off = 2.0 * (g[0] - g[1])
    # a unit kept whole (t = 0): E[z_i m_k z_k] = rho E[m_k z_k^2]
    off = jnp.where(full[:, None] & full[None, :], rho, off)
    off = jnp.where(full[:, None] & ~full[None, :], rho * diag[None, :], off)
    off = jnp.where(~full[:, None] & full[None, :], rho * diag[:, None], off)
    return _moments_from_standardised(state, jnp.where(full, 1.0, p_safe), diag, off)


# ---- large-N diagonal-kernel k-DPP -------------------------------------------------------------


_CF_TERMS = 60


def _dpp_fraction(x: Array) -> Array:
    """`F(x) = 1 - sqrt(pi) x erfcx(x) = E[mu z^2 / (1 + mu z^2)]`, `x = 1/sqrt(2 mu)`, without cancellation.

    Below `x = 2` directly; above, `F = r / (x + r)` with the continued fraction
    `r = (1/2) / (x + 1 / (x + (3/2) / (x + ...)))` of `erfc` (60 terms: relative error < 1e-15).
    """
    x = jnp.asarray(x)
    small = x < 2.0
    xs = jnp.where(small, x, 2.0)
    direct = 1.0 - _SQRT_PI * xs * jsp.erfcx(xs)
    xl = jnp.where(small, 2.0, x)
    r = jax.lax.fori_loop(
        0, _CF_TERMS, lambda i, r: (0.5 * (_CF_TERMS - i)) / (xl + r), jnp.zeros_like(xl)
    )
    return jnp.where(small, direct, r / (xl + r))


def dpp_keep_prob(z: Float[ArrayLike, "..."], mu: Float[ArrayLike, "..."]) -> Float[Array, "..."]:
    """Large-N inclusion probability of the diagonal-kernel k-DPP: `pi(z) = mu z^2 / (1 + mu z^2)`
    (docs/theory.md section 6.2, "dpp(p)").

    **Arguments:**

    - `z`: standardised weights `w_ij / sqrt(Q_ii)`, any shape.
    - `mu`: the scale `mu >= 0` of [`dpp_mu`][], broadcasting against `z`.

    **Returns:**

    The keep probability `pi(z)` in `[0, 1)`, of the broadcast shape of `z` and `mu`.
    """
    z2 = jnp.square(z)
    return mu * z2 / (1.0 + mu * z2)


def _solve_x(p: Array) -> Array:
    """`x >= 0` with `F(x) = p` (bisection in log x, 120 steps), differentiable by the implicit function."""
    target = jax.lax.stop_gradient(p)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        above = _dpp_fraction(jnp.exp(mid)) > target  # F decreasing: root lies above mid
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    lo, hi = jax.lax.fori_loop(
        0, 120, body, (jnp.full_like(target, -45.0), jnp.full_like(target, 25.0))
    )
    x0 = jnp.where(target >= 1.0, 0.0, jnp.exp(0.5 * (lo + hi)))
    # one Newton step with live gradients: exact derivative dx/dp = 1/F'(x) (implicit function theorem)
    f, df = jax.jvp(_dpp_fraction, (x0,), (jnp.ones_like(x0),))
    x = x0 - (f - p) / df
    return jnp.maximum(x, 0.0)


@eqx.filter_jit
def dpp_mu(p: Float[ArrayLike, "..."]) -> Float[Array, "..."]:
    """`mu` with `E_{z~N(0,1)}[mu z^2/(1 + mu z^2)] = p`, i.e. `1 - sqrt(pi/(2 mu)) erfcx(1/sqrt(2 mu)) = p`.

    `mu = inf` for `p = 1`. Gradients with respect to `p` by the implicit function theorem.
    Docs/theory.md section 6.2, "dpp(p)".

    **Arguments:**

    - `p`: keep fraction in `(0, 1]`, any shape.

    **Returns:**

    The scale `mu > 0` of [`dpp_keep_prob`][], of the shape of `p`.
    """
    x = _solve_x(jnp.asarray(p))
    return 0.5 / jnp.square(x)


def _dpp_pair_integral(xi, xk, rho, nodes: int):
    """`J_ik = E[h_i h_k z_i z_k] / rho`, `h = 1/(1 + mu z^2)`, by the Laplace representation of `h`:
    `J = x_i^2 x_k^2 int_0^inf e^{-x_i^2 u} 2 F(x_k sqrt(A/B)) / (B sqrt(A)) du`, `A = 1 + u`,
    `B = 1 + (1 - rho^2) u` (the inner integral in closed form), Gauss-Legendre in `log(1 + u)`."""
    gx, gw = _legendre(nodes)
    dtype = jnp.result_type(xi, float)
    gx, gw = jnp.asarray(gx, dtype), jnp.asarray(gw, dtype)
    s2 = (1.0 - rho) * (1.0 + rho)
    xi_safe = jnp.maximum(xi, 1e-150)
    tau_max = jnp.log1p(40.0 / jnp.square(xi_safe))
    # two panels: [0, min(tau_max, 3)] and the rest, to resolve both the bulk and the tail
    split = jnp.minimum(tau_max, 3.0)

    def panel(a, b):
        tau = a + 0.5 * (b - a) * (gx + 1.0)
        A = jnp.exp(tau)
        u = jnp.expm1(tau)
        B = 1.0 + s2 * u
        f = jnp.exp(-jnp.square(xi_safe) * u) * 2.0 * _dpp_fraction(xk * jnp.sqrt(A / B)) / (B * jnp.sqrt(A))
        return 0.5 * (b - a) * jnp.sum(gw * f * A)

    total = panel(0.0, split) + panel(split, tau_max)
    return jnp.square(xi) * jnp.square(xk) * total


@eqx.filter_jit
def dpp_moments(state: Overlaps, p: Float[ArrayLike, "..."], *, nodes: int = 128) -> EdgeMoments:
    """Large-N diagonal-kernel k-DPP (docs/theory.md 6.2): keep with `pi_i(z) = mu_i z^2/(1 + mu_i z^2)`.

    With `x_i = 1/sqrt(2 mu_i)`, `h = 1 - pi`: `E[pi_i] = 1 - sqrt(pi) x_i erfcx(x_i) = p_i`,
    `E[pi_i z^2] = 1 - p_i/mu_i`, and
    `E[pi_i pi_k z_i z_k] = rho (1 - p_i/mu_i - p_k/mu_k + J_ik)` with `J_ik` a one-dimensional
    Gauss-Legendre integral (see `_dpp_pair_integral`); accurate to ~1e-12 for every `p in (0, 1]`.

    **Arguments:**

    - `state`: the [`Overlaps`][] before pruning.
    - `p`: keep fraction in `(0, 1]`, a scalar or one per unit (`Float[K]`).
    - `nodes`: static number of Gauss-Legendre nodes of the pair integral.

    **Returns:**

    The [`EdgeMoments`][] of the rule.
    """
    K = state.K
    dtype = state.Q.dtype
    p = _per_unit(jnp.asarray(p, dtype), K)
    x = _solve_x(p)
    hz2 = 2.0 * jnp.square(x) * p  # E[h z^2] = p / mu
    diag = 1.0 - hz2
    _, rho = _standardise(state)
    pair = functools.partial(_dpp_pair_integral, nodes=nodes)
    J = jax.vmap(jax.vmap(pair, in_axes=(None, 0, 0)), in_axes=(0, None, 0))(x, x, rho)
    J = 0.5 * (J + J.T)
    off = rho * (1.0 - hz2[:, None] - hz2[None, :] + J)
    return _moments_from_standardised(state, p, diag, off)
