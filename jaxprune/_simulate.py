"""Finite-N simulation of online SGD in the teacher-student model (docs/theory.md sections 1 and 4).

One fresh input `x ~ N(0, I_N)` per step, `Delta = phi(x) - y`, `y = sum_n v*_n g(nu_n) + sigma zeta`, and the
simultaneous update (values before the step on the right-hand sides)

- `w_k <- w_k - (eta / sqrt N) v_k Delta g'(lambda_k) x - (eta lambda / N) w_k`,
- `v_k <- v_k - (eta_v / N) g(lambda_k) Delta` (two-layer mode; the soft committee machine keeps `v` fixed),

with `lambda_k = w_k.x / sqrt N`, `nu_n = w*_n.x / sqrt N` and `lambda` the weight decay of [`SGDConfig`][].
Order parameters are read off the weights by [`overlaps_from_weights`][] (the one place where weights become
overlaps), so the recorded trajectory can be compared with [`solve_ode`][] at `alpha = steps / N`. The networks
([`Teacher`][], [`Student`][]), their constructors, outputs and fresh-input test MSE are `jaxprune._networks`.

Implementation: an outer `lax.scan` over record intervals, a middle one over blocks of `block` steps whose
inputs (and the teacher's labels) are drawn and computed at once, and an inner `lax.scan` over the steps of a
block. Inputs and label noise are always drawn in float32 and then cast to the working dtype, so float32 and
float64 runs see the same samples. Jittable (static `steps`, `record_every`, `test_samples`, `block`) and
`vmap`-able over keys: see [`simulate_seeds`][].
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, Key, PRNGKeyArray, UInt32

from ._activations import AbstractActivation
from ._checks import check_choice, check_float, check_int, is_concrete
from ._config import SGDConfig
from ._error import generalisation_error
from ._networks import Student, Teacher, as_key, float_dtype, noisy_test_mse, teacher_labels
from ._networks import fresh_test_mse as fresh_test_mse
from ._networks import init_student as init_student
from ._networks import make_teacher as make_teacher
from ._overlaps import Overlaps, overlaps_from_weights
from ._status import Status

__all__ = [
    "Teacher",
    "Student",
    "SimulationResult",
    "make_teacher",
    "init_student",
    "sgd_step",
    "simulate",
    "simulate_seeds",
    "fresh_test_mse",
    "PRNG_IMPLS",
]

#: PRNG implementations accepted by `simulate(..., prng=...)` (None keeps the key's own implementation).
PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
_DEFAULT_BLOCK = 256


class SimulationResult(eqx.Module):
    """Result of [`simulate`][]. With `R = steps / record_every + 1` records (the initial state included):

    **Fields:**

    - `alphas`: `Float[Array, " R"]`, `steps done / N` at each record (`0, record_every / N, ..., steps / N`).
    - `states`: an [`Overlaps`][] whose leaves carry the leading record axis `R` (`Q: Float[Array, "R K K"]`,
      ...; from [`overlaps_from_weights`][]).
    - `eps_g`: `Float[Array, " R"]`, exact noise-free generalisation error `1/2 E[(phi - y_clean)^2]` of the
      recorded overlaps ([`generalisation_error`][]); NaN from the record where the run diverged.
    - `test_mse`: `Float[Array, " R"]`, empirical NOISY test MSE `mean (phi - y_clean - sigma zeta)^2` on
      `test_samples` fresh held-out inputs per record (the estimator of [`fresh_test_mse`][]), comparable to
      `2 eps_g + sigma^2`; NaN when `test_samples = 0`.
    - `final`: the [`Student`][] after the last step (the last finite recorded one if the run diverged).
    - `status`: `Int[Array, ""]`, `Status.SUCCESS` or `Status.DIVERGED` (weights non-finite or overlaps beyond
      the divergence threshold at some record).

    From [`simulate_seeds`][] every field carries a further leading seed axis `S`.
    """

    alphas: Float[Array, " R"]
    states: Overlaps
    eps_g: Float[Array, " R"]
    test_mse: Float[Array, " R"]
    final: Student
    status: Int[Array, ""]


# --------------------------------------------------------------------------------------------- the SGD step


def _hyper(config: SGDConfig, N: int, dtype):
    """The per-step constants in the working dtype (no silent promotion of float32 weights)."""
    eta = jnp.asarray(config.eta, dtype)
    return dict(
        eta=eta,
        eta_v_over_n=jnp.asarray(config.eta_v, dtype) / N,
        decay=1.0 - eta * jnp.asarray(config.weight_decay, dtype) / N,
        sigma=jnp.asarray(config.sigma, dtype),
    )


def _student_update(
    act: AbstractActivation, two_layer: bool, h, w: Array, v: Array, xs: Array, y: Array
) -> tuple[Array, Array]:
    """One update with `xs = x / sqrt N` and the noisy label `y` (see the module docstring)."""
    lam = jnp.sum(w * xs[None, :], axis=-1)  # elementwise + reduce: stays fast under vmap (no batched dot)
    g = act(lam)
    delta = jnp.sum(g * v) - y
    coef = h["eta"] * v * delta * act.derivative(lam).astype(lam.dtype)
    w_new = h["decay"] * w - coef[:, None] * xs[None, :]
    v_new = v - h["eta_v_over_n"] * g * delta if two_layer else v
    return w_new, v_new


def sgd_step(
    teacher: Teacher,
    student: Student,
    config: SGDConfig,
    x: Float[ArrayLike, " N"],
    zeta: Float[ArrayLike, ""] = 0.0,
) -> Student:
    """One online SGD step on the input `x` with label noise `zeta` (module docstring), in the student's dtype."""
    dtype = student.w.dtype
    N = student.N
    h = _hyper(config, N, dtype)
    xs = jnp.asarray(x, dtype) / math.sqrt(N)
    y = teacher_labels(config.activation, teacher, xs[None, :], jnp.asarray(zeta, dtype)[None], h["sigma"])[0]
    w, v = _student_update(config.activation, config.mode == "two-layer", h, student.w, student.v, xs, y)
    return Student(w=w, v=v)


