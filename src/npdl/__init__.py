"""npdl: NumPy deep learning for CIFAR-10 with the course's API.

Course code needs only its import lines changed, e.g.
``from npdl import ClassificationNet, Solver, Relu, Adam, DataLoader`` (the README's
"Course code" section lists one line per course module).
"""

import importlib

from .activations import ELU, Activation, LeakyRelu, Maxout, Relu, Sigmoid, Tanh, make_activation
from .data import (
    DEFAULT_SPLIT,
    BatchTransform,
    ComposeTransform,
    DataLoader,
    FlattenTransform,
    IdentityTransform,
    ImageFolderDataset,
    ImageSource,
    MemoryImageFolderDataset,
    NormalizeTransform,
    RandomCrop,
    RandomFlipCrop,
    RandomHorizontalFlip,
    RescaleTransform,
    Transform,
    compute_image_mean_and_std,
    decode_image,
    list_image_archive,
    list_image_folder,
    open_image_source,
    read_cifar10_python_archive,
    split_source_indices,
    stratified_split,
    stratified_subset,
)
from .hidden_layer import HiddenLayer
from .layers import (
    ActivationLayer,
    Affine,
    BatchNorm,
    Dropout,
    Layer,
    Projection,
    affine_backward,
    affine_forward,
)
from .losses import BCE, L1, MSE, CrossEntropyFromLogits, Loss
from .network import ClassificationNet, MyOwnNetwork, load_model
from .optimizers import SGD, Adam, Optimizer, SGDMomentum, sgd_momentum
from .solver import Solver
from .version import __version__

#: The course's search functions, importable from ``npdl`` as from its module.
_SEARCH_FUNCTIONS = ("findBestConfig", "grid_search", "random_search")


def __getattr__(name: str):
    # The course's search helpers load on first use (``npdl.hyperparameter_tuning``), so
    # that ``import npdl`` for a single training does not load the search package.
    if name == "hyperparameter_tuning":
        return importlib.import_module(f"{__name__}.{name}")
    if name in _SEARCH_FUNCTIONS:
        return getattr(importlib.import_module(f"{__name__}.hyperparameter_tuning"), name)
    raise AttributeError(f"module 'npdl' has no attribute {name!r}")


__all__ = [
    "BCE",
    "DEFAULT_SPLIT",
    "ELU",
    "L1",
    "MSE",
    "SGD",
    "Activation",
    "ActivationLayer",
    "Adam",
    "Affine",
    "BatchNorm",
    "BatchTransform",
    "ClassificationNet",
    "ComposeTransform",
    "CrossEntropyFromLogits",
    "DataLoader",
    "Dropout",
    "FlattenTransform",
    "HiddenLayer",
    "IdentityTransform",
    "ImageFolderDataset",
    "ImageSource",
    "Layer",
    "LeakyRelu",
    "Loss",
    "Maxout",
    "MemoryImageFolderDataset",
    "MyOwnNetwork",
    "NormalizeTransform",
    "Optimizer",
    "Projection",
    "RandomCrop",
    "RandomFlipCrop",
    "RandomHorizontalFlip",
    "Relu",
    "RescaleTransform",
    "SGDMomentum",
    "Sigmoid",
    "Solver",
    "Tanh",
    "Transform",
    "__version__",
    "affine_backward",
    "affine_forward",
    "compute_image_mean_and_std",
    "decode_image",
    "findBestConfig",
    "grid_search",
    "hyperparameter_tuning",
    "list_image_archive",
    "list_image_folder",
    "load_model",
    "make_activation",
    "open_image_source",
    "random_search",
    "read_cifar10_python_archive",
    "sgd_momentum",
    "split_source_indices",
    "stratified_split",
    "stratified_subset",
]
