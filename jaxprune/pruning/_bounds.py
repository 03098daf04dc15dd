"""Closed-form pruning errors at the seed paper's specialised fixed point, and bounds over subsets.

The specialised state (docs/theory.md section 5): `K` student units in `M` groups, group `n` holding `K_n` copies of
teacher unit `n` with second-layer weights `v*_n / K_n` (`K_n = z = K / M` by default). Imperfections: an
alignment `a` (`R_in = a T_nm` for a unit of group `n`), an in-group overlap `rho` (`Q_ik = rho T_nn`), a
cross-group residual overlap `cross`, unequal group sizes, and `T != I`. In formulas, for a unit of group `n`:

    Q_ii = T_nn,   Q_ik = rho T_nn (same group),   Q_ik = a^2 T_nm + cross (1 - a^2) sqrt(T_nn T_mm) (groups n != m),
    R_im = a T_nm,  v_i = v*_n / K_n,   a = sqrt(rho) unless given.

Every pruning rule of docs/theory.md section 6 maps such a state to one that is again described per group: a kept
count `m_n`, a per-unit weight `u_n`, a norm `s_n`, a pair overlap `C_nm` between distinct units (`C_nn` in
the group), and `r_nm`. The error is then a sum over groups of arcsin terms (docs/theory.md section 3):

    eps = 1/2 [ sum_n m_n u_n^2 I2(s_n,s_n,s_n) + sum_nm (m_n m_m - delta_nm m_n) u_n u_m I2(s_n,s_m,C_nm)
                + sum_nm v*_n v*_m I2(T) - 2 sum_nm m_n u_n v*_m I2(s_n,T_mm,r_nm) ],   I2 = (2/pi) arcsin(..).

so every closed form below is cheap, jit/vmap-able and differentiable in `v*`, `T`, `rho`, `alignment`,
`cross` and (for edge pruning) the keep fraction `p`. Distributions over node subsets act only through the
kept counts `m`; they are sums over the (few) count vectors with `0 <= m_n <= K_n`, `sum m_n = k`.

References: Acharyya, Chattoraj, Zhang, Das, Stefankovic, "Statistical Mechanical Analysis of Neural
Network Pruning", UAI 2021 (arXiv 2006.16617); Kulesza & Taskar 2012 (k-DPPs); docs/theory.md sections 3, 5, 6.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._activations import Erf, safe_sqrt
from .._overlaps import Overlaps

__all__ = [
    "Specialised",
    "NodeBounds",
    "specialisation",
    "specialised_state",
    "group_counts",
    "count_vectors",
    "count_distribution",
    "node_error_counts",
    "random_node_error",
    "dpp_node_error",
    "balanced_node_error",
    "node_error_range",
    "optimal_reweight_bound",
    "edge_error",
    "edge_moments",
    "importance_counts",
    "importance_node_error",
    "bounds_table",
]

_ERF = Erf()
_REWEIGHTS = ("none", "preactivation", "activation", "optimal")
_KERNELS = ("Q", "A", "rbf")
_EDGE_METHODS = ("random", "magnitude", "dpp")
_RESCALES = ("none", "inverse-keep")

# Composite Gauss-Legendre rule on [0, 1] (48 panels x 16 nodes) used after a logarithmic change of variable.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)
_PANELS = 48


def _is_concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


# --------------------------------------------------------------------------------------------------
# The specialised state
# --------------------------------------------------------------------------------------------------


class Specialised(eqx.Module):
    """Parameters of a specialised state (module docstring for the overlaps they define).

    **Fields:** `v_star: Float[M]`, `T: Float[M, M]`, `rho`, `alignment`, `cross` (scalars; differentiable),
    `group_sizes: tuple[int, ...]` (static, `K_n >= 1`). Build it with [`specialisation`][].
    """

    v_star: Float[Array, " M"]
    T: Float[Array, "M M"]
    rho: Float[Array, ""]
    alignment: Float[Array, ""]
    cross: Float[Array, ""]
    group_sizes: tuple[int, ...] = eqx.field(static=True)

    @property
    def K(self) -> int:
        return int(sum(self.group_sizes))

    @property
    def M(self) -> int:
        return len(self.group_sizes)

    def groups(self) -> "_Groups":
        """Per-group overlaps of the unpruned state (all `K_n` units kept)."""
        T, a, rho, cross = self.T, self.alignment, self.rho, self.cross
        d = jnp.diagonal(T)
        sd = safe_sqrt(d[:, None] * d[None, :])
        off = a * a * T + cross * (1.0 - a * a) * sd
        C = jnp.where(jnp.eye(self.M, dtype=bool), jnp.diag(rho * d), off)
        sizes = jnp.asarray(self.group_sizes, dtype=T.dtype)
        return _Groups(s=d, C=C, r=a * T, u=self.v_star / sizes, sizes=sizes, T=T, v_star=self.v_star)

    def assignment(self) -> np.ndarray:
        """Group index of each student unit (units are ordered group by group)."""
        return np.repeat(np.arange(self.M), self.group_sizes)

    def state(self) -> Overlaps:
        """The specialised state as an ordinary [`Overlaps`][] (units ordered group by group)."""
        g = self.groups()
        idx = jnp.asarray(self.assignment())
        same_unit = jnp.eye(self.K, dtype=bool)
        Q = jnp.where(same_unit, g.s[idx][:, None] + 0.0 * g.C[idx][:, idx], g.C[idx][:, idx])
        return Overlaps(Q=Q, R=g.r[idx], T=self.T, v=g.u[idx], v_star=self.v_star)


class _Groups(NamedTuple):
    """Per-group description of a (pruned) specialised state; see the module docstring."""

    s: Array  # (M,) Q_ii of a unit of group n
    C: Array  # (M, M) overlap of two distinct units of groups n, m
    r: Array  # (M, M) R of a unit of group n with teacher m
    u: Array  # (M,) second-layer weight of a unit of group n
    sizes: Array  # (M,) number of units of group n
    T: Array
    v_star: Array


def specialisation(
    K: int,
    M: int,
    v_star: Float[ArrayLike, "M"] | float = 1.0,
    *,
    rho: Float[ArrayLike, ""] = 1.0,
    alignment: Float[ArrayLike, ""] | None = None,
    cross: Float[ArrayLike, ""] = 0.0,
    group_sizes: tuple[int, ...] | None = None,
    T: Float[ArrayLike, "M M"] | None = None,
) -> Specialised:
    """Build the specialised state's parameters: `K = sum K_n` units, group `n` copies teacher unit `n`.

    **Arguments:**

    - `K`, `M`: student and teacher sizes (`K >= M >= 1`; `K % M == 0` unless `group_sizes` is given).
    - `v_star`: teacher second layer (scalar or length `M`).
    - `rho`: in-group overlap `Q_ik / T_nn` in `[-1, 1]` (1: exact copies).
    - `alignment`: `a = R_in / T_nn` in `[-1, 1]` (default `sqrt(max(rho, 0))`, independent per-unit noise).
    - `cross`: correlation of the residuals (the parts orthogonal to the teacher) of units in different groups.
    - `group_sizes`: the `K_n` (default `K / M` each).
    - `T`: teacher overlaps (default `I`).

    **Returns:** a [`Specialised`][]. Raises `ValueError` naming the argument if a value is out of range or the
    resulting `[[Q, R], [R^T, T]]` is not positive semidefinite (checked when the values are concrete).
    """
    K, M = int(K), int(M)
    if M < 1:
        raise ValueError(f"M must be >= 1, got {M}")
    if group_sizes is None:
        if K < M or K % M:
            raise ValueError(f"K must be a positive multiple of M={M} (or pass group_sizes), got K={K}")
        group_sizes = (K // M,) * M
    group_sizes = tuple(int(g) for g in group_sizes)
    if len(group_sizes) != M or min(group_sizes) < 1 or sum(group_sizes) != K:
        raise ValueError(f"group_sizes must be M={M} integers >= 1 summing to K={K}, got {group_sizes}")
    dtype = jnp.result_type(float)
    vs = jnp.asarray(v_star, dtype=dtype)
    if vs.ndim == 0:
        vs = jnp.full((M,), vs)
    if vs.shape != (M,):
        raise ValueError(f"v_star must be a scalar or have shape ({M},), got {vs.shape}")
    T = jnp.eye(M, dtype=dtype) if T is None else jnp.asarray(T, dtype=dtype)
    if T.shape != (M, M):
        raise ValueError(f"T must have shape ({M}, {M}), got {T.shape}")
    rho = jnp.asarray(rho, dtype=dtype)
    cross = jnp.asarray(cross, dtype=dtype)
    a = jnp.sqrt(jnp.maximum(rho, 0.0)) if alignment is None else jnp.asarray(alignment, dtype=dtype)
    for name, x in (("rho", rho), ("alignment", a), ("cross", cross)):
        if x.ndim != 0:
            raise ValueError(f"{name} must be a scalar, got shape {x.shape}")
        if _is_concrete(x) and not (-1.0 <= float(x) <= 1.0):
            raise ValueError(f"{name} must lie in [-1, 1], got {float(x)}")
    spec = Specialised(v_star=vs, T=T, rho=rho, alignment=a, cross=cross, group_sizes=group_sizes)
    if _is_concrete(vs, T, rho, a, cross):
        Tn = np.asarray(T)
        if not np.allclose(Tn, Tn.T) or np.min(np.diag(Tn)) <= 0:
            raise ValueError("T must be symmetric with a positive diagonal")
        omega = np.asarray(spec.state().covariance())
        lam = np.linalg.eigvalsh(0.5 * (omega + omega.T))
        if lam[0] < -1e-10 * max(1.0, lam[-1]):
            raise ValueError(
                "rho, alignment, cross and T give a state whose covariance [[Q, R], [R^T, T]] is not positive "
                f"semidefinite (smallest eigenvalue {lam[0]:.3g}); need a^2 <= rho <= 1 and a valid cross"
            )
    return spec


def specialised_state(K: int, M: int, v_star=1.0, **kwargs) -> Overlaps:
    """The specialised state `Q_ii = T_nn, Q_ik = rho T_nn | a^2 T_nm + ..., R = a T, v_i = v*_n / K_n` as
    [`Overlaps`][] (arguments as in [`specialisation`][])."""
    return specialisation(K, M, v_star, **kwargs).state()


def group_counts(spec: Specialised, mask) -> np.ndarray:
    """Kept counts `m_n` per group of a boolean unit mask (or a batch of masks), for units ordered by group."""
    mask = np.asarray(mask, dtype=bool)
    onehot = np.eye(spec.M, dtype=np.int64)[spec.assignment()]  # (K, M)
    return mask.astype(np.int64) @ onehot


# --------------------------------------------------------------------------------------------------
# Error of a group-structured state
# --------------------------------------------------------------------------------------------------


def _group_error(g: _Groups, m: Array, u: Array) -> Array:
    """`eps_g` of `m_n` units per group with weights `u_n` (module docstring)."""
    i2 = _ERF.i2
    s, C, r, T, vs = g.s, g.C, g.r, g.T, g.v_star
    dT = jnp.diagonal(T)
    mu = m * u
    self_term = jnp.sum(m * u * u * i2(s, s, s))
    pair = (mu[:, None] * mu[None, :] - jnp.diag(m * u * u)) * i2(s[:, None], s[None, :], C)
    teach = vs @ i2(dT[:, None], dT[None, :], T) @ vs
    cross = mu @ i2(s[:, None], dT[None, :], r) @ vs
    return 0.5 * (self_term + jnp.sum(pair) + teach - 2.0 * cross)


def _kernel_entries(g: _Groups, kernel: str, beta=1.0):
    """(diagonal L_ii per group, pair L_ik per group pair) of the kernel Q, A or RBF on activations."""
    i2 = _ERF.i2
    if kernel == "Q":
        return g.s, g.C
    a_d = i2(g.s, g.s, g.s)
    a_p = i2(g.s[:, None], g.s[None, :], g.C)
    if kernel == "A":
        return a_d, a_p
    if kernel == "rbf":
        dist = a_d[:, None] + a_d[None, :] - 2.0 * a_p
        return jnp.ones_like(a_d), jnp.exp(-beta * dist)
    raise ValueError(f"kernel must be one of {_KERNELS}, got {kernel!r}")


def _reduced(diag: Array, pair: Array, m: Array):
    """The kernel restricted to group-constant vectors in the basis `e_n / sqrt(m_n)`:
    `H = diag(L_d - L_p,nn) + D L_p D`, `D = diag(sqrt m)`; absent groups get an identity row."""
    present = m > 0
    sq = jnp.sqrt(jnp.where(present, m, 1.0))
    H = jnp.diag(diag - jnp.diagonal(pair)) + sq[:, None] * pair * sq[None, :]
    both = present[:, None] & present[None, :]
    return jnp.where(both, H, jnp.eye(m.shape[0], dtype=H.dtype)), sq, present


def _reweighted(g: _Groups, m: Array, reweight: str) -> Array:
    """Per-unit second layer after keeping `m_n` units of group `n` and reweighting (docs/theory.md 6.1).

    The solve `L_SS x = b` with a group-constant right side has the group-constant solution
    `x_n = y_n / sqrt(m_n)`, `H y = sqrt(m) b` (the pseudo-inverse solution when `L_SS` is singular)."""
    if reweight == "none":
        return g.u
    if reweight not in _REWEIGHTS:
        raise ValueError(f"reweight must be one of {_REWEIGHTS}, got {reweight!r}")
    diag, pair = _kernel_entries(g, "Q" if reweight == "preactivation" else "A")
    H, sq, present = _reduced(diag, pair, m)
    if reweight == "optimal":
        dT = jnp.diagonal(g.T)
        b = _ERF.i2(g.s[:, None], dT[None, :], g.r) @ g.v_star
    else:
        b = pair @ ((g.sizes - m) * g.u)  # removed units are distinct from kept ones: pair overlaps
    y = jnp.linalg.solve(H, jnp.where(present, sq * b, 0.0))
    x = jnp.where(present, y / sq, 0.0)
    return x if reweight == "optimal" else g.u + x


def node_error_counts(spec: Specialised, counts: Float[ArrayLike, " M"], *, reweight: str = "none") -> Array:
    """`eps_g` after keeping `m_n = counts[n]` units of group `n` (any `m_n` of them: all are equivalent),
    with the reweighting rule of docs/theory.md 6.1 (`none`: `u_n = v*_n / K_n`)."""
    _check_reweight(reweight)
    m = jnp.asarray(counts, dtype=spec.T.dtype)
    if m.shape != (spec.M,):
        raise ValueError(f"counts must have shape ({spec.M},), got {m.shape}")
    if _is_concrete(m):
        mn = np.asarray(m)
        if np.any(mn < 0) or np.any(mn > np.asarray(spec.group_sizes)) or mn.sum() < 1:
            raise ValueError(f"counts must satisfy 0 <= m_n <= K_n = {spec.group_sizes}, sum >= 1; got {mn}")
    return _errors_jit(spec, m[None, :], reweight)[0]


def _check_reweight(reweight):
    if reweight not in _REWEIGHTS:
        raise ValueError(f"reweight must be one of {_REWEIGHTS}, got {reweight!r}")


@eqx.filter_jit
def _errors_jit(spec: Specialised, counts: Array, reweight: str) -> Array:
    g = spec.groups()
    return jax.vmap(lambda m: _group_error(g, m, _reweighted(g, m, reweight)))(counts)


# --------------------------------------------------------------------------------------------------
# Distributions over kept counts
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _all_counts(sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Every count vector `0 <= m_n <= K_n` (all budgets at once: fixed shapes, one compilation per spec) and
    `log prod_n C(K_n, m_n)`."""
    grids = np.meshgrid(*[np.arange(K + 1) for K in sizes], indexing="ij")
    counts = np.stack([g.ravel() for g in grids], axis=1).astype(np.int64)
    lg = np.vectorize(math.lgamma)
    logmult = np.sum(lg(np.asarray(sizes) + 1.0) - lg(counts + 1.0) - lg(np.asarray(sizes) - counts + 1.0), axis=1)
    for a in (counts, logmult):
        a.flags.writeable = False
    return counts, logmult