# --------------------------------------------------------------------------------------------- simulation


def _block_plan(record_every: int, block: int) -> tuple[int, int, int]:
    """`(b, full, rem)`: a record interval is `full` blocks of `b` steps then one block of `rem` steps."""
    b = min(block, record_every)
    full, rem = divmod(record_every, b)
    return b, full, rem


def _draw(key, b: int, N: int, dtype):
    """Inputs `x / sqrt N` and label noise for `b` steps, drawn in float32 then cast to `dtype`."""
    kx, kz = jax.random.split(key)
    x = jax.random.normal(kx, (b, N), dtype=jnp.float32).astype(dtype) / math.sqrt(N)
    z = jax.random.normal(kz, (b,), dtype=jnp.float32).astype(dtype)
    return x, z


def _split_key(key, steps: int, record_every: int, block: int, test_samples: int, prng):
    """Keys of the run: per record interval, one per block; per record, one for the test set."""
    key = as_key(key)
    if prng is not None:
        data_shape = jax.random.key_data(jax.random.key(0, impl=prng)).shape
        key = jax.random.wrap_key_data(jax.random.bits(key, data_shape, jnp.uint32), impl=prng)
    k_train, k_test = jax.random.split(key)
    n_rec = steps // record_every
    _, full, rem = _block_plan(record_every, block)
    block_keys = jax.random.split(k_train, n_rec * (full + (rem > 0))).reshape(n_rec, full + (rem > 0))
    test_keys = jax.random.split(k_test, n_rec + 1)
    return block_keys, test_keys


def _input_stream(key, N: int, *, steps: int, record_every: int, block: int = _DEFAULT_BLOCK, prng=None,
                  dtype=jnp.float32):
    """All scaled inputs `x / sqrt N` `(steps, N)` and noises `(steps,)` that [`simulate`][] uses (for tests)."""
    block_keys, _ = _split_key(key, steps, record_every, block, 0, prng)
    b, full, rem = _block_plan(record_every, block)
    xs, zs = [], []
    for i in range(block_keys.shape[0]):
        for j in range(block_keys.shape[1]):
            x, z = _draw(block_keys[i, j], b if j < full else rem, N, dtype)
            xs.append(x)
            zs.append(z)
    return jnp.concatenate(xs), jnp.concatenate(zs)


