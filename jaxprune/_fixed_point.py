"""Stationary points of the online-SGD ODEs, their stability, and implicit differentiation (docs/theory.md 5).

A fixed point solves `F(y) = 0`, where `y` holds the *independent* student unknowns (the upper triangle of
`Q`, all of `R`, and `v` in two-layer mode) and `F` is [`vector_field`][] in the same coordinates. `T` and
`v*` (the teacher) and the configuration `(eta, eta_v, sigma, weight_decay)` are parameters: they are passed
to optimistix as `args`, so `optx.root_find` differentiates the root by the implicit function theorem,
`dy*/dp = -(dF/dy)^{-1} dF/dp`. The initial guess carries no gradient (it is wrapped in `stop_gradient`).
For example `jax.grad(lambda eta: solve_fixed_point(s0, SGDConfig(eta=eta, sigma=0.1)).eps_g)(0.5)`.

Root finding: Newton (`optx.Newton`) first; where it fails (singular Jacobian, e.g. duplicated student units
whose second layers can be traded against each other, or no convergence), Levenberg-Marquardt on
`||F(y)||^2` from the same guess. The choice is made per configuration with `lax.cond`, so the solver vmaps
(under `vmap` that `cond` becomes a `select` and the fallback is computed for every element;
[`solve_fixed_point_batch`][] takes the branch once per batch instead, on `any(Newton failed)`).

Stability: the eigenvalues `lambda` of `dF/dy` on the free unknowns are classified with a tolerance band
`tol = eig_tol + eig_rtol * max|lambda|` (relative to the spectrum's scale, because the root is only known to
`residual_tol` and the eigenvalues inherit that error): `UNSTABLE` if some `Re lambda > tol`; otherwise
`SINGULAR` — the documented *marginal* case — if some `Re lambda >= -tol` (a zero mode: a continuum of fixed
points, or a neutral direction whose fate linear stability cannot decide); otherwise `SUCCESS`.

Duplicated student units (two units with `w_i = w_k` and `v_i = v_k`) are an invariant manifold of SGD, but at
`eta, sigma > 0` their stationary state is a genuine saddle, not a marginal point: the copy-splitting mode
`D = Q_ii + Q_kk - 2 Q_ik = |w_i - w_k|^2` (the copies separating orthogonally to every teacher and every other
unit, driven by the noise term of `dQ`) has a positive eigenvalue, and the ODEs started from a small physical
split flow to a nearby state with `D > 0`, identical `R` and `v` for the two units, and a lower error (for `K = 4`,
`M = 2`, `eta = eta_v = 0.5`, `sigma = 0.1`: eigenvalue `+3.1e-4` against a spectral scale `0.45`; `D` grows
at that rate and settles at `D = 0.022`). The status is therefore `UNSTABLE`. The exactly duplicated state lies
on the boundary of the physical domain (`Omega` is singular), so full Newton steps from it can leave the domain
(non-finite integrals); Levenberg-Marquardt then finds the root. The second-layer imbalance `v_i - v_k` is not a
flat direction at `eta > 0`: the `eta^2` term of `dQ` pins `v_i = v_k` (a negative eigenvalue).

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
from jaxtyping import Array, ArrayLike, Bool, Complex, Float, Int

from ._checks import check_float, check_int
from ._config import SGDConfig
from ._ode import THROW_NOTE, cast_problem, solve_ode, working_dtype
from ._vector_field import vector_field
from ._error import generalisation_error
from ._overlaps import Overlaps
from ._status import Status

__all__ = [
    "FixedPointResult",
    "solve_fixed_point",
    "solve_fixed_point_batch",
    "fixed_point_from_ode",
    "fixed_point_from_ode_batch",
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
    - `eps_g`: `Float[Array, ""]`, the noise-free generalisation error of the stationary state, only where
      `state` is one (status `SUCCESS`, `SINGULAR` or `UNSTABLE`); NaN for every failure (`NOT_CONVERGED`, `INVALID`,
      `DIVERGED`, `MAX_STEPS`), so that no caller can print the error of a last iterate as a fixed point's.
      (`generalisation_error(result.state)` gives the last iterate's error where wanted.)
    - `status`: `Int[Array, ""]`, a [`Status`][] code: `SUCCESS` (every eigenvalue has real part `< -tol`,
      module docstring); `SINGULAR`, the *marginal* case (converged, no real part `> tol` but one within `[-tol, tol]`:
      a zero mode of the Jacobian, i.e. a continuum of fixed points, or a neutral direction); `UNSTABLE` (an
      eigenvalue has real part `> tol`, e.g. the copy-splitting mode of duplicated units); `NOT_CONVERGED`;
      `INVALID` (converged to an unphysical root, `Omega` not PSD); `DIVERGED` (non-finite; or, from
      [`fixed_point_from_ode`][], the warm-up ODE diverged).
    - `residual_norm`: `Float[Array, ""]`, `max |F(y)|` over the free unknowns.
    - `eigenvalues`: `Complex[Array, " P"]`, eigenvalues of `dF/dy` on the free unknowns, sorted by decreasing
      real part; the slots of pinned (inactive) unknowns hold NaN at the end.
    - `slowest_eigenvalue`: `Complex[Array, ""]`, the eigenvalue with the largest real part (asymptotic rate).
    - `stable`: `Bool[Array, ""]`, converged and all free eigenvalues have real part `<= tol` (stable or
      marginal).
    - `used_fallback`: `Bool[Array, ""]`, Newton failed and Levenberg-Marquardt gave the result.
    - `num_steps`: `Int[Array, ""]`, root-finder steps (of the solver whose result is returned).

    `P` is the number of independent unknowns, `K(K+1)/2 + K M` (plus `K` in two-layer mode). From the batch
    solvers every field carries a leading batch axis `B`.
    """

    state: Overlaps
    eps_g: Float[Array, "*batch"]
    status: Int[Array, "*batch"]
    residual_norm: Float[Array, "*batch"]
    eigenvalues: Complex[Array, "*batch P"]
    slowest_eigenvalue: Complex[Array, "*batch"]
    stable: Bool[Array, "*batch"]
    used_fallback: Bool[Array, "*batch"]
    num_steps: Int[Array, "*batch"]


