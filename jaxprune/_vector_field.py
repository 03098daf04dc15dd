"""The ODEs of online SGD for the order parameters: the vector field `d(Q, R, v)/d alpha` (docs/theory.md section 4).

Time is `alpha = steps / N`. With `u = (v, -v*)` the error signal is `Delta = sum_c u_c g(c) - sigma zeta`, so

- `dR_in/dalpha = -eta v_i sum_c u_c I3(i, n, c) - eta lambda R_in`
- `dQ_ik/dalpha = -eta v_i sum_c u_c I3(i, k, c) + (i <-> k) - 2 eta lambda Q_ik
  + eta^2 v_i v_k [ sum_cd u_c u_d I4(i, k, c, d) + sigma^2 J2(i, k) ]`
- `dv_i/dalpha = -eta_v sum_c u_c I2(i, c)` (two-layer mode; zero for the soft committee machine),

which is docs/theory.md section 4 with the teacher and student sums merged (Saad & Solla 1995; Goldt et al. 2019).
`lambda` is an optional weight decay, `w <- w - (eta lambda / N) w` per step. `T` and `v*` are constant.
This module holds the formula once; the integrators ([`solve_ode`][]) and the fixed
points call it.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ._config import SGDConfig
from ._integrals import i2_block, i3_block, i4_pair_sums, j2_block
from ._overlaps import Overlaps

__all__ = ["vector_field", "pair_indices"]


def pair_indices(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper-triangle index pairs `(a, b)` of an `n x n` symmetric array, and the `n x n` map from `(i, k)`
    to the position of the pair `(min(i, k), max(i, k))`."""
    a, b = np.triu_indices(n)
    position = np.zeros((n, n), dtype=np.int64)
    position[a, b] = np.arange(a.size)
    position[b, a] = np.arange(a.size)
    return a, b, position


def vector_field(state: Overlaps, config: SGDConfig) -> Overlaps:
    """`d(state)/d alpha` of online SGD in the limit `N -> infinity` (docs/theory.md section 4): with
    `u = (v, -v*)` and `c, d` over all `K + M` fields,

    - `dR_in/dalpha = -eta v_i sum_c u_c I3(i, n, c) - eta lambda R_in`
    - `dQ_ik/dalpha = -eta v_i sum_c u_c I3(i, k, c) + (i <-> k) - 2 eta lambda Q_ik
      + eta^2 v_i v_k [sum_cd u_c u_d I4(i, k, c, d) + sigma^2 J2(i, k)]`
    - `dv_i/dalpha = -eta_v sum_c u_c I2(i, c)` (two-layer mode; zero for the soft committee machine).

    **Arguments:**

    - `state`: the [`Overlaps`][] at which to evaluate (one state; lift over a batch with `vmap`).
    - `config`: the [`SGDConfig`][]: `eta`, `eta_v`, `sigma`, `weight_decay` (`lambda`), `mode`, `activation`.

    **Returns:** an [`Overlaps`][] of derivatives: `Q: Float[Array, "K K"]` (symmetric),
    `R: Float[Array, "K M"]`, `v: Float[Array, " K"]`, and zeros for `T` and `v_star` (the teacher is constant).
    The integrators ([`solve_ode`][]) and the fixed points ([`solve_fixed_point`][])
    all call this one function.

    **Example:**
    ```python
    d = jp.vector_field(jp.Overlaps.reference(K=2, M=2), jp.SGDConfig(eta=0.5, sigma=0.1))
    d.R  # dR/dalpha at the reference initial state
    ```

    Implementation: `I4(i, k, c, d)` is evaluated on the independent student pairs `i <= k` (by symmetry), each pair
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
    ik_a, ik_b, position = pair_indices(K)
    quad = i4_pair_sums(act, C, ik_a, ik_b, u[:, None] * u[None, :])
    quad_full = quad[position] + jnp.square(config.sigma) * j2_block(act, C, students, students)
    dQ = dQ_linear + jnp.square(config.eta) * v[:, None] * v[None, :] * quad_full

    if config.mode == "two-layer":
        dv = -config.eta_v * (i2_block(act, C, students, np.arange(C.shape[0])) @ u)
    else:
        dv = jnp.zeros_like(v)
    return Overlaps(Q=dQ, R=dR, T=jnp.zeros_like(state.T), v=dv, v_star=jnp.zeros_like(state.v_star))
