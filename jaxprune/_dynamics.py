"""ODEs of online SGD for the order parameters, and their integration (docs/theory.md section 4).

Time is `alpha = steps / N`. With `u = (v, -v*)` the error signal is `Delta = sum_c u_c g(c) - sigma zeta`, so

- `dR_in/dalpha = -eta v_i sum_c u_c I3(i, n, c) - eta lambda R_in`
- `dQ_ik/dalpha = -eta v_i sum_c u_c I3(i, k, c) + (i <-> k) - 2 eta lambda Q_ik
  + eta^2 v_i v_k [ sum_cd u_c u_d I4(i, k, c, d) + sigma^2 J2(i, k) ]`
- `dv_i/dalpha = -eta_v sum_c u_c I2(i, c)` (two-layer mode; zero for the soft committee machine),

which is docs/theory.md section 4 with the teacher and student sums merged (Saad & Solla 1995; Goldt et al. 2019).
`lambda` is an optional weight decay, `w <- w - (eta lambda / N) w` per step. `T` and `v*` are constant.

Integrators: `"euler"` (explicit Euler with fixed `dt`, step for step what the reference C++ tool does) and
the diffrax Runge-Kutta solvers `"tsit5"`, `"dopri5"`, `"dopri8"`, `"bosh3"` with adaptive steps.
"""

from __future__ import annotations

import math
from typing import Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ._activations import AbstractActivation, Erf, get_activation
from ._config import SGDConfig, _check_config_values, _is_concrete, MODES as _MODES
from ._error import generalisation_error
from ._integrals import i2_block, i3_block, i4_pair_sums, j2_block
from ._overlaps import Overlaps
from ._status import Status

__all__ = [
    "SGDConfig",
    "ODESolution",
    "vector_field",
    "solve_ode",
    "solve_ode_batch",
    "alpha_grid",
    "INTEGRATORS",
]

INTEGRATORS = ("euler", "tsit5", "dopri5", "dopri8", "bosh3")