def _diverged(w, v, state: Overlaps, threshold):
    finite = jnp.all(jnp.isfinite(w)) & jnp.all(jnp.isfinite(v))
    big = jnp.maximum(jnp.max(jnp.abs(state.Q)), jnp.max(jnp.abs(state.R)))
    big = jnp.maximum(big, jnp.max(jnp.abs(state.v)))
    return ~finite | ~(big <= threshold)


def _record_test_mse(act, teacher: Teacher, w, v, key, P: int, sigma, dtype):
    """The noisy test MSE of a record of [`simulate`][] on `P` fresh inputs drawn as the training inputs are
    (`_draw`: float32, then cast to `dtype`); NaN when `P = 0`."""
    if P == 0:
        return jnp.asarray(jnp.nan, dtype)
    xs, z = _draw(key, P, teacher.N, dtype)
    return noisy_test_mse(act, w, v, teacher, xs, z, sigma)


def _validate(teacher: Teacher, student: Student, config: SGDConfig, steps, record_every, test_samples, block,
              divergence_threshold, prng, unroll):
    steps = check_int("steps", steps, 1)
    record_every = check_int("record_every", record_every, 1)
    if record_every > steps or steps % record_every:
        raise ValueError(
            f"record_every must divide steps (allowed: a divisor of steps={steps} in [1, {steps}]), "
            f"got {record_every}"
        )
    check_int("test_samples", test_samples, 0)
    check_int("block", block, 1)
    check_int("unroll", unroll, 1)
    if prng is not None:
        check_choice("prng", prng, PRNG_IMPLS)
    check_float("divergence_threshold", divergence_threshold, 0.0, lo_open=True)
    if not isinstance(teacher, Teacher) or not isinstance(student, Student):
        raise ValueError("teacher must be a Teacher and student a Student (see make_teacher, init_student)")
    if teacher.N != student.N:
        raise ValueError(f"teacher and student must share the input dimension N, got {teacher.N} and {student.N}")
    if not isinstance(config, SGDConfig):
        raise ValueError(f"config must be an SGDConfig, got {type(config).__name__}")
    eta = config.eta
    if is_concrete(eta) and not bool(np.all(np.asarray(eta) > 0)):
        raise ValueError(f"config.eta must be > 0 (allowed range (0, inf)), got {np.asarray(eta)}")
    for name, arr in (("student.w", student.w), ("student.v", student.v), ("teacher.w_star", teacher.w_star),
                      ("teacher.v_star", teacher.v_star)):
        if is_concrete(arr) and not bool(jnp.all(jnp.isfinite(arr))):
            raise ValueError(f"{name} has non-finite entries (NaN or inf)")
    return steps, record_every


def simulate(
    key: PRNGKeyArray,
    teacher: Teacher,
    student: Student,
    config: SGDConfig,
    *,
    steps: int,
    record_every: int,
    test_samples: int = 0,
    dtype=None,
    block: int = _DEFAULT_BLOCK,
    prng: str | None = None,
    unroll: int = 1,
    divergence_threshold: float = 1e6,
) -> SimulationResult:
    """Online SGD of `student` on the `teacher` at finite N for `steps` steps (module docstring).

    **Arguments:**

    - `key`: PRNG key (typed or legacy `uint32`) for the inputs, label noise and test sets.
    - `teacher`, `student`: [`Teacher`][], [`Student`][] with the same `N`.
    - `config`: [`SGDConfig`][] (`eta > 0`, `eta_v`, `sigma`, `weight_decay`, `mode`, `activation`).
    - `steps`: number of SGD steps (static, `>= 1`); time `alpha = steps / N`.
    - `record_every`: steps between records (static); it must divide `steps`. The initial state is recorded
      too, so there are `steps / record_every + 1` records.
    - `test_samples`: fresh held-out inputs per record for the empirical NOISY test MSE (0: NaN, none drawn).
    - `dtype`: working dtype, default float32 (weights, overlaps and errors; inputs are drawn in float32).
    - `block`: steps whose inputs are drawn in one RNG call (static; memory `block * N`).
    - `prng`: `None` (use the key's implementation) or one of `"threefry2x32"`, `"rbg"`, `"unsafe_rbg"`
      (a key of that implementation is derived from `key`).
    - `unroll`: unrolling of the inner step loop.
    - `divergence_threshold`: a record with non-finite weights or `|Q|`, `|R|` or `|v|` above this sets
      `Status.DIVERGED`; the weights are then frozen at the last finite record.

    **Returns:** a [`SimulationResult`][] with `R = steps / record_every + 1` records. Jittable (wrap with the
    static arguments fixed); for many seeds use [`simulate_seeds`][] or
    `jax.vmap(lambda k: simulate(k, ...))(keys)`.

    **Example:**
    ```python
    teacher = jp.make_teacher(jax.random.key(1), 500, 2)
    student = jp.init_student(jax.random.key(2), 500, 3)
    res = jp.simulate(jax.random.key(0), teacher, student, jp.SGDConfig(eta=0.5), steps=50_000,
                      record_every=5_000)
    res.alphas, res.eps_g  # the learning curve at alpha = 0, 10, ..., 100, to compare with solve_ode
    ```
    """
    steps, record_every = _validate(teacher, student, config, steps, record_every, test_samples, block,
                                    divergence_threshold, prng, unroll)
    return _simulate(key, teacher, student, config, steps=steps, record_every=record_every,
                     test_samples=int(test_samples), dtype=float_dtype(dtype), block=int(block), prng=prng,
                     unroll=int(unroll), divergence_threshold=float(divergence_threshold))


