"""Pruning as a map on order parameters (docs/theory.md, section 6): node pruning (random, importance,
k-DPP selectors; reweighting rules), edge pruning (random, magnitude, DPP rules; rescaling), the k-DPP algebra,
parameter budgets, the closed forms at the specialised state, and method comparison tables.
"""

from ._dpp import KDPPEigen as KDPPEigen
from ._dpp import check_kdpp_kernel as check_kdpp_kernel
from ._dpp import enumerate_subsets as enumerate_subsets
from ._dpp import kdpp_eigen as kdpp_eigen
from ._dpp import kdpp_enumerate as kdpp_enumerate
from ._dpp import kdpp_log_prob as kdpp_log_prob
from ._dpp import kdpp_marginals as kdpp_marginals
from ._dpp import log_elementary_symmetric as log_elementary_symmetric
from ._dpp import sample_kdpp as sample_kdpp
from ._dpp import sample_kdpp_mask as sample_kdpp_mask
from ._dpp import sample_uniform_subset as sample_uniform_subset
from ._dpp import sample_uniform_subset_mask as sample_uniform_subset_mask
from ._dpp import uniform_marginals as uniform_marginals
from ._node import NodePruningResult as NodePruningResult
from ._node import expected_node_error as expected_node_error
from ._node import expected_node_error_closed_form as expected_node_error_closed_form
from ._node import importance_mask as importance_mask
from ._node import importance_scores as importance_scores
from ._node import kernel_matrix as kernel_matrix
from ._node import prune_nodes as prune_nodes
from ._node import reweighted_output_weights as reweighted_output_weights
from ._edge import EdgeMoments as EdgeMoments
from ._edge_theory import EdgePruningResult as EdgePruningResult
from ._edge import apply_edge_mask as apply_edge_mask
from ._edge import apply_edge_moments as apply_edge_moments
from ._edge import dpp_edge_mask as dpp_edge_mask
from ._edge import dpp_keep_prob as dpp_keep_prob
from ._edge import dpp_mu as dpp_mu
from ._edge import dpp_moments as dpp_moments
from ._edge import edge_dpp_kernels as edge_dpp_kernels
from ._edge import edge_moments as edge_moments
from ._edge import edge_params as edge_params
from ._edge_theory import edge_prune_theory as edge_prune_theory
from ._edge_theory import edge_rescale as edge_rescale
from ._edge import magnitude_edge_mask as magnitude_edge_mask
from ._edge import magnitude_moments as magnitude_moments
from ._edge import magnitude_threshold as magnitude_threshold
from ._edge import matched_keep_fraction as matched_keep_fraction
from ._edge import node_params as node_params
from ._edge_theory import optimal_edge_rescale as optimal_edge_rescale
from ._edge import random_edge_mask as random_edge_mask
from ._edge import random_moments as random_moments
from ._edge import reweight_edges as reweight_edges
from ._bounds import Specialised as Specialised
from ._bounds_node import NodeBounds as NodeBounds
from ._bounds import specialisation as specialisation
from ._bounds import specialised_state as specialised_state
from ._bounds import group_counts as group_counts
from ._bounds import count_vectors as count_vectors
from ._bounds import count_distribution as count_distribution
from ._bounds import node_error_counts as node_error_counts
from ._bounds import random_node_error as random_node_error
from ._bounds import dpp_node_error as dpp_node_error
from ._bounds import balanced_node_error as balanced_node_error
from ._bounds_node import node_error_range as node_error_range
from ._bounds_node import optimal_reweight_bound as optimal_reweight_bound
from ._bounds_edge import edge_error as edge_error
from ._bounds_edge import specialised_edge_moments as specialised_edge_moments
from ._bounds_node import importance_counts as importance_counts
from ._bounds_node import importance_node_error as importance_node_error
from ._bounds_table import bounds_table as bounds_table
from ._compare import NODE_METHODS as NODE_METHODS
from ._compare import EDGE_METHODS as EDGE_METHODS
from ._compare import METHODS as METHODS
from ._compare import NODE_REWEIGHTS as NODE_REWEIGHTS
from ._compare import EDGE_RESCALES as EDGE_RESCALES
from ._compare import prune_expected as prune_expected
from ._compare import compare_methods as compare_methods
from ._compare import best_by_method as best_by_method
from ._compare import format_compare_table as format_compare_table
from ._masks import top_k_mask as top_k_mask
from ._linalg import logdet_psd as logdet_psd
from ._linalg import solve_psd as solve_psd
from ._options import AbstractNodeSelector as AbstractNodeSelector
from ._options import RandomNodes as RandomNodes
from ._options import ImportanceNodes as ImportanceNodes
from ._options import DPPNodes as DPPNodes
from ._options import AbstractReweight as AbstractReweight
from ._options import NoReweight as NoReweight
from ._options import PreactivationReweight as PreactivationReweight
from ._options import ActivationReweight as ActivationReweight
from ._options import OptimalReweight as OptimalReweight
from ._options import AbstractEdgeRule as AbstractEdgeRule
from ._options import RandomEdges as RandomEdges
from ._options import MagnitudeEdges as MagnitudeEdges
from ._options import DPPEdges as DPPEdges
from ._options import AbstractRescale as AbstractRescale
from ._options import NoRescale as NoRescale
from ._options import InverseKeepRescale as InverseKeepRescale
from ._options import OptimalRescale as OptimalRescale
from ._options import pruning_option as pruning_option