def _pair_indices(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper-triangle index pairs `(a, b)` of an `n x n` symmetric array, and the `n x n` map from `(i, k)`
    to the position of the pair `(min(i, k), max(i, k))`."""
    a, b = np.triu_indices(n)
    position = np.zeros((n, n), dtype=np.int64)
    position[a, b] = np.arange(a.size)
    position[b, a] = np.arange(a.size)
    return a, b, position


def vector_field(state: Overlaps, config: SGDConfig) -> Overlaps:
    """`d(state)/d alpha` of online SGD (module docstring), as an [`Overlaps`][] of derivatives.

    `I4(i, k, c, d)` is evaluated on the independent student pairs `i <= k` (by symmetry), each pair
    contracted with `u_c u_d` over all fields `c, d` at once by the activation's `i4_contracted` (dense over
    the symmetric `(c, d)` block: twice the arcsins of `c <= d`, but no gathers, and for erf the `L1`, `L2`
    terms are computed once per `c`). `I3` and `J2` are evaluated once per step as dense blocks.
    """
    act = config.activation
    K = state.K
    C = state.covariance()
    u = state.output_weights()
    v = state.v
    students = np.arange(K)

    # drive[i, b] = sum_c u_c I3(i, b, c): the first-order (in eta) terms of dQ and dR.
    drive = i3_block(act, C, students) @ u
    first = -config.eta * v[:, None] * drive  # (K, F)
    dR = first[:, K:] - config.eta * config.weight_decay * state.R
    dQ_linear = first[:, :K] + first[:, :K].T - 2.0 * config.eta * config.weight_decay * state.Q

    # second-order term: sum_cd u_c u_d I4(i, k, c, d) + sigma^2 J2(i, k), on i <= k only.
    ik_a, ik_b, position = _pair_indices(K)
    quad = i4_pair_sums(act, C, ik_a, ik_b, u[:, None] * u[None, :])
    quad_full = quad[position] + jnp.square(config.sigma) * j2_block(act, C, students, students)
    dQ = dQ_linear + jnp.square(config.eta) * v[:, None] * v[None, :] * quad_full

    if config.mode == "two-layer":
        dv = -config.eta_v * (i2_block(act, C, students, np.arange(C.shape[0])) @ u)
    else:
        dv = jnp.zeros_like(v)
    return Overlaps(Q=dQ, R=dR, T=jnp.zeros_like(state.T), v=dv, v_star=jnp.zeros_like(state.v_star))


class _Flat(eqx.Module):
    """The evolving overlaps `(Q, R, v)` as one flat vector `y` (the integrators' state), with `T` and `v*`
    (constant) kept apart: one leaf instead of five makes every integrator step fewer, larger operations."""

    T: Float[Array, "M M"]
    v_star: Float[Array, " M"]
    K: int = eqx.field(static=True)
    M: int = eqx.field(static=True)

    @classmethod
    def of(cls, state: Overlaps) -> "_Flat":
        return cls(T=state.T, v_star=state.v_star, K=state.K, M=state.M)

    @staticmethod
    def ravel(state: Overlaps) -> Float[Array, " D"]:
        return jnp.concatenate([state.Q.reshape(-1), state.R.reshape(-1), state.v])

    def unravel(self, y: Float[Array, " D"]) -> Overlaps:
        K, M = self.K, self.M
        return Overlaps(Q=y[: K * K].reshape(K, K), R=y[K * K : K * K + K * M].reshape(K, M), T=self.T,
                        v=y[K * K + K * M :], v_star=self.v_star)

    def unravel_path(self, ys: Float[Array, "T D"]) -> Overlaps:
        """`unravel` for a leading time axis (`T` and `v*` repeated along it)."""
        K, M, n = self.K, self.M, ys.shape[0]
        leaves = [
            ys[:, : K * K].reshape(n, K, K),
            ys[:, K * K : K * K + K * M].reshape(n, K, M),
            jnp.broadcast_to(self.T, (n, M, M)),
            ys[:, K * K + K * M :],
            jnp.broadcast_to(self.v_star, (n, M)),
        ]
        return jax.tree.unflatten(jax.tree.structure(self.unravel(ys[0])), leaves)

    def field(self, y: Float[Array, " D"], config: SGDConfig) -> Float[Array, " D"]:
        return self.ravel(vector_field(self.unravel(y), config))

    @staticmethod
    def diverged(y: Float[Array, " D"], threshold) -> Bool[Array, ""]:
        return _diverged(y, threshold)


def _diverged(y: Float[Array, " D"], threshold) -> Bool[Array, ""]:
    """Non-finite, or `max |Q|, |R|, |v|` above `threshold` (on the flat state `y`)."""
    big = jnp.max(jnp.abs(y))
    return jnp.logical_or(~jnp.all(jnp.isfinite(y)), big > threshold)


class ODESolution(eqx.Module):
    """Result of [`solve_ode`][].

    **Fields:**
    - `alphas: Float[T]`: output times (for Euler, the requested times rounded to whole steps).
    - `states`: an [`Overlaps`][] whose leaves carry a leading time axis `T`.
    - `eps_g: Float[T]`: noise-free generalisation error at each output time (NaN after a divergence).
    - `status: Int[]`: a [`Status`][] code (`SUCCESS`, `DIVERGED`, `MAX_STEPS`).
    - `alpha_end: Float[]`: last time reached without divergence.
    - `num_steps: Int[]`: integrator steps taken (accepted and rejected, for adaptive solvers).
    """

    alphas: Float[Array, " T"]
    states: Overlaps
    eps_g: Float[Array, " T"]
    status: Int[Array, ""]
    alpha_end: Float[Array, ""]
    num_steps: Int[Array, ""]

    @property
    def final(self) -> Overlaps:
        """The state at the last output time."""
        return jax.tree.map(lambda x: x[-1], self.states)


def alpha_grid(
    final: float, num: int = 100, *, spacing: Literal["log", "linear"] = "log", first: float | None = None
) -> np.ndarray:
    """Output times from 0 to `final`: `0` then `num - 1` log-spaced times from `first` (default
    `final / 10^4`), or `num` linearly spaced times."""
    if not (final > 0 and math.isfinite(final)):
        raise ValueError(f"final time alpha must be positive and finite, got {final}")
    if num < 2:
        raise ValueError(f"num must be >= 2, got {num}")
    if spacing == "linear":
        return np.linspace(0.0, final, num)
    if spacing != "log":
        raise ValueError(f"spacing must be 'log' or 'linear', got {spacing!r}")
    first = final * 1e-4 if first is None else first
    if not 0 < first < final:
        raise ValueError(f"first must lie in (0, final={final}), got {first}")
    return np.concatenate([[0.0], np.geomspace(first, final, num - 1)])


def _check_alphas(alphas, name="alphas") -> np.ndarray:
    a = np.asarray(alphas, dtype=float)
    if a.ndim != 1 or a.size < 1:
        raise ValueError(f"{name} must be a non-empty 1-d array of times, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(np.diff(a) < 0):
        raise ValueError(f"{name} must be finite, >= 0 and non-decreasing")
    return a


def _euler(flat: _Flat, y0, config, record_steps: np.ndarray, dt: float, threshold: float):
    """Explicit Euler, `y <- y + dt f(y)`, recording after `record_steps[j]` steps.

    A step that diverges is not taken (the state holds); the step count stops there. The loop over steps
    is a `scan` (static trip count, so reverse-mode autodiff works) when the record intervals are equal.
    """
    dt_arr = jnp.asarray(dt, dtype=y0.dtype)

    def step(carry):
        y, bad, n = carry
        new = y + dt_arr * flat.field(y, config)
        bad = bad | flat.diverged(new, threshold)
        return jnp.where(_bcast_last(bad, y), y, new), bad, n + jnp.where(bad, 0, 1)

    counts = np.diff(np.concatenate([[0], record_steps])).astype(np.int64)
    bad0 = flat.diverged(y0, threshold)  # a scalar, or one flag per batch member (batch layout)
    init = (y0, bad0, jnp.zeros(bad0.shape, dtype=int))
    uniform = counts.size > 1 and np.all(counts[1:] == counts[1]) and counts[0] in (0, counts[1])

    def interval(carry, n):
        if uniform:
            length = int(counts[-1])
            carry = jax.lax.fori_loop(0, length, lambda _, c: step(c), carry, unroll=_unroll(length))
        else:
            carry = jax.lax.fori_loop(0, n, lambda _, c: step(c), carry)
        return carry, carry

    if uniform and counts[0] == 0:  # record the initial state, then scan the equal intervals
        (_, bad_end, n_end), rest = jax.lax.scan(interval, init, jnp.asarray(counts[1:]))
        traj = jax.tree.map(lambda x0, xs: jnp.concatenate([x0[None], xs]), init, rest)
    else:
        (_, bad_end, n_end), traj = jax.lax.scan(interval, init, jnp.asarray(counts))
    ys, bads, _ = traj
    return flat.unravel_path(ys), bads, bad_end, n_end


@eqx.filter_jit
def _euler_jit(flat: _Flat, y0, config, record_steps: tuple[int, ...], dt: float, threshold: float):
    """[`_euler`][] compiled once per (shapes, output grid, `dt`): module-level, so repeated `solve_ode`
    calls with new states or configurations hit the cache instead of re-tracing the step loop."""
    return _euler(flat, y0, config, np.asarray(record_steps, dtype=np.int64), dt, threshold)


# Module-level term and event: `diffeqsolve` is jitted on its static arguments (these functions included),
# so a fresh lambda per `solve_ode` call would recompile it every time. Everything that varies (the flat
# layout's T, v*, the configuration, the divergence threshold) travels in `args`.
def _diffrax_field(t, y, args):
    flat, config, _ = args
    return flat.field(y, config)


def _diffrax_diverged(t, y, args, **kwargs):
    return _diverged(y, args[2])


_TERM = diffrax.ODETerm(_diffrax_field)
_EVENT = diffrax.Event(_diffrax_diverged)


def _unroll(length: int) -> int:
    """Unroll factor of the Euler step loop: a few steps per loop iteration amortise the loop's overhead."""
    for u in (4, 2):
        if length % u == 0:
            return u
    return 1


_SOLVERS = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "bosh3": diffrax.Bosh3,
}


