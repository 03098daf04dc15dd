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
from ._bounds import Specialised as Specialised
from ._bounds import bounds_table as bounds_table
from ._bounds import specialisation as specialisation
from ._bounds import specialised_state as specialised_state
from ._compare import compare_methods as compare_methods
from ._compare import prune_expected as prune_expected
from ._dpp import kdpp_eigen as kdpp_eigen
from ._dpp import kdpp_enumerate as kdpp_enumerate
from ._dpp import kdpp_marginals as kdpp_marginals
from ._dpp import sample_kdpp as sample_kdpp
from ._dpp import sample_kdpp_mask as sample_kdpp_mask
from ._dynamics import INTEGRATORS as INTEGRATORS
from ._dynamics import ODESolution as ODESolution
from ._dynamics import SGDConfig as SGDConfig
from ._dynamics import alpha_grid as alpha_grid
from ._dynamics import solve_ode as solve_ode
from ._dynamics import solve_ode_batch as solve_ode_batch
from ._dynamics import vector_field as vector_field
from ._edge import EdgePruningResult as EdgePruningResult
from ._edge import apply_edge_mask as apply_edge_mask
from ._edge import dpp_edge_mask as dpp_edge_mask
from ._edge import edge_moments as edge_moments
from ._edge import edge_prune_theory as edge_prune_theory
from ._edge import magnitude_edge_mask as magnitude_edge_mask
from ._edge import matched_keep_fraction as matched_keep_fraction
from ._edge import random_edge_mask as random_edge_mask
from ._edge import reweight_edges as reweight_edges
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
from ._node import NodePruningResult as NodePruningResult
from ._node import expected_node_error as expected_node_error
from ._node import expected_node_error_closed_form as expected_node_error_closed_form
from ._node import kernel_matrix as kernel_matrix
from ._node import prune_nodes as prune_nodes
from ._overlaps import Overlaps as Overlaps
from ._overlaps import load_state as load_state
from ._overlaps import overlaps_from_weights as overlaps_from_weights
from ._overlaps import save_state as save_state
from ._overlaps import validate_overlaps as validate_overlaps
from ._simulate import SimulationResult as SimulationResult
from ._simulate import Student as Student
from ._simulate import Teacher as Teacher
from ._simulate import init_student as init_student
from ._simulate import make_teacher as make_teacher
from ._simulate import simulate as simulate
from ._simulate import simulate_seeds as simulate_seeds
from ._status import Status as Status
from ._status import describe as describe
from ._sweep import run_sweep as run_sweep

try:
    __version__ = importlib.metadata.version("jaxprune")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