def _residual(y, args):
    """`F(y)` on the free unknowns; `-y` on pinned ones (so the Jacobian is `-1` there)."""
    config, T, v_star, v_fixed, free = args
    K = v_fixed.shape[0]
    template = Overlaps(Q=jnp.zeros((K, K), y.dtype), R=jnp.zeros((K, T.shape[0]), y.dtype), T=T, v=v_fixed,
                        v_star=v_star)
    state = unpack_state(y, template, config.mode)
    f = pack_state(vector_field(state, config), config.mode)
    return jnp.where(free, f, -y)


def _dtype(state: Overlaps):
    """The working dtype of a fixed-point solve: the state's floating dtype promoted to at least JAX's default
    float (float32 inputs with x64 on are solved in float64: optimistix's Levenberg-Marquardt builds its damping
    terms in the default float, and a root polished to `residual_tol = 1e-9` needs float64 anyway)."""
    with jax.numpy_dtype_promotion("standard"):
        return jnp.dtype(jnp.promote_types(working_dtype(state), jnp.result_type(float)))


def _check_mask(mask, n: int, name: str):
    if mask is None:
        return jnp.ones(n, dtype=bool)
    mask = jnp.asarray(mask)
    if mask.shape != (n,):
        raise ValueError(f"{name} must be a boolean mask of shape ({n},), got shape {mask.shape}")
    return mask.astype(bool)


class _Options(eqx.Module):
    max_steps: int = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    residual_tol: float = eqx.field(static=True)
    eig_tol: float = eqx.field(static=True)
    eig_rtol: float = eqx.field(static=True)


def _options(max_steps, rtol, atol, residual_tol, eig_tol, eig_rtol) -> _Options:
    return _Options(
        check_int("max_steps", max_steps, 1), check_float("rtol", rtol, 0.0, lo_open=True),
        check_float("atol", atol, 0.0, lo_open=True), check_float("residual_tol", residual_tol, 0.0, lo_open=True),
        check_float("eig_tol", eig_tol, 0.0), check_float("eig_rtol", eig_rtol, 0.0),
    )