def _check_solver_options(alphas, integrator, dt, rtol, atol, max_steps) -> np.ndarray:
    """Validate the options shared by [`solve_ode`][] and [`solve_ode_batch`][]; returns the output grid."""
    a = _check_alphas(alphas)
    if integrator not in INTEGRATORS:
        raise ValueError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt must be positive and finite, got {dt}")
    if rtol <= 0 or atol <= 0:
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    return a


def solve_ode(
    state0: Overlaps,
    config: SGDConfig,
    alphas: Float[ArrayLike, " T"],
    *,
    integrator: str = "tsit5",
    dt: float = 0.01,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 100_000,
    divergence_threshold: float = 1e4,
    throw: bool = True,
) -> ODESolution:
    """Integrate the order-parameter ODEs of online SGD from `state0` at `alpha = 0`.

    **Arguments:**
    - `state0`: initial [`Overlaps`][] at `alpha = 0`.
    - `config`: [`SGDConfig`][].
    - `alphas`: output times (static: a NumPy array or list; `>= 0`, non-decreasing).
    - `integrator`: `"euler"` (fixed step `dt`, output times rounded to whole steps) or an adaptive diffrax
      solver `"tsit5"`, `"dopri5"`, `"dopri8"`, `"bosh3"` (tolerances `rtol`, `atol`; at most `max_steps`).
    - `divergence_threshold`: a run whose `|Q|`, `|R|` or `|v|` exceeds this, or becomes non-finite, stops
      with status `DIVERGED`; later outputs hold the last finite state and `eps_g = NaN`. (Linear students
      blow up exponentially past the critical learning rate; erf students saturate and their norms grow
      without bound but slowly, so the threshold decides when such a run counts as diverged.)
    - `throw`: raise (also under `jit`) when the status is not `SUCCESS`; pass `False` under `vmap` to get
      a status per configuration.

    **Returns:** an [`ODESolution`][]. Works under `jit` (with `alphas` static), `vmap` over states and
    configurations, and `grad` (adaptive solvers; Euler when the output grid is uniform).
    """
    a = _check_solver_options(alphas, integrator, dt, rtol, atol, max_steps)
    dtype = state0.Q.dtype
    if integrator == "euler":
        record_steps = np.rint(a / dt).astype(np.int64)
        flat = _Flat.of(state0)
        states, bads, bad_end, n_end = _euler_jit(flat, flat.ravel(state0), config,
                                                  tuple(int(n) for n in record_steps), float(dt),
                                                  float(divergence_threshold))
        out_alphas = jnp.asarray(record_steps * dt, dtype=dtype)
        status = jnp.where(bad_end, Status.DIVERGED, Status.SUCCESS)
        alpha_end = n_end.astype(dtype) * dt
        num_steps = n_end
    else:
        flat = _Flat.of(state0)
        sol = diffrax.diffeqsolve(
            _TERM,
            _SOLVERS[integrator](),
            t0=0.0,
            t1=float(a[-1]) if a[-1] > 0 else 1e-12,
            dt0=None,
            y0=flat.ravel(state0),
            args=(flat, config, jnp.asarray(divergence_threshold, dtype=dtype)),
            saveat=diffrax.SaveAt(ts=jnp.asarray(a, dtype=dtype)),
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            max_steps=max_steps,
            event=_EVENT,
            throw=False,
        )
        states = flat.unravel_path(sol.ys)
        reached = jnp.all(jnp.isfinite(states.Q), axis=(-2, -1))
        bads = ~reached
        status = jnp.where(
            sol.result == diffrax.RESULTS.successful,
            Status.SUCCESS,
            jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, Status.MAX_STEPS, Status.DIVERGED),
        )
        # after a terminating event diffrax fills unreached outputs with inf: hold the last finite state
        last = jnp.maximum(jnp.sum(reached) - 1, 0)
        states = jax.tree.map(lambda x: jnp.where(_bcast(reached, x), x, x[last]), states)
        out_alphas = jnp.asarray(a, dtype=dtype)
        alpha_end = jnp.where(status == Status.SUCCESS, out_alphas[-1], sol.ts[last] if sol.ts is not None else 0.0)
        num_steps = sol.stats["num_steps"]
    eps = jax.vmap(lambda s: generalisation_error(s, config.activation))(states)
    eps = jnp.where(bads, jnp.nan, eps)
    solution = ODESolution(
        alphas=out_alphas,
        states=states,
        eps_g=eps,
        status=jnp.asarray(status, dtype=jnp.int32),
        alpha_end=jnp.asarray(alpha_end, dtype=dtype),
        num_steps=jnp.asarray(num_steps),
    )
    if throw:
        solution = eqx.error_if(
            solution,
            solution.status != Status.SUCCESS,
            "ODE integration failed (diverged: overlaps unbounded or non-finite, or step budget exhausted); "
            "pass throw=False to receive a status code per configuration instead",
        )
    return solution