@eqx.filter_jit
def _simulate(key, teacher, student, config, *, steps, record_every, test_samples, dtype, block, prng, unroll,
              divergence_threshold):
    act = config.activation
    two_layer = config.mode == "two-layer"
    N = teacher.N
    teacher = Teacher(w_star=jnp.asarray(teacher.w_star, dtype), v_star=jnp.asarray(teacher.v_star, dtype))
    w0, v0 = jnp.asarray(student.w, dtype), jnp.asarray(student.v, dtype)
    h = _hyper(config, N, dtype)
    block_keys, test_keys = _split_key(key, steps, record_every, block, test_samples, prng)
    b, full, rem = _block_plan(record_every, block)

    def run_block(carry, k, size):
        xs, z = _draw(k, size, N, dtype)
        y = teacher_labels(act, teacher, xs, z, h["sigma"])

        def step(c, xy):
            return _student_update(act, two_layer, h, c[0], c[1], xy[0], xy[1]), None

        return jax.lax.scan(step, carry, (xs, y), unroll=min(unroll, size))[0]

    def record(w, v, k):
        state = overlaps_from_weights(w, teacher.w_star, v, teacher.v_star)
        mse = _record_test_mse(act, teacher, w, v, k, test_samples, h["sigma"], dtype)
        return state, generalisation_error(state, act), mse

    def interval(carry, keys):
        w, v, bad = carry
        wv = (w, v)
        if full:
            wv = jax.lax.scan(lambda c, k: (run_block(c, k, b), None), wv, keys[:full])[0]
        if rem:
            wv = run_block(wv, keys[full], rem)
        w_new, v_new = wv
        state_new = overlaps_from_weights(w_new, teacher.w_star, v_new, teacher.v_star)
        bad_new = bad | _diverged(w_new, v_new, state_new, divergence_threshold)
        w, v = jnp.where(bad_new, w, w_new), jnp.where(bad_new, v, v_new)
        return (w, v, bad_new), (w, v, bad_new)

    bad0 = jnp.asarray(False)
    (w_end, v_end, bad_end), (ws, vs, bads) = jax.lax.scan(interval, (w0, v0, bad0), block_keys)
    ws = jnp.concatenate([w0[None], ws])
    vs = jnp.concatenate([v0[None], vs])
    bads = jnp.concatenate([bad0[None], bads])
    states, eps, mse = jax.vmap(record)(ws, vs, test_keys)
    eps = jnp.where(bads, jnp.nan, eps)
    mse = jnp.where(bads, jnp.nan, mse)
    alphas = jnp.arange(steps // record_every + 1, dtype=dtype) * (record_every / N)
    return SimulationResult(
        alphas=alphas,
        states=states,
        eps_g=eps,
        test_mse=mse,
        final=Student(w=w_end, v=v_end),
        status=jnp.where(bad_end, Status.DIVERGED, Status.SUCCESS).astype(jnp.int32),
    )


def simulate_seeds(
    keys: Key[Array, " S"] | UInt32[Array, "S _"],
    teacher: Teacher,
    student: Student,
    config: SGDConfig,
    **kwargs,
) -> SimulationResult:
    """[`simulate`][] for a batch of `S` keys, vmapped: one compiled program runs every seed.

    **Arguments:**

    - `keys`: a 1-d batch of PRNG keys, `Key[Array, " S"]` (e.g. `jax.random.split(key, S)`), or legacy
      `uint32` keys of shape `(S, 2)`.
    - `teacher`: a [`Teacher`][] shared by every seed, or one per seed (leaves with a leading axis `S`:
      `w_star` of shape `(S, M, N)`, `v_star` of shape `(S, M)`).
    - `student`: the initial [`Student`][], shared or one per seed (`w` of shape `(S, K, N)`, `v` of shape
      `(S, K)`).
    - `config`: the [`SGDConfig`][], shared by every seed.
    - `kwargs`: the keyword arguments of [`simulate`][] (`steps` and `record_every` required; `test_samples`,
      `dtype`, `block`, `prng`, `unroll`, `divergence_threshold`). Every seed's inputs are validated on the
      host first (a `ValueError` as from [`simulate`][]).

    **Returns:** a [`SimulationResult`][] whose every field has a leading seed axis `S` (`eps_g` of shape
    `(S, R)`, `status` of shape `(S,)`, ...); seed `s` gives the numbers of `simulate(keys[s], ...)`.

    **Example:**
    ```python
    res = jp.simulate_seeds(jax.random.split(key, 8), teacher, student, jp.SGDConfig(eta=0.5),
                            steps=10_000, record_every=1_000)
    res.eps_g.mean(axis=0)  # the mean learning curve over 8 seeds
    ```
    """
    keys = as_key(keys)
    if keys.ndim != 1:
        raise ValueError(f"keys must be a 1-d batch of PRNG keys, got shape {keys.shape}")
    S = keys.shape[0]

    def axis(tree, ndim_single, name):
        batched = tree.w_star.ndim == 3 if isinstance(tree, Teacher) else tree.w.ndim == 3
        first = tree.w_star if isinstance(tree, Teacher) else tree.w
        if batched and first.shape[0] != S:
            raise ValueError(f"{name} is batched with {first.shape[0]} seeds but keys has {S}")
        if not batched and first.ndim != ndim_single:
            raise ValueError(f"{name} weights must have 2 (shared) or 3 (batched) dims, got shape {first.shape}")
        return 0 if batched else None

    t_ax, s_ax = axis(teacher, 2, "teacher"), axis(student, 2, "student")
    one_t = jax.tree.map(lambda x: x[0], teacher) if t_ax == 0 else teacher
    one_s = jax.tree.map(lambda x: x[0], student) if s_ax == 0 else student
    # validate once on the host (values of every seed), then run without re-checking under vmap
    for i in range(S if (t_ax == 0 or s_ax == 0) else 1):
        t = jax.tree.map(lambda x: x[i], teacher) if t_ax == 0 else one_t
        s = jax.tree.map(lambda x: x[i], student) if s_ax == 0 else one_s
        _validate(t, s, config, kwargs.get("steps"), kwargs.get("record_every"), kwargs.get("test_samples", 0),
                  kwargs.get("block", _DEFAULT_BLOCK), kwargs.get("divergence_threshold", 1e6),
                  kwargs.get("prng"), kwargs.get("unroll", 1))
    opts = dict(test_samples=0, dtype=None, block=_DEFAULT_BLOCK, prng=None, unroll=1, divergence_threshold=1e6)
    unknown = set(kwargs) - set(opts) - {"steps", "record_every"}
    if unknown:
        raise ValueError(f"unknown keyword arguments {sorted(unknown)}")
    opts.update(kwargs)
    opts["dtype"] = float_dtype(opts["dtype"])
    opts["divergence_threshold"] = float(opts["divergence_threshold"])
    return _simulate_batched(keys, teacher, student, config, t_ax, s_ax, opts)


def _simulate_batched(keys, teacher, student, config, t_ax, s_ax, opts):
    fn = jax.vmap(lambda k, t, s: _simulate(k, t, s, config, **opts), in_axes=(0, t_ax, s_ax))
    return fn(keys, teacher, student)