def _check_k(spec: Specialised, k) -> int:
    if isinstance(k, bool) or int(k) != k:
        raise ValueError(f"k must be an integer, got {k!r}")
    k = int(k)
    if not 1 <= k <= spec.K:
        raise ValueError(f"k must satisfy 1 <= k <= K = {spec.K}, got k = {k}")
    return k


def count_vectors(spec: Specialised, k: int) -> tuple[np.ndarray, np.ndarray]:
    """All kept-count vectors `m` (`0 <= m_n <= K_n`, `sum m_n = k`) and `log prod_n C(K_n, m_n)`, the log
    number of subsets with those counts."""
    k = _check_k(spec, k)
    counts, logmult = _all_counts(spec.group_sizes)
    sel = counts.sum(axis=1) == k
    return counts[sel], logmult[sel]


def _dpp_log_weights(g: _Groups, counts: Array, logmult: Array, kernel: str, jitter, beta, valid) -> Array:
    """Log of `prod C(K_n, m_n) det(L_S)` (a k-DPP's weight of all subsets with counts `m`), in the limit
    `jitter -> 0` when some `L_d - L_p = 0` (duplicate units): only the counts with the fewest vanishing
    factors `(L_d - L_p)^(m_n - 1)` survive. `det L_S = prod_n (L_d,n - L_p,nn)^(m_n - 1) det H(m)`."""
    diag, pair = _kernel_entries(g, kernel, beta)
    diag = diag + jitter
    gap = diag - jnp.diagonal(pair)
    tol = 64 * jnp.finfo(gap.dtype).eps * jnp.max(jnp.abs(diag))
    zero = gap <= tol

    def one(m, lm):
        H, _, present = _reduced(diag, pair, m)
        excess = jnp.where(present, m - 1.0, 0.0)
        finite = jnp.sum(jnp.where(zero, 0.0, excess * jnp.log(jnp.where(zero, 1.0, gap))))
        sign, logdet = jnp.linalg.slogdet(H)
        order = jnp.sum(jnp.where(zero, excess, 0.0))
        return lm + finite + jnp.where(sign > 0, logdet, -jnp.inf), order

    logw, order = jax.vmap(one)(counts, logmult)
    return jnp.where(valid & (order == jnp.min(jnp.where(valid, order, jnp.inf))), logw, -jnp.inf)


