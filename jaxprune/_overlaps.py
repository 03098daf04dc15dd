"""Order parameters (overlaps) of a teacher-student pair, their validation and their JSON file format.

`Q_ik = w_i.w_k/N`, `R_in = w_i.w*_n/N`, `T_nm = w*_n.w*_m/N` (docs/theory.md section 1); with the second layers
`v` (student) and `v*` (teacher) they determine every Gaussian average, exactly, at any N.
"""

from __future__ import annotations

from collections.abc import Sequence
import json
import os
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._checks import check_float, check_int
from ._io import atomic_write_json

__all__ = [
    "Overlaps", "normalise_student", "overlaps_from_weights", "validate_overlaps", "max_second_layer", "load_state",
    "save_state",
]


def _shape(x):
    return tuple(getattr(x, "shape", ()))


def _as_array(x):
    """Python lists and tuples (nested numbers) become float arrays; anything else passes through unchanged
    (arrays, tracers, and the non-array leaves of an axis spec such as `vmap`'s `in_axes`)."""
    if isinstance(x, (list, tuple)):
        a = np.asarray(x)
        return jnp.asarray(a, dtype=a.dtype if np.issubdtype(a.dtype, np.floating) else jnp.result_type(float))
    return x


class Overlaps(eqx.Module):
    """Order parameters of a student (`K` units) and a teacher (`M` units) (docs/theory.md section 1): with
    student weights `w` (`K x N`) and teacher weights `w*` (`M x N`), `Q = w w^T / N`, `R = w w*^T / N`,
    `T = w* w*^T / N`. An equinox Module (a pytree): it passes through `jit`, `vmap` and `grad`.

    **Fields** (the constructor's keyword arguments):

    - `Q`: student-student overlaps, `Float[Array, "K K"]` (symmetric positive semi-definite).
    - `R`: student-teacher overlaps, `Float[Array, "K M"]`.
    - `T`: teacher-teacher overlaps, `Float[Array, "M M"]` (symmetric positive semi-definite).
    - `v`: the student's second layer, `Float[Array, " K"]`.
    - `v_star`: the teacher's second layer, `Float[Array, " M"]`.

    Python lists become arrays. Shapes are checked on construction (a `ValueError` naming the field); values
    (symmetry, positive semi-definiteness of `[[Q, R], [R^T, T]]`, finiteness) by [`validate_overlaps`][]
    outside `jit`. Batched states (leaves with leading axes) are what solvers return; build them with
    `jax.tree.map`, not through the constructor's shape check.

    **Example:**
    ```python
    state = jp.Overlaps(Q=[[1.0, 0.2], [0.2, 1.0]], R=[[0.9], [0.1]], T=[[1.0]], v=[1.0, 1.0], v_star=[1.0])
    jp.generalisation_error(state)
    ```
    """

    Q: Float[Array, "K K"] = eqx.field(converter=_as_array)
    R: Float[Array, "K M"] = eqx.field(converter=_as_array)
    T: Float[Array, "M M"] = eqx.field(converter=_as_array)
    v: Float[Array, " K"] = eqx.field(converter=_as_array)
    v_star: Float[Array, " M"] = eqx.field(converter=_as_array)

    def __check_init__(self):
        if not all(hasattr(x, "shape") for x in (self.Q, self.R, self.T, self.v, self.v_star)):
            return  # an axis spec or other non-array pytree (e.g. for vmap's in_axes)
        q, r, t, v, vs = map(_shape, (self.Q, self.R, self.T, self.v, self.v_star))
        if len(v) != 1:
            raise ValueError(f"v must be a vector of length K, got shape {v}")
        if len(vs) != 1:
            raise ValueError(f"v_star must be a vector of length M, got shape {vs}")
        K, M = v[0], vs[0]
        if K < 1 or M < 1:
            raise ValueError(f"need K >= 1 student and M >= 1 teacher units, got K={K}, M={M}")
        for name, got, want in (("Q", q, (K, K)), ("R", r, (K, M)), ("T", t, (M, M))):
            if got != want:
                raise ValueError(
                    f"{name} must have shape {want} (K={K} from v, M={M} from v_star), got {got}"
                )

    @classmethod
    def reference(
        cls, K: int, M: int, *, v_star: float | Sequence[float] | ArrayLike = 1.0,
        v: float | Sequence[float] | ArrayLike = 1.0, q_scale: float = 1.0,
        dtype=None,
    ) -> "Overlaps":
        """The reference initial state of the C++ tool and of this project's ODE runs (docs/theory.md, section 4):
        `Q = q_scale I`, `R_in = 1e-3 sin(1 + i M + n)` (small, and different for every pair, so that the
        student-permutation symmetry is broken), `T = I`, `v` and `v*` constant (scalars) or given (vectors).

        **Arguments:**

        - `K`, `M`: the numbers of student and teacher units, `>= 1`.
        - `v_star`: the teacher's second layer, a scalar or a vector of length `M`.
        - `v`: the student's second layer, a scalar or a vector of length `K`.
        - `q_scale`: the diagonal of `Q`, `> 0`.
        - `dtype`: the dtype of every leaf (default: JAX's default float).

        **Returns:** the [`Overlaps`][].

        **Example:**
        ```python
        jp.Overlaps.reference(K=6, M=2, v_star=[1.0, 2.0])
        ```
        """
        K, M = check_int("K", K, 1), check_int("M", M, 1)
        q_scale = check_float("q_scale", q_scale, 0.0, lo_open=True)
        dtype = jnp.result_type(float) if dtype is None else dtype
        i, n = np.arange(K)[:, None], np.arange(M)[None, :]

        def vec(x, size, name):
            x = np.asarray(x, dtype=float)
            if x.ndim == 0:
                return np.full(size, float(x))
            if x.shape != (size,):
                raise ValueError(f"{name} must be a scalar or a vector of length {size}, got shape {x.shape}")
            return x

        return cls(
            Q=jnp.asarray(q_scale * np.eye(K), dtype), R=jnp.asarray(1e-3 * np.sin(1.0 + i * M + n), dtype),
            T=jnp.asarray(np.eye(M), dtype), v=jnp.asarray(vec(v, K, "v"), dtype),
            v_star=jnp.asarray(vec(v_star, M, "v_star"), dtype),
        )

    @property
    def K(self) -> int:
        """Number of student units."""
        return self.v.shape[-1]

    @property
    def M(self) -> int:
        """Number of teacher units."""
        return self.v_star.shape[-1]

    def covariance(self) -> Float[Array, "F F"]:
        """The joint covariance of the local fields `Omega = [[Q, R], [R^T, T]]`, `F = K + M` (students first;
        docs/theory.md section 1)."""
        top = jnp.concatenate([self.Q, self.R], axis=-1)
        bottom = jnp.concatenate([jnp.swapaxes(self.R, -1, -2), self.T], axis=-1)
        return jnp.concatenate([top, bottom], axis=-2)

    def output_weights(self) -> Float[Array, " F"]:
        """`u = (v, -v*)`, so that the error signal is `phi(x) - y_clean = sum_c u_c g(field_c)`."""
        return jnp.concatenate([self.v, -self.v_star], axis=-1)


