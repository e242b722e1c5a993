"""``ClassificationNet``: the course's fully connected classifier, grown up.

The network is a list of layers following the contract of :mod:`npdl.layers`. The
course's view of it is kept: ``model.params`` and ``model.grads`` are dicts keyed
``W1, b1, W2, b2, ...`` (plus ``gamma<i>``/``beta<i>`` with batch norm) whose
values are the layers' own arrays, so optimizers update the layers in place and
assigning ``model.params[name] = array`` (or a whole dict) writes into the layers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, MutableMapping
from pathlib import Path

import numpy as np

from .activations import Relu, Sigmoid, as_activation, make_activation
from .hidden_layer import HiddenLayer
from .io import load_npz, save_npz
from .layers import ActivationLayer, Affine, BatchNorm, Dropout, Layer, Projection
from .version import __version__

#: Version of the model file layout; bumped on incompatible changes.
MODEL_FORMAT = 1
INIT_SCHEMES = ("std", "he", "xavier")


class _LayerArrays(MutableMapping):
    """Dict-like view ``'W1' -> layer.params['W']`` over the network's layers."""

    def __init__(self, index: dict[str, tuple[Layer, str]], attribute: str):
        self._index = index
        self._attribute = attribute

    def _slot(self, name: str):
        try:
            layer, key = self._index[name]
        except KeyError:
            raise KeyError(f"no parameter {name!r}; the network has {list(self._index)}") from None
        return getattr(layer, self._attribute), key

    def __getitem__(self, name: str) -> np.ndarray:
        arrays, key = self._slot(name)
        return arrays[key]

    def __setitem__(self, name: str, value) -> None:
        arrays, key = self._slot(name)
        target = arrays[key]
        value = np.asarray(value)
        if value.ndim == 0:
            # The course's optimizers reset a gradient with ``model.grads[name] = 0.0``.
            target.fill(value)
            return
        if value.shape != target.shape:
            raise ValueError(
                f"{self._attribute}[{name!r}] has shape {target.shape}, got {value.shape}"
            )
        np.copyto(target, value, casting="same_kind")

    def __delitem__(self, name: str) -> None:
        raise TypeError("a network's parameters cannot be deleted")

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: array{self[k].shape}" for k in self) + "}"


def _hidden_widths(hidden_size, num_layer) -> list[int]:
    """Hidden widths: the list ``hidden_size`` (its depth), or ``num_layer - 1`` times it."""
    if isinstance(hidden_size, list | tuple):
        hidden_sizes = [int(h) for h in hidden_size]
        if num_layer not in (2, len(hidden_sizes) + 1):
            raise ValueError(
                f"hidden_size lists {len(hidden_sizes)} widths, which needs "
                f"num_layer={len(hidden_sizes) + 1}, got num_layer={num_layer}"
            )
    else:
        if int(num_layer) < 1:
            raise ValueError(f"num_layer must be >= 1, got {num_layer!r}")
        hidden_sizes = [int(hidden_size)] * (int(num_layer) - 1)
    if any(h < 1 for h in hidden_sizes):
        raise ValueError(f"hidden sizes must be >= 1, got {hidden_sizes}")
    return hidden_sizes


