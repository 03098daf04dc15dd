"""Real data: data sets, MLPs trained on them and their checkpoints, and pruning a trained MLP's first hidden
layer by every node and edge method (docs/theory.md, section 6.3, last item): data-based unit scores and k-DPP
kernels, node and edge masks (the methods are the option objects of `jaxprune.pruning` and three of this
package, see `realdata_option`), fusing and least-squares reweighting, matched parameter counts, test errors.
"""

from ._data import Dataset as Dataset
from ._data import load_digits as load_digits
from ._data import parse_idx as parse_idx
from ._data import load_mnist as load_mnist
from ._data import load_cifar10 as load_cifar10
from ._data import load_dataset as load_dataset
from ._data import DATASET_NAMES as DATASET_NAMES
from ._mlp import MLP as MLP
from ._mlp import make_mlp as make_mlp
from ._mlp import preset_sizes as preset_sizes
from ._mlp import first_layer as first_layer
from ._mlp import hidden_activations as hidden_activations
from ._mlp import replace_first_layer as replace_first_layer
from ._mlp import replace_second_layer_weights as replace_second_layer_weights
from ._mlp import num_first_layer_params as num_first_layer_params
from ._mlp import evaluate as evaluate
from ._mlp import accuracy as accuracy
from ._mlp import TrainConfig as TrainConfig
from ._mlp import TrainHistory as TrainHistory
from ._mlp import train as train
from ._checkpoint import save_checkpoint as save_checkpoint
from ._checkpoint import read_checkpoint_meta as read_checkpoint_meta
from ._checkpoint import load_checkpoint as load_checkpoint
from ._checkpoint import TrainOrLoadResult as TrainOrLoadResult
from ._checkpoint import train_or_load as train_or_load
from ._kernels import NODE_KERNELS as NODE_KERNELS
from ._kernels import data_node_kernel as data_node_kernel
from ._kernels import data_importance_scores as data_importance_scores
from ._kernels import edge_dpp_eigen as edge_dpp_eigen
from ._kernels import sample_kdpp_masks as sample_kdpp_masks
from ._surrogate import surrogate_node_mask as surrogate_node_mask
from ._surrogate import surrogate_edge_mask as surrogate_edge_mask
from ._options import DesignedNodes as DesignedNodes
from ._options import DesignedEdges as DesignedEdges
from ._options import RefitEdges as RefitEdges
from ._options import NODE_METHODS as NODE_METHODS
from ._options import EDGE_METHODS as EDGE_METHODS
from ._options import REWEIGHTS as REWEIGHTS
from ._options import RANDOMISED as RANDOMISED
from ._options import OPTION_KINDS as OPTION_KINDS
from ._options import realdata_option as realdata_option
from ._options import is_randomised as is_randomised
from ._prune import node_masks as node_masks
from ._prune import augmented_gram as augmented_gram
from ._prune import fuse_nodes as fuse_nodes
from ._prune import prune_nodes_network as prune_nodes_network
from ._prune import first_layer_params as first_layer_params
from ._prune import edge_count as edge_count
from ._prune import edge_masks as edge_masks
from ._prune import prune_edges_network as prune_edges_network
from ._evaluate import first_layer_activations as first_layer_activations
from ._evaluate import masked_test_errors as masked_test_errors
from ._evaluate import finetuned_test_errors as finetuned_test_errors

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "DesignedEdges",
    "DesignedNodes",
    "EDGE_METHODS",
    "MLP",
    "NODE_KERNELS",
    "NODE_METHODS",
    "OPTION_KINDS",
    "RANDOMISED",
    "REWEIGHTS",
    "RefitEdges",
    "TrainConfig",
    "TrainHistory",
    "TrainOrLoadResult",
    "accuracy",
    "augmented_gram",
    "data_importance_scores",
    "data_node_kernel",
    "edge_count",
    "edge_dpp_eigen",
    "edge_masks",
    "evaluate",
    "finetuned_test_errors",
    "first_layer",
    "first_layer_activations",
    "first_layer_params",
    "fuse_nodes",
    "hidden_activations",
    "is_randomised",
    "load_checkpoint",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "make_mlp",
    "masked_test_errors",
    "node_masks",
    "num_first_layer_params",
    "parse_idx",
    "preset_sizes",
    "prune_edges_network",
    "prune_nodes_network",
    "read_checkpoint_meta",
    "realdata_option",
    "replace_first_layer",
    "replace_second_layer_weights",
    "sample_kdpp_masks",
    "save_checkpoint",
    "surrogate_edge_mask",
    "surrogate_node_mask",
    "train",
    "train_or_load",
]