def normalise_student(state: Overlaps) -> Overlaps:
    """The student with every first-layer row rescaled to `|w_i|^2 / N = 1` (the seed paper's normalisation
    before pruning, docs/theory.md, section 6.3): `Q'_ik = Q_ik / sqrt(Q_ii Q_kk)`, `R'_in = R_in / sqrt(Q_ii)`;
    `v`, `T`, `v*` unchanged (so the network's function changes, as in the paper).

    **Arguments:**

    - `state`: an [`Overlaps`][] with `Q_ii > 0` for every unit (a zero unit gives NaN). Leaves may carry leading
      batch axes (`Q: Float[Array, "*batch K K"]`, `R: Float[Array, "*batch K M"]`).

    **Returns:** the normalised [`Overlaps`][] (unit diagonal of `Q`), same shapes and dtype.
    """
    d = 1.0 / jnp.sqrt(jnp.diagonal(state.Q, axis1=-2, axis2=-1))
    return Overlaps(Q=state.Q * d[..., :, None] * d[..., None, :], R=state.R * d[..., :, None], T=state.T,
                    v=state.v, v_star=state.v_star)


def overlaps_from_weights(w: ArrayLike, w_star: ArrayLike, v: ArrayLike, v_star: ArrayLike) -> Overlaps:
    """Order parameters of concrete weights: `Q = w w^T / N`, `R = w w*^T / N`, `T = w* w*^T / N`
    (docs/theory.md section 1).

    This is the one place where finite-N networks meet the theory: every Gaussian average of the networks
    (their error, [`generalisation_error`][]) is a function of these overlaps, exactly, at any `N`.

    **Arguments:**

    - `w`: the student's first layer, `Float[ArrayLike, "K N"]`.
    - `w_star`: the teacher's first layer, `Float[ArrayLike, "M N"]` (the same `N`).
    - `v`: the student's second layer, `Float[ArrayLike, " K"]`.
    - `v_star`: the teacher's second layer, `Float[ArrayLike, " M"]`.

    **Returns:** an [`Overlaps`][] in the dtype of `w` (`v`, `v_star` are cast to it). Mismatched shapes are a
    `ValueError`.

    **Example:**
    ```python
    student, teacher = jp.init_student(key1, 500, 3), jp.make_teacher(key2, 500, 2)
    state = jp.overlaps_from_weights(student.w, teacher.w_star, student.v, teacher.v_star)
    ```
    """
    w, w_star = jnp.asarray(w), jnp.asarray(w_star)
    if w.ndim != 2 or w_star.ndim != 2 or w.shape[1] != w_star.shape[1]:
        raise ValueError(
            f"w must be (K, N) and w_star (M, N) with the same N, got {w.shape} and {w_star.shape}"
        )
    v, v_star = jnp.asarray(v, dtype=w.dtype), jnp.asarray(v_star, dtype=w.dtype)
    if v.shape != w.shape[:1] or v_star.shape != w_star.shape[:1]:
        raise ValueError(f"v must have shape {w.shape[:1]} and v_star shape {w_star.shape[:1]} (K, M from w, "
                         f"w_star), got {v.shape} and {v_star.shape}")
    n = w.shape[1]
    return Overlaps(
        Q=w @ w.T / n,
        R=w @ w_star.T / n,
        T=w_star @ w_star.T / n,
        v=v,
        v_star=v_star,
    )


