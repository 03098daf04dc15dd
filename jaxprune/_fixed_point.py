"""Stationary points of the online-SGD ODEs, their stability, and implicit differentiation (THEORY.md 5).

A fixed point solves `F(y) = 0`, where `y` holds the *independent* student unknowns (the upper triangle of
`Q`, all of `R`, and `v` in two-layer mode) and `F` is [`vector_field`][] in the same coordinates. `T` and
`v*` (the teacher) and the configuration `(eta, eta_v, sigma, weight_decay)` are parameters: they are passed
to optimistix as `args`, so `optx.root_find` differentiates the root by the implicit function theorem,
`dy*/dp = -(dF/dy)^{-1} dF/dp`. The initial guess carries no gradient (it is wrapped in `stop_gradient`).
For example `jax.grad(lambda eta: solve_fixed_point(s0, SGDConfig(eta=eta, sigma=0.1)).eps_g)(0.5)`.

Root finding: Newton (`optx.Newton`) first; where it fails (singular Jacobian, e.g. duplicated student units
whose second layers can be traded against each other, or no convergence), Levenberg-Marquardt on
`||F(y)||^2` from the same guess. The choice is made per configuration with `lax.cond`, so the solver vmaps.

Padded units: a student unit with `Q_ii = R_i = v_i = 0` (a zero weight vector and a zero second layer) is an
exact stationary unit of the dynamics, and so is a teacher unit with `T_nn = v*_n = 0`. Masks `active` (over
K) and `teacher_active` (over M) pin the unknowns that touch an inactive unit to zero (their residual is
replaced by `-y`), so shapes stay fixed; the Jacobian is then block-triangular and its spectrum is that of
the active block plus `-1`s, which are dropped from the reported eigenvalues.

References: Saad & Solla, PRE 52 (1995); Goldt et al., NeurIPS 2019 (arXiv 1906.08632).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Bool, Complex, Float, Int

from ._dynamics import SGDConfig, solve_ode, vector_field
from ._error import generalisation_error
from ._overlaps import Overlaps
from ._status import Status

__all__ = [
    "FixedPointResult",
    "solve_fixed_point",
    "fixed_point_from_ode",
    "fixed_point_error",
    "pack_state",
    "unpack_state",
    "num_unknowns",
    "unknown_mask",
]


def num_unknowns(K: int, M: int, mode: str) -> int:
    """Number of independent unknowns: `K(K+1)/2 + K M (+ K in two-layer mode)`."""
    return K * (K + 1) // 2 + K * M + (K if mode == "two-layer" else 0)


def pack_state(state: Overlaps, mode: str) -> Float[Array, " P"]:
    """The independent student unknowns `(Q[triu], R.ravel(), v if two-layer)` as one vector."""
    a, b = np.triu_indices(state.K)
    parts = [state.Q[a, b], state.R.reshape(-1)]
    if mode == "two-layer":
        parts.append(state.v)
    return jnp.concatenate(parts)


def unpack_state(y: Float[Array, " P"], template: Overlaps, mode: str) -> Overlaps:
    """Inverse of [`pack_state`][]: `Q` symmetric from its upper triangle; `T`, `v*` (and `v` in scm
    mode) taken from `template`."""
    K, M = template.K, template.M
    a, b = np.triu_indices(K)
    nq = a.size
    Q = jnp.zeros((K, K), dtype=y.dtype).at[a, b].set(y[:nq]).at[b, a].set(y[:nq])
    R = y[nq : nq + K * M].reshape(K, M)
    v = y[nq + K * M :] if mode == "two-layer" else template.v
    return Overlaps(Q=Q, R=R, T=template.T, v=v, v_star=template.v_star)


def unknown_mask(active: Bool[ArrayLike, " K"], teacher_active: Bool[ArrayLike, " M"], mode: str) -> Bool[Array, " P"]:
    """Which packed unknowns are free: those whose student (and teacher) units are all active."""
    active, teacher_active = jnp.asarray(active), jnp.asarray(teacher_active)
    K = active.shape[0]
    a, b = np.triu_indices(K)
    parts = [active[a] & active[b], (active[:, None] & teacher_active[None, :]).reshape(-1)]
    if mode == "two-layer":
        parts.append(active)
    return jnp.concatenate(parts)


class FixedPointResult(eqx.Module):
    """Result of [`solve_fixed_point`][].

    **Fields:**
    - `state`: the stationary [`Overlaps`][] (the last iterate when the solve failed).
    - `eps_g: Float[]`: its noise-free generalisation error (NaN when the state is not finite).
    - `status: Int[]`: a [`Status`][] code: `SUCCESS`; `SINGULAR` (converged, but the Jacobian is singular:
      a continuum of fixed points, e.g. duplicated units); `UNSTABLE` (an eigenvalue has real part
      `> eig_tol`); `NOT_CONVERGED`; `INVALID` (converged to an unphysical root, `Omega` not PSD);
      `DIVERGED` (non-finite; or, from [`fixed_point_from_ode`][], the warm-up ODE diverged).
    - `residual_norm: Float[]`: `max |F(y)|` over the free unknowns.
    - `eigenvalues: Complex[P]`: eigenvalues of `dF/dy` on the free unknowns, sorted by decreasing real part;
      the slots of pinned (inactive) unknowns hold NaN at the end.
    - `slowest_eigenvalue: Complex[]`: the eigenvalue with the largest real part (asymptotic rate).
    - `stable: Bool[]`: all free eigenvalues have real part `<= eig_tol`.
    - `used_fallback: Bool[]`: Newton failed and Levenberg-Marquardt gave the result.
    - `num_steps: Int[]`: root-finder steps (of the solver whose result is returned).
    """

    state: Overlaps
    eps_g: Float[Array, ""]
    status: Int[Array, ""]
    residual_norm: Float[Array, ""]
    eigenvalues: Complex[Array, " P"]
    slowest_eigenvalue: Complex[Array, ""]
    stable: Bool[Array, ""]
    used_fallback: Bool[Array, ""]
    num_steps: Int[Array, ""]


def _residual(y, args):
    """`F(y)` on the free unknowns; `-y` on pinned ones (so the Jacobian is `-1` there)."""
    config, T, v_star, v_fixed, free = args
    template = Overlaps(Q=jnp.zeros((v_fixed.shape[0],) * 2, y.dtype), R=jnp.zeros((v_fixed.shape[0], T.shape[0]), y.dtype),
                        T=T, v=v_fixed, v_star=v_star)
    state = unpack_state(y, template, config.mode)
    f = pack_state(vector_field(state, config), config.mode)
    return jnp.where(free, f, -y)


def _check_mask(mask, n: int, name: str):
    if mask is None:
        return jnp.ones(n, dtype=bool)
    mask = jnp.asarray(mask)
    if mask.shape != (n,):
        raise ValueError(f"{name} must be a boolean mask of shape ({n},), got shape {mask.shape}")
    return mask.astype(bool)


def solve_fixed_point(
    state0: Overlaps,
    config: SGDConfig,
    *,
    active: Bool[ArrayLike, " K"] | None = None,
    teacher_active: Bool[ArrayLike, " M"] | None = None,
    max_steps: int = 256,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    residual_tol: float = 1e-9,
    eig_tol: float = 1e-9,
    throw: bool = True,
) -> FixedPointResult:
    """Solve `d(Q, R, v)/d alpha = 0` near `state0` (Newton, then Levenberg-Marquardt on failure).

    **Arguments:**
    - `state0`: initial guess (typically the end of an ODE run, see [`fixed_point_from_ode`][]); its
      teacher part `T`, `v*` (and `v` in scm mode) are parameters of the problem.
    - `config`: [`SGDConfig`][]; `eta`, `eta_v`, `sigma`, `weight_decay` may be traced (grad, vmap).
    - `active`, `teacher_active`: boolean masks of the real units (default all); inactive units must be
      zero units (`Q_ii = R_i = v_i = 0`, resp. `T_nn = v*_n = 0`) and stay pinned at zero.
    - `rtol`, `atol`: root-finder tolerances on the step and the residual; `residual_tol`: a solution must
      have `max |F| <= residual_tol` (else `NOT_CONVERGED`); `eig_tol`: real parts above it are unstable.
    - `throw`: raise unless the status is `SUCCESS` or `SINGULAR`; pass `False` under `vmap`.

    **Returns:** a [`FixedPointResult`][]. `eps_g` is differentiable (implicit function theorem) with
    respect to `config` and the teacher part of `state0`.
    """
    for name in ("max_steps",):
        if max_steps < 1:
            raise ValueError(f"{name} must be >= 1, got {max_steps}")
    if not (rtol > 0 and atol > 0 and residual_tol > 0 and eig_tol >= 0):
        raise ValueError(
            f"rtol, atol, residual_tol must be > 0 and eig_tol >= 0, got {rtol}, {atol}, {residual_tol}, {eig_tol}"
        )
    K, M, mode = state0.K, state0.M, config.mode
    active = _check_mask(active, K, "active")
    teacher_active = _check_mask(teacher_active, M, "teacher_active")
    free = unknown_mask(active, teacher_active, mode)
    y0 = jax.lax.stop_gradient(jnp.where(free, pack_state(state0, mode), 0.0))
    v_fixed = jax.lax.stop_gradient(state0.v) if mode == "two-layer" else state0.v
    args = (config, state0.T, state0.v_star, v_fixed, free)

    newton = optx.root_find(
        _residual, optx.Newton(rtol=rtol, atol=atol), y0, args, max_steps=max_steps, throw=False
    )

    def ok(sol):
        f = _residual(sol.value, args)
        good = jnp.all(jnp.isfinite(sol.value)) & (jnp.max(jnp.abs(f)) <= residual_tol)
        return good & (sol.result == optx.RESULTS.successful)

    newton_ok = ok(newton)

    # under vmap `cond` runs both branches: start LM at Newton's root where Newton succeeded, so that it
    # stops at once there and the batch loop costs only what the failing elements need
    y_lm0 = jax.lax.stop_gradient(jnp.where(newton_ok & jnp.all(jnp.isfinite(newton.value)), newton.value, y0))

    def fallback(_):
        lm = optx.least_squares(
            _residual, optx.LevenbergMarquardt(rtol=rtol, atol=atol), y_lm0, args,
            max_steps=4 * max_steps, throw=False,
        )
        return lm.value, lm.stats["num_steps"]

    def keep(_):
        return newton.value, newton.stats["num_steps"]

    y, num_steps = jax.lax.cond(newton_ok, keep, fallback, None)
    y = jnp.where(free, y, 0.0)
    template = Overlaps(Q=state0.Q, R=state0.R, T=state0.T, v=v_fixed, v_star=state0.v_star)
    state = unpack_state(y, template, mode)
    eps = generalisation_error(state, config.activation)

    # diagnostics (no gradient): residual, spectrum of the Jacobian on the free unknowns, validity
    y_ng = jax.lax.stop_gradient(y)
    args_ng = jax.lax.stop_gradient(args)
    f = _residual(y_ng, args_ng)
    residual_norm = jnp.max(jnp.where(free, jnp.abs(f), 0.0))
    finite = jnp.all(jnp.isfinite(y_ng)) & jnp.isfinite(residual_norm)
    jac = jax.jacfwd(_residual)(jnp.where(finite, y_ng, 0.0), args_ng)
    both = free[:, None] & free[None, :]
    jac_free = jnp.where(both & jnp.isfinite(jac), jac, 0.0)
    sentinel = -1e10 * (1.0 + jnp.max(jnp.abs(jac_free)))  # isolated eigenvalue of each pinned unknown
    jac_free = jac_free + jnp.diag(jnp.where(free, 0.0, sentinel))
    eig = jnp.linalg.eigvals(jac_free)
    eig = jnp.where(eig.real < 0.5 * sentinel, jnp.nan + 0j, eig)
    order = jnp.argsort(-jnp.where(jnp.isnan(eig.real), -jnp.inf, eig.real))
    eig = eig[order]
    slowest = eig[0]
    scale = jnp.maximum(1.0, jnp.max(jnp.where(jnp.isnan(eig.real), 0.0, jnp.abs(eig))))
    stable = jnp.all(jnp.where(jnp.isnan(eig.real), True, eig.real <= eig_tol))
    min_abs = jnp.min(jnp.where(jnp.isnan(eig.real), jnp.inf, jnp.abs(eig)))
    singular = min_abs <= 1e-7 * scale
    omega = state.covariance()
    psd = jnp.min(jnp.linalg.eigvalsh(jnp.where(jnp.isfinite(omega), omega, 0.0))) >= -1e-8 * jnp.maximum(
        1.0, jnp.max(jnp.abs(jnp.diag(jnp.where(jnp.isfinite(omega), omega, 0.0))))
    )
    converged = finite & (residual_norm <= residual_tol)
    status = jnp.where(
        ~finite,
        Status.DIVERGED,
        jnp.where(
            ~converged,
            Status.NOT_CONVERGED,
            jnp.where(
                ~psd,
                Status.INVALID,
                jnp.where(~stable, Status.UNSTABLE, jnp.where(singular, Status.SINGULAR, Status.SUCCESS)),
            ),
        ),
    ).astype(jnp.int32)
    eps = jnp.where(finite, eps, jnp.nan)
    result = FixedPointResult(
        state=state,
        eps_g=eps,
        status=status,
        residual_norm=residual_norm,
        eigenvalues=eig,
        slowest_eigenvalue=slowest,
        stable=stable & converged,
        used_fallback=~newton_ok,
        num_steps=jnp.asarray(num_steps),
    )
    if throw:
        result = eqx.error_if(
            result,
            (status != Status.SUCCESS) & (status != Status.SINGULAR),
            "fixed-point solve failed (not converged, unstable, unphysical or diverged); "
            "pass throw=False to receive a status code per configuration instead",
        )
    return result


def fixed_point_from_ode(
    state0: Overlaps,
    config: SGDConfig,
    *,
    alpha: float = 1000.0,
    integrator: str = "tsit5",
    ode_max_steps: int = 100_000,
    active: Bool[ArrayLike, " K"] | None = None,
    teacher_active: Bool[ArrayLike, " M"] | None = None,
    throw: bool = True,
    **fp_options,
) -> FixedPointResult:
    """Integrate the ODEs to `alpha` (static), then polish the end state with [`solve_fixed_point`][].

    The ODE run only provides the initial guess (no gradient flows through it); a diverged or unfinished
    run gives status `DIVERGED` / `MAX_STEPS` whatever the root finder does afterwards.
    """
    if not (alpha > 0 and np.isfinite(alpha)):
        raise ValueError(f"alpha must be positive and finite, got {alpha}")
    sol = solve_ode(
        jax.lax.stop_gradient(state0), jax.lax.stop_gradient(config), np.asarray([0.0, float(alpha)]),
        integrator=integrator, max_steps=ode_max_steps, throw=False,
    )
    end = sol.final
    guess = Overlaps(Q=end.Q, R=end.R, T=state0.T, v=end.v if config.mode == "two-layer" else state0.v,
                     v_star=state0.v_star)
    res = solve_fixed_point(guess, config, active=active, teacher_active=teacher_active, throw=False, **fp_options)
    status = jnp.where(sol.status != Status.SUCCESS, sol.status, res.status).astype(jnp.int32)
    res = eqx.tree_at(lambda r: r.status, res, status)
    if throw:
        res = eqx.error_if(
            res,
            (status != Status.SUCCESS) & (status != Status.SINGULAR),
            "fixed point from ODE failed (ODE diverged, or root not converged / unstable); pass throw=False",
        )
    return res


def fixed_point_error(
    eta: Float[ArrayLike, ""],
    sigma: Float[ArrayLike, ""],
    state0: Overlaps,
    *,
    eta_v: Float[ArrayLike, ""] | None = None,
    mode: str = "scm",
    **options,
) -> Float[Array, ""]:
    """`eps_g*` as a function of `(eta, sigma)` from the guess `state0`: a convenience for `jax.grad`.

    `eta_v` defaults to `eta`. Use `jax.grad(fixed_point_error, argnums=(0, 1))`, or differentiate through
    `state0.T` / `state0.v_star` for the teacher.
    """
    eta_v = eta if eta_v is None else eta_v
    config = SGDConfig(eta=eta, eta_v=eta_v, sigma=sigma, mode=mode)
    return solve_fixed_point(state0, config, **options).eps_g
