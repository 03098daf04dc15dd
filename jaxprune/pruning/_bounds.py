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
from collections.abc import Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Real

from .._activations import Erf, safe_sqrt
from .._checks import check_choice, check_count, check_float, is_concrete
from .._overlaps import Overlaps
from ._linalg import logdet_psd, solve_psd
from ._options import AbstractReweight, pruning_option

__all__ = [
    "Specialised",
    "specialisation",
    "specialised_state",
    "group_counts",
    "count_vectors",
    "count_distribution",
    "node_error_counts",
    "random_node_error",
    "dpp_node_error",
    "balanced_node_error",
]

_ERF = Erf()
_REWEIGHTS = ("none", "preactivation", "activation", "optimal")
_KERNELS = ("Q", "A", "rbf")


def _is_concrete(*xs) -> bool:
    return all(is_concrete(x) for x in xs)


# --------------------------------------------------------------------------------------------------
# The specialised state
# --------------------------------------------------------------------------------------------------


class Specialised(eqx.Module):
    """Parameters of a specialised state (module docstring for the overlaps they define).

    **Fields:**

    - `v_star`: teacher second layer `Float[M]`.
    - `T`: teacher overlaps `Float[M, M]`.
    - `rho`, `alignment`, `cross`: scalars (differentiable): in-group overlap, alignment `a`, cross-group
      residual correlation.
    - `group_sizes`: `tuple[int, ...]` (static), the `K_n >= 1`.

    Build it with [`specialisation`][], which validates the values.
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
    v_star: float | Sequence[float] | Float[ArrayLike, " M"] = 1.0,
    *,
    rho: Float[ArrayLike, ""] = 1.0,
    alignment: Float[ArrayLike, ""] | None = None,
    cross: Float[ArrayLike, ""] = 0.0,
    group_sizes: tuple[int, ...] | None = None,
    T: Sequence[Sequence[float]] | Float[ArrayLike, "M M"] | None = None,
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
    [`Overlaps`][] (docs/theory.md section 5; module docstring).

    **Arguments:**

    - `K`, `M`: student and teacher sizes, as in [`specialisation`][].
    - `v_star`: teacher second layer, a scalar or `Float[M]`.
    - `kwargs`: `rho`, `alignment`, `cross`, `group_sizes`, `T`, as in [`specialisation`][].

    **Returns:**

    The [`Overlaps`][] with `Q: Float[K, K]`, `R: Float[K, M]`, `T: Float[M, M]`, units ordered group by group.

    Example: `specialised_state(6, 2, 4.0)` is the seed paper's idealised state for `K = 6`, `M = 2`, `v* = 4`.
    """
    return specialisation(K, M, v_star, **kwargs).state()


def group_counts(spec: Specialised, mask) -> np.ndarray:
    """Kept counts `m_n` per group of a boolean unit mask (or a batch of masks), for units ordered by group.

    **Arguments:**

    - `spec`: the [`Specialised`][] state (see [`specialisation`][]).
    - `mask`: boolean `Bool[K]` or a batch `Bool[B, K]` (anything `np.asarray` turns into booleans).

    **Returns:**

    The NumPy integer counts `m`, shape `(M,)` or `(B, M)`.
    """
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
    y, _ = solve_psd(H, jnp.where(present, sq * b, 0.0))
    x = jnp.where(present, y / sq, 0.0)
    return x if reweight == "optimal" else g.u + x


def node_error_counts(
    spec: Specialised, counts: Sequence[int] | Real[ArrayLike, " M"], *, reweight: str | AbstractReweight = "none"
) -> Float[Array, ""]:
    """`eps_g` after keeping `m_n = counts[n]` units of group `n` (any `m_n` of them: all are equivalent),
    with the reweighting rule of docs/theory.md 6.1 (`none`: `u_n = v*_n / K_n`); the formula is the sum of
    arcsin terms of the module docstring.

    **Arguments:**

    - `spec`: the [`Specialised`][] state (see [`specialisation`][]).
    - `counts`: kept counts `m`, `Int[M]` or a sequence of `M` integers (a float array of integer values is
      accepted too, e.g. under `jit`), `0 <= m_n <= K_n`, `sum m_n >= 1` (checked when concrete).
    - `reweight`: the reweighting rule, an [`AbstractReweight`][] or its name `"none"` (default),
      `"preactivation"`, `"activation"`, `"optimal"` (docs/theory.md section 6.1).

    **Returns:**

    The scalar noise-free `eps_g`; differentiable in the parameters of `spec`.
    """
    reweight = _check_reweight(reweight)
    m = jnp.asarray(counts, dtype=spec.T.dtype)
    if m.shape != (spec.M,):
        raise ValueError(f"counts must have shape ({spec.M},), got {m.shape}")
    if _is_concrete(m):
        mn = np.asarray(m)
        if np.any(mn < 0) or np.any(mn > np.asarray(spec.group_sizes)) or mn.sum() < 1:
            raise ValueError(f"counts must satisfy 0 <= m_n <= K_n = {spec.group_sizes}, sum >= 1; got {mn}")
    return _errors_jit(spec, m[None, :], reweight)[0]


