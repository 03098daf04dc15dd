"""Pruning designed by gradient (docs/theory.md, section 7): masks on a concrete network, population-level
keep rules and subset distributions, and design through training.
"""

from ._loop import DesignTrace as DesignTrace
from ._loop import run_design as run_design
from ._loop import project_capped_simplex as project_capped_simplex
from ._loop import Projection as Projection
from ._loop import Penalty as Penalty
from ._network import optimal_second_layer as optimal_second_layer
from ._network import masked_network_overlaps as masked_network_overlaps
from ._network import masked_network_error as masked_network_error
from ._network import NetworkDesign as NetworkDesign
from ._network import design_edge_mask as design_edge_mask
from ._network import edge_mask_errors as edge_mask_errors
from ._node import NodeDesign as NodeDesign
from ._node import design_node_mask as design_node_mask
from ._node import node_subset_errors as node_subset_errors
from ._node import node_subset_table as node_subset_table
from ._rule import EdgeRule as EdgeRule
from ._rule import UniformAllocation as UniformAllocation
from ._rule import FreeAllocation as FreeAllocation
from ._rule import edge_rule_moments as edge_rule_moments
from ._rule import conditional_kernels as conditional_kernels
from ._rule import conditional_kernels_fit as conditional_kernels_fit
from ._rule import edge_rule_state as edge_rule_state
from ._rule import RuleDesign as RuleDesign
from ._rule import design_edge_rule as design_edge_rule
from ._rule import sample_edge_rule_mask as sample_edge_rule_mask
from ._subsets import SubsetDesign as SubsetDesign
from ._subsets import KDPPFamily as KDPPFamily
from ._subsets import BernoulliFamily as BernoulliFamily
from ._subsets import design_subset_distribution as design_subset_distribution
from ._subsets import subset_log_probs as subset_log_probs
from ._training import retrain_pruned as retrain_pruned
from ._training import retrain_subsets as retrain_subsets
from ._training import TrainingDesign as TrainingDesign
from ._training import design_through_training as design_through_training
from ._training import training_subset_errors as training_subset_errors
from ._training import FORWARD_MODE_MAX_K as FORWARD_MODE_MAX_K

__all__ = [
    "BernoulliFamily",
    "DesignTrace",
    "EdgeRule",
    "FORWARD_MODE_MAX_K",
    "FreeAllocation",
    "KDPPFamily",
    "NetworkDesign",
    "NodeDesign",
    "Penalty",
    "Projection",
    "RuleDesign",
    "SubsetDesign",
    "TrainingDesign",
    "UniformAllocation",
    "conditional_kernels",
    "conditional_kernels_fit",
    "design_edge_mask",
    "design_edge_rule",
    "design_node_mask",
    "design_subset_distribution",
    "design_through_training",
    "edge_rule_moments",
    "edge_mask_errors",
    "edge_rule_state",
    "masked_network_error",
    "masked_network_overlaps",
    "node_subset_errors",
    "node_subset_table",
    "optimal_second_layer",
    "project_capped_simplex",
    "retrain_pruned",
    "retrain_subsets",
    "run_design",
    "sample_edge_rule_mask",
    "subset_log_probs",
    "training_subset_errors",
]
