"""Real data: data sets, MLPs trained on them, and checkpoints.
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
from ._mlp import save_checkpoint as save_checkpoint
from ._mlp import read_checkpoint_meta as read_checkpoint_meta
from ._mlp import load_checkpoint as load_checkpoint
from ._mlp import TrainOrLoadResult as TrainOrLoadResult
from ._mlp import train_or_load as train_or_load