def _balanced_probs(counts, valid, k, sizes):
    target = k * sizes / jnp.sum(sizes)
    dist = jnp.sum(jnp.square(counts - target[None, :]), axis=1)
    best = jnp.min(jnp.where(valid, dist, jnp.inf))
    sel = valid & (dist <= best + 1e-9)
    return sel / jnp.sum(sel)


@eqx.filter_jit
def _probs_jit(spec: Specialised, k, method: str, kernel: str, jitter, beta):
    """Probabilities of every count vector of `_all_counts` (zero unless `sum m = k`)."""
    counts_np, logmult_np = _all_counts(spec.group_sizes)
    dtype = spec.T.dtype
    counts, logmult = jnp.asarray(counts_np, dtype), jnp.asarray(logmult_np, dtype)
    valid = jnp.sum(counts, axis=1) == k
    lm = jnp.where(valid, logmult, -jnp.inf)
    if method == "random":
        return jnp.exp(lm - jsp.logsumexp(lm))
    if method == "dpp":
        logw = _dpp_log_weights(spec.groups(), counts, lm, kernel, jitter, beta, valid)
        return jnp.exp(logw - jsp.logsumexp(logw))
    return _balanced_probs(counts, valid, k, jnp.asarray(spec.group_sizes, dtype))


def _check_dist(method, kernel, jitter, beta):
    if method not in ("random", "dpp", "balanced"):
        raise ValueError(f"method must be 'random', 'dpp' or 'balanced', got {method!r}")
    if kernel not in _KERNELS:
        raise ValueError(f"kernel must be one of {_KERNELS}, got {kernel!r}")
    if _is_concrete(jitter) and not float(jitter) >= 0:
        raise ValueError(f"jitter must be >= 0, got {jitter}")
    if _is_concrete(beta) and not float(beta) > 0:
        raise ValueError(f"beta must be > 0, got {beta}")