class ClassificationNet:
    """A fully connected classifier: ``num_layer`` affine layers with activations between.

    Parameters
    ----------
    activation : Activation, Activation class or str
        Activation after every hidden affine layer (course default ``Sigmoid()``; a
        class such as ``Relu`` is instantiated, as the course's 2021 version did).
        With :class:`~npdl.activations.Maxout` the hidden affine layers are widened
        by its number of pieces.
    num_layer : int
        Number of affine layers (2 = one hidden layer, as in the course).
    input_size : int
        Features per sample; inputs of shape (N, ...) are flattened to (N, input_size).
    hidden_size : int or list of int
        Width of every hidden layer, or one width per hidden layer. A list sets the
        depth: ``num_layer`` must then be ``len(hidden_size) + 1`` or its default 2.
    std : float
        Standard deviation of the weights with ``init='std'`` (the course's scheme).
    num_classes : int
    reg : float
        L2 strength: the loss gains ``reg * sum(W**2)`` per weight matrix (reported in
        ``model.reg``) and ``backward`` adds ``2 * reg * W`` to each weight gradient.
    init : {'std', 'he', 'xavier'}
        Weight initialisation: ``std`` * N(0, 1), He (sqrt(2 / fan_in)) or
        Xavier/Glorot (sqrt(2 / (fan_in + fan_out))). Biases start at zero.
    dropout : float
        Inverted-dropout probability after each hidden activation (0 = off).
    batch_norm : bool
        Batch normalisation between each hidden affine layer and its activation.
    dtype : numpy dtype
        Compute dtype, float32 by default (float64 for gradient checks).
    rng : numpy.random.Generator or int or None
        Source of initial weights and dropout masks.
    model_name : str
        Used by :meth:`save_model` for the default file name.
    input_projection : ndarray (input_size, K), int K or None
        A fixed first layer ``x @ P`` (:class:`~npdl.layers.Projection`, saved with
        the model as the buffer ``P0``): e.g. the input's top K principal components,
        so the first trainable layer takes K features instead of ``input_size``. An
        int makes a zero placeholder, to be filled by :meth:`load_state_dict`.
    **kwargs
        Ignored, so a search config can be passed to both model and Solver, as the
        course's search helpers do.

    Attributes
    ----------
    params, grads : dict-like of str -> numpy.ndarray
        ``W1``: ``(input_size, hidden)``, ``b1``: ``(hidden,)``, ...; assigning an array
        (or a scalar, e.g. ``grads[name] = 0.0``) writes into the layers.
    reg : dict of str -> float
        ``reg * sum(W**2)`` per weight matrix of the last forward pass.
    num_operation : int
        Multiply-adds of the affine layers (and the projection) in the last forward
        pass (``N`` times the weights' sizes), which the course's ``Solver`` adds up.

    Calling the model, ``model(X)``, is ``model.forward(X)``.
    """

    def __init__(
        self,
        activation=Sigmoid(),  # noqa: B008 - the course's signature; activations are stateless
        num_layer: int = 2,
        input_size: int = 3 * 32 * 32,
        hidden_size=100,
        std: float = 1e-3,
        num_classes: int = 10,
        reg: float = 0,
        init: str = "std",
        dropout: float = 0.0,
        batch_norm: bool = False,
        dtype=np.float32,
        rng=None,
        model_name: str = "cifar10_classification_net",
        input_projection=None,
        **kwargs,
    ):
        activation = as_activation(activation)
        hidden_sizes = _hidden_widths(hidden_size, num_layer)
        if init not in INIT_SCHEMES:
            raise ValueError(f"unknown init {init!r}; allowed: {', '.join(INIT_SCHEMES)}")
        if reg < 0:
            raise ValueError(f"reg must be >= 0, got {reg!r}")
        self.activation = activation
        self.hidden_sizes = hidden_sizes
        self.num_layer = len(hidden_sizes) + 1
        self.hidden_size = hidden_size
        self.input_size = int(input_size)
        self.num_classes = int(num_classes)
        self.std = float(std)
        self.reg_strength = float(reg)
        self.init = init
        self.dropout = float(dropout)
        self.batch_norm = bool(batch_norm)
        self.dtype = np.dtype(dtype)
        self.rng = np.random.default_rng(rng)
        self.model_name = model_name
        self._projection = self._projection_matrix(input_projection)
        self.training = True
        self.reg: dict[str, float] = {}
        self.num_operation = 0
        # Filled by the pipeline and saved with the model.
        self.class_names: list[str] | None = None
        #: (H, W, C) of the images it was trained on; None when not trained on images.
        self.image_shape: tuple[int, ...] | None = None
        self.preprocessing: dict[str, np.ndarray] = {}
        self.metadata: dict = {}
        self.reset_weights()

    # -- construction -------------------------------------------------------------
    def _projection_matrix(self, projection) -> np.ndarray | None:
        if projection is None:
            return None
        if isinstance(projection, int | np.integer):
            if not 1 <= projection <= self.input_size:
                raise ValueError(
                    f"input_projection={projection} must be between 1 and input_size="
                    f"{self.input_size}"
                )
            return np.zeros((self.input_size, int(projection)), dtype=self.dtype)
        matrix = np.asarray(projection)
        if matrix.ndim != 2 or matrix.shape[0] != self.input_size:
            raise ValueError(
                f"input_projection must have shape (input_size={self.input_size}, K), "
                f"got {matrix.shape}"
            )
        return np.array(matrix, dtype=self.dtype)

    def _initial_weight(self, fan_in: int, fan_out: int) -> np.ndarray:
        scale = {
            "std": self.std,
            "he": np.sqrt(2.0 / fan_in),
            "xavier": np.sqrt(2.0 / (fan_in + fan_out)),
        }[self.init]
        return (scale * self.rng.standard_normal((fan_in, fan_out))).astype(self.dtype)

    def reset_weights(self) -> None:
        """Build the layers with fresh weights (course API)."""
        self.layers: list[Layer] = []
        self._param_index: dict[str, tuple[Layer, str]] = {}
        self._buffer_index: dict[str, tuple[Layer, str]] = {}
        self.fixed_buffers: set[str] = set()  # never changed by training: P0
        fan_in = self.input_size
        pieces = self.activation.pieces
        self._weights_per_sample = 0
        if self._projection is not None:
            self._add(Projection(self._projection, input_grad=False), 0)
            fan_in = self._projection.shape[1]
            self._weights_per_sample += self._projection.size
        for i, width in enumerate([*self.hidden_sizes, self.num_classes], start=1):
            last = i == self.num_layer
            fan_out = width if last else width * pieces
            weight = self._initial_weight(fan_in, fan_out)
            bias = np.zeros(fan_out, dtype=self.dtype)
            self._weights_per_sample += fan_in * fan_out
            if last:
                self._add(Affine(weight, bias, input_grad=i > 1), i)
            elif type(self.activation) is Relu:
                # The common case, in the fewest passes (npdl.hidden_layer).
                hidden = HiddenLayer(
                    weight, bias, self.batch_norm, self.dropout, self.rng, input_grad=i > 1
                )
                self._add(hidden, i)
            else:
                self._add(Affine(weight, bias, input_grad=i > 1), i)
                if self.batch_norm:
                    self._add(BatchNorm(fan_out, dtype=self.dtype), i)
                self.layers.append(ActivationLayer(self.activation))
                if self.dropout > 0:
                    self.layers.append(Dropout(self.dropout, rng=self.rng))
            fan_in = width
        self.params = _LayerArrays(self._param_index, "params")
        self.grads = _LayerArrays(self._param_index, "grads")
        self.buffers = _LayerArrays(self._buffer_index, "buffers")

    def _add(self, layer: Layer, position: int) -> None:
        # Its arrays are the network's own: buffers may be reused across calls.
        layer.internal = True
        self.layers.append(layer)
        for key in layer.params:
            self._param_index[f"{key}{position}"] = (layer, key)
        for key in layer.buffers:
            self._buffer_index[f"{key}{position}"] = (layer, key)
        self.fixed_buffers |= {f"{k}{position}" for k in getattr(layer, "fixed_buffers", ())}

    @property
    def params(self) -> _LayerArrays:
        return self._params

    @params.setter
    def params(self, values) -> None:
        if isinstance(values, _LayerArrays) and (
            not hasattr(self, "_params") or values._index is self._param_index
        ):
            self._params = values
            return
        for name, value in values.items():
            self._params[name] = value

    # -- modes ----------------------------------------------------------------------
    def train(self, mode: bool = True) -> ClassificationNet:
        """Training mode: dropout active, batch norm uses batch statistics."""
        self.training = bool(mode)
        return self

    def eval(self) -> ClassificationNet:
        """Evaluation mode: dropout off, batch norm uses running statistics."""
        return self.train(False)

    # -- computation ----------------------------------------------------------------
    def forward(self, X):
        """Logits of a batch.

        Parameters
        ----------
        X : ndarray, shape (N, ...) with prod(...) == input_size
            Any real dtype; converted to the model's dtype.

        Returns
        -------
        ndarray, shape (N, num_classes), the model's dtype
        """
        out = np.asarray(X, dtype=self.dtype).reshape(len(X), -1)
        if out.shape[1] != self.input_size:
            raise ValueError(
                f"the model takes {self.input_size} features per sample, got {out.shape[1]} "
                f"(input shape {np.shape(X)})"
            )
        for layer in self.layers:
            out = layer.forward(out, self.training)
        self.num_operation = len(out) * self._weights_per_sample
        if self.reg_strength:
            self.reg = {
                name: self.reg_strength * float(np.vdot(w, w))
                for name, w in self.params.items()
                if name.startswith("W")
            }
        return out

    def __call__(self, X):
        """``model(X)`` is :meth:`forward` (the logits)."""
        return self.forward(X)

    def backward(self, dy):
        """Back-propagate ``dy`` (N, num_classes), the loss gradient w.r.t. the logits;
        fills and returns ``model.grads`` (with the ``2 * reg * W`` term)."""
        grad = np.asarray(dy, dtype=self.dtype)
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        if self.reg_strength:
            for name, w in self.params.items():
                if name.startswith("W"):
                    self.grads[name] += (2.0 * self.reg_strength) * w
        return self.grads

    def get_dataset_prediction(self, loader):
        """Predict every batch of a loader in eval mode (course API).

        Returns
        -------
        labels : ndarray (N,) int
        preds : ndarray (N,) int
        acc : float
        """
        was_training = self.training
        self.eval()
        labels, preds = [], []
        try:
            for batch in loader:
                preds.append(self.forward(batch["image"]).argmax(axis=1))
                labels.append(np.asarray(batch["label"]))
        finally:
            self.train(was_training)
        labels, preds = np.concatenate(labels), np.concatenate(preds)
        return labels, preds, float((labels == preds).mean())

    # -- state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of all parameters and buffers, keyed ``W1``, ``running_mean1``, ..."""
        state = {name: value.copy() for name, value in self.params.items()}
        state.update({name: value.copy() for name, value in self.buffers.items()})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy arrays written by :meth:`state_dict` into the layers."""
        expected = set(self.params) | set(self.buffers)
        if set(state) != expected:
            raise ValueError(
                f"state does not fit this network: missing {sorted(expected - set(state))}, "
                f"unexpected {sorted(set(state) - expected)}"
            )
        for name, value in state.items():
            (self.params if name in self.params else self.buffers)[name] = value

    def config(self) -> dict:
        """The architecture as JSON-serialisable constructor arguments."""
        return {
            "activation": self.activation.name,
            "activation_kwargs": self.activation.config(),
            "input_size": self.input_size,
            "hidden_size": list(self.hidden_sizes),
            "num_classes": self.num_classes,
            "std": self.std,
            "reg": self.reg_strength,
            "init": self.init,
            "dropout": self.dropout,
            "batch_norm": self.batch_norm,
            "dtype": self.dtype.name,
            "input_projection": None if self._projection is None else self._projection.shape[1],
        }

    def save_model(self, path: str | os.PathLike | None = None) -> Path:
        """Save a self-contained ``.npz``: weights, architecture, class names,
        preprocessing (normalisation statistics) and metadata. Written atomically.

        Parameters
        ----------
        path : path, optional
            Defaults to ``models/<model_name>.npz`` as in the course.
        """
        path = Path(path) if path is not None else Path("models") / f"{self.model_name}.npz"
        header = {
            "format": MODEL_FORMAT,
            "npdl_version": __version__,
            "model_name": self.model_name,
            "architecture": self.config(),
            "class_names": self.class_names,
            "image_shape": self.image_shape,
            "metadata": self.metadata,
        }
        arrays = {"header": np.array(json.dumps(header))}
        arrays.update({f"state/{k}": v for k, v in self.params.items()})
        arrays.update({f"state/{k}": v for k, v in self.buffers.items()})
        arrays.update({f"preprocessing/{k}": np.asarray(v) for k, v in self.preprocessing.items()})
        save_npz(path, arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ClassificationNet:
        """Load a model written by :meth:`save_model` (never unpickles).

        Raises
        ------
        ValueError
            If the file is truncated or corrupt, from an incompatible format version,
            or its weights do not fit its architecture; the message names the file.
        """
        arrays = load_npz(path)
        try:
            header = json.loads(str(arrays["header"]))
        except (KeyError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is not an npdl model file (no readable header)") from error
        if header.get("format") != MODEL_FORMAT:
            raise ValueError(
                f"{path} has model format {header.get('format')!r} (npdl "
                f"{header.get('npdl_version')}); this npdl {__version__} reads format "
                f"{MODEL_FORMAT}"
            )
        arch = dict(header["architecture"])
        activation = make_activation(arch.pop("activation"), **arch.pop("activation_kwargs"))
        model = cls(activation=activation, model_name=header.get("model_name"), **arch)
        state = {k[len("state/") :]: v for k, v in arrays.items() if k.startswith("state/")}
        try:
            model.load_state_dict(state)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error
        model.class_names = header.get("class_names")
        shape = header.get("image_shape")
        model.image_shape = tuple(shape) if shape is not None else None
        model.metadata = header.get("metadata") or {}
        model.preprocessing = {
            k[len("preprocessing/") :]: v
            for k, v in arrays.items()
            if k.startswith("preprocessing/")
        }
        model.eval()
        return model


class MyOwnNetwork(ClassificationNet):
    """The course's template for a network of your own: a :class:`ClassificationNet`
    to subclass or edit.

    As it stands it *is* a ``ClassificationNet`` with the same arguments (so course code
    that builds ``MyOwnNetwork()`` runs). To make it yours, override what you change and
    keep the contract the :class:`~npdl.solver.Solver` relies on:

    * ``__init__(self, activation=..., num_layer=..., ..., **kwargs)``: call
      ``super().__init__(...)`` (or build ``self.layers`` and the ``params``/``grads``
      views yourself via :meth:`reset_weights`), accepting ``**kwargs`` so a search
      config can hold keys meant for the Solver;
    * ``forward(X)``: ``(N, input_size)`` -> logits ``(N, num_classes)``, filling
      ``self.reg`` with the L2 terms;
    * ``backward(dy)``: fills and returns ``self.grads`` (same keys and shapes as
      ``self.params``);
    * ``train()``/``eval()``, ``state_dict()``/``load_state_dict()`` for the best
      epoch's weights.

    Everything ``ClassificationNet`` offers (``dropout``, ``batch_norm``, ``init``,
    ``hidden_size=[...]``) can be passed without writing code, e.g.
    ``MyOwnNetwork(activation=Relu(), hidden_size=[512, 256], init="he", dropout=0.2)``.
    """


def load_model(path: str | os.PathLike) -> ClassificationNet:
    """Load a model file written by :meth:`ClassificationNet.save_model`."""
    return ClassificationNet.load(path)