# ---------------------------------------------------------------------------------------------------------
# A batch of configurations integrated as one ODE system
# ---------------------------------------------------------------------------------------------------------


def _vector_field_batch(
    Q: Float[Array, "K K B"],
    R: Float[Array, "K M B"],
    T: Float[Array, "M M B"],
    v: Float[Array, "K B"],
    v_star: Float[Array, "M B"],
    config: SGDConfig,
) -> tuple[Float[Array, "K K B"], Float[Array, "K M B"], Float[Array, "K B"]]:
    """[`vector_field`][] of `B` configurations at once, batch axis last (`config` fields of shape `B`).

    Same formulas; with the batch axis minor every elementwise kernel runs as SIMD over the batch, and the
    activation's `*_batch` kernels (erf: `I4` on the triangle `c <= d`) do the sums.
    """
    act = config.activation
    K = Q.shape[0]
    C = jnp.concatenate(
        [jnp.concatenate([Q, R], axis=1), jnp.concatenate([jnp.swapaxes(R, 0, 1), T], axis=1)], axis=0
    )  # (F, F, B)
    u = jnp.concatenate([v, -v_star], axis=0)  # (F, B)
    cdiag = jnp.moveaxis(jnp.diagonal(C, axis1=0, axis2=1), -1, 0)  # (F, B)
    B = C.shape[-1]
    eta, wd, sigma, eta_v = (jnp.broadcast_to(x, (B,)) for x in
                             (config.eta, config.weight_decay, config.sigma, config.eta_v))
    eta, wd = eta[None, None], wd[None, None]  # (1, 1, B)

    first = -eta * v[:, None] * act.i3_contracted_batch(cdiag, C, u, K)  # (K, F, B)
    dR = first[:, K:] - eta * wd * R
    dQ_linear = first[:, :K] + jnp.swapaxes(first[:, :K], 0, 1) - 2.0 * eta * wd * Q

    ik_a, ik_b, position = _pair_indices(K)
    quad = act.i4_contracted_batch(cdiag, C, u, ik_a, ik_b)  # (P, B)
    j2 = act.j2(cdiag[:K, None], cdiag[None, :K], C[:K, :K])
    quad_full = quad[position] + jnp.square(sigma)[None, None] * j2
    dQ = dQ_linear + jnp.square(eta) * v[:, None] * v[None, :] * quad_full

    if config.mode == "two-layer":
        i2 = act.i2(cdiag[:K, None], cdiag[None, :], C[:K])  # (K, F, B)
        dv = -eta_v[None] * jnp.sum(i2 * u[None], axis=1)
    else:
        dv = jnp.zeros_like(v)
    return dQ, dR, dv