def count_distribution(
    spec: Specialised, k: int, *, method: str = "random", kernel: str = "Q", jitter=0.0, beta=1.0
) -> tuple[np.ndarray, Array]:
    """`(counts, probs)`: the law of the kept counts `m` under a subset distribution of size `k`.

    - `random`: multivariate hypergeometric `prod_n C(K_n, m_n) / C(K, k)`.
    - `dpp`: k-DPP with kernel `L + jitter I` (`L = Q`, `A` or RBF), `P(m) ∝ prod_n C(K_n,m_n) det(L_S(m))`;
      `jitter = 0` is the limit `jitter -> 0` (exists also where `rank L < k`).
    - `balanced`: the seed paper's idealisation, uniform over the `m` closest to `k K_n / K`.
    """
    k = _check_k(spec, k)
    _check_dist(method, kernel, jitter, beta)
    dtype = spec.T.dtype
    probs = _probs_jit(spec, jnp.asarray(k), method, kernel, jnp.asarray(jitter, dtype), jnp.asarray(beta, dtype))
    counts, _ = _all_counts(spec.group_sizes)
    sel = counts.sum(axis=1) == k
    return counts[sel], probs[jnp.asarray(np.nonzero(sel)[0])]


def _summary(spec, k, *, kernel="Q", jitter=0.0, beta=1.0):
    """`(means[method, reweight], best[reweight], worst[reweight], argbest, argworst)` for one budget `k` from the
    single compiled [`_node_summary_jit`][] (methods: random, dpp at `jitter`, dpp limit, balanced)."""
    k = _check_k(spec, k)
    _check_dist("random", kernel, jitter, beta)
    dtype = spec.T.dtype
    _, (means, best, worst, ib, iw, _) = _node_summary_jit(
        spec, jnp.asarray([k]), jnp.asarray(jitter, dtype)[None], kernel, jnp.asarray(beta, dtype)
    )
    return means[0], best[0], worst[0], ib[0], iw[0]


