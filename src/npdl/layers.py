"""Layers and the one gradient contract they share.

The contract, written once here and followed by every layer:

- ``layer.params``: dict name -> learnable array (updated in place by optimizers);
- ``layer.grads``: dict with exactly the same keys and shapes, filled by ``backward``;
- ``layer.buffers``: dict of non-learnable state saved with the model (e.g. running
  statistics of :class:`BatchNorm`); the names of those that training never changes
  may be listed in ``layer.fixed_buffers`` (weight averaging leaves them out);
- ``out = layer.forward(x, training)`` caches what the backward pass needs;
- ``dx = layer.backward(dout)`` fills ``grads`` and returns the gradient w.r.t. ``x``
  (``None`` when the layer was built with ``input_grad=False``, which saves the
  largest matrix product of a network's first layer).

The course's functional API (:func:`affine_forward`, :func:`affine_backward`) is kept
for exercise code.
"""

from __future__ import annotations

import numpy as np

from .activations import Activation


def affine_forward(x, w, b):
    """Affine map ``x @ w + b`` (course API).

    Parameters
    ----------
    x : ndarray, shape (N, d_1, ..., d_k)
        Input; flattened to (N, D) with D = d_1 * ... * d_k.
    w : ndarray, shape (D, M)
    b : ndarray, shape (M,)

    Returns
    -------
    out : ndarray, shape (N, M)
    cache : tuple (x, w, b)
    """
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    """Backward pass of :func:`affine_forward` (course API).

    Parameters
    ----------
    dout : ndarray, shape (N, M)
    cache : tuple (x, w, b) from :func:`affine_forward`

    Returns
    -------
    dx : ndarray, shape of ``x``
    dw : ndarray, shape (D, M)
    db : ndarray, shape (M,)
    """
    x, w, _ = cache
    x2d = x.reshape(x.shape[0], -1)
    dx = (dout @ w.T).reshape(x.shape)
    dw = x2d.T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


def random_bits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """16 random bits per element, ``uint16`` of ``shape``, cut from the generator's raw
    64-bit words (four elements per word): several times faster than
    ``rng.integers`` or ``rng.bytes``, and reproducible from the generator's state."""
    count = int(np.prod(shape))
    words = rng.bit_generator.random_raw(-(-count // 4))
    return words.view(np.uint16)[:count].reshape(shape)


class Layer:
    """Base class of the gradient contract (see the module docstring)."""

    #: Set by the network that holds the layer: its inputs, outputs and gradients are
    #: the network's own, so the layer may return the same buffer from every call and
    #: overwrite the gradient it is given. Standalone (False), results are fresh arrays.
    internal = False

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}

    def forward(self, x, training: bool = True):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def _init_grads(self) -> None:
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}