def _check_reweight(reweight) -> str:
    """The rule's name, from a name or an [`AbstractReweight`][] object."""
    return pruning_option("reweight", reweight, name="reweight").name


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


def count_vectors(spec: Specialised, k: int) -> tuple[np.ndarray, np.ndarray]:
    """All kept-count vectors `m` (`0 <= m_n <= K_n`, `sum m_n = k`) and `log prod_n C(K_n, m_n)`, the log
    number of subsets with those counts (docs/theory.md section 6.1, "Closed forms at the specialised state").

    **Arguments:**

    - `spec`: the [`Specialised`][] state (see [`specialisation`][]).
    - `k`: units kept, `1 <= k <= K`.

    **Returns:**

    `(counts, logmult)`: NumPy arrays of shapes `(P, M)` (integers) and `(P,)`, read-only.
    """
    k = check_count(k, spec.K)
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
        order = jnp.sum(jnp.where(zero, excess, 0.0))
        return lm + finite + logdet_psd(H), order

    logw, order = jax.vmap(one)(counts, logmult)
    return jnp.where(valid & (order == jnp.min(jnp.where(valid, order, jnp.inf))), logw, -jnp.inf)


def _balanced_probs(counts, valid, k, sizes):
    target = k * sizes / jnp.sum(sizes)
    dist = jnp.sum(jnp.square(counts - target[None, :]), axis=1)
    best = jnp.min(jnp.where(valid, dist, jnp.inf))
    sel = (valid & (dist <= best + 1e-9)).astype(dist.dtype)
    return sel / jnp.sum(sel)


@eqx.filter_jit
def _probs_jit(spec: Specialised, k, method: str, kernel: str, jitter, beta):
    """Probabilities of every count vector of `_all_counts` (zero unless `sum m = k`)."""
    counts_np, logmult_np = _all_counts(spec.group_sizes)
    dtype = spec.T.dtype
    counts, logmult = jnp.asarray(counts_np, dtype), jnp.asarray(logmult_np, dtype)
    k = jnp.asarray(k).astype(dtype)
    valid = jnp.sum(counts, axis=1) == k
    lm = jnp.where(valid, logmult, -jnp.inf)
    if method == "random":
        return jnp.exp(lm - jsp.logsumexp(lm))
    if method == "dpp":
        logw = _dpp_log_weights(spec.groups(), counts, lm, kernel, jitter, beta, valid)
        return jnp.exp(logw - jsp.logsumexp(logw))
    return _balanced_probs(counts, valid, k, jnp.asarray(spec.group_sizes, dtype))


def _check_dist(method, kernel, jitter, beta):
    check_choice("method", method, ("random", "dpp", "balanced"))
    check_choice("kernel", kernel, _KERNELS)
    if is_concrete(jitter):
        check_float("jitter", jitter, 0.0)
    if is_concrete(beta):
        check_float("beta", beta, 0.0, lo_open=True)


def count_distribution(
    spec: Specialised, k: int, *, method: str = "random", kernel: str = "Q", jitter=0.0, beta=1.0
) -> tuple[np.ndarray, Array]:
    """`(counts, probs)`: the law of the kept counts `m` under a subset distribution of size `k`.

    - `random`: multivariate hypergeometric `prod_n C(K_n, m_n) / C(K, k)`.
    - `dpp`: k-DPP with kernel `L + jitter I` (`L = Q`, `A` or RBF), `P(m) ∝ prod_n C(K_n,m_n) det(L_S(m))`;
      `jitter = 0` is the limit `jitter -> 0` (exists also where `rank L < k`).
    - `balanced`: the seed paper's idealisation, uniform over the `m` closest to `k K_n / K`.

    **Arguments:**

    - `spec`: the [`Specialised`][] state (see [`specialisation`][]).
    - `k`: units kept, `1 <= k <= K`.
    - `method`: `"random"` (default), `"dpp"` or `"balanced"`.
    - `kernel`: the k-DPP kernel, `"Q"` (default), `"A"` or `"rbf"` (see [`kernel_matrix`][]).
    - `jitter`: the k-DPP's ridge, `>= 0`.
    - `beta`: the RBF kernel's inverse width, `> 0`.

    **Returns:**

    `(counts, probs)`: the count vectors of [`count_vectors`][], NumPy `(P, M)`, and their probabilities `(P,)`.
    """
    k = check_count(k, spec.K)
    _check_dist(method, kernel, jitter, beta)
    dtype = spec.T.dtype
    probs = _probs_jit(spec, jnp.asarray(k), method, kernel, jnp.asarray(jitter, dtype), jnp.asarray(beta, dtype))
    counts, _ = _all_counts(spec.group_sizes)
    sel = counts.sum(axis=1) == k
    return counts[sel], probs[jnp.asarray(np.nonzero(sel)[0])]