def random_node_error(spec: Specialised, k: int, *, reweight: str = "none") -> Array:
    """`E[eps_g]` over a uniform size-`k` subset: `sum_m prod_n C(K_n, m_n) / C(K, k) eps(m)`."""
    _check_reweight(reweight)
    return _summary(spec, k)[0][0, _REWEIGHTS.index(reweight)]


def dpp_node_error(
    spec: Specialised, k: int, *, reweight: str = "none", kernel: str = "Q", jitter=0.0, beta=1.0
) -> Array:
    """`E[eps_g]` over a k-DPP with kernel `L + jitter I`: `sum_m P(m) eps(m)` with
    `P(m) ∝ prod_n C(K_n, m_n) prod_n (L_d - L_p)^(m_n - 1) det H(m)`; `jitter = 0` is the `jitter -> 0` limit."""
    _check_reweight(reweight)
    return _summary(spec, k, kernel=kernel, jitter=jitter, beta=beta)[0][1, _REWEIGHTS.index(reweight)]


def balanced_node_error(spec: Specialised, k: int, *, reweight: str = "none") -> Array:
    """The seed paper's balanced-choice idealisation: `eps(m)` averaged over the `m` closest to `k K_n / K`."""
    _check_reweight(reweight)
    return _summary(spec, k)[0][3, _REWEIGHTS.index(reweight)]


class NodeBounds(NamedTuple):
    """Best and worst subset of size `k` (their errors and kept counts per group)."""

    best: Array
    worst: Array
    best_counts: np.ndarray
    worst_counts: np.ndarray


def node_error_range(spec: Specialised, k: int, *, reweight: str = "none") -> NodeBounds:
    """`min_S eps(S)` and `max_S eps(S)` over all `C(K, k)` subsets, by enumerating count vectors: every
    distribution over size-`k` subsets has expected error between them."""
    _check_reweight(reweight)
    _, best, worst, ib, iw = _summary(spec, k)
    r = _REWEIGHTS.index(reweight)
    counts, _ = _all_counts(spec.group_sizes)
    concrete = _is_concrete(best)
    return NodeBounds(best[r], worst[r], counts[int(ib[r]) if concrete else 0], counts[int(iw[r]) if concrete else 0])


def optimal_reweight_bound(spec: Specialised, k: int) -> Array:
    """`min_S min_v' eps(S, v') = min_m eps(m, optimal)`: no size-`k` node pruning with any reweighting does
    better."""
    return node_error_range(spec, k, reweight="optimal").best


# --------------------------------------------------------------------------------------------------
# Edge pruning (docs/theory.md 6.2): standardised moments e1 = E[m w^2]/Q_ii and pair(rho) = E[m_i m_k w_i w_k]/...
# --------------------------------------------------------------------------------------------------


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
def edge_moments(p, rho, *, method: str = "random"):
    """`(e1, pair)`: `E[m w^2] = e1 Q_ii`, and `E[m_i m_k w_i w_k] = pair sqrt(Q_ii Q_kk)` for correlation `rho`.

    `random`: `e1 = p`, `pair = p^2 rho`. `magnitude`: `z = Phi^-1(1 - p/2)`, `e1 = p + 2 z phi(z)`, `pair`
    closed form at `rho in {0, +-1}` (`0`, `+-e1`: copies share masks), else a 1-d integral. `dpp`:
    `pi(w) = a w^2 / (1 + a w^2)` with `E[pi] = p`, `e1 = 1 - p/a`, `pair` closed form at `rho in {0, 1}`
    (`0`; `E[pi^2 w^2]`: copies draw independent masks), else a 1-d integral.
    """
    p = jnp.asarray(p, dtype=jnp.result_type(float))
    rho = jnp.asarray(rho, dtype=p.dtype)
    if method not in _EDGE_METHODS:
        raise ValueError(f"method must be one of {_EDGE_METHODS}, got {method!r}")
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
    raise ValueError(f"method must be one of {_EDGE_METHODS}, got {method!r}")