def _setup(state0: Overlaps, config: SGDConfig, active, teacher_active):
    """The initial packed guess (no gradient) and the residual's `args` `(config, T, v*, v, free)`."""
    mode = config.mode
    free = unknown_mask(active, teacher_active, mode)
    y0 = jax.lax.stop_gradient(jnp.where(free, pack_state(state0, mode), 0.0))
    v_fixed = jax.lax.stop_gradient(state0.v) if mode == "two-layer" else state0.v
    args = (config, state0.T, state0.v_star, v_fixed, free)
    return y0, args


def _newton(y0, args, o: _Options):
    """Newton from `y0`: `(value, steps, ok, lm_start)`; `lm_start` is where the fallback starts (Newton's
    root where Newton succeeded, so that a vmapped fallback stops at once there)."""
    import optimistix as optx  # noqa: PLC0415  (imported when a fixed point is first traced: start-up)

    sol = optx.root_find(_residual, optx.Newton(rtol=o.rtol, atol=o.atol), y0, args, max_steps=o.max_steps,
                         throw=False)
    f = _residual(sol.value, args)
    finite = jnp.all(jnp.isfinite(sol.value))
    ok = finite & (jnp.max(jnp.abs(f)) <= o.residual_tol) & (sol.result == optx.RESULTS.successful)
    lm_start = jax.lax.stop_gradient(jnp.where(ok & finite, sol.value, y0))
    return sol.value, sol.stats["num_steps"], ok, lm_start


def _levenberg_marquardt(y_start, args, o: _Options):
    import optimistix as optx  # noqa: PLC0415

    lm = optx.least_squares(_residual, optx.LevenbergMarquardt(rtol=o.rtol, atol=o.atol), y_start, args,
                            max_steps=4 * o.max_steps, throw=False)
    return lm.value, lm.stats["num_steps"]


def _finish(y, num_steps, newton_ok, state0: Overlaps, config: SGDConfig, args, o: _Options,
            throw: bool) -> FixedPointResult:
    """The result at the root `y`: state, error, residual, spectrum and status (module docstring)."""
    mode = config.mode
    free = args[-1]
    v_fixed = args[3]
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
    # stability band relative to the spectrum's scale: above it unstable, inside it marginal (a zero mode)
    tol = o.eig_tol + o.eig_rtol * jnp.max(jnp.where(jnp.isnan(eig.real), 0.0, jnp.abs(eig)))
    max_real = jnp.max(jnp.where(jnp.isnan(eig.real), -jnp.inf, eig.real))
    stable = max_real <= tol
    singular = max_real >= -tol
    omega = state.covariance()
    psd = jnp.min(jnp.linalg.eigvalsh(jnp.where(jnp.isfinite(omega), omega, 0.0))) >= -1e-8 * jnp.maximum(
        1.0, jnp.max(jnp.abs(jnp.diag(jnp.where(jnp.isfinite(omega), omega, 0.0))))
    )
    converged = finite & (residual_norm <= o.residual_tol)
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
    # eps_g only for a stationary point (converged, finite, physical): never a number a caller could print
    # beside a failure
    stationary = (status == Status.SUCCESS) | (status == Status.SINGULAR) | (status == Status.UNSTABLE)
    eps = jnp.where(stationary, eps, jnp.nan)
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
            "fixed-point solve failed (not converged, unstable, unphysical or diverged); " + THROW_NOTE,
        )
    return result


