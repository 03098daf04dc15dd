"""A batch of configurations integrated as one ODE system (docs/theory.md section 4): [`solve_ode_batch`][].

The batch of `B` states is one array `y` of shape `(D, B)` with the batch axis last; the adaptive Runge-Kutta
loop takes one step size for the whole batch. The vector field is [`vector_field`][] itself, lifted over the
batch axis with `jax.vmap` (the formula exists once).
"""

from __future__ import annotations

from collections.abc import Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from ._config import CONFIG_RANGES, SGDConfig, check_config_values
from ._error import generalisation_error
from ._ode import (
    TERM,
    THROW_NOTE,
    ODESolution,
    bcast,
    cast_problem,
    check_solver_options,
    euler,
    guard_success,
    solver,
    working_dtype,
)
from ._overlaps import Overlaps
from ._status import Status
from ._vector_field import vector_field

__all__ = ["solve_ode_batch"]


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
        """[`vector_field`][] of every member (`config` fields of shape `(B,)`), lifted with `jax.vmap` over the
        trailing batch axis."""
        K, M = self.K, self.M

        def one(y1, T, v_star, eta, eta_v, sigma, weight_decay):
            state = Overlaps(Q=y1[: K * K].reshape(K, K), R=y1[K * K : K * K + K * M].reshape(K, M), T=T,
                             v=y1[K * K + K * M :], v_star=v_star)
            cfg = eqx.tree_at(lambda c: (c.eta, c.eta_v, c.sigma, c.weight_decay), config,
                              (eta, eta_v, sigma, weight_decay))
            d = vector_field(state, cfg)
            return jnp.concatenate([d.Q.reshape(-1), d.R.reshape(-1), d.v])

        return jax.vmap(one, in_axes=(-1, -1, -1, 0, 0, 0, 0), out_axes=-1)(
            y, self.T, self.v_star, config.eta, config.eta_v, config.sigma, config.weight_decay)

    @staticmethod
    def diverged(y: Float[Array, "D B"], threshold) -> Bool[Array, " B"]:
        """Non-finite, or `max |Q|, |R|, |v|` above `threshold`, per member."""
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
    rk = solver(integrator)
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

    error_order = rk.error_order(TERM)
    tnext, controller_state = controller.init(TERM, t0, t_end, y, None, args, rk.func, error_order)
    tnext = jnp.minimum(tnext, t_end)
    solver_state = rk.init(TERM, t0, tnext, y, args)
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
        y1, y_error, dense_info, new_solver_state, _ = rk.step(TERM, t, tn, y, args, solver_state, False)
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

        interpolation = rk.interpolation_cls(t0=t, t1=tn, **dense_info)

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
        path, bads, bad_end, n_end = euler(flat, y0, config, record_steps, dt, threshold)
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
        path = jax.tree.map(lambda x: jnp.where(bcast(reached, x), x, x[jnp.arange(B), last][:, None]), path)
    eps = jax.vmap(jax.vmap(lambda s: generalisation_error(s, config.activation)))(path)
    end = jax.tree.map(lambda x: x[:, -1], path)
    finite = (jnp.all(jnp.isfinite(end.Q), axis=(1, 2)) & jnp.all(jnp.isfinite(end.R), axis=(1, 2))
              & jnp.all(jnp.isfinite(end.v), axis=1) & jnp.all(jnp.isfinite(eps) | bads, axis=1))
    status = guard_success(status, finite, (num_steps > 0) | (a[-1] == 0))
    return ODESolution(
        alphas=jnp.broadcast_to(out_alphas, (B,) + out_alphas.shape),
        states=path,
        eps_g=jnp.where(bads, jnp.nan, eps),
        status=status,
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
    for name, _, _ in CONFIG_RANGES:
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
    alphas: Float[ArrayLike, " T"] | Sequence[float],
    *,
    integrator: str = "tsit5",
    dt: float = 0.01,
    rtol: float | None = None,
    atol: float | None = None,
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
    B = _batch_size(states0, configs)
    check_config_values(configs, prefix="configs.")
    dtype = working_dtype(states0)
    a, rtol, atol, max_steps, threshold = check_solver_options(alphas, integrator, dt, rtol, atol, max_steps,
                                                               divergence_threshold, dtype)
    # one strong dtype for every leaf (a weakly typed leaf, e.g. from jnp.full(M, 1.0), would recompile), and
    # every leaf batched
    states0, configs = cast_problem(states0, configs, dtype)
    states = jax.tree.unflatten(
        jax.tree.structure(states0),
        [jnp.broadcast_to(getattr(states0, name), (B,) + getattr(states0, name).shape[-nd:])
         for name, nd in _STATE_NDIM],
    )
    config = jax.tree.map(lambda x: jnp.broadcast_to(x, (B,)), configs)
    solution = _solve_batch_jit(states, config, tuple(float(x) for x in a), integrator, float(dt), rtol, atol,
                                max_steps, jnp.asarray(threshold, dtype=dtype))
    if throw:
        solution = eqx.error_if(
            solution,
            jnp.any(solution.status != Status.SUCCESS),
            "ODE integration failed for at least one batch member (diverged, or step budget exhausted); "
            + THROW_NOTE,
        )
    return solution


