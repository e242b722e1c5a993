"""``HiddenLayer``: affine + (batch norm) + ReLU + (inverted dropout) in the fewest passes.

A hidden layer of :class:`~npdl.network.ClassificationNet` with a ReLU computes, in
training, ``h = dropout(relu(batch_norm(x @ W + b)))``. Built from separate layers
(:mod:`npdl.layers`) that is about a dozen passes over an (N, M) array forward and as
many backward, each allocating its result. This layer computes the same function with
the matrix product into a buffer it keeps across steps and every element-wise pass in
place, in buffers kept across steps, using only NumPy's fast loops (multiplications
by a float mask rather than ``np.maximum``, masked ``copyto`` or ``np.where``, which
are several times slower on float32). Three identities remove whole passes:

* batch norm subtracts the batch mean, so the bias ahead of it cancels: it is added
  to the running mean instead of to every element, and its gradient is exactly zero;
* ReLU and dropout are one multiplication by one float mask, ``[y > 0] * keep``,
  which the backward pass reuses: their gradient is one more multiplication; ReLU is
  positively homogeneous, so dropout's ``1 / (1 - p)`` is folded into batch norm's
  scale and shift (without batch norm, into the mask);
* the output is also the next layer's input, which it keeps anyway, so nothing else
  is stored but the centred pre-activations and the mask.

Rounding differs from the separate layers in the last bits (the centred values are
computed once, and scaled once); the dropout masks are the same draws from
the same generator as :class:`~npdl.layers.Dropout` makes (:func:`~npdl.layers.random_bits`).
"""

from __future__ import annotations

import numpy as np

from .layers import Layer, random_bits


