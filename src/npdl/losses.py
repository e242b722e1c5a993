"""Loss functions with the course's names and contract.

Every loss has::

    loss = loss_func.forward(y_out, y_truth)        # a scalar (mean over the batch)
    grad = loss_func.backward(y_out, y_truth)       # shape of y_out
    loss, grad = loss_func(y_out, y_truth)

``forward(..., reduction='none')`` returns the per-sample losses instead.

``backward`` is the course's: for ``CrossEntropyFromLogits`` the gradient of the batch
mean (divided by N, what a classifier trains on); for the element-wise losses ``BCE``,
``MSE`` and ``L1`` the gradient of each element's own loss, not divided by the number
of elements (the gradient of ``forward(..., reduction='sum')``).
"""

from __future__ import annotations

import numpy as np


class Loss:
    """Base class: ``forward``, ``backward`` and ``__call__`` returning both."""

    def forward(self, y_out, y_truth, reduction: str = "mean"):
        raise NotImplementedError

    def backward(self, y_out, y_truth):
        raise NotImplementedError

    def __call__(self, y_out, y_truth):
        return self.forward(y_out, y_truth), self.backward(y_out, y_truth)

    @staticmethod
    def _reduce(per_sample, reduction: str):
        if reduction == "mean":
            return float(per_sample.mean())
        if reduction == "sum":
            return float(per_sample.sum())
        if reduction == "none":
            return per_sample
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class CrossEntropyFromLogits(Loss):
    """Softmax cross-entropy computed from logits with a stable log-softmax.

    Parameters
    ----------
    label_smoothing : float
        Mixes the one-hot target with the uniform distribution: target =
        (1 - s) * one_hot + s / C. 0 (default) is the plain cross-entropy.

    Notes
    -----
    ``y_out``: float (N, C) logits; ``y_truth``: int (N,) class indices.
    """

    def __init__(self, label_smoothing: float = 0.0):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def _log_softmax(self, y_out):
        shifted = y_out - y_out.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def _targets(self, y_out, y_truth):
        n, c = y_out.shape
        s = self.label_smoothing
        target = np.full((n, c), s / c, dtype=y_out.dtype)
        target[np.arange(n), y_truth] += 1.0 - s
        return target

    def forward(self, y_out, y_truth, reduction: str = "mean"):
        log_probs = self._log_softmax(y_out)
        y_truth = np.asarray(y_truth)
        if self.label_smoothing == 0.0:
            per_sample = -log_probs[np.arange(len(y_truth)), y_truth]
        else:
            per_sample = -np.sum(self._targets(y_out, y_truth) * log_probs, axis=1)
        return self._reduce(per_sample, reduction)

    def backward(self, y_out, y_truth):
        return self._loss_and_grad(y_out, np.asarray(y_truth))[1]

    def __call__(self, y_out, y_truth):
        """Loss (mean) and gradient from one log-softmax."""
        return self._loss_and_grad(y_out, np.asarray(y_truth))

    def _loss_and_grad(self, y_out, y_truth):
        n = len(y_truth)
        log_probs = self._log_softmax(y_out)
        if self.label_smoothing == 0.0:
            loss = -float(log_probs[np.arange(n), y_truth].mean())
            grad = np.exp(log_probs)
            grad[np.arange(n), y_truth] -= 1.0
        else:
            target = self._targets(y_out, y_truth)
            loss = -float(np.sum(target * log_probs) / n)
            grad = np.exp(log_probs)
            grad -= target
        grad /= n
        return loss, grad


class BCE(Loss):
    """Binary cross-entropy on probabilities in (0, 1).

    Notes
    -----
    ``y_out``: float (N, ...) probabilities (e.g. a Sigmoid output), clipped to
    [eps, 1 - eps]; ``y_truth``: same shape, values in [0, 1].
    """

    def __init__(self, eps: float = 1e-7):
        self.eps = float(eps)

    def forward(self, y_out, y_truth, reduction: str = "mean"):
        p = np.clip(y_out, self.eps, 1.0 - self.eps)
        per_sample = -(y_truth * np.log(p) + (1.0 - y_truth) * np.log1p(-p))
        return self._reduce(per_sample, reduction)

    def backward(self, y_out, y_truth):
        """Element-wise: d/dy of each element's loss, ``-(t / y) + (1 - t) / (1 - y)``."""
        p = np.clip(y_out, self.eps, 1.0 - self.eps)
        return (p - y_truth) / (p * (1.0 - p))


class MSE(Loss):
    """Mean squared error. ``y_out`` and ``y_truth``: float arrays of the same shape."""

    def forward(self, y_out, y_truth, reduction: str = "mean"):
        return self._reduce((y_out - y_truth) ** 2, reduction)

    def backward(self, y_out, y_truth):
        """Element-wise: ``2 (y - t)`` (the course's; not divided by the size)."""
        return 2.0 * (y_out - y_truth)


class L1(Loss):
    """Mean absolute error. ``y_out`` and ``y_truth``: float arrays of the same shape."""

    def forward(self, y_out, y_truth, reduction: str = "mean"):
        return self._reduce(np.abs(y_out - y_truth), reduction)

    def backward(self, y_out, y_truth):
        """Element-wise: ``sign(y - t)``, 0 where they are equal (the course's)."""
        return np.sign(y_out - y_truth)


LOSSES: dict[str, type[Loss]] = {
    "cross_entropy": CrossEntropyFromLogits,
    "bce": BCE,
    "mse": MSE,
    "l1": L1,
}
