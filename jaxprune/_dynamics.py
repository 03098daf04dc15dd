"""Old import path of the ODE layer, kept so that existing `from jaxprune._dynamics import ...` lines work.

The code lives in `_vector_field` (the formula), `_ode` (one initial state) and `_ode_batch` (a batch as one
system); `SGDConfig` in `_config`. New code imports the public names from `jaxprune`.
"""

from ._config import SGDConfig as SGDConfig
from ._ode import INTEGRATORS as INTEGRATORS
from ._ode import ODESolution as ODESolution
from ._ode import alpha_grid as alpha_grid
from ._ode import solve_ode as solve_ode
from ._ode_batch import solve_ode_batch as solve_ode_batch
from ._vector_field import pair_indices as _pair_indices
from ._vector_field import vector_field as vector_field

__all__ = ["SGDConfig", "INTEGRATORS", "ODESolution", "alpha_grid", "solve_ode", "solve_ode_batch", "vector_field"]
