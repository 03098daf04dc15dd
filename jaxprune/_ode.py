"""Integration of the order-parameter ODEs of online SGD from one initial state (docs/theory.md section 4).

Integrators, as diffrax solver objects or their names: `diffrax.Euler()` / `"euler"` (explicit Euler with fixed
`dt`, step for step what the reference C++ tool does) and the adaptive diffrax Runge-Kutta solvers
(`diffrax.Tsit5()` / `"tsit5"`, `"dopri5"`, `"dopri8"`, `"bosh3"`). One solve is one program of arrays in and
arrays out, compiled once per shape and options and, with the compilation cache on, kept on disk by the
program store (`_program_store`), so that a new process neither traces nor compiles it again. The vector
field is [`vector_field`][]; a batch of configurations is `jax.vmap` (or `jax.lax.map`) of [`solve_ode`][], each
member with its own step sizes.

Dtypes: the state's floating dtype is the working dtype (float32 in, float32 out, also with x64 on); the
configuration is cast to it, and the default tolerances follow it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ._checks import check_choice, check_float, check_int
from ._config import SGDConfig
from ._error import generalisation_error
from ._overlaps import Overlaps
from ._program_store import call_stored
from ._status import Status
from ._vector_field import vector_field

__all__ = ["INTEGRATORS", "ODESolution", "alpha_grid", "solve_ode", "default_tolerances", "working_dtype"]

INTEGRATORS = ("euler", "tsit5", "dopri5", "dopri8", "bosh3")

#: the adaptive integrators' names and their diffrax classes (diffrax is imported when a solve is first traced)
_SOLVERS = {"tsit5": "Tsit5", "dopri5": "Dopri5", "dopri8": "Dopri8", "bosh3": "Bosh3"}

#: default `(rtol, atol)` of the adaptive solvers per working dtype: float64 as before; float32 a thousand
#: times looser, above its rounding level (a float64 tolerance in float32 cannot be met and only shrinks steps).
_TOLERANCES = {jnp.dtype(jnp.float64): (1e-8, 1e-10), jnp.dtype(jnp.float32): (1e-5, 1e-7),
               jnp.dtype(jnp.float16): (1e-2, 1e-4), jnp.dtype(jnp.bfloat16): (1e-2, 1e-4)}


def working_dtype(state: Overlaps) -> jnp.dtype:
    """The one floating dtype of a solve: the promoted dtype of the state's leaves (integers give the
    default float); `ValueError` naming the dtype for complex or non-numeric leaves."""
    dtypes = [jnp.result_type(getattr(state, k)) for k in ("Q", "R", "T", "v", "v_star")]
    for name, dt in zip(("Q", "R", "T", "v", "v_star"), dtypes):
        if not (jnp.issubdtype(dt, jnp.floating) or jnp.issubdtype(dt, jnp.integer) or dt == jnp.bool_):
            raise ValueError(f"state0.{name} must hold real floating-point numbers (float32 or float64), got dtype {dt}")
    floats = [dt for dt in dtypes if jnp.issubdtype(dt, jnp.floating)]
    with jax.numpy_dtype_promotion("standard"):  # the one deliberate promotion (also under strict promotion)
        return jnp.dtype(jnp.result_type(*floats)) if floats else jnp.dtype(jnp.result_type(float))


def cast_problem(state: Overlaps, config: SGDConfig, dtype) -> tuple[Overlaps, SGDConfig]:
    """`state` and the array fields of `config` in `dtype` (the mode and activation are static)."""
    return jax.tree.map(lambda x: jnp.asarray(x, dtype), state), jax.tree.map(lambda x: jnp.asarray(x, dtype), config)


def default_tolerances(dtype) -> tuple[float, float]:
    """`(rtol, atol)` used when `solve_ode` gets `None`: `(1e-8, 1e-10)` in float64, `(1e-5, 1e-7)` in float32."""
    return _TOLERANCES.get(jnp.dtype(dtype), _TOLERANCES[jnp.dtype(jnp.float32)])


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
        return diverged(y, threshold)


def diverged(y: Float[Array, " D"], threshold) -> Bool[Array, ""]:
    """Non-finite, or `max |Q|, |R|, |v|` above `threshold` (on the flat state `y`)."""
    big = jnp.max(jnp.abs(y))
    return jnp.logical_or(~jnp.all(jnp.isfinite(y)), big > threshold)


class ODESolution(eqx.Module):
    """Result of [`solve_ode`][] (under `vmap`, every field carries a leading batch axis).

    **Fields:**

    - `alphas: Float[T]`: output times (for Euler, the requested times rounded to whole steps).
    - `states`: an [`Overlaps`][] whose leaves carry a leading time axis `T`.
    - `eps_g: Float[T]`: noise-free generalisation error at each output time (NaN after a divergence).
    - `status: Int[]`: a [`Status`][] code: `SUCCESS` (every output reached, finite, with at least one step
      when the final time is positive), `DIVERGED` (overlaps beyond the threshold or non-finite), `MAX_STEPS`.
    - `alpha_end: Float[]`: last time reached without divergence.
    - `num_steps: Int[]`: integrator steps taken (accepted and rejected, for adaptive solvers).
    """

    alphas: Float[Array, "*batch T"]
    states: Overlaps
    eps_g: Float[Array, "*batch T"]
    status: Int[Array, "*batch"]
    alpha_end: Float[Array, "*batch"]
    num_steps: Int[Array, "*batch"]

    @property
    def final(self) -> Overlaps:
        """The state at the last output time."""
        return jax.tree.map(lambda x: x[-1], self.states)


def alpha_grid(
    final: float, num: int = 100, *, spacing: Literal["log", "linear"] = "log", first: float | None = None
) -> np.ndarray:
    """Output times for [`solve_ode`][]: `0`, then `num - 1` log-spaced times from `first` to `final`, or `num`
    linearly spaced times from `0` to `final`.

    **Arguments:**

    - `final`: the last time `alpha > 0` (SGD steps / N).
    - `num`: the number of times, `>= 2`.
    - `spacing`: `"log"` (default; resolves the early plateau and the late decay alike) or `"linear"`.
    - `first`: the first positive time of a log grid, in `(0, final)` (default `final / 10^4`).

    **Returns:** a float64 NumPy vector of shape `(num,)`, starting at `0` and ending at `final`.

    **Example:** `jp.alpha_grid(1000.0, 5)` is `[0, 0.1, 2.154, 46.42, 1000]` (`0`, then 4 log-spaced times
    from `0.1` to `1000`).
    """
    final = check_float("final time alpha", final, 0.0, lo_open=True)
    num = check_int("num", num, 2)
    check_choice("spacing", spacing, ("log", "linear"))
    if spacing == "linear":
        return np.linspace(0.0, final, num)
    first = final * 1e-4 if first is None else check_float("first", first, 0.0, final, lo_open=True, hi_open=True)
    return np.concatenate([[0.0], np.geomspace(first, final, num - 1)])


def check_alphas(alphas, name: str = "alphas") -> np.ndarray:
    """The output times as a float64 NumPy vector: non-empty, finite, `>= 0`, non-decreasing."""
    a = np.asarray(alphas, dtype=float)
    if a.ndim != 1 or a.size < 1:
        raise ValueError(f"{name} must be a non-empty 1-d array of times, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(np.diff(a) < 0):
        raise ValueError(f"{name} must be finite, >= 0 and non-decreasing, got {a.tolist()}")
    return a


def check_solver_options(alphas, integrator, dt, rtol, atol, max_steps, divergence_threshold, dtype):
    """Validate the options of [`solve_ode`][] (and of the fixed points' ODE warm-up): returns the output grid and
    the tolerances (defaults from `dtype`). An Euler step `dt` that takes no step to the final time is refused."""
    a = check_alphas(alphas)
    check_choice("integrator", integrator, INTEGRATORS)
    dt = check_float("dt", dt, 0.0, lo_open=True)
    if integrator == "euler" and a[-1] > 0 and np.rint(a[-1] / dt) < 1:
        raise ValueError(f"dt must be in (0, {2 * a[-1]:g}) so that Euler takes at least one step to the final "
                         f"time alpha = {a[-1]:g}, got {dt:g}")
    d_rtol, d_atol = default_tolerances(dtype)
    rtol = d_rtol if rtol is None else check_float("rtol", rtol, 0.0, lo_open=True)
    atol = d_atol if atol is None else check_float("atol", atol, 0.0, lo_open=True)
    max_steps = check_int("max_steps", max_steps, 1)
    divergence_threshold = check_float("divergence_threshold", divergence_threshold, 0.0, lo_open=True)
    return a, rtol, atol, max_steps, divergence_threshold


def euler(flat, y0, config, record_steps: np.ndarray, dt: float, threshold: float | Float[Array, ""]):
    """Explicit Euler, `y <- y + dt f(y)`, recording after `record_steps[j]` steps (any flat layout `flat`
    with `field` and `diverged`).

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


# Module-level term and event: `diffeqsolve` is jitted on its static arguments (these functions included),
# so a fresh lambda per `solve_ode` call would recompile it every time. Everything that varies (the flat
# layout's T, v*, the configuration, the divergence threshold) travels in `args`.
def _diffrax_field(t, y, args):
    flat, config, _ = args
    return flat.field(y, config)


def _diffrax_diverged(t, y, args, **kwargs):
    return diverged(y, args[2])


@functools.cache
def _term_and_event():
    import diffrax  # noqa: PLC0415  (imported on first use: a process that loads a stored program never needs it)

    return diffrax.ODETerm(_diffrax_field), diffrax.Event(_diffrax_diverged)


def __getattr__(name: str):
    if name == "TERM":  # the ODE term
        return _term_and_event()[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _unroll(length: int) -> int:
    """Unroll factor of the Euler step loop: a few steps per loop iteration amortise the loop's overhead."""
    for u in (4, 2):
        if length % u == 0:
            return u
    return 1


def solver(integrator) -> Any:
    """The diffrax solver of an adaptive integrator: its name (`"tsit5"`, `"dopri5"`, `"dopri8"`, `"bosh3"`) or
    a `diffrax.AbstractAdaptiveSolver` instance, returned as is. (`"euler"` is not a diffrax solver here.)"""
    import diffrax  # noqa: PLC0415

    if isinstance(integrator, str):
        return getattr(diffrax, _SOLVERS[integrator])()
    return integrator


def integrator_name(integrator) -> str:
    """`"euler"` for explicit Euler (the string, or a `diffrax.Euler()` instance); otherwise the adaptive
    solver's name (a string as given, or the diffrax class name in lower case). `ValueError` naming
    `integrator` and the allowed choices for anything else."""
    if isinstance(integrator, str):
        check_choice("integrator", integrator, INTEGRATORS)
        return integrator
    import diffrax  # noqa: PLC0415

    if isinstance(integrator, diffrax.Euler):
        return "euler"
    if isinstance(integrator, diffrax.AbstractAdaptiveSolver) and not isinstance(
            integrator, diffrax.AbstractImplicitSolver):
        return type(integrator).__name__.lower()
    raise ValueError(f"integrator must be one of {INTEGRATORS}, diffrax.Euler() or an explicit adaptive diffrax "
                     f"solver instance (diffrax.Tsit5(), ...), got {integrator!r}")


class _eqx_errors_as_nan:
    """While tracing the adaptive solve: equinox runtime checks (`eqx.error_if`) become NaN-filling `cond`s
    instead of host callbacks ([`equinox` `EQX_ON_ERROR=nan`](https://docs.kidger.site/equinox/api/errors/)).

    diffrax checks `SaveAt(ts)` (increasing, inside `[t0, t1]`) with `eqx.error_if`, which in equinox's default
    mode is a host callback, and JAX never caches, nor can `jax.export` serialise, a program with a host
    callback: every process would trace, lower and compile the solve again (about 9 s on the 2-core machine).
    [`check_alphas`][] has already checked the output times on the host (they are static), so the run-time
    check can never fire; no other check of the solve is affected (`throw=False` is passed to diffrax, and
    `solve_ode`'s own `throw` check is added outside). equinox reads the mode from a module global when an
    error check is traced, so this sets that global for the duration of the trace and restores it; if equinox
    changes, this does nothing and the program keeps its callback (still correct, only not cacheable;
    tests/test_program_store.py checks that the stored solve has no callback). Not thread-safe while tracing.
    """

    def __enter__(self):
        try:
            import equinox._errors as errors  # noqa: PLC0415
        except ImportError:  # pragma: no cover - a future equinox
            self._module = None
            return self
        self._module = errors if hasattr(errors, "EQX_ON_ERROR") else None
        if self._module is not None:
            self._old = errors.EQX_ON_ERROR
            errors.EQX_ON_ERROR = "nan"
        return self

    def __exit__(self, *exc):
        if self._module is not None:
            self._module.EQX_ON_ERROR = self._old
        return False


class _SolveOptions(eqx.Module):
    """Everything static about one solve (the key of its compiled and stored program)."""

    integrator: Any = eqx.field(static=True)  # "euler", an adaptive solver's name or a diffrax solver instance
    times: tuple = eqx.field(static=True)  # output times (adaptive) or step counts (Euler)
    dt: float = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    threshold: float = eqx.field(static=True)
    K: int = eqx.field(static=True)
    M: int = eqx.field(static=True)
    mode: str = eqx.field(static=True)
    activation: Any = eqx.field(static=True)


def _solve_program(opts: _SolveOptions, Q, R, T, v, v_star, eta, eta_v, sigma, weight_decay):
    """One solve as one program of arrays in and arrays out (so it can be compiled once and stored):
    returns `(alphas, Q_path, R_path, T_path, v_path, v_star_path, eps_g, status, alpha_end, num_steps)`."""
    state0 = Overlaps(Q=Q, R=R, T=T, v=v, v_star=v_star)
    config = SGDConfig(eta=eta, eta_v=eta_v, sigma=sigma, weight_decay=weight_decay, mode=opts.mode,
                       activation=opts.activation)
    dtype = Q.dtype
    config = jax.tree.map(lambda x: jnp.asarray(x, dtype), config)  # SGDConfig's converter makes default floats
    flat = _Flat.of(state0)
    last_alpha = opts.times[-1] * (opts.dt if opts.integrator == "euler" else 1.0)
    if opts.integrator == "euler":
        record_steps = np.asarray(opts.times, dtype=np.int64)
        states, bads, bad_end, n_end = euler(flat, flat.ravel(state0), config, record_steps, opts.dt, opts.threshold)
        out_alphas = jnp.asarray(record_steps * opts.dt, dtype=dtype)
        status = jnp.where(bad_end, Status.DIVERGED, Status.SUCCESS)
        alpha_end = n_end.astype(dtype) * opts.dt
        num_steps = n_end
    else:
        import diffrax  # noqa: PLC0415

        term, event = _term_and_event()
        a = np.asarray(opts.times, dtype=float)
        with _eqx_errors_as_nan():
            sol = diffrax.diffeqsolve(
                term,
                solver(opts.integrator),
                t0=jnp.asarray(0.0, dtype),
                t1=jnp.asarray(float(a[-1]) if a[-1] > 0 else 1e-12, dtype),
                dt0=None,
                y0=flat.ravel(state0),
                args=(flat, config, jnp.asarray(opts.threshold, dtype=dtype)),
                saveat=diffrax.SaveAt(ts=jnp.asarray(a, dtype=dtype)),
                stepsize_controller=diffrax.PIDController(rtol=opts.rtol, atol=opts.atol),
                max_steps=opts.max_steps,
                event=event,
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
        states = jax.tree.map(lambda x: jnp.where(bcast(reached, x), x, x[last]), states)
        out_alphas = jnp.asarray(a, dtype=dtype)
        alpha_end = jnp.where(status == Status.SUCCESS, out_alphas[-1], sol.ts[last] if sol.ts is not None else 0.0)
        num_steps = sol.stats["num_steps"]
    eps = jax.vmap(lambda s: generalisation_error(s, config.activation))(states)
    finite = jnp.all(jnp.isfinite(flat.ravel(jax.tree.map(lambda x: x[-1], states)))) & jnp.all(
        jnp.isfinite(eps) | bads)
    status = guard_success(status, finite, (num_steps > 0) | (last_alpha == 0))
    return (out_alphas, states.Q, states.R, states.T, states.v, states.v_star, jnp.where(bads, jnp.nan, eps),
            status, jnp.asarray(alpha_end, dtype=dtype), jnp.asarray(num_steps))


def guard_success(status, finite, took_step):
    """No solve reports `SUCCESS` unless its outputs are finite (else `DIVERGED`) and it took at least one step
    when it had to move (else `INVALID`)."""
    status = jnp.where((status == Status.SUCCESS) & ~finite, Status.DIVERGED, status)
    return jnp.where((status == Status.SUCCESS) & ~took_step, Status.INVALID, status).astype(jnp.int32)


THROW_NOTE = ("pass throw=False to receive a status code instead (under a plain jax.jit JAX reports this "
              "error as an INTERNAL CpuCallback error ending in this message; wrap the outer function in "
              "equinox.filter_jit for a clean EquinoxRuntimeError)")


def solve_ode(
    state0: Overlaps,
    config: SGDConfig,
    alphas: Float[ArrayLike, " T"] | Sequence[float],
    *,
    integrator: Any = "tsit5",
    dt: float = 0.01,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 100_000,
    divergence_threshold: float = 1e4,
    throw: bool = True,
) -> ODESolution:
    """Integrate the order-parameter ODEs of online SGD from `state0` at `alpha = 0` (docs/theory.md section 4):
    `d(Q, R, v)/d(alpha) = f(Q, R, v; T, v*, config)` with `alpha` = SGD steps / N.

    **Arguments:**

    - `state0`: initial [`Overlaps`][] at `alpha = 0` (`Q: (K, K)`, `R: (K, M)`, `T: (M, M)`, `v: (K,)`,
      `v_star: (M,)`). Its floating dtype is the working dtype (the configuration is cast to it; float32 stays
      float32 with x64 on).
    - `config`: [`SGDConfig`][] (learning rates, noise, weight decay, mode, activation).
    - `alphas`: output times, shape `(T,)` (static: a NumPy array or list; `>= 0`, non-decreasing);
      [`alpha_grid`][] makes a log-spaced grid.
    - `integrator`: which integrator, as a diffrax solver object or its name: `diffrax.Euler()` or `"euler"`
      (explicit Euler with fixed step `dt`, step for step what the reference C++ tool does; output times
      rounded to whole steps; a `dt` that takes no step to the final time is a `ValueError`), or an explicit
      adaptive diffrax solver, `diffrax.Tsit5()` (default, `"tsit5"`), `diffrax.Dopri5()`, `diffrax.Dopri8()`,
      `diffrax.Bosh3()` or their lower-case names, with a PID step-size controller.
    - `dt`: the Euler step (ignored by adaptive solvers).
    - `rtol`, `atol`: the adaptive solvers' tolerances; default from the dtype: `1e-8, 1e-10` in float64,
      `1e-5, 1e-7` in float32.
    - `max_steps`: the adaptive solvers' step budget (a run that exhausts it ends with `MAX_STEPS`).
    - `divergence_threshold`: a run whose `|Q|`, `|R|` or `|v|` exceeds this, or becomes non-finite, stops
      with status `DIVERGED`; later outputs hold the last finite state and `eps_g = NaN`. (Linear students
      blow up exponentially past the critical learning rate; erf students saturate and their norms grow
      without bound but slowly, so the threshold decides when such a run counts as diverged.)
    - `throw`: raise when the status is not `SUCCESS`; pass `False` under `vmap` to get a status per
      configuration. Called eagerly or under `equinox.filter_jit` the error is an `EquinoxRuntimeError` with
      the reason; under a plain `jax.jit` JAX wraps the same reason in an `INTERNAL: CpuCallback error`
      (equinox can only unwrap it at a `filter_jit` boundary), so use `filter_jit` or `throw=False` there.

    **Returns:** an [`ODESolution`][]: `alphas (T,)`, `states` (leaves with a leading time axis), `eps_g (T,)`,
    `status`, `alpha_end`, `num_steps`. `SUCCESS` only if every output is finite and, for a positive final
    time, at least one step was taken. Works under `jit` (with `alphas` static), `vmap` over states and
    configurations, and `grad` (adaptive solvers; Euler when the output grid is uniform). Called with concrete
    arrays while the compilation cache is on ([`enable_compile_cache`][]), the compiled program is also kept
    on disk, so a new process skips tracing it.

    **Example:**
    ```python
    sol = jp.solve_ode(jp.Overlaps.reference(K=6, M=2), jp.SGDConfig(eta=0.5), jp.alpha_grid(1000.0, 60))
    sol.eps_g[-1]  # the generalisation error at alpha = 1000
    ```
    """
    dtype = working_dtype(state0)
    name = integrator_name(integrator)
    a, rtol, atol, max_steps, threshold = check_solver_options(alphas, name if name == "euler" else "tsit5", dt,
                                                               rtol, atol, max_steps, divergence_threshold, dtype)
    state0, config = cast_problem(state0, config, dtype)
    if name == "euler":
        times, method = tuple(int(n) for n in np.rint(a / dt).astype(np.int64)), "euler"
    else:
        times, method = tuple(float(t) for t in a), integrator  # a name stays a name: no diffrax import here
    opts = _SolveOptions(integrator=method, times=times, dt=float(dt), rtol=float(rtol), atol=float(atol),
                         max_steps=int(max_steps), threshold=float(threshold), K=state0.K, M=state0.M,
                         mode=config.mode, activation=config.activation)
    out = call_stored(_solve_program, opts, state0.Q, state0.R, state0.T, state0.v, state0.v_star, config.eta,
                      config.eta_v, config.sigma, config.weight_decay)
    out_alphas, Q, R, T, v, v_star, eps, status, alpha_end, num_steps = out
    # leaves with a leading time axis (not a valid single state, so not through Overlaps' shape check)
    states = jax.tree.unflatten(jax.tree.structure(state0), [Q, R, T, v, v_star])
    solution = ODESolution(alphas=out_alphas, states=states, eps_g=eps, status=status, alpha_end=alpha_end,
                           num_steps=num_steps)
    if throw:
        solution = eqx.error_if(
            solution,
            solution.status != Status.SUCCESS,
            "ODE integration failed (diverged: overlaps unbounded or non-finite, or step budget exhausted); "
            + THROW_NOTE,
        )
    return solution


def bcast(mask, x):
    """`mask` with trailing unit axes, to broadcast against `x` whose leading axes it matches."""
    return mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))


def _bcast_last(mask, x):
    """`mask` with leading unit axes, to broadcast against `x` whose trailing axes it matches."""
    return mask.reshape((1,) * (x.ndim - mask.ndim) + mask.shape)
