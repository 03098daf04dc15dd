"""Edge pruning at the specialised state in closed form (docs/theory.md, section 6.2): the standardised moments
`e1 = E[m w^2] / Q_ii` and `pair(rho) = E[m_i m_k w_i w_k] / sqrt(Q_ii Q_kk)` of the random, magnitude and
large-N DPP edge rules, and the error after pruning with keep fraction `p` (rescale `c = 1` or `1/p`).

The moments are those of `jaxprune.pruning.random_moments` / `magnitude_moments` / `dpp_moments` written for
standardised weights and one correlation (independent formulas: the tests compare the two), so that the
group-structured error of `_bounds` stays a few arcsin terms, differentiable in `p`, `v*`, `T`, `rho`, ...

References: Acharyya, Chattoraj, Zhang, Das, Stefankovic, UAI 2021 (arXiv 2006.16617); docs/theory.md 6.2.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
from jaxtyping import Array

from .._activations import safe_sqrt
from .._checks import check_choice, is_concrete
from ._bounds import Specialised, _group_error
from ._options import AbstractEdgeRule, AbstractRescale, pruning_option

__all__ = ["specialised_edge_moments", "edge_error"]

_EDGE_METHODS = ("random", "magnitude", "dpp")
_RESCALES = ("none", "inverse-keep")

# Composite Gauss-Legendre rule on [0, 1] (48 panels x 16 nodes) used after a logarithmic change of variable.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)
_PANELS = 48


def _log_panels(lo: float, hi: float):
    """Nodes/weights of the composite Gauss-Legendre rule in `xi = log t` on `[lo, hi]`, as (t, w dt)."""
    edges = np.linspace(lo, hi, _PANELS + 1)
    half = 0.5 * np.diff(edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    xi = (mid[:, None] + half[:, None] * _GL_X[None, :]).ravel()
    w = (half[:, None] * _GL_W[None, :]).ravel()
    t = np.exp(xi)
    return t, w * t


_U_NODES, _U_WEIGHTS = _log_panels(math.log(1e-16), math.log(14.0))  # for x - z in (0, 14]
_T_NODES, _T_WEIGHTS = _log_panels(math.log(1e-18), math.log(60.0))  # for t in (0, 60]


def _phi(x):
    return jnp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _magnitude_pair(rho, z, e1):
    """`E[X Y 1{|X|>z} 1{|Y|>z}]` for standard normals with correlation `rho`: `sign(rho) e1` at `|rho| = 1`,
    else `2 int_z^inf phi(x) x h(x) dx`, `h(x) = E[Y 1{|Y|>z} | X = x]` (closed form), by quadrature."""
    edge = jnp.abs(rho) >= 1.0
    r = jnp.where(edge, 0.5, rho)
    sig = jnp.sqrt(1.0 - r * r)
    x = z + jnp.asarray(_U_NODES)
    mu = r * x
    h = (mu * jsp.ndtr((mu - z) / sig) + sig * _phi((z - mu) / sig)
         + mu * jsp.ndtr((-z - mu) / sig) - sig * _phi((z + mu) / sig))
    quad = 2.0 * jnp.sum(jnp.asarray(_U_WEIGHTS) * _phi(x) * x * h)
    return jnp.where(edge, jnp.sign(rho) * e1, jnp.where(rho == 0.0, 0.0, quad))


def _f_dpp(a):
    """`E[1 / (1 + a Z^2)] = sqrt(pi / (2a)) erfcx(1 / sqrt(2a))`, `Z ~ N(0, 1)`."""
    x = 1.0 / jnp.sqrt(2.0 * a)
    return math.sqrt(math.pi) * x * jsp.erfcx(x)


def _dpp_scale(p):
    """`a = mu Q_ii` with `E[a Z^2 / (1 + a Z^2)] = p` (bisection in `log a`, then one Newton step so that
    `da/dp = -1 / f'(a)` by the implicit function theorem)."""
    target = 1.0 - jax.lax.stop_gradient(p)

    def body(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        too_big = _f_dpp(jnp.exp(mid)) < target  # f decreases with a
        return jnp.where(too_big, lo, mid), jnp.where(too_big, mid, hi)

    lo, hi = jax.lax.fori_loop(0, 120, body, (jnp.asarray(-60.0, p.dtype), jnp.asarray(60.0, p.dtype)))
    a0 = jnp.exp(0.5 * (lo + hi))
    f0, df0 = jax.jvp(_f_dpp, (a0,), (jnp.ones_like(a0),))
    return a0 - (f0 - (1.0 - p)) / df0


def _dpp_pair(rho, a, p):
    """`E[pi(X) pi(Y) X Y]`, `pi(x) = a x^2 / (1 + a x^2)`, for standard normals with correlation `rho`:
    `rho [1 - 2 p / a + int_0^inf e^-t F(t) dt]`, with `F(t) = int_0^inf e^-s (A + B s)^(-3/2) ds
    = (2/B) [A^(-1/2) - sqrt(pi/B) erfcx(sqrt(A/B))]`, `A = 1 + 2 a t`, `B = 2a + 4 a^2 (1 - rho^2) t`
    (from `1/(1 + a x^2) = int_0^inf e^(-t (1 + a x^2)) dt` and a Gaussian integral)."""
    t = jnp.asarray(_T_NODES)
    A = 1.0 + 2.0 * a * t
    B = 2.0 * a + 4.0 * a * a * (1.0 - rho * rho) * t
    F = (2.0 / B) * (1.0 / jnp.sqrt(A) - jnp.sqrt(math.pi / B) * jsp.erfcx(jnp.sqrt(A / B)))
    integral = jnp.sum(jnp.asarray(_T_WEIGHTS) * jnp.exp(-t) * F)
    return rho * (1.0 - 2.0 * p / a + integral)


def _dpp_pair_copy(a, p):
    """`E[pi(X)^2 X^2] = (1/a) (a - 2 + 3 f - g)`, `f = E[1/(1+aX^2)] = 1 - p`, `g = E[1/(1+aX^2)^2] = f + a f'(a)`."""
    f, df = jax.jvp(_f_dpp, (a,), (jnp.ones_like(a),))
    g = f + a * df
    return (a - 2.0 + 3.0 * (1.0 - p) - g) / a


@functools.partial(jax.jit, static_argnames=("method",))
def specialised_edge_moments(p, rho, *, method: str = "random"):
    """`(e1, pair)`: `E[m w^2] = e1 Q_ii`, and `E[m_i m_k w_i w_k] = pair sqrt(Q_ii Q_kk)` for correlation `rho`.

    `random`: `e1 = p`, `pair = p^2 rho`. `magnitude`: `z = Phi^-1(1 - p/2)`, `e1 = p + 2 z phi(z)`, `pair`
    closed form at `rho in {0, +-1}` (`0`, `+-e1`: copies share masks), else a 1-d integral. `dpp`:
    `pi(w) = a w^2 / (1 + a w^2)` with `E[pi] = p`, `e1 = 1 - p/a`, `pair` closed form at `rho in {0, 1}`
    (`0`; `E[pi^2 w^2]`: copies draw independent masks), else a 1-d integral. Docs/theory.md section 6.2.

    **Arguments:**

    - `p`: keep fraction in `(0, 1]` (scalar).
    - `rho`: correlation(s) `rho_ik` of two units, any shape, in `[-1, 1]`.
    - `method`: static, `"random"` (default), `"magnitude"` or `"dpp"`.

    **Returns:**

    `(e1, pair)`: the scalar `e1` and `pair` of the shape of `rho`.
    """
    p = jnp.asarray(p, dtype=jnp.result_type(float))
    rho = jnp.asarray(rho, dtype=p.dtype)
    check_choice("method", method, _EDGE_METHODS)
    if method == "random":
        return p, p * p * rho
    if method == "magnitude":
        z = -jsp.ndtri(0.5 * p)
        e1 = p + 2.0 * z * _phi(z)
        pair = jnp.vectorize(lambda r: _magnitude_pair(r, z, e1))(rho)
        return e1, pair
    if method == "dpp":
        full = p >= 1.0
        ps = jnp.where(full, 0.5, p)
        a = _dpp_scale(ps)
        e1 = 1.0 - ps / a
        copy = _dpp_pair_copy(a, ps)
        quad = jnp.vectorize(lambda r: _dpp_pair(r, a, ps))(rho)
        pair = jnp.where(rho == 0.0, 0.0, jnp.where(rho == 1.0, copy, jnp.where(rho == -1.0, -copy, quad)))
        return jnp.where(full, 1.0, e1), jnp.where(full, rho, pair)
    raise AssertionError(method)


def edge_error(
    spec: Specialised, p, *, method: str | AbstractEdgeRule = "random", rescale: str | AbstractRescale = "none"
) -> Array:
    """`eps_g` after edge pruning with keep fraction `p` (Gaussian-equivalent theory, docs/theory.md 6.2):
    `Q'_ii = c^2 e1 Q_ii`, `Q'_ik = c^2 pair(rho_ik) sqrt(Q_ii Q_kk)`, `R' = c e1 R`, `c = 1` or `1/p`
    (random: `e1 = p`, `pair = p^2 rho`; [`specialised_edge_moments`][]).

    **Arguments:**

    - `spec`: the [`Specialised`][] state (see [`specialisation`][]).
    - `p`: keep fraction in `(0, 1]`, a scalar (`ValueError` otherwise, when concrete).
    - `method`: an [`AbstractEdgeRule`][] or its name `"random"` (default), `"magnitude"`, `"dpp"`.
    - `rescale`: an [`AbstractRescale`][] or its name, `"none"` (default) or `"inverse-keep"` (the optimal
      rescale is not in closed form here: use [`edge_prune_theory`][]).

    **Returns:**

    The scalar noise-free `eps_g` after pruning; differentiable in `p` and the parameters of `spec`.
    """
    method = pruning_option("edge", method, name="method").name
    rescale = check_choice("rescale", pruning_option("rescale", rescale, name="rescale").name, _RESCALES)
    if is_concrete(p) and not (0.0 < float(p) <= 1.0):
        raise ValueError(f"p (the keep fraction) must lie in (0, 1], got {float(p)}")
    p = jnp.asarray(p, dtype=spec.T.dtype)
    return _edge_summary_jit(spec, p[None])[0, _EDGE_METHODS.index(method), _RESCALES.index(rescale)]


def _edge_error_traced(spec: Specialised, p: Array, method: str, inverse: Array) -> Array:
    g = spec.groups()
    norm = safe_sqrt(g.s[:, None] * g.s[None, :])
    corr = g.C / norm
    e1, pair = specialised_edge_moments(p, corr, method=method)
    c = jnp.where(inverse, 1.0 / p, 1.0)
    new = g._replace(s=c * c * e1 * g.s, C=c * c * pair * norm, r=c * e1 * g.r)
    return _group_error(new, g.sizes, g.u)


@eqx.filter_jit
def _edge_summary_jit(spec: Specialised, ps):
    """`eps_g` of every edge method (random, magnitude, dpp) x rescale (none, inverse-keep) at each `p`."""
    def one(p):
        return jnp.stack([
            jnp.stack([_edge_error_traced(spec, p, m, jnp.asarray(inv)) for inv in (False, True)])
            for m in _EDGE_METHODS
        ])

    return jax.vmap(one)(ps)