def edge_error(spec: Specialised, p, *, method: str = "random", rescale: str = "none") -> Array:
    """`eps_g` after edge pruning with keep fraction `p` (Gaussian-equivalent theory, docs/theory.md 6.2):
    `Q'_ii = c^2 e1 Q_ii`, `Q'_ik = c^2 pair(rho_ik) sqrt(Q_ii Q_kk)`, `R' = c e1 R`, `c = 1` or `1/p`
    (random: `e1 = p`, `pair = p^2 rho`)."""
    if rescale not in _RESCALES:
        raise ValueError(f"rescale must be one of {_RESCALES}, got {rescale!r}")
    if method not in _EDGE_METHODS:
        raise ValueError(f"method must be one of {_EDGE_METHODS}, got {method!r}")
    if _is_concrete(p) and not (0.0 < float(p) <= 1.0):
        raise ValueError(f"p (the keep fraction) must lie in (0, 1], got {float(p)}")
    p = jnp.asarray(p, dtype=spec.T.dtype)
    return _edge_summary_jit(spec, p[None])[0, _EDGE_METHODS.index(method), _RESCALES.index(rescale)]


def _edge_error_traced(spec: Specialised, p: Array, method: str, inverse: Array) -> Array:
    g = spec.groups()
    norm = safe_sqrt(g.s[:, None] * g.s[None, :])
    corr = g.C / norm
    e1, pair = edge_moments(p, corr, method=method)
    c = jnp.where(inverse, 1.0 / p, 1.0)
    new = g._replace(s=c * c * e1 * g.s, C=c * c * pair * norm, r=c * e1 * g.r)
    return _group_error(new, g.sizes, g.u)


# --------------------------------------------------------------------------------------------------
# Importance (magnitude) node pruning
# --------------------------------------------------------------------------------------------------


def importance_counts(spec: Specialised, k: int) -> np.ndarray:
    """Kept counts of importance pruning (the `k` largest `|v_i| sqrt(Q_ii) = |v*_n| sqrt(T_nn) / K_n`, ties
    to the lower unit index, as `jaxprune._node.importance_mask`): groups are filled in order of their score."""
    k = _check_k(spec, k)
    g = spec.groups()
    score = np.asarray(jnp.abs(g.u) * jnp.sqrt(g.s))
    order = np.lexsort((np.arange(spec.M), -score))  # descending score, then lower group (= lower unit) index
    counts = np.zeros(spec.M, dtype=np.int64)
    left = k
    for n in order:
        counts[n] = min(spec.group_sizes[n], left)
        left -= counts[n]
    return counts


def importance_node_error(spec: Specialised, k: int, *, reweight: str = "none") -> Array:
    """`eps(m)` at the counts of [`importance_counts`][] (a point mass; differentiable at fixed ranking)."""
    return node_error_counts(spec, importance_counts(spec, k), reweight=reweight)


# --------------------------------------------------------------------------------------------------
# The table: closed forms against the general machinery of jaxprune._node / jaxprune._edge
# --------------------------------------------------------------------------------------------------


@eqx.filter_jit
def _node_summary_jit(spec: Specialised, ks, jitters, kernel: str, beta):
    """Every closed form of the node table in one compilation: for each budget `ks[j]` and reweighting rule,
    the expectations under random / k-DPP (at `jitters[j]` and in the limit) / balanced, and the extremes."""
    counts_np, logmult_np = _all_counts(spec.group_sizes)
    dtype = spec.T.dtype
    counts, logmult = jnp.asarray(counts_np, dtype), jnp.asarray(logmult_np, dtype)
    g = spec.groups()
    sizes = jnp.asarray(spec.group_sizes, dtype)
    errs = jnp.stack([_errors_jit(spec, counts, r) for r in _REWEIGHTS])  # (4, P)

    def per_k(k, jit):
        valid = jnp.sum(counts, axis=1) == k
        lm = jnp.where(valid, logmult, -jnp.inf)
        rand = jnp.exp(lm - jsp.logsumexp(lm))
        lw = _dpp_log_weights(g, counts, lm, kernel, jit, beta, valid)
        dpp = jnp.exp(lw - jsp.logsumexp(lw))
        lw0 = _dpp_log_weights(g, counts, lm, kernel, 0.0, beta, valid)
        dpp0 = jnp.exp(lw0 - jsp.logsumexp(lw0))
        bal = _balanced_probs(counts, valid, k, sizes)
        probs = jnp.stack([rand, dpp, dpp0, bal])  # (4 methods, P)
        means = jnp.einsum("dp,rp->dr", probs, errs)
        lo = jnp.where(valid[None, :], errs, jnp.inf)
        hi = jnp.where(valid[None, :], errs, -jnp.inf)
        return means, jnp.min(lo, 1), jnp.max(hi, 1), jnp.argmin(lo, 1), jnp.argmax(hi, 1), dpp0

    return errs, jax.vmap(per_k)(ks, jitters)