class _BatchFlat(eqx.Module):
    """A batch of `B` states as one flat array `y` of shape `(D, B)`: the batch axis is last (minor), so the
    vector field's arithmetic vectorises over the batch. `T` and `v*` of every member are kept apart."""

    T: Float[Array, "M M B"]
    v_star: Float[Array, "M B"]
    K: int = eqx.field(static=True)
    M: int = eqx.field(static=True)

    @classmethod
    def of(cls, states: Overlaps) -> "_BatchFlat":
        """From an [`Overlaps`][] whose leaves carry a leading batch axis."""
        return cls(T=jnp.moveaxis(states.T, 0, -1), v_star=states.v_star.T, K=states.K, M=states.M)

    @staticmethod
    def ravel(states: Overlaps) -> Float[Array, "D B"]:
        B = states.v.shape[0]
        return jnp.concatenate([states.Q.reshape(B, -1), states.R.reshape(B, -1), states.v], axis=1).T

    def field(self, y: Float[Array, "D B"], config: SGDConfig) -> Float[Array, "D B"]:
        K, M, B = self.K, self.M, y.shape[-1]
        Q, R, v = y[: K * K].reshape(K, K, B), y[K * K : K * K + K * M].reshape(K, M, B), y[K * K + K * M :]
        dQ, dR, dv = _vector_field_batch(Q, R, self.T, v, self.v_star, config)
        return jnp.concatenate([dQ.reshape(K * K, B), dR.reshape(K * M, B), dv], axis=0)

    @staticmethod
    def diverged(y: Float[Array, "D B"], threshold) -> Bool[Array, " B"]:
        """[`_diverged`][] per member."""
        return ~jnp.all(jnp.isfinite(y), axis=0) | (jnp.max(jnp.abs(y), axis=0) > threshold)

    def unravel_path(self, ys: Float[Array, "T D B"]) -> Overlaps:
        """The states of every member at every output time: leaves with leading axes `(B, T)`."""
        K, M = self.K, self.M
        y = jnp.moveaxis(ys, -1, 0)  # (B, T, D)
        B, n = y.shape[:2]
        leaves = [
            y[..., : K * K].reshape(B, n, K, K),
            y[..., K * K : K * K + K * M].reshape(B, n, K, M),
            jnp.broadcast_to(jnp.moveaxis(self.T, -1, 0)[:, None], (B, n, M, M)),
            y[..., K * K + K * M :],
            jnp.broadcast_to(self.v_star.T[:, None], (B, n, M)),
        ]
        template = Overlaps(Q=jnp.zeros((K, K)), R=jnp.zeros((K, M)), T=jnp.zeros((M, M)), v=jnp.zeros(K),
                            v_star=jnp.zeros(M))
        return jax.tree.unflatten(jax.tree.structure(template), leaves)


