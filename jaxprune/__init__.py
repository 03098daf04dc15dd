"""jaxprune: statistical mechanics of neural-network pruning in JAX.

Teacher-student order parameters, their online-SGD ODEs and fixed points, a finite-N simulation to check
them, pruning as a map on order parameters, and gradient-based design of pruning masks.
See THEORY.md (in the project's shared folder) for the conventions.
"""

import importlib.metadata

from ._activations import AbstractActivation as AbstractActivation
from ._activations import Erf as Erf
from ._activations import Linear as Linear
from ._activations import get_activation as get_activation
from ._dynamics import INTEGRATORS as INTEGRATORS
from ._dynamics import ODESolution as ODESolution
from ._dynamics import SGDConfig as SGDConfig
from ._dynamics import alpha_grid as alpha_grid
from ._dynamics import solve_ode as solve_ode
from ._dynamics import vector_field as vector_field
from ._error import activation_covariance as activation_covariance
from ._error import generalisation_error as generalisation_error
from ._error import test_mse as test_mse
from ._integrals import i2 as i2
from ._integrals import i3 as i3
from ._integrals import i4 as i4
from ._integrals import j2 as j2
from ._overlaps import Overlaps as Overlaps
from ._overlaps import load_state as load_state
from ._overlaps import overlaps_from_weights as overlaps_from_weights
from ._overlaps import save_state as save_state
from ._overlaps import validate_overlaps as validate_overlaps
from ._status import Status as Status
from ._status import describe as describe

try:
    __version__ = importlib.metadata.version("jaxprune")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
