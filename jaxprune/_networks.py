"""Concrete teacher and student networks (docs/theory.md section 1), their outputs on inputs, and their
empirical noisy test MSE on fresh Gaussian inputs ([`fresh_test_mse`][]).

A network with first layer `w` (`U x N`) and second layer `v` outputs `sum_u v_u g(w_u.x / sqrt N)`; the
teacher's label adds noise, `y = sum_n v*_n g(nu_n) + sigma zeta`. [`overlaps_from_weights`][] turns the weights
into order parameters; the finite-N SGD that trains a student is `jaxprune._simulate`.

The estimator `mean_p (phi(x_p) - y_p)^2` on given inputs is written once, [`noisy_test_mse`][]: the public
[`fresh_test_mse`][] and the records of [`simulate`][] call it, and differ only in how they draw the inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Key, PRNGKeyArray, UInt32

from ._activations import AbstractActivation, get_activation
from ._checks import check_float, check_int, is_concrete

__all__ = [
    "Teacher", "Student", "make_teacher", "init_student", "fresh_test_mse", "network_outputs", "teacher_labels",
    "noisy_test_mse", "as_key", "float_dtype",
]


def _shape(x):
    return tuple(getattr(x, "shape", ()))


class Teacher(eqx.Module):
    """Teacher network `y = sum_n v*_n g(w*_n.x / sqrt N) (+ sigma zeta)` (docs/theory.md section 1); draw one
    with [`make_teacher`][] or build it from given weights.

    **Fields** (the constructor's keyword arguments):

    - `w_star`: first-layer weights, `Float[Array, "M N"]`.
    - `v_star`: second-layer weights, `Float[Array, " M"]`.

    Mismatched shapes are a `ValueError`. Leaves with a leading seed axis (`w_star` of shape `(S, M, N)`) are
    accepted by [`simulate_seeds`][].
    """

    w_star: Float[Array, "M N"]
    v_star: Float[Array, " M"]

    def __check_init__(self):
        if not all(hasattr(x, "shape") for x in (self.w_star, self.v_star)):
            return  # axis specs etc.
        w, v = _shape(self.w_star), _shape(self.v_star)
        if len(w) < 2 or len(v) < 1 or w[-2] != v[-1]:
            raise ValueError(f"Teacher needs w_star of shape (M, N) and v_star of shape (M,), got {w} and {v}")

    @property
    def M(self) -> int:
        """Number of teacher units."""
        return self.w_star.shape[-2]

    @property
    def N(self) -> int:
        """Input dimension."""
        return self.w_star.shape[-1]


class Student(eqx.Module):
    """Student network `phi(x) = sum_k v_k g(w_k.x / sqrt N)` (docs/theory.md section 1); build it from given
    weights as `Student(w=..., v=...)` or draw one with [`init_student`][].

    **Fields** (the constructor's keyword arguments):

    - `w`: first-layer weights, `Float[Array, "K N"]`.
    - `v`: second-layer weights, `Float[Array, " K"]`.

    Mismatched shapes are a `ValueError`. [`overlaps_from_weights`][] gives its order parameters.
    """

    w: Float[Array, "K N"]
    v: Float[Array, " K"]

    def __check_init__(self):
        if not all(hasattr(x, "shape") for x in (self.w, self.v)):
            return
        w, v = _shape(self.w), _shape(self.v)
        if len(w) < 2 or len(v) < 1 or w[-2] != v[-1]:
            raise ValueError(f"Student needs w of shape (K, N) and v of shape (K,), got {w} and {v}")

    @property
    def K(self) -> int:
        """Number of student units."""
        return self.w.shape[-2]

    @property
    def N(self) -> int:
        """Input dimension."""
        return self.w.shape[-1]


def float_dtype(dtype, default=jnp.float32):
    """`dtype` (default `default`) as a floating NumPy dtype; a `ValueError` for a non-floating dtype, or for float64
    while `jax_enable_x64` is off."""
    dt = jnp.dtype(default if dtype is None else dtype)
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype (float32 or float64), got {dt}")
    if dt == jnp.float64 and not jax.config.read("jax_enable_x64"):
        raise ValueError("dtype float64 needs jax_enable_x64 (jax.config.update('jax_enable_x64', True))")
    return dt


def as_key(key) -> Key[Array, "..."] | UInt32[Array, "... _"]:
    """A typed PRNG key (or batch of keys): typed keys pass through, legacy `uint32` keys are wrapped."""
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)  # legacy uint32 key from jax.random.PRNGKey


def _second_layer(value, n: int, name: str, dtype) -> Array:
    arr = jnp.asarray(value, dtype=dtype)
    if arr.ndim == 0:
        arr = jnp.full((n,), arr, dtype=dtype)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a scalar or a vector of length {n}, got shape {arr.shape}")
    if is_concrete(arr) and not bool(jnp.all(jnp.isfinite(arr))):
        raise ValueError(f"{name} must be finite, got {np.asarray(arr)}")
    return arr


def make_teacher(
    key: PRNGKeyArray,
    N: int,
    M: int,
    *,
    v_star: float | Float[ArrayLike, " M"] = 1.0,
    orthonormal: bool = False,
    dtype=None,
) -> Teacher:
    """A random teacher: rows `w*_n ~ N(0, I_N)` iid (so `T ~ I` up to `O(1/sqrt N)`), or with
    `orthonormal=True` rows orthogonalised exactly and scaled to norm `sqrt N`, so `T = I`.

    **Arguments:**

    - `key`: PRNG key (typed, or a legacy `uint32` key from `jax.random.PRNGKey`).
    - `N`: input dimension, `>= 1`.
    - `M`: number of teacher units, `>= 1` (`M <= N` when `orthonormal`).
    - `v_star`: second layer: a scalar (every teacher unit) or a vector `Float[ArrayLike, " M"]`; finite.
    - `orthonormal`: orthonormalise the rows (QR) so that `T = I` exactly.
    - `dtype`: a floating dtype; default float32 (float64 needs `jax_enable_x64`).

    **Returns:** a [`Teacher`][] with `w_star: Float[Array, "M N"]`, `v_star: Float[Array, " M"]`.

    **Example:**
    ```python
    teacher = jp.make_teacher(jax.random.key(0), 500, 2, orthonormal=True)
    ```
    """
    N, M = check_int("N", N, 1), check_int("M", M, 1)
    dtype = float_dtype(dtype)
    g = jax.random.normal(as_key(key), (M, N), dtype=dtype)
    if orthonormal:
        if M > N:
            raise ValueError(f"orthonormal teacher needs M <= N, got M={M}, N={N}")
        q, r = jnp.linalg.qr(g.T)  # (N, M), orthonormal columns
        q = q * jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(dtype)[None, :]
        g = math.sqrt(N) * q.T
    return Teacher(w_star=g, v_star=_second_layer(v_star, M, "v_star", dtype))


def init_student(
    key: PRNGKeyArray,
    N: int,
    K: int,
    *,
    scale: float = 1.0,
    v0: float | str | Sequence[float] | Float[ArrayLike, " K"] = 1.0,
    v0_scale: float = 0.01,
    dtype=None,
) -> Student:
    """A random student: `w_ki ~ N(0, scale^2)` iid (so `Q0 ~ scale^2 I` up to `O(1/sqrt N)`).

    **Arguments:**

    - `key`: PRNG key (typed, or a legacy `uint32` key); split into one key for `w` and one for `v`.
    - `N`: input dimension, `>= 1`.
    - `K`: number of student units, `>= 1`.
    - `scale`: standard deviation of the first-layer entries, `>= 0`.
    - `v0`: second layer: a scalar (every unit), a vector `Float[ArrayLike, " K"]`, or `"random"` for small
      random weights `v_k ~ N(0, v0_scale^2)`.
    - `v0_scale`: standard deviation of the random second layer (`>= 0`; used with `v0="random"` only).
    - `dtype`: a floating dtype; default float32 (float64 needs `jax_enable_x64`).

    **Returns:** a [`Student`][] with `w: Float[Array, "K N"]`, `v: Float[Array, " K"]`. For given weights build
    `Student(w=w, v=v)` directly.
    """
    N, K = check_int("N", N, 1), check_int("K", K, 1)
    dtype = float_dtype(dtype)
    scale = check_float("scale", scale, 0.0)
    kw, kv = jax.random.split(as_key(key))
    w = scale * jax.random.normal(kw, (K, N), dtype=dtype)
    if isinstance(v0, str):
        if v0 != "random":
            raise ValueError(f"v0 must be a number, a length-K vector or 'random', got {v0!r}")
        v0_scale = check_float("v0_scale", v0_scale, 0.0)
        v = v0_scale * jax.random.normal(kv, (K,), dtype=dtype)
    else:
        v = _second_layer(v0, K, "v0", dtype)
    return Student(w=w, v=v)


# ------------------------------------------------------------------------------- outputs and the test MSE


def network_outputs(act: AbstractActivation, w: Float[Array, "U N"], v: Float[Array, " U"],
             xs: Float[Array, "B N"]) -> Float[Array, " B"]:
    """Outputs `sum_u v_u g(w_u.x / sqrt N)` of a network (student or teacher) on a block of scaled inputs
    `xs = x / sqrt N`."""
    return act(xs @ w.T) @ v


def teacher_labels(act: AbstractActivation, teacher: Teacher, xs: Float[Array, "B N"], noise: Float[Array, " B"],
                   sigma) -> Float[Array, " B"]:
    """Noisy teacher labels of a block: `y = g(xs w*^T) v* + sigma zeta`."""
    return network_outputs(act, teacher.w_star, teacher.v_star, xs) + sigma * noise


def noisy_test_mse(act: AbstractActivation, w: Float[Array, "K N"], v: Float[Array, " K"], teacher: Teacher,
                   xs: Float[Array, "P N"], noise: Float[Array, " P"], sigma) -> Float[Array, ""]:
    """The empirical noisy test MSE `mean_p (phi(x_p) - y_p)^2`, `y_p = sum_n v*_n g(nu_n) + sigma zeta_p`, on
    given scaled inputs `xs = x / sqrt N` and noises `zeta`: the one implementation of this estimator, used by
    [`fresh_test_mse`][] and by the records of [`simulate`][] (which differ only in how they draw `xs`, `zeta`)."""
    y = teacher_labels(act, teacher, xs, noise, sigma)
    phi = network_outputs(act, w, v, xs)
    return jnp.mean(jnp.square(phi - y))


def fresh_test_mse(
    key: PRNGKeyArray,
    w: ArrayLike,
    v: ArrayLike,
    w_star: ArrayLike,
    v_star: ArrayLike,
    sigma: ArrayLike = 0.0,
    *,
    samples: int,
    activation: AbstractActivation | str = "erf",
) -> Float[Array, ""]:
    """Empirical noisy test MSE of a concrete student on `samples` fresh Gaussian inputs:
    `mean_p (phi(x_p) - y_p)^2` with `phi(x) = sum_k v_k g(w_k.x / sqrt N)` and the noisy teacher label
    `y = sum_n v*_n g(w*_n.x / sqrt N) + sigma zeta` (docs/theory.md sections 1 and 3). Its expectation is the
    test MSE `2 eps_g + sigma^2` of the networks' overlaps ([`test_mse`][] of [`overlaps_from_weights`][]), its
    standard error about `sqrt(2 / samples)` times that. [`simulate`][] records the same estimator.

    **Arguments:**

    - `key`: PRNG key of the test set: the inputs `x ~ N(0, I_N)` are drawn with `key`, the label noises
      `zeta ~ N(0, 1)` with `fold_in(key, 1)`, both in the dtype of `w`.
    - `w`: the student's first layer, `Float[ArrayLike, "K N"]` (a floating dtype: the working dtype).
    - `v`: the student's second layer, `Float[ArrayLike, " K"]`.
    - `w_star`: the teacher's first layer, `Float[ArrayLike, "M N"]` (the same `N`).
    - `v_star`: the teacher's second layer, `Float[ArrayLike, " M"]`.
    - `sigma`: the label-noise standard deviation, a scalar `>= 0` (default 0: the noise-free `2 eps_g`).
    - `samples`: the number of fresh inputs, an integer `>= 0` (static; 0 gives NaN).
    - `activation`: an [`AbstractActivation`][] or its name (`"erf"`, `"linear"`); default `"erf"`.

    **Returns:** the scalar estimate, `Float[Array, ""]` in the dtype of `w`. Wrong shapes are a `ValueError`.
    Compiled once per shapes, dtype, `samples` and activation (a new `sigma` does not recompile).

    **Example:**
    ```python
    mse = jp.fresh_test_mse(key, student.w, student.v, teacher.w_star, teacher.v_star, 0.1, samples=10_000)
    ```
    """
    w, v, w_star, v_star = (jnp.asarray(x) for x in (w, v, w_star, v_star))
    if w.ndim != 2 or w_star.ndim != 2 or w.shape[1] != w_star.shape[1]:
        raise ValueError(f"w must be (K, N) and w_star (M, N) with the same N, got {w.shape} and {w_star.shape}")
    if v.shape != w.shape[:1] or v_star.shape != w_star.shape[:1]:
        raise ValueError(f"v must have shape {w.shape[:1]} and v_star shape {w_star.shape[:1]} (K, M from w, "
                         f"w_star), got {v.shape} and {v_star.shape}")
    if not jnp.issubdtype(w.dtype, jnp.floating):
        raise ValueError(f"w must have a floating dtype (the working dtype), got {w.dtype}")
    samples = check_int("samples", samples, 0)
    if np.ndim(sigma) != 0:
        raise ValueError(f"sigma must be a scalar, got shape {np.shape(sigma)}")
    if is_concrete(sigma):
        check_float("sigma", float(np.asarray(sigma)), 0.0)
    return _fresh_test_mse(key, w, v, Teacher(w_star=w_star, v_star=v_star), jnp.asarray(sigma, w.dtype),
                           samples=samples, act=get_activation(activation))


@eqx.filter_jit
def _fresh_test_mse(key, w, v, teacher: Teacher, sigma, *, samples: int, act: AbstractActivation):
    """The body of [`fresh_test_mse`][] after validation: draw the test set, then `noisy_test_mse`."""
    N = w.shape[1]
    xs = jax.random.normal(key, (samples, N), w.dtype) / math.sqrt(N)
    noise = jax.random.normal(jax.random.fold_in(key, 1), (samples,), w.dtype)
    return noisy_test_mse(act, w, v, teacher, xs, noise, sigma)
