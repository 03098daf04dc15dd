"""Result codes shared by every solver (ODE, fixed point, sweeps, pruning).

Inside `jit`/`vmap` a solver returns an integer code per configuration; it raises only at the boundary
(when `throw=True`). `describe(code)` turns a code into words.
"""

from __future__ import annotations

import enum

__all__ = ["Status", "describe"]


class Status(enum.IntEnum):
    """Outcome of a solve (docs/theory.md section 5.1): an `IntEnum`, so a code compares equal to its integer
    and to the `int32` arrays that solvers return inside `jit` and `vmap` (one code per configuration).

    **Example:**
    ```python
    sol = jp.solve_ode(state0, config, alphas, throw=False)
    if sol.status != jp.Status.SUCCESS:
        print(jp.describe(sol.status))
    ```
    """

    #: the solve succeeded (for fixed points: converged, physical, linearly stable)
    SUCCESS = 0
    #: the overlaps grew beyond the divergence threshold or became non-finite
    DIVERGED = 1
    #: the step budget ran out before the final time (adaptive ODE) or before convergence (root finder)
    MAX_STEPS = 2
    #: a linear system was singular (e.g. duplicated student units); a pseudo-inverse/ridge was used
    SINGULAR = 3
    #: the root finder stopped without meeting its tolerance
    NOT_CONVERGED = 4
    #: converged to a stationary point whose Jacobian has an eigenvalue with positive real part
    UNSTABLE = 5
    #: the input was invalid for this configuration (e.g. a kernel of rank below k)
    INVALID = 6


_WORDS = {
    Status.SUCCESS: "success",
    Status.DIVERGED: "diverged (overlaps unbounded or non-finite)",
    Status.MAX_STEPS: "step budget exhausted",
    Status.SINGULAR: "singular or marginal: a singular linear system, or a zero mode (continuum of fixed points)",
    Status.NOT_CONVERGED: "not converged",
    Status.UNSTABLE: "unstable stationary point",
    Status.INVALID: "invalid input",
}


def describe(code) -> str:
    """A short phrase for a status code.

    **Arguments:**

    - `code`: a [`Status`][], an `int` or a 0-d integer array (one element of a solver's `status`).

    **Returns:** a phrase such as `"diverged (overlaps unbounded or non-finite)"`; `"unknown status n"` for an
    integer that is no [`Status`][].
    """
    try:
        return _WORDS[Status(int(code))]
    except ValueError:
        return f"unknown status {int(code)}"