def _member_max_rms(x: Float[Array, "D B"]) -> Float[Array, ""]:
    """Error norm of the shared step-size controller: the largest per-member RMS norm, so each member meets
    its own `rtol`, `atol` exactly as a single solve would (an RMS over the whole batch would dilute one
    member's error by `1/sqrt(B)`)."""
    return jnp.max(jnp.sqrt(jnp.mean(jnp.square(x), axis=0)))


def _adaptive_batch(flat: _BatchFlat, y0, config, ts, integrator: str, rtol: float, atol: float,
                    max_steps: int, threshold):
    """Adaptive Runge-Kutta on the `(D, B)` system with one step size for the whole batch.

    The diffrax solver's `step` and dense interpolation and the diffrax `PIDController` (norm:
    [`_member_max_rms`][]) do the numerics; this loop does the per-member book-keeping. A member whose trial
    state is non-finite, or (on an accepted step) above `threshold`, is frozen at its last accepted state and
    marked diverged; from then on its error is masked out of the norm, so it cannot shrink the others' steps.
    """
    solver = _SOLVERS[integrator]()
    controller = diffrax.PIDController(rtol=rtol, atol=atol, norm=_member_max_rms)
    dtype = y0.dtype
    num_out, B = ts.shape[0], y0.shape[-1]
    t0 = jnp.asarray(0.0, dtype=dtype)
    t_end = jnp.where(ts[-1] > 0, ts[-1], jnp.asarray(1e-12, dtype=dtype))

    # members that start diverged (or with a non-finite T, v*) get a harmless stand-in state
    alive = ~flat.diverged(y0, threshold)
    alive = alive & jnp.all(jnp.isfinite(flat.T), axis=(0, 1)) & jnp.all(jnp.isfinite(flat.v_star), axis=0)
    y = jnp.where(alive[None], y0, 0.0)
    flat = _BatchFlat(T=jnp.where(alive[None, None], flat.T, jnp.eye(flat.M, dtype=dtype)[:, :, None]),
                      v_star=jnp.where(alive[None], flat.v_star, 0.0), K=flat.K, M=flat.M)
    args = (flat, config, threshold)

    error_order = solver.error_order(_TERM)
    tnext, controller_state = controller.init(_TERM, t0, t_end, y, None, args, solver.func, error_order)
    tnext = jnp.minimum(tnext, t_end)
    solver_state = solver.init(_TERM, t0, tnext, y, args)
    at_start = ts <= t0
    ys = jnp.where(at_start[:, None, None], y0[None], jnp.inf)  # (T, D, B); inf marks "not reached"
    count = jnp.zeros(B, dtype=int)
    init = (t0, tnext, y, solver_state, controller_state, alive, jnp.zeros(B, dtype=dtype), ys,
            jnp.sum(at_start), jnp.asarray(0), count)

    def cond(carry):
        t, _, _, _, _, alive, _, _, _, n, _ = carry
        return (t < t_end) & (n < max_steps) & jnp.any(alive)

    def body(carry):
        t, tn, y, solver_state, controller_state, alive, alpha_end, ys, j, n, count = carry
        y1, y_error, dense_info, new_solver_state, _ = solver.step(_TERM, t, tn, y, args, solver_state, False)
        finite = jnp.all(jnp.isfinite(y1), axis=0) & jnp.all(jnp.isfinite(y_error), axis=0)
        active = (alive & finite)[None]
        y1_masked = jnp.where(active, y1, y)
        keep, next_t0, next_t1, _, controller_state, _ = controller.adapt_step_size(
            t, tn, y, y1_masked, args, jnp.where(active, y_error, 0.0), error_order, controller_state)
        lost = keep & alive & (~finite | flat.diverged(y1_masked, threshold))
        survivors = alive & ~lost
        alpha_end = jnp.where(lost, t, alpha_end)
        y_new = jnp.where((keep & survivors)[None], y1, y)
        solver_state = jax.tree.map(lambda a, b: jnp.where(keep, a, b), new_solver_state, solver_state)

        interpolation = solver.interpolation_cls(t0=t, t1=tn, **dense_info)

        def save_cond(saving):
            j, _ = saving
            return keep & (j < num_out) & (ts[jnp.minimum(j, num_out - 1)] <= tn)

        def save_body(saving):
            j, ys = saving
            y_out = interpolation.evaluate(ts[j])
            return j + 1, ys.at[j].set(jnp.where(survivors[None], y_out, ys[j]))

        j, ys = jax.lax.while_loop(save_cond, save_body, (j, ys))
        return (next_t0, jnp.minimum(next_t1, t_end), y_new, solver_state, controller_state, survivors,
                alpha_end, ys, j, n + 1, count + alive.astype(count.dtype))

    t, _, _, _, _, alive, alpha_end, ys, _, _, count = jax.lax.while_loop(cond, body, init)
    finished = t >= t_end
    status = jnp.where(~alive, Status.DIVERGED, jnp.where(finished, Status.SUCCESS, Status.MAX_STEPS))
    alpha_end = jnp.where(alive, jnp.where(finished, ts[-1], t), alpha_end)
    return ys, status, alpha_end, count