class HiddenLayer(Layer):
    """``relu(batch_norm(x @ W + b))`` with inverted dropout, for (N, D) inputs.

    Parameters
    ----------
    weight : ndarray, shape (D, M)
    bias : ndarray, shape (M,)
    batch_norm : bool
        Batch normalisation (batch statistics in training, running estimates in
        evaluation) between the affine map and the ReLU; adds ``gamma``, ``beta``
        (params) and ``running_mean``, ``running_var`` (buffers), as
        :class:`~npdl.layers.BatchNorm` has them.
    dropout : float
        Drop probability, 0 <= p < 1 (rounded as :class:`~npdl.layers.Dropout` does).
    rng : numpy.random.Generator or int or None
        Source of the dropout masks.
    input_grad : bool
        Whether ``backward`` returns the gradient w.r.t. ``x``.
    momentum, eps : float
        Batch norm's running-estimate momentum and variance epsilon.

    Notes
    -----
    ``forward(x)``: (N, D) -> (N, M); ``backward(dout)``: (N, M) -> (N, D) or None.
    With ``internal = True`` (set by the network) the layer may return the same
    buffer from every call and overwrite the ``dout`` it is given; standalone, it
    returns fresh arrays and leaves ``dout`` alone.
    """

    def __init__(
        self,
        weight: np.ndarray,
        bias: np.ndarray,
        batch_norm: bool = False,
        dropout: float = 0.0,
        rng=None,
        input_grad: bool = True,
        momentum: float = 0.9,
        eps: float = 1e-5,
    ):
        super().__init__()
        if weight.ndim != 2 or bias.shape != (weight.shape[1],):
            raise ValueError(
                f"HiddenLayer needs weight (D, M) and bias (M,), got {weight.shape} and "
                f"{bias.shape}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {dropout!r}")
        width, dtype = weight.shape[1], weight.dtype
        self.params = {"W": weight, "b": bias}
        self.batch_norm = bool(batch_norm)
        if self.batch_norm:
            self.params["gamma"] = np.ones(width, dtype=dtype)
            self.params["beta"] = np.zeros(width, dtype=dtype)
            self.buffers = {
                "running_mean": np.zeros(width, dtype=dtype),
                "running_var": np.ones(width, dtype=dtype),
            }
        self._init_grads()
        self.momentum, self.eps = float(momentum), float(eps)
        self.p = float(dropout)
        self.rng = np.random.default_rng(rng)
        self._threshold = min(round(self.p * 65536), 65535)
        self._keep_scale = 65536.0 / (65536 - self._threshold)
        self.input_grad = input_grad
        self._work: dict[str, np.ndarray] = {}
        self._cache: tuple | None = None

    def __getstate__(self) -> dict:
        # Work buffers and the last step's cache are not part of a saved layer.
        return {**self.__dict__, "_work": {}, "_cache": None}

    # -- buffers --------------------------------------------------------------------
    def _buffer(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A work array kept across calls while its shape stays (always new standalone)."""
        buffer = self._work.get(name)
        if not self.internal or buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = np.empty(shape, dtype=dtype)
            if self.internal:
                self._work[name] = buffer
        return buffer

    # -- forward --------------------------------------------------------------------
    def forward(self, x, training: bool = True):
        """``x``: (N, D) -> ``h``: (N, M)."""
        weight, params = self.params["W"], self.params
        n, width = x.shape[0], weight.shape[1]
        if not training:
            # Its own buffer: an evaluation between a training forward and its
            # backward leaves the training cache alone.
            out = self._buffer("eval", (n, width), weight.dtype)
            np.matmul(x, weight, out=out)
            self._eval(out)
            return out
        z = self._buffer("z", (n, width), weight.dtype)
        np.matmul(x, weight, out=z)
        mask = self._buffer("mask", z.shape, z.dtype)
        keep_scale = z.dtype.type(self._keep_scale)
        if self.batch_norm:
            h = self._buffer("h", z.shape, z.dtype)
            inv_std = self._normalise(z, h, keep_scale)
            self._relu_dropout(h, mask, 1.0)
            self._cache = (x, h, mask, z, inv_std)
        else:
            z += params["b"]
            self._relu_dropout(z, mask, keep_scale)
            self._cache = (x, z, mask, None, None)
            h = z
        return h

    def _normalise(self, z, h, keep_scale) -> np.ndarray:
        """Centre ``z`` in place and write ``h = (x_hat * gamma + beta) * keep_scale``
        (dropout's scale, folded in: ReLU commutes with it); update the running
        estimates; return ``inv_std`` (M,)."""
        n = z.shape[0]
        mean = np.add.reduce(z, axis=0)
        mean *= 1.0 / n
        z -= mean
        var = np.einsum("ij,ij->j", z, z)
        var *= 1.0 / n
        inv_std = 1.0 / np.sqrt(var + z.dtype.type(self.eps))
        np.multiply(z, self.params["gamma"] * (inv_std * keep_scale), out=h)
        h += self.params["beta"] * keep_scale
        m = self.momentum
        running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
        # The bias never reached z (it cancels in x_hat): the running mean is of z + b.
        running_mean *= m
        running_mean += (1 - m) * (mean + self.params["b"])
        running_var *= m
        # Unbiased variance for the running estimate, as is conventional.
        running_var += (1 - m) * var * (n / max(n - 1, 1))
        return inv_std

    def _relu_dropout(self, y, mask, keep_scale) -> None:
        """``mask = [y > 0] * keep * keep_scale`` and ``y *= mask``, in place."""
        np.greater(y, 0, out=mask, casting="unsafe")
        if self._threshold:
            keep = self._buffer("tmp", y.shape, y.dtype)
            bits = random_bits(self.rng, y.shape)
            np.greater_equal(bits, self._threshold, out=keep, casting="unsafe")
            if keep_scale != 1:
                keep *= keep_scale
            mask *= keep
        y *= mask

    def _eval(self, z) -> None:
        """Evaluation, in place: ``relu(batch_norm(z + b))`` with the running estimates."""
        params = self.params
        if self.batch_norm:
            scale = params["gamma"] / np.sqrt(self.buffers["running_var"] + self.eps)
            shift = params["beta"] + (params["b"] - self.buffers["running_mean"]) * scale
            z *= scale.astype(z.dtype, copy=False)
            z += shift.astype(z.dtype, copy=False)
        else:
            z += params["b"]
        mask = self._buffer("eval_mask", z.shape, z.dtype)
        np.greater(z, 0, out=mask, casting="unsafe")
        z *= mask

    # -- backward -------------------------------------------------------------------
    def backward(self, dout):
        """``dout``: (N, M) -> ``dx`` (N, D) or None; fills every gradient.

        With ``u = dout * mask`` (ReLU and dropout) and dropout's scale ``s``:
        ``dbeta = s * sum(u)``, ``dgamma = s * inv_std * sum(u * z_c)`` and
        ``dz = s * gamma * inv_std * (u - sum(u) / N - z_c * inv_std**2 * sum(u * z_c) / N)``;
        without batch norm the mask holds ``s``, ``dz = u`` and ``db = sum(dz)``.
        """
        if self._cache is None:
            raise RuntimeError("HiddenLayer.backward needs a forward pass in training mode first")
        x, _h, mask, z_centred, inv_std = self._cache
        dz = dout if self.internal else np.array(dout, copy=True)
        dz *= mask
        if self.batch_norm:
            n = dz.shape[0]
            sum_u = np.add.reduce(dz, axis=0)
            sum_uz = np.einsum("ij,ij->j", dz, z_centred)
            keep_scale = dz.dtype.type(self._keep_scale)
            self.grads["beta"][...] = keep_scale * sum_u
            self.grads["gamma"][...] = keep_scale * inv_std * sum_uz
            self.grads["b"].fill(0)
            scale = self.params["gamma"] * (inv_std * keep_scale)
            dz *= scale
            tmp = self._buffer("tmp", dz.shape, dz.dtype)
            np.multiply(z_centred, scale * inv_std * inv_std * sum_uz * (1.0 / n), out=tmp)
            dz -= tmp
            dz -= scale * sum_u * (1.0 / n)
        else:
            np.add.reduce(dz, axis=0, out=self.grads["b"])
        np.matmul(x.T, dz, out=self.grads["W"])
        if not self.input_grad:
            return None
        weight = self.params["W"]
        dx = self._buffer("dx", (dz.shape[0], weight.shape[0]), dz.dtype)
        return np.matmul(dz, weight.T, out=dx)