@eqx.filter_jit
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
    eig_rtol: float = 1e-7,
    fallback: bool = True,
    throw: bool = True,
) -> FixedPointResult:
    """Solve `d(Q, R, v)/d alpha = 0` near `state0` (Newton, then Levenberg-Marquardt on failure).

    **Arguments:**

    - `state0`: initial guess (typically the end of an ODE run, see [`fixed_point_from_ode`][]); its
      teacher part `T`, `v*` (and `v` in scm mode) are parameters of the problem.
    - `config`: [`SGDConfig`][]; `eta`, `eta_v`, `sigma`, `weight_decay` may be traced (grad, vmap).
    - `active`, `teacher_active`: boolean masks of the real units (default all); inactive units must be
      zero units (`Q_ii = R_i = v_i = 0`, resp. `T_nn = v*_n = 0`) and stay pinned at zero.
    - `max_steps`: Newton's step budget (`>= 1`; the Levenberg-Marquardt fallback gets four times as many).
    - `rtol`, `atol`: root-finder tolerances on the step and the residual; `residual_tol`: a solution must
      have `max |F| <= residual_tol` (else `NOT_CONVERGED`); `eig_tol`, `eig_rtol`: the stability band
      `tol = eig_tol + eig_rtol * max|lambda|`: real parts above `tol` are unstable, within `[-tol, tol]`
      marginal (status `SINGULAR`).
    - `fallback`: `False` skips the Levenberg-Marquardt fallback (Newton only; a failed Newton solve then
      reports `NOT_CONVERGED`). Compiling without it is about three times faster, which pays for a guess
      already at the root, e.g. differentiating at a known fixed point.
    - `throw`: raise unless the status is `SUCCESS` or `SINGULAR`; pass `False` under `vmap`.

    **Returns:** a [`FixedPointResult`][]. `eps_g` is differentiable (implicit function theorem) with
    respect to `config` and the teacher part of `state0`.

    **Example:**
    ```python
    state0, config = jp.Overlaps.reference(K=2, M=2), jp.SGDConfig(eta=0.5, sigma=0.1)
    guess = jp.solve_ode(state0, config, [0.0, 500.0]).final  # the end of an ODE run
    res = jp.solve_fixed_point(guess, config)
    jax.grad(lambda eta: jp.solve_fixed_point(guess, jp.SGDConfig(eta=eta, sigma=0.1)).eps_g)(0.5)
    ```

    Under `vmap` the fallback's `lax.cond` becomes a `select` that runs Levenberg-Marquardt for every element
    (from Newton's root where Newton succeeded: one step there); for batches prefer
    [`solve_fixed_point_batch`][], which skips the fallback when every Newton solve succeeded.
    """
    o = _options(max_steps, rtol, atol, residual_tol, eig_tol, eig_rtol)
    state0, config = cast_problem(state0, config, _dtype(state0))
    K, M = state0.K, state0.M
    active = _check_mask(active, K, "active")
    teacher_active = _check_mask(teacher_active, M, "teacher_active")
    y0, args = _setup(state0, config, active, teacher_active)
    y_n, steps_n, newton_ok, lm_start = _newton(y0, args, o)
    if fallback:
        y, num_steps = jax.lax.cond(
            newton_ok, lambda: (y_n, steps_n), lambda: _levenberg_marquardt(lm_start, args, o)
        )
    else:
        y, num_steps = y_n, steps_n
    return _finish(y, num_steps, newton_ok, state0, config, args, o, throw)


