"""npdl: NumPy deep learning for CIFAR-10 with the course's API.

Course code needs only its import line changed, e.g.
``from npdl import ClassificationNet, Solver, Relu, Adam, DataLoader``.
"""

__version__ = "0.1.0"

from .activations import ELU, Activation, LeakyRelu, Maxout, Relu, Sigmoid, Tanh, make_activation
from .layers import (
    ActivationLayer,
    Affine,
    BatchNorm,
    Dropout,
    Layer,
    affine_backward,
    affine_forward,
)
from .losses import BCE, L1, MSE, CrossEntropyFromLogits, Loss
from .network import ClassificationNet, load_model
from .optimizers import SGD, Adam, Optimizer, SGDMomentum
from .solver import Solver

__all__ = [
    "BCE",
    "ELU",
    "L1",
    "MSE",
    "SGD",
    "Activation",
    "ActivationLayer",
    "Adam",
    "Affine",
    "BatchNorm",
    "ClassificationNet",
    "CrossEntropyFromLogits",
    "Dropout",
    "Layer",
    "LeakyRelu",
    "Loss",
    "Maxout",
    "Optimizer",
    "Relu",
    "SGDMomentum",
    "Sigmoid",
    "Solver",
    "Tanh",
    "__version__",
    "affine_backward",
    "affine_forward",
    "load_model",
    "make_activation",
]