def max_second_layer(K: int, M: int, dtype=float) -> float:
    """The largest `|v_i|`, `|v*_n|` that [`validate_overlaps`][] accepts: `sqrt(float max) / (K + M)`, so that
    `eps_g = 1/2 u^T I2 u <= 1/2 (sum |u|)^2` stays a finite float for erf (`|I2| <= 1`)."""
    return float(np.sqrt(np.finfo(dtype).max) / (K + M))


def validate_overlaps(state: Overlaps, *, name: str = "state", rtol: float = 1e-8) -> Overlaps:
    """Check the values of `state` on the host: finite, `Q` and `T` symmetric, `Omega = [[Q, R], [R^T, T]]`
    positive semi-definite (overlaps of real weight vectors, docs/theory.md section 1), second layers small
    enough for a finite error (`|v|, |v*| <= sqrt(float max) / (K + M)`).

    **Arguments:**

    - `state`: the [`Overlaps`][] to check (concrete arrays; not for use under `jit`).
    - `name`: how the messages name `state` (e.g. a file path; default `"state"`).
    - `rtol`: relative tolerance of the symmetry and semi-definiteness checks (`> 0`; asymmetries up to
      `1e3 rtol` times the largest entry, and eigenvalues down to `-1e3 rtol F` times the spectral scale, pass).

    **Returns:** `state` unchanged. A violated condition is a `ValueError` naming the offending field.
    """
    arrays = {k: np.asarray(getattr(state, k)) for k in ("Q", "R", "T", "v", "v_star")}
    for k, a in arrays.items():
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}.{k} has non-finite entries (NaN or inf)")
    dtype = np.result_type(*arrays.values(), np.float32)
    bound = max_second_layer(state.K, state.M, dtype if np.issubdtype(dtype, np.floating) else float)
    for k in ("v", "v_star"):
        big = float(np.max(np.abs(arrays[k])))
        if big > bound:
            raise ValueError(f"{name}.{k} entries must lie in [-{bound:.3g}, {bound:.3g}] (else eps_g overflows), "
                             f"got max |{k}| = {big:.3g}")
    for k in ("Q", "T"):
        a = arrays[k]
        scale = max(1.0, float(np.max(np.abs(a))))
        asym = float(np.max(np.abs(a - a.T)))
        if asym > 1e3 * rtol * scale:
            raise ValueError(f"{name}.{k} must be symmetric, max |{k} - {k}^T| = {asym:.3g}")
    omega = np.block([[arrays["Q"], arrays["R"]], [arrays["R"].T, arrays["T"]]])  # NumPy: no program to trace
    omega = 0.5 * (omega + omega.T)
    eig = np.linalg.eigvalsh(omega)
    scale = max(1.0, float(np.max(np.abs(eig))))
    if eig[0] < -1e3 * rtol * scale * omega.shape[0]:
        raise ValueError(
            f"{name}: the joint covariance [[Q, R], [R^T, T]] must be positive semi-definite "
            f"(overlaps of real weight vectors); its smallest eigenvalue is {eig[0]:.3g}"
        )
    return state