@eqx.filter_jit
def _edge_summary_jit(spec: Specialised, ps):
    """`eps_g` of every edge method (random, magnitude, dpp) x rescale (none, inverse-keep) at each `p`."""
    def one(p):
        return jnp.stack([
            jnp.stack([_edge_error_traced(spec, p, m, jnp.asarray(inv)) for inv in (False, True)])
            for m in _EDGE_METHODS
        ])

    return jax.vmap(one)(ps)


def _class_representatives(spec: Specialised, counts: np.ndarray) -> np.ndarray:
    """One boolean unit mask per count vector (the first `m_n` units of each group)."""
    starts = np.concatenate([[0], np.cumsum(spec.group_sizes)[:-1]])
    pos = np.arange(spec.K) - starts[spec.assignment()]  # position of each unit inside its group
    return pos[None, :] < np.asarray(counts)[:, spec.assignment()]


def _machinery_errors(state: Overlaps, masks: np.ndarray, reweight: str) -> np.ndarray:
    """`generalisation_error(prune_nodes(state, mask, reweight=...))` for a batch of masks (one compilation)."""
    from .._error import generalisation_error
    from ._node import prune_nodes

    fn = jax.jit(jax.vmap(lambda msk: generalisation_error(prune_nodes(state, msk, reweight=reweight)[0])))
    return np.asarray(fn(jnp.asarray(masks)))


def _fmt_none(x):
    return None if x is None else float(x)


