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
    """Order parameters of a student (K units) and a teacher (M units).

    **Fields:** `Q: Float[K, K]`, `R: Float[K, M]`, `T: Float[M, M]`, `v: Float[K]` (student second layer),
    `v_star: Float[M]` (teacher second layer).

    Python lists become arrays. Shapes are checked on construction (a `ValueError` naming the field); values
    (symmetry, positive semi-definiteness, finiteness) by [`validate_overlaps`][] outside `jit`.
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

        **Arguments:** `K`, `M` (unit counts, >= 1); `v_star`, `v` (scalar or vector of length M / K);
        `q_scale` (the diagonal of `Q`); `dtype` (default: JAX's default float).
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
            T=jnp.eye(M, dtype=dtype), v=jnp.asarray(vec(v, K, "v"), dtype),
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
        """The joint covariance of the local fields `Omega = [[Q, R], [R^T, T]]` (students first)."""
        top = jnp.concatenate([self.Q, self.R], axis=-1)
        bottom = jnp.concatenate([jnp.swapaxes(self.R, -1, -2), self.T], axis=-1)
        return jnp.concatenate([top, bottom], axis=-2)

    def output_weights(self) -> Float[Array, " F"]:
        """`u = (v, -v*)`, so that the error signal is `phi(x) - y_clean = sum_c u_c g(field_c)`."""
        return jnp.concatenate([self.v, -self.v_star], axis=-1)


def normalise_student(state: Overlaps) -> Overlaps:
    """The student with every first-layer row rescaled to `|w_i|^2 / N = 1` (the seed paper's normalisation
    before pruning, docs/theory.md, section 6.3): `Q'_ik = Q_ik / sqrt(Q_ii Q_kk)`, `R'_in = R_in / sqrt(Q_ii)`;
    `v`, `T`, `v*` unchanged (so the network's function changes, as in the paper)."""
    d = 1.0 / jnp.sqrt(jnp.diagonal(state.Q, axis1=-2, axis2=-1))
    return Overlaps(Q=state.Q * d[..., :, None] * d[..., None, :], R=state.R * d[..., :, None], T=state.T,
                    v=state.v, v_star=state.v_star)


def overlaps_from_weights(
    w: Float[ArrayLike, "K N"],
    w_star: Float[ArrayLike, "M N"],
    v: Float[ArrayLike, " K"],
    v_star: Float[ArrayLike, " M"],
) -> Overlaps:
    """Order parameters of concrete weights: `Q = w w^T / N`, `R = w w*^T / N`, `T = w* w*^T / N`.

    This is the one place where finite-N networks meet the theory.
    """
    w, w_star = jnp.asarray(w), jnp.asarray(w_star)
    if w.ndim != 2 or w_star.ndim != 2 or w.shape[1] != w_star.shape[1]:
        raise ValueError(
            f"w must be (K, N) and w_star (M, N) with the same N, got {w.shape} and {w_star.shape}"
        )
    n = w.shape[1]
    return Overlaps(
        Q=w @ w.T / n,
        R=w @ w_star.T / n,
        T=w_star @ w_star.T / n,
        v=jnp.asarray(v, dtype=w.dtype),
        v_star=jnp.asarray(v_star, dtype=w.dtype),
    )


def max_second_layer(K: int, M: int, dtype=float) -> float:
    """The largest `|v_i|`, `|v*_n|` that [`validate_overlaps`][] accepts: `sqrt(float max) / (K + M)`, so that
    `eps_g = 1/2 u^T I2 u <= 1/2 (sum |u|)^2` stays a finite float for erf (`|I2| <= 1`)."""
    return float(np.sqrt(np.finfo(dtype).max) / (K + M))


def validate_overlaps(state: Overlaps, *, name: str = "state", rtol: float = 1e-8) -> Overlaps:
    """Check values on the host: finite, `Q` and `T` symmetric, `Omega` positive semi-definite, second layers
    small enough for a finite error (`max_second_layer`).

    Raises `ValueError` naming the offending field and the violated condition. Returns `state` unchanged.
    Not for use under `jit` (the values must be concrete).
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
    omega = np.asarray(state.covariance())
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
    """Write `state` as JSON `{"Q", "R", "T", "v", "v_star", ...extra}`, atomically."""
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
    """Read a JSON state file (see [`save_state`][]). A file that is not a readable UTF-8 JSON object with the
    keys `Q`, `R`, `T`, `v`, `v_star` holding numbers (not strings or booleans), or a path that is a folder,
    gives a one-line `ValueError` naming the file (a missing file: `FileNotFoundError`)."""
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