def save_state(path: str | os.PathLike, state: Overlaps, **extra) -> Path:
    """Write `state` as a JSON object `{"Q", "R", "T", "v", "v_star", ...extra}` (nested lists), atomically
    (readers see the old file or the whole new one).

    **Arguments:**

    - `path`: the file to write (its folder is created if needed).
    - `state`: the [`Overlaps`][] to save (one state, concrete arrays).
    - `extra`: further JSON-serialisable entries (keyword arguments; arrays become lists).

    **Returns:** the `Path` written. [`load_state`][] reads it back.
    """
    payload = {k: np.asarray(getattr(state, k)) for k in ("Q", "R", "T", "v", "v_star")}
    payload.update(extra)
    return atomic_write_json(path, payload)


def _numeric_leaves_only(x, path: Path, key: str) -> None:
    """`ValueError` naming the file and field unless `x` is a number or a (nested) list of numbers: JSON strings
    (even "1.0"), booleans and nulls are refused (NumPy would silently convert some of them)."""
    stack = [x]
    while stack:
        y = stack.pop()
        if isinstance(y, list):
            stack.extend(y)
        elif isinstance(y, bool) or not isinstance(y, (int, float)):
            raise ValueError(f"state file {path}: field {key} must hold numbers (nested lists of numbers), "
                             f"got {type(y).__name__} {y!r}")


def load_state(path: str | os.PathLike, *, validate: bool = True) -> Overlaps:
    """Read a JSON state file written by [`save_state`][] (or by hand): an object with the keys `Q`, `R`, `T`,
    `v`, `v_star` holding (nested lists of) numbers; other keys are ignored.

    **Arguments:**

    - `path`: the JSON file.
    - `validate`: check the values with [`validate_overlaps`][] (default `True`).

    **Returns:** the [`Overlaps`][], in JAX's default float dtype. A file that is not a readable UTF-8 JSON
    object with those keys holding numbers (not strings or booleans), or a path that is a folder, gives a
    one-line `ValueError` naming the file; a missing file, `FileNotFoundError`.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"state file {path} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"state file {path} is a directory, not a JSON file") from None
    except UnicodeDecodeError:
        raise ValueError(f"state file {path} is not a UTF-8 text file (binary?); expected JSON") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"state file {path} is not valid JSON: {e}") from None
    except OSError as e:
        raise ValueError(f"state file {path} cannot be read: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"state file {path} must hold a JSON object with Q, R, T, v, v_star")
    missing = [k for k in ("Q", "R", "T", "v", "v_star") if k not in data]
    if missing:
        raise ValueError(f"state file {path} lacks the keys {missing}")
    for k in ("Q", "R", "T", "v", "v_star"):
        _numeric_leaves_only(data[k], path, k)
    try:
        arrays = {k: jnp.asarray(np.asarray(data[k], dtype=float)) for k in ("Q", "R", "T", "v", "v_star")}
    except (TypeError, ValueError) as e:
        raise ValueError(f"state file {path}: entries must be numeric arrays ({e})") from None
    for k in ("Q", "R", "T"):
        if arrays[k].ndim == 1 and arrays[k].size == 0:
            arrays[k] = arrays[k].reshape(0, 0)
    state = Overlaps(**arrays)
    return validate_overlaps(state, name=str(path)) if validate else state