__all__ = [
    "AbstractEdgeRule",
    "AbstractNodeSelector",
    "AbstractRescale",
    "AbstractReweight",
    "ActivationReweight",
    "DPPEdges",
    "DPPNodes",
    "EDGE_METHODS",
    "EDGE_RESCALES",
    "EdgeMoments",
    "EdgePruningResult",
    "ImportanceNodes",
    "InverseKeepRescale",
    "KDPPEigen",
    "METHODS",
    "MagnitudeEdges",
    "NODE_METHODS",
    "NODE_REWEIGHTS",
    "NoRescale",
    "NoReweight",
    "NodeBounds",
    "NodePruningResult",
    "OptimalRescale",
    "OptimalReweight",
    "PreactivationReweight",
    "RandomEdges",
    "RandomNodes",
    "Specialised",
    "apply_edge_mask",
    "apply_edge_moments",
    "balanced_node_error",
    "best_by_method",
    "bounds_table",
    "check_kdpp_kernel",
    "compare_methods",
    "count_distribution",
    "count_vectors",
    "dpp_edge_mask",
    "dpp_keep_prob",
    "dpp_moments",
    "dpp_mu",
    "dpp_node_error",
    "edge_dpp_kernels",
    "edge_error",
    "edge_moments",
    "edge_params",
    "edge_prune_theory",
    "edge_rescale",
    "enumerate_subsets",
    "expected_node_error",
    "expected_node_error_closed_form",
    "format_compare_table",
    "group_counts",
    "importance_counts",
    "importance_mask",
    "importance_node_error",
    "importance_scores",
    "kdpp_eigen",
    "kdpp_enumerate",
    "kdpp_log_prob",
    "kdpp_marginals",
    "kernel_matrix",
    "log_elementary_symmetric",
    "logdet_psd",
    "magnitude_edge_mask",
    "magnitude_moments",
    "magnitude_threshold",
    "matched_keep_fraction",
    "node_error_counts",
    "node_error_range",
    "node_params",
    "optimal_edge_rescale",
    "optimal_reweight_bound",
    "prune_expected",
    "prune_nodes",
    "pruning_option",
    "random_edge_mask",
    "random_moments",
    "random_node_error",
    "reweight_edges",
    "reweighted_output_weights",
    "sample_kdpp",
    "sample_kdpp_mask",
    "sample_uniform_subset",
    "sample_uniform_subset_mask",
    "solve_psd",
    "specialisation",
    "specialised_edge_moments",
    "specialised_state",
    "top_k_mask",
    "uniform_marginals",
]