@eqx.filter_jit
def solve_fixed_point_batch(
    states0: Overlaps,
    configs: SGDConfig,
    *,
    active: Bool[ArrayLike, "B K"] | None = None,
    teacher_active: Bool[ArrayLike, "B M"] | None = None,
    max_steps: int = 256,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    residual_tol: float = 1e-9,
    eig_tol: float = 1e-9,
    eig_rtol: float = 1e-7,
    fallback: bool = True,
) -> FixedPointResult:
    """[`solve_fixed_point`][] over a batch of `B` problems, with `throw=False` (a status per member).

    **Arguments:**

    - `states0`: initial guesses, an [`Overlaps`][] whose every leaf carries a leading axis `B`
      (`Q: Float[Array, "B K K"]`, `R: Float[Array, "B K M"]`, `T: Float[Array, "B M M"]`, `v: Float[Array, "B K"]`,
      `v_star: Float[Array, "B M"]`).
    - `configs`: an [`SGDConfig`][] whose `eta`, `eta_v`, `sigma`, `weight_decay` have shape `(B,)` or are scalars
      shared by the batch (`mode`, `activation` are shared).
    - `active`, `teacher_active`: boolean masks of the real units, `Bool[ArrayLike, "B K"]` and
      `Bool[ArrayLike, "B M"]` (default all active); as in [`solve_fixed_point`][].
    - `max_steps`, `rtol`, `atol`, `residual_tol`, `eig_tol`, `eig_rtol`, `fallback`: as in
      [`solve_fixed_point`][], shared by the batch.

    **Returns:** a [`FixedPointResult`][] whose leaves carry the leading axis `B` (`status` of shape `(B,)`, ...).

    The same numbers as `jax.vmap(solve_fixed_point)`, but cheaper: Newton runs vmapped, and the
    Levenberg-Marquardt fallback runs (vmapped over the batch, from Newton's root where Newton succeeded) only
    when some element's Newton solve failed: the branch is taken on `any(failed)`, a scalar, so it is skipped
    rather than computed and discarded. `fallback=False` leaves it out (see [`solve_fixed_point`][]).
    """
    o = _options(max_steps, rtol, atol, residual_tol, eig_tol, eig_rtol)
    states0, configs = cast_problem(states0, configs, _dtype(states0))
    B, K, M = states0.Q.shape[0], states0.Q.shape[-1], states0.R.shape[-1]
    active = jnp.ones((B, K), bool) if active is None else jnp.asarray(active, bool)
    teacher_active = jnp.ones((B, M), bool) if teacher_active is None else jnp.asarray(teacher_active, bool)
    if active.shape != (B, K) or teacher_active.shape != (B, M):
        raise ValueError(f"active and teacher_active must have shapes ({B}, {K}) and ({B}, {M}), got "
                         f"{active.shape} and {teacher_active.shape}")
    configs = jax.tree.map(lambda a: jnp.broadcast_to(a, (B,)) if jnp.ndim(a) == 0 else a, configs)
    y0, args = jax.vmap(_setup)(states0, configs, active, teacher_active)
    y_n, steps_n, newton_ok, lm_start = jax.vmap(lambda y, a: _newton(y, a, o))(y0, args)

    def run_fallback():
        y_lm, steps_lm = jax.vmap(lambda y, a: _levenberg_marquardt(y, a, o))(lm_start, args)
        return jnp.where(newton_ok[:, None], y_n, y_lm), jnp.where(newton_ok, steps_n, steps_lm)

    if fallback:
        y, num_steps = jax.lax.cond(jnp.all(newton_ok), lambda: (y_n, steps_n), run_fallback)
    else:
        y, num_steps = y_n, steps_n
    return jax.vmap(lambda *a: _finish(*a, o, False))(y, num_steps, newton_ok, states0, configs, args)


def _warm_up(state0: Overlaps, config: SGDConfig, alpha: float, integrator: str, ode_max_steps: int):
    """The end of an ODE run to `alpha` as the root finder's guess (no gradient), and the run's status."""
    alpha = check_float("alpha", alpha, 0.0, lo_open=True)
    sol = solve_ode(
        jax.lax.stop_gradient(state0), jax.lax.stop_gradient(config), np.asarray([0.0, float(alpha)]),
        integrator=integrator, max_steps=ode_max_steps, throw=False,
    )
    end = sol.final
    guess = Overlaps(Q=end.Q, R=end.R, T=state0.T, v=end.v if config.mode == "two-layer" else state0.v,
                     v_star=state0.v_star)
    return guess, sol.status


