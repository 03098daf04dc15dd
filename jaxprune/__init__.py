"""jaxprune: statistical mechanics of neural-network pruning in JAX.

Teacher-student order parameters, their online-SGD ODEs and fixed points, a finite-N simulation to check
them, pruning as a map on order parameters, and gradient-based design of pruning masks.
See docs/theory.md for the conventions and formulas.

The core (this namespace) holds the order-parameter theory and the finite-N simulation. The library layers
above it are subpackages, imported on first use: `jaxprune.pruning` (pruning as a map on order parameters),
`jaxprune.design` (masks designed by gradient) and `jaxprune.realdata` (data sets and MLPs). The experiments
built on the library (the seed paper's claims, sweeps, the real-data run, `reproduce`) are not part of it:
they live in the `jaxprune.experiments` package, which a user imports explicitly and the library never does.
"""

import importlib.metadata

from ._activations import AbstractActivation as AbstractActivation
from ._activations import Erf as Erf
from ._activations import Linear as Linear
from ._activations import get_activation as get_activation
from ._config import SGDConfig as SGDConfig
from ._fixed_point import solve_fixed_point_batch as solve_fixed_point_batch
from ._fixed_point import fixed_point_from_ode_batch as fixed_point_from_ode_batch
from ._cache import enable_compile_cache as enable_compile_cache
from ._cache import disable_compile_cache as disable_compile_cache
from ._cache import default_cache_dir as default_cache_dir
from ._cache import cache_info as cache_info
from ._ode import INTEGRATORS as INTEGRATORS
from ._ode import ODESolution as ODESolution
from ._ode import alpha_grid as alpha_grid
from ._ode import solve_ode as solve_ode
from ._vector_field import vector_field as vector_field
from ._fixed_point import FixedPointResult as FixedPointResult
from ._fixed_point import fixed_point_from_ode as fixed_point_from_ode
from ._fixed_point import solve_fixed_point as solve_fixed_point
from ._error import activation_covariance as activation_covariance
from ._error import generalisation_error as generalisation_error
from ._error import test_mse as test_mse
from ._integrals import i2 as i2
from ._integrals import i3 as i3
from ._integrals import i4 as i4
from ._integrals import j2 as j2
from ._overlaps import Overlaps as Overlaps
from ._overlaps import load_state as load_state
from ._overlaps import normalise_student as normalise_student
from ._overlaps import overlaps_from_weights as overlaps_from_weights
from ._overlaps import save_state as save_state
from ._overlaps import validate_overlaps as validate_overlaps
from ._simulate import SimulationResult as SimulationResult
from ._networks import Student as Student
from ._networks import Teacher as Teacher
from ._networks import init_student as init_student
from ._networks import make_teacher as make_teacher
from ._networks import fresh_test_mse as fresh_test_mse
from ._simulate import simulate as simulate
from ._simulate import simulate_seeds as simulate_seeds
from ._status import Status as Status
from ._status import describe as describe

__all__ = [
    "AbstractActivation",
    "Erf",
    "FixedPointResult",
    "INTEGRATORS",
    "Linear",
    "ODESolution",
    "Overlaps",
    "SGDConfig",
    "SimulationResult",
    "Status",
    "Student",
    "Teacher",
    "__version__",
    "activation_covariance",
    "alpha_grid",
    "cache_info",
    "default_cache_dir",
    "describe",
    "design",
    "disable_compile_cache",
    "enable_compile_cache",
    "fixed_point_from_ode",
    "fixed_point_from_ode_batch",
    "fresh_test_mse",
    "generalisation_error",
    "get_activation",
    "i2",
    "i3",
    "i4",
    "init_student",
    "j2",
    "load_state",
    "make_teacher",
    "normalise_student",
    "overlaps_from_weights",
    "pruning",
    "realdata",
    "save_state",
    "simulate",
    "simulate_seeds",
    "solve_fixed_point",
    "solve_fixed_point_batch",
    "solve_ode",
    "test_mse",
    "validate_overlaps",
    "vector_field",
]

try:
    __version__ = importlib.metadata.version("jaxprune")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

_SUBPACKAGES = {"pruning": "jaxprune.pruning", "design": "jaxprune.design", "realdata": "jaxprune.realdata"}


def __getattr__(name: str):
    # Subpackages load on first use, so that `import jaxprune` stays light (start-up time of the CLI).
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(_SUBPACKAGES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBPACKAGES))

