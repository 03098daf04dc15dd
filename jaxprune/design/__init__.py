"""Pruning designed by gradient (docs/theory.md, section 7): masks on a concrete network, population-level
keep rules and subset distributions, and design through training.
"""

from ._design import DesignTrace as DesignTrace
from ._design import run_design as run_design
from ._design import project_capped_simplex as project_capped_simplex
from ._design import optimal_second_layer as optimal_second_layer
from ._design import masked_network_overlaps as masked_network_overlaps
from ._design import masked_network_error as masked_network_error
from ._design import NetworkDesign as NetworkDesign
from ._design import design_edge_mask as design_edge_mask
from ._design import NodeDesign as NodeDesign
from ._design import design_node_mask as design_node_mask
from ._design import node_subset_errors as node_subset_errors
from ._design import EdgeRule as EdgeRule
from ._design import edge_rule_moments as edge_rule_moments
from ._design import conditional_kernels as conditional_kernels
from ._design import edge_rule_state as edge_rule_state
from ._design import RuleDesign as RuleDesign
from ._design import design_edge_rule as design_edge_rule
from ._design import sample_edge_rule_mask as sample_edge_rule_mask
from ._design import SubsetDesign as SubsetDesign
from ._design import design_subset_distribution as design_subset_distribution
from ._design import subset_log_probs as subset_log_probs
from ._design import retrain_pruned as retrain_pruned
from ._design import TrainingDesign as TrainingDesign
from ._design import design_through_training as design_through_training