def bounds_table(
    spec: Specialised,
    *,
    ks=None,
    jitter: float = 1e-6,
    kernel: str = "Q",
    beta: float = 1.0,
    exact: str = "classes",
    edge_methods=_EDGE_METHODS,
    rescales=_RESCALES,
    reweights=_REWEIGHTS,
) -> dict:
    """For every budget `k` (edge keep fraction `p = k/K`: equal parameter count) and method: the closed form,
    the exact value from the general machinery (`jaxprune._node`, `jaxprune._edge`) on `spec.state()`, and
    the bounds over subsets. Every error is the noise-free `eps_g`.

    `exact`:
    - `"classes"` (default, fast): per-subset errors from `prune_nodes` + `generalisation_error` on one subset
      per count class (all subsets of a class are within-group permutations of each other, hence have the
      same error and the same `det(L_S)`), class weights `prod_n C(K_n, m_n)` times (k-DPP) `det(L_S)` of the
      general `kernel_matrix`; importance by `importance_mask`.
    - `"full"`: `expected_node_error` enumerating all `C(K, k)` subsets (slow: one compilation per call).
    - `"none"`: closed forms only.

    The k-DPP's exact value is at `jitter = 0` where `L` has rank `>= k`, else at `jitter`; the closed form is
    given at the same jitter (`dpp`) and in the limit `jitter -> 0` (`dpp-limit`); `balanced` is the seed
    paper's idealisation, compared with the exact k-DPP value.
    """
    from ._dpp import check_kdpp_kernel
    from ._edge import apply_edge_moments, edge_prune_theory
    from .._error import generalisation_error
    from ._node import expected_node_error, importance_mask, kernel_matrix

    if exact not in ("full", "classes", "none"):
        raise ValueError(f"exact must be 'classes', 'full' or 'none', got {exact!r}")
    if not (math.isfinite(jitter) and jitter > 0):
        raise ValueError(f"jitter must be > 0 (the value used where rank L < k), got {jitter}")
    state = spec.state()
    K = spec.K
    ks = list(range(1, K + 1)) if ks is None else [_check_k(spec, k) for k in ks]
    L0 = np.asarray(kernel_matrix(state, kernel, beta=beta))
    jit_used = {}
    for k in ks:
        try:
            check_kdpp_kernel(L0, k)
            jit_used[k] = 0.0
        except ValueError:
            jit_used[k] = float(jitter)

    # general machinery, batched over every count class of every budget
    mach = {}
    if exact == "classes":
        per_k = {k: count_vectors(spec, k) for k in ks}
        imp = {k: np.asarray(importance_mask(state, k)) for k in ks}
        reps = {k: _class_representatives(spec, per_k[k][0]) for k in ks}
        all_masks = np.concatenate([np.concatenate([reps[k], imp[k][None, :]]) for k in ks])
        sizes = [reps[k].shape[0] + 1 for k in ks]
        offs = np.concatenate([[0], np.cumsum(sizes)])
        errs_all = {r: _machinery_errors(state, all_masks, r) for r in reweights}
        for i, k in enumerate(ks):
            counts, logmult = per_k[k]
            Lj = L0 + jit_used[k] * np.eye(K)
            sl = np.array([np.linalg.slogdet(Lj[np.ix_(m, m)]) for m in reps[k]])
            logw = np.where(sl[:, 0] > 0, sl[:, 1], -np.inf) + logmult
            p_rand = np.exp(logmult - np.logaddexp.reduce(logmult))
            p_dpp = np.exp(logw - np.logaddexp.reduce(logw))
            for r in reweights:
                e = errs_all[r][offs[i] : offs[i + 1]]
                ec, ei = e[:-1], e[-1]
                mach[k, r] = dict(random=float(p_rand @ ec), dpp=float(np.sum(np.where(p_dpp > 0, p_dpp * ec, 0.0))),
                                  importance=float(ei), best=float(ec.min()), worst=float(ec.max()))
    elif exact == "full":
        for k in ks:
            for r in reweights:
                res = expected_node_error(state, k, method="random", reweight=r, max_enumerate=10**9)
                dpp = expected_node_error(state, k, method="dpp", reweight=r, kernel=kernel, beta=beta,
                                          jitter=jit_used[k], max_enumerate=10**9)
                imp = expected_node_error(state, k, method="importance", reweight=r)
                mach[k, r] = dict(random=float(res.mean), dpp=float(dpp.mean), importance=float(imp.mean),
                                  best=float(res.min), worst=float(res.max))

    edge_exact = {}
    if exact != "none":
        for m in edge_methods:
            for k in ks:
                p = k / K
                res = edge_prune_theory(state, p, method=m, rescale="none")
                for rs in rescales:  # inverse-keep from the same moments: no second compilation
                    c = 1.0 if rs == "none" else 1.0 / p
                    edge_exact[m, rs, k] = float(generalisation_error(apply_edge_moments(state, res.moments, c)))

    dtype = spec.T.dtype
    counts_all, _ = _all_counts(spec.group_sizes)
    errs, (means, best, worst, ib, iw, dpp0) = _node_summary_jit(
        spec, jnp.asarray(ks), jnp.asarray([jit_used[k] for k in ks], dtype), kernel, jnp.asarray(beta, dtype)
    )
    errs, means, best, worst, ib, iw, dpp0 = map(np.asarray, (errs, means, best, worst, ib, iw, dpp0))
    edge_cf = np.asarray(_edge_summary_jit(spec, jnp.asarray([k / K for k in ks], dtype)))
    index = {tuple(c): i for i, c in enumerate(counts_all.tolist())}
    rows = []
    for i, k in enumerate(ks):
        p = k / K
        j = jit_used[k]
        entry = {"k": k, "p": p, "dpp_jitter": j, "node": [], "bounds": [], "edge": []}
        imp = index[tuple(importance_counts(spec, k).tolist())]
        for ir, r in enumerate(reweights):
            r_all = _REWEIGHTS.index(r)
            ex = mach.get((k, r), {})
            closed = (
                ("random", means[i, 0, r_all], ex.get("random"), True),
                ("dpp", means[i, 1, r_all], ex.get("dpp"), True),
                ("dpp-limit", means[i, 2, r_all], ex.get("dpp"), j == 0.0),
                ("balanced", means[i, 3, r_all], ex.get("dpp"), False),
                ("importance", errs[r_all, imp], ex.get("importance"), True),
            )
            for method, cf, xv, is_exact in closed:
                cf = float(cf)
                entry["node"].append({
                    "method": method, "reweight": r, "closed_form": cf, "exact": _fmt_none(xv),
                    "closed_form_is_exact": is_exact, "abs_diff": None if xv is None else abs(cf - xv),
                })
            bx, wx = ex.get("best"), ex.get("worst")
            b_, w_ = float(best[i, r_all]), float(worst[i, r_all])
            entry["bounds"].append({
                "reweight": r, "best": b_, "worst": w_,
                "best_counts": counts_all[ib[i, r_all]].tolist(), "worst_counts": counts_all[iw[i, r_all]].tolist(),
                "exact_best": bx, "exact_worst": wx,
                "abs_diff": None if bx is None else max(abs(b_ - bx), abs(w_ - wx)),
            })
        entry["optimal_reweight_lower_bound"] = float(best[i, _REWEIGHTS.index("optimal")])
        keep = dpp0[i] > 1e-15
        sel = counts_all.sum(axis=1) == k
        dist = np.sum((counts_all - k * np.asarray(spec.group_sizes) / K) ** 2, axis=1)
        balanced = sel & (dist <= np.min(np.where(sel, dist, np.inf)) + 1e-9)
        entry["dpp_limit_balanced_mass"] = float(np.sum(dpp0[i][balanced]))
        entry["dpp_limit_counts"] = {"counts": counts_all[keep].tolist(), "probs": dpp0[i][keep].tolist()}
        for im, m in enumerate(_EDGE_METHODS):
            if m not in edge_methods:
                continue
            for irs, rs in enumerate(_RESCALES):
                if rs not in rescales:
                    continue
                cf = float(edge_cf[i, im, irs])
                xv = edge_exact.get((m, rs, k))
                entry["edge"].append({"method": m, "rescale": rs, "closed_form": cf, "exact": xv,
                                      "abs_diff": None if xv is None else abs(cf - xv)})
        rows.append(entry)
    return {
        "K": K, "M": spec.M, "group_sizes": list(spec.group_sizes), "v_star": np.asarray(spec.v_star).tolist(),
        "rho": float(spec.rho), "alignment": float(spec.alignment), "cross": float(spec.cross),
        "T": np.asarray(spec.T).tolist(), "kernel": kernel, "beta": beta, "jitter": jitter,
        "exact_mode": exact, "error": "eps_g (noise-free generalisation error)", "rows": rows,
    }