class Affine(Layer):
    """Fully connected layer ``x @ W + b``.

    Parameters
    ----------
    weight : ndarray, shape (D, M)
        Initial weights (the layer keeps this array; it is not copied).
    bias : ndarray, shape (M,)
    input_grad : bool
        Whether ``backward`` computes the gradient w.r.t. the input. The first layer
        of a network does not need it.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, input_grad: bool = True):
        super().__init__()
        if weight.ndim != 2 or bias.shape != (weight.shape[1],):
            raise ValueError(
                f"Affine needs weight (D, M) and bias (M,), got {weight.shape} and {bias.shape}"
            )
        self.params = {"W": weight, "b": bias}
        self.input_grad = input_grad
        self._init_grads()
        self._x = None
        self._dx = None

    def forward(self, x, training: bool = True):
        """``x``: (N, D) -> (N, M)."""
        self._x = x
        out = x @ self.params["W"]
        out += self.params["b"]
        return out

    def backward(self, dout):
        """``dout``: (N, M) -> ``dx`` (N, D) or None; fills ``grads['W']``, ``grads['b']``."""
        x = self._x
        np.matmul(x.T, dout, out=self.grads["W"])
        np.sum(dout, axis=0, out=self.grads["b"])
        if not self.input_grad:
            return None
        weight = self.params["W"]
        shape = (dout.shape[0], weight.shape[0])
        if not self.internal:
            return dout @ weight.T
        if self._dx is None or self._dx.shape != shape or self._dx.dtype != dout.dtype:
            self._dx = np.empty(shape, dtype=dout.dtype)
        return np.matmul(dout, weight.T, out=self._dx)


class ActivationLayer(Layer):
    """Adapts a course-style :class:`~npdl.activations.Activation` to the layer contract."""

    def __init__(self, activation: Activation):
        super().__init__()
        self.activation = activation
        self._cache = None

    def forward(self, x, training: bool = True):
        out, self._cache = self.activation.forward(x)
        return out

    def backward(self, dout):
        return self.activation.backward(dout, self._cache)


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability ``p`` and scale the
    survivors by ``1 / (1 - p)``; in evaluation, the identity.

    Masks are drawn from 16 random bits per unit (:func:`random_bits`), so ``p`` is
    rounded to a multiple of 1/65536; the survivors' scale uses the rounded value,
    which keeps the layer unbiased.

    Parameters
    ----------
    p : float
        Drop probability, 0 <= p < 1.
    rng : numpy.random.Generator or int or None
        Source of the masks.
    """

    def __init__(self, p: float, rng=None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = np.random.default_rng(rng)
        self._threshold = min(round(self.p * 65536), 65535)
        self._scale = 65536.0 / (65536 - self._threshold)
        self._keep = None

    def forward(self, x, training: bool = True):
        """``x``: (N, ...) -> same shape."""
        if not training or self._threshold == 0:
            self._keep = None
            return x
        self._keep = random_bits(self.rng, x.shape) >= self._threshold
        out = np.multiply(x, self._keep)
        out *= x.dtype.type(self._scale)
        return out

    def backward(self, dout):
        if self._keep is None:
            return dout
        dx = np.multiply(dout, self._keep)
        dx *= dx.dtype.type(self._scale)
        return dx


class BatchNorm(Layer):
    """Batch normalisation over the batch axis of (N, D) inputs.

    Training uses the batch's mean and variance and updates running estimates;
    evaluation uses the running estimates.

    Parameters
    ----------
    dim : int
        Number of features D.
    momentum : float
        Weight of the old running estimate in each update (default 0.9).
    eps : float
        Added to the variance for numerical safety.
    dtype : numpy dtype
    """

    def __init__(self, dim: int, momentum: float = 0.9, eps: float = 1e-5, dtype=np.float32):
        super().__init__()
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.params = {"gamma": np.ones(dim, dtype=dtype), "beta": np.zeros(dim, dtype=dtype)}
        self.buffers = {
            "running_mean": np.zeros(dim, dtype=dtype),
            "running_var": np.ones(dim, dtype=dtype),
        }
        self._init_grads()
        self._cache = None

    def forward(self, x, training: bool = True):
        """``x``: (N, D) -> (N, D)."""
        gamma, beta = self.params["gamma"], self.params["beta"]
        if not training:
            inv_std = 1.0 / np.sqrt(self.buffers["running_var"] + self.eps)
            scale = (gamma * inv_std).astype(x.dtype, copy=False)
            shift = (beta - self.buffers["running_mean"] * scale).astype(x.dtype, copy=False)
            out = np.multiply(x, scale)
            out += shift
            return out
        n = x.shape[0]
        mean = x.mean(axis=0)
        x_hat = np.subtract(x, mean)
        out = np.multiply(x_hat, x_hat)
        var = np.add.reduce(out, axis=0)
        var *= 1.0 / n
        inv_std = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype, copy=False)
        x_hat *= inv_std
        m = self.momentum
        self.buffers["running_mean"] *= m
        self.buffers["running_mean"] += (1 - m) * mean
        self.buffers["running_var"] *= m
        # Unbiased variance for the running estimate, as is conventional.
        self.buffers["running_var"] += (1 - m) * var * (n / max(n - 1, 1))
        self._cache = (x_hat, inv_std)
        np.multiply(x_hat, gamma, out=out)
        out += beta
        return out

    def backward(self, dout):
        """``dout``: (N, D) -> ``dx`` (N, D); fills ``grads['gamma']``, ``grads['beta']``.

        With ``dbeta = sum(dout)`` and ``dgamma = sum(dout * x_hat)`` (sums over the
        batch): ``dx = gamma * inv_std * (dout - dbeta / N - x_hat * dgamma / N)``.
        """
        x_hat, inv_std = self._cache
        n = dout.shape[0]
        dbeta, dgamma = self.grads["beta"], self.grads["gamma"]
        np.add.reduce(dout, axis=0, out=dbeta)
        dx = np.multiply(dout, x_hat)
        np.add.reduce(dx, axis=0, out=dgamma)
        np.multiply(x_hat, dgamma / n, out=dx)
        np.subtract(dout, dx, out=dx)
        dx -= dbeta / n
        dx *= self.params["gamma"] * inv_std
        return dx


class Projection(Layer):
    """A fixed linear map ``x @ P``, learning nothing: e.g. onto the top principal
    components of the input, so the first trainable layer is narrower.

    ``P`` is a buffer (saved with the model, never updated by an optimizer).

    Parameters
    ----------
    matrix : ndarray, shape (D, K)
        The projection (the layer keeps this array; it is not copied).
    input_grad : bool
        Whether ``backward`` computes the gradient w.r.t. the input; a network's first
        layer does not need it.
    """

    def __init__(self, matrix: np.ndarray, input_grad: bool = True):
        super().__init__()
        if matrix.ndim != 2:
            raise ValueError(f"Projection needs a (D, K) matrix, got shape {matrix.shape}")
        self.buffers = {"P": matrix}
        self.fixed_buffers = ("P",)  # never changed by training
        self.input_grad = input_grad
        self._out = {}  # per mode: an evaluation between a training forward and its
        # backward leaves the output the next layer cached alone

    def forward(self, x, training: bool = True):
        """``x``: (N, D) -> (N, K)."""
        matrix = self.buffers["P"]
        if not self.internal:
            return x @ matrix
        shape, dtype = (x.shape[0], matrix.shape[1]), np.result_type(x, matrix)
        out = self._out.get(training)
        if out is None or out.shape != shape or out.dtype != dtype:
            out = self._out[training] = np.empty(shape, dtype=dtype)
        return np.matmul(x, matrix, out=out)

    def backward(self, dout):
        """``dout``: (N, K) -> ``dx`` (N, D), or None without ``input_grad``."""
        return dout @ self.buffers["P"].T if self.input_grad else None