@eqx.filter_jit
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
    """Integrate the ODEs to `alpha` (static), then polish the end state with [`solve_fixed_point`][]
    (docs/theory.md section 5): the usual way to find the fixed point that SGD reaches from `state0`.

    **Arguments:**

    - `state0`: the initial [`Overlaps`][] of the ODE run (e.g. [`Overlaps.reference`][jaxprune.Overlaps.reference]);
      its teacher part `T`, `v*` (and `v` in scm mode) are parameters of the fixed point.
    - `config`: the [`SGDConfig`][] (traceable numbers: `grad` and `vmap` work as in [`solve_fixed_point`][]).
    - `alpha`: the time of the warm-up ODE run, `> 0` (static).
    - `integrator`: the warm-up's integrator, as in [`solve_ode`][] (default `"tsit5"`).
    - `ode_max_steps`: the warm-up's step budget.
    - `active`, `teacher_active`: boolean masks of the real units, `Bool[ArrayLike, " K"]`, `Bool[ArrayLike, " M"]`
      (default all), as in [`solve_fixed_point`][].
    - `throw`: raise unless the status is `SUCCESS` or `SINGULAR`; pass `False` under `vmap`.
    - `fp_options`: further keyword arguments of [`solve_fixed_point`][] (`max_steps`, `rtol`, `atol`,
      `residual_tol`, `eig_tol`, `eig_rtol`, `fallback`).

    **Returns:** a [`FixedPointResult`][]. The ODE run only provides the initial guess (no gradient flows through
    it); a diverged or unfinished run gives status `DIVERGED` / `MAX_STEPS` (and `eps_g = NaN`) whatever the
    root finder does afterwards. `eps_g` is differentiable with respect to `config` (implicit function theorem).

    **Example:**
    ```python
    res = jp.fixed_point_from_ode(jp.Overlaps.reference(K=2, M=2), jp.SGDConfig(eta=0.5, sigma=0.1))
    res.eps_g, res.status, res.slowest_eigenvalue
    ```
    """
    state0, config = cast_problem(state0, config, _dtype(state0))
    guess, ode_status = _warm_up(state0, config, alpha, integrator, ode_max_steps)
    res = solve_fixed_point(guess, config, active=active, teacher_active=teacher_active, throw=False, **fp_options)
    res = _with_ode_status(res, ode_status)
    if throw:
        res = eqx.error_if(
            res,
            (res.status != Status.SUCCESS) & (res.status != Status.SINGULAR),
            "fixed point from ODE failed (ODE diverged, or root not converged / unstable); " + THROW_NOTE,
        )
    return res


def _with_ode_status(res: FixedPointResult, ode_status) -> FixedPointResult:
    """A failed warm-up ODE run overrides the root finder's status, and then `eps_g` is NaN."""
    failed = ode_status != Status.SUCCESS
    status = jnp.where(failed, ode_status, res.status).astype(jnp.int32)
    return eqx.tree_at(lambda r: (r.status, r.eps_g), res, (status, jnp.where(failed, jnp.nan, res.eps_g)))


@eqx.filter_jit
def fixed_point_from_ode_batch(
    states0: Overlaps,
    configs: SGDConfig,
    *,
    alpha: float = 1000.0,
    integrator: str = "tsit5",
    ode_max_steps: int = 100_000,
    active: Bool[ArrayLike, "B K"] | None = None,
    teacher_active: Bool[ArrayLike, "B M"] | None = None,
    **fp_options,
) -> FixedPointResult:
    """[`fixed_point_from_ode`][] over a batch of `B` problems, with `throw=False`: the warm-up ODE runs are
    vmapped, the root finding uses [`solve_fixed_point_batch`][] (fallback only when some member needs it).

    **Arguments:**

    - `states0`: initial [`Overlaps`][] with a leading axis `B` on every leaf (as in [`solve_fixed_point_batch`][]).
    - `configs`: an [`SGDConfig`][] with fields of shape `(B,)` or scalars shared by the batch.
    - `alpha`, `integrator`, `ode_max_steps`: the warm-up ODE run, as in [`fixed_point_from_ode`][].
    - `active`, `teacher_active`: masks `Bool[ArrayLike, "B K"]`, `Bool[ArrayLike, "B M"]` (default all active).
    - `fp_options`: further keyword arguments of [`solve_fixed_point_batch`][].

    **Returns:** a [`FixedPointResult`][] whose leaves carry the leading axis `B`.
    """
    states0, configs = cast_problem(states0, configs, _dtype(states0))
    B = states0.Q.shape[0]
    configs = jax.tree.map(lambda a: jnp.broadcast_to(a, (B,)) if jnp.ndim(a) == 0 else a, configs)
    guess, ode_status = jax.vmap(lambda s, c: _warm_up(s, c, alpha, integrator, ode_max_steps))(states0, configs)
    res = solve_fixed_point_batch(guess, configs, active=active, teacher_active=teacher_active, **fp_options)
    return _with_ode_status(res, ode_status)


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