def _solve_batch(states: Overlaps, config: SGDConfig, alphas: tuple[float, ...], integrator: str, dt: float,
                 rtol: float, atol: float, max_steps: int, threshold: Float[Array, ""]) -> ODESolution:
    """The body of [`solve_ode_batch`][] after validation (states and `config` fields batched, shape `(B, ...)`),
    compiled once per shapes, output grid and options."""
    a = np.asarray(alphas)
    dtype = states.Q.dtype
    B = states.v.shape[0]
    flat = _BatchFlat.of(states)
    y0 = flat.ravel(states)
    if integrator == "euler":
        record_steps = np.rint(a / dt).astype(np.int64)
        path, bads, bad_end, n_end = _euler(flat, y0, config, record_steps, dt, threshold)
        out_alphas = jnp.asarray(record_steps * dt, dtype=dtype)
        bads = bads.T  # (B, T)
        status = jnp.where(bad_end, Status.DIVERGED, Status.SUCCESS)
        alpha_end = n_end.astype(dtype) * dt
        num_steps = n_end
    else:
        out_alphas = jnp.asarray(a, dtype=dtype)
        ys, status, alpha_end, num_steps = _adaptive_batch(flat, y0, config, out_alphas, integrator, rtol, atol,
                                                           max_steps, threshold)
        path = flat.unravel_path(ys)
        reached = jnp.all(jnp.isfinite(path.Q), axis=(-2, -1))  # (B, T)
        bads = ~reached
        # outputs a member did not reach hold its last reached output (as in solve_ode)
        last = jnp.maximum(jnp.sum(reached, axis=1) - 1, 0)  # (B,)
        path = jax.tree.map(lambda x: jnp.where(_bcast(reached, x), x, x[jnp.arange(B), last][:, None]), path)
    eps = jax.vmap(jax.vmap(lambda s: generalisation_error(s, config.activation)))(path)
    return ODESolution(
        alphas=jnp.broadcast_to(out_alphas, (B,) + out_alphas.shape),
        states=path,
        eps_g=jnp.where(bads, jnp.nan, eps),
        status=jnp.asarray(status, dtype=jnp.int32),
        alpha_end=jnp.asarray(alpha_end, dtype=dtype),
        num_steps=jnp.asarray(num_steps),
    )


_solve_batch_jit = eqx.filter_jit(_solve_batch)

_STATE_NDIM = (("Q", 2), ("R", 2), ("T", 2), ("v", 1), ("v_star", 1))


def _batch_size(states0: Overlaps, configs: SGDConfig) -> int:
    """The common batch size of the batched leaves (those with one extra leading axis); `ValueError` naming
    the offending argument otherwise."""
    if not isinstance(states0, Overlaps):
        raise ValueError(f"states0 must be an Overlaps, got {type(states0).__name__}")
    if not isinstance(configs, SGDConfig):
        raise ValueError(f"configs must be an SGDConfig, got {type(configs).__name__}")
    sizes = {}
    for name, nd in _STATE_NDIM:
        x = getattr(states0, name)
        if x.ndim not in (nd, nd + 1):
            raise ValueError(f"states0.{name} must have {nd} axes, or {nd + 1} with a leading batch axis; "
                             f"got shape {x.shape}")
        if x.ndim == nd + 1:
            sizes[f"states0.{name}"] = x.shape[0]
    K, M = states0.v.shape[-1], states0.v_star.shape[-1]
    for name, want in (("Q", (K, K)), ("R", (K, M)), ("T", (M, M))):
        got = getattr(states0, name).shape[-2:]
        if got != want:
            raise ValueError(f"states0.{name} must end in shape {want} (K={K} from v, M={M} from v_star), "
                             f"got {got}")
    for name, _, _ in _CONFIG_RANGES:
        x = getattr(configs, name)
        if x.ndim > 1:
            raise ValueError(f"configs.{name} must be a scalar or have shape (B,), got shape {x.shape}")
        if x.ndim == 1:
            sizes[f"configs.{name}"] = x.shape[0]
    if not sizes:
        raise ValueError("solve_ode_batch needs a batch axis: give states0 leaves a leading batch axis or "
                         "configs fields shape (B,) (for one configuration use solve_ode)")
    first_name, B = next(iter(sizes.items()))
    for name, b in sizes.items():
        if b != B:
            raise ValueError(f"{name} has batch size {b}, but {first_name} has batch size {B}")
    return B


