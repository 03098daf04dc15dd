"""ODEs of online SGD for the order parameters, and their integration (THEORY.md section 4).

Time is `alpha = steps / N`. With `u = (v, -v*)` the error signal is `Delta = sum_c u_c g(c) - sigma zeta`, so

- `dR_in/dalpha = -eta v_i sum_c u_c I3(i, n, c) - eta lambda R_in`
- `dQ_ik/dalpha = -eta v_i sum_c u_c I3(i, k, c) + (i <-> k) - 2 eta lambda Q_ik
  + eta^2 v_i v_k [ sum_cd u_c u_d I4(i, k, c, d) + sigma^2 J2(i, k) ]`
- `dv_i/dalpha = -eta_v sum_c u_c I2(i, c)` (two-layer mode; zero for the soft committee machine),

which is THEORY.md section 4 with the teacher and student sums merged (Saad & Solla 1995; Goldt et al. 2019).
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
from ._error import generalisation_error
from ._integrals import i2_block, i3_block, i4_pair_sums, j2_block
from ._overlaps import Overlaps
from ._status import Status

__all__ = [
    "SGDConfig",
    "ODESolution",
    "vector_field",
    "solve_ode",
    "alpha_grid",
    "INTEGRATORS",
]

INTEGRATORS = ("euler", "tsit5", "dopri5", "dopri8", "bosh3")
_MODES = ("scm", "two-layer")


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _as_float_array(x):
    return jnp.asarray(x, dtype=jnp.result_type(float))


class SGDConfig(eqx.Module):
    """Hyperparameters of online SGD (kept apart from the state; all are arrays, so changing them does not
    recompile).

    **Fields:**
    - `eta`: first-layer learning rate (> 0).
    - `eta_v`: second-layer learning rate (>= 0; used in two-layer mode only).
    - `sigma`: label-noise standard deviation (>= 0).
    - `weight_decay`: `lambda >= 0`, the per-step decay `w <- w - (eta lambda / N) w`.
    - `mode`: `"scm"` (soft committee machine, `v` fixed) or `"two-layer"` (`v` trained). Static.
    - `activation`: [`Erf`][] (default) or [`Linear`][]. Static.
    """

    eta: Float[Array, ""] = eqx.field(converter=_as_float_array)
    eta_v: Float[Array, ""] = eqx.field(converter=_as_float_array, default=0.0)
    sigma: Float[Array, ""] = eqx.field(converter=_as_float_array, default=0.0)
    weight_decay: Float[Array, ""] = eqx.field(converter=_as_float_array, default=0.0)
    mode: str = eqx.field(static=True, default="scm")
    activation: AbstractActivation = eqx.field(static=True, default=Erf(), converter=get_activation)

    def __check_init__(self):
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {self.mode!r}")
        for name, lo, strict in (("eta", 0.0, True), ("eta_v", 0.0, False), ("sigma", 0.0, False),
                                 ("weight_decay", 0.0, False)):
            x = getattr(self, name)
            if _is_concrete(x):
                arr = np.asarray(x)
                if not np.all(np.isfinite(arr)):
                    raise ValueError(f"{name} must be finite, got {arr}")
                if strict and np.any(arr <= lo):
                    raise ValueError(f"{name} must be > {lo} (allowed range ({lo}, inf)), got {arr}")
                if np.any(arr < lo):
                    raise ValueError(f"{name} must be >= {lo} (allowed range [{lo}, inf)), got {arr}")


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
        bad = bad | _diverged(new, threshold)
        return jnp.where(bad, y, new), bad, n + jnp.where(bad, 0, 1)

    counts = np.diff(np.concatenate([[0], record_steps])).astype(np.int64)
    init = (y0, _diverged(y0, threshold), jnp.asarray(0))
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
    a = _check_alphas(alphas)
    if integrator not in INTEGRATORS:
        raise ValueError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt must be positive and finite, got {dt}")
    if rtol <= 0 or atol <= 0:
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
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


def _bcast(mask, x):
    return mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