def _summary(spec, k, *, kernel="Q", jitter=0.0, beta=1.0):
    """`(means[method, reweight], best[reweight], worst[reweight], argbest, argworst)` for one budget `k` from the
    single compiled [`_node_summary_jit`][] (methods: random, dpp at `jitter`, dpp limit, balanced)."""
    k = check_count(k, spec.K)
    _check_dist("random", kernel, jitter, beta)
    dtype = spec.T.dtype
    _, (means, best, worst, ib, iw, _) = _node_summary_jit(
        spec, jnp.asarray([k]), jnp.asarray(jitter, dtype)[None], kernel, jnp.asarray(beta, dtype)
    )
    return means[0], best[0], worst[0], ib[0], iw[0]


def random_node_error(spec: Specialised, k: int, *, reweight: str | AbstractReweight = "none") -> Float[Array, ""]:
    """`E[eps_g]` over a uniform size-`k` subset: `sum_m prod_n C(K_n, m_n) / C(K, k) eps(m)` (docs/theory.md
    section 6.1, "Closed forms at the specialised state").

    **Arguments:**

    - `spec`: the [`Specialised`][] state (see [`specialisation`][]).
    - `k`: units kept, `1 <= k <= K`.
    - `reweight`: the reweighting rule, an [`AbstractReweight`][] or its name `"none"` (default),
      `"preactivation"`, `"activation"`, `"optimal"` (docs/theory.md section 6.1).

    **Returns:**

    The scalar expected `eps_g`.
    """
    reweight = _check_reweight(reweight)
    return _summary(spec, k)[0][0, _REWEIGHTS.index(reweight)]


def dpp_node_error(
    spec: Specialised,
    k: int,
    *,
    reweight: str | AbstractReweight = "none",
    kernel: str = "Q",
    jitter: float | Float[ArrayLike, ""] = 0.0,
    beta: float | Float[ArrayLike, ""] = 1.0,
) -> Float[Array, ""]:
    """`E[eps_g]` over a k-DPP with kernel `L + jitter I`: `sum_m P(m) eps(m)` with
    `P(m) ∝ prod_n C(K_n, m_n) prod_n (L_d - L_p)^(m_n - 1) det H(m)`; `jitter = 0` is the `jitter -> 0` limit
    (docs/theory.md section 6.1).

    **Arguments:**

    - `spec`: the [`Specialised`][] state (see [`specialisation`][]).
    - `k`: units kept, `1 <= k <= K`.
    - `reweight`: the reweighting rule, an [`AbstractReweight`][] or its name `"none"` (default),
      `"preactivation"`, `"activation"`, `"optimal"` (docs/theory.md section 6.1).
    - `kernel`: `"Q"` (default), `"A"` or `"rbf"` (see [`kernel_matrix`][]).
    - `jitter`: the ridge `>= 0` of the kernel `L + jitter I`.
    - `beta`: the RBF kernel's inverse width, `> 0`.

    **Returns:**

    The scalar expected `eps_g` under the k-DPP.
    """
    reweight = _check_reweight(reweight)
    return _summary(spec, k, kernel=kernel, jitter=jitter, beta=beta)[0][1, _REWEIGHTS.index(reweight)]


def balanced_node_error(spec: Specialised, k: int, *, reweight: str | AbstractReweight = "none") -> Float[Array, ""]:
    """The seed paper's balanced-choice idealisation: `eps(m)` averaged over the `m` closest to `k K_n / K`
    (docs/theory.md section 6.3, claim C3).

    **Arguments:**

    - `spec`: the [`Specialised`][] state (see [`specialisation`][]).
    - `k`: units kept, `1 <= k <= K`.
    - `reweight`: the reweighting rule, an [`AbstractReweight`][] or its name `"none"` (default),
      `"preactivation"`, `"activation"`, `"optimal"` (docs/theory.md section 6.1).

    **Returns:**

    The scalar `eps_g` of the balanced counts.
    """
    reweight = _check_reweight(reweight)
    return _summary(spec, k)[0][3, _REWEIGHTS.index(reweight)]


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
        k = k.astype(dtype)
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