def solve_ode_batch(
    states0: Overlaps,
    configs: SGDConfig,
    alphas: Float[ArrayLike, " T"],
    *,
    integrator: str = "tsit5",
    dt: float = 0.01,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 100_000,
    divergence_threshold: float = 1e4,
    throw: bool = True,
) -> ODESolution:
    """[`solve_ode`][] for a batch of `B` configurations, integrated as one ODE system in `y` of shape
    `(D, B)` (docs/theory.md section 4; the same vector field, batch axis last).

    Adaptive solvers take one step size for the whole batch, controlled by the largest per-member RMS error
    (so every member meets `rtol`, `atol` as in its own solve, with steps no longer than its own solve's
    would need): one fused vector computation per stage instead of `B` lock-stepped `while` loops. Prefer it
    to `jax.vmap(solve_ode)` for many configurations of similar stiffness.

    **Arguments:**
    - `states0`: an [`Overlaps`][] whose leaves carry a leading batch axis `B` (e.g.
      `jax.tree.map(lambda *x: jnp.stack(x), *states)`); a leaf without it is shared by the whole batch.
    - `configs`: an [`SGDConfig`][] whose `eta`, `eta_v`, `sigma`, `weight_decay` have shape `(B,)` or are
      scalars (shared). `mode` and `activation` are shared.
    - `alphas`, `integrator`, `dt`, `rtol`, `atol`, `divergence_threshold`: as in [`solve_ode`][].
    - `max_steps`: step budget of the whole batch (shared steps); members unfinished when it runs out get
      `MAX_STEPS`.
    - `throw`: raise when any member's status is not `SUCCESS`; `False` returns a status per member.

    **Returns:** an [`ODESolution`][] whose leaves carry a leading batch axis `B` (as `jax.vmap(solve_ode)`
    would return). Per member: `status`; `alpha_end`, the time of its last accepted step before divergence
    (its final time on success); `num_steps`, the batch's steps (accepted and rejected) while it was live.
    A member that diverges (trial state non-finite, or above `divergence_threshold` on an accepted step) is
    frozen at its last accepted state and masked out of the step-size control; the others carry on
    unaffected, and its later outputs hold its last finite output with `eps_g = NaN`, as in `solve_ode`.
    Works under `jit` (with `alphas` static); no reverse-mode autodiff (use `solve_ode` for gradients).
    """
    a = _check_solver_options(alphas, integrator, dt, rtol, atol, max_steps)
    B = _batch_size(states0, configs)
    _check_config_values(configs, prefix="configs.")
    dtype = jnp.result_type(*(getattr(states0, name) for name, _ in _STATE_NDIM), float)
    # one strong dtype for every leaf (a weakly typed leaf, e.g. from jnp.full(M, 1.0), would recompile)
    states = jax.tree.unflatten(
        jax.tree.structure(states0),
        [jnp.broadcast_to(jnp.asarray(getattr(states0, name), dtype=dtype), (B,) + getattr(states0, name).shape[-nd:])
         for name, nd in _STATE_NDIM],
    )
    config = SGDConfig(**{name: jnp.broadcast_to(jnp.asarray(getattr(configs, name), dtype=dtype), (B,))
                          for name, _, _ in _CONFIG_RANGES}, mode=configs.mode, activation=configs.activation)
    solution = _solve_batch_jit(states, config, tuple(float(x) for x in a), integrator, float(dt), float(rtol),
                                float(atol), int(max_steps),
                                jnp.asarray(divergence_threshold, dtype=dtype))
    if throw:
        solution = eqx.error_if(
            solution,
            jnp.any(solution.status != Status.SUCCESS),
            "ODE integration failed for at least one batch member (diverged, or step budget exhausted); "
            "pass throw=False to receive a status code per member instead",
        )
    return solution


def _bcast(mask, x):
    return mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))


def _bcast_last(mask, x):
    """`mask` with leading unit axes, to broadcast against `x` whose trailing axes it matches."""
    return mask.reshape((1,) * (x.ndim - mask.ndim) + mask.shape)
