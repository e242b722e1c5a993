"""Element-wise activation functions with the course contract.

Every activation is a stateless object with::

    out, cache = activation.forward(x)
    dx = activation.backward(dout, cache)

``x``, ``out``, ``dout`` and ``dx`` are arrays of the same shape, any float dtype;
``cache`` holds whatever the backward pass needs. ``Maxout`` is the one exception to
"same shape": it reduces the last axis by its number of ``pieces``.

Each activation also knows how to describe itself (``config()``) so a saved model can
rebuild it with :func:`make_activation`.
"""

from __future__ import annotations

import numpy as np


class Activation:
    """Base class: the course's ``forward``/``backward`` contract plus serialisation."""

    name = "activation"
    #: How many pre-activation units feed one output unit (``Maxout`` uses k).
    pieces = 1

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout, cache):
        raise NotImplementedError

    def config(self) -> dict:
        """Constructor arguments that rebuild this activation (JSON-serialisable)."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.config().items()))))


class Sigmoid(Activation):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, computed without overflow for large ``|x|``."""

    name = "sigmoid"

    def forward(self, x):
        # exp(-|x|) never overflows; the two branches are the same function.
        z = np.exp(-np.abs(x))
        out = np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z)).astype(x.dtype, copy=False)
        return out, out

    def backward(self, dout, cache):
        out = cache
        return dout * out * (1.0 - out)


class Tanh(Activation):
    """Hyperbolic tangent."""

    name = "tanh"

    def forward(self, x):
        out = np.tanh(x)
        return out, out

    def backward(self, dout, cache):
        out = cache
        return dout * (1.0 - out * out)


class Relu(Activation):
    """Rectified linear unit ``max(0, x)``."""

    name = "relu"

    def forward(self, x):
        out = np.maximum(x, 0)
        return out, out

    def backward(self, dout, cache):
        out = cache
        return dout * (out > 0)


class LeakyRelu(Activation):
    """Leaky ReLU ``x if x > 0 else slope * x``.

    Parameters
    ----------
    slope : float
        Gradient for negative inputs. Default 0.01, the course's default.
    """

    name = "leaky_relu"

    def __init__(self, slope: float = 0.01):
        self.slope = float(slope)

    def forward(self, x):
        out = np.where(x > 0, x, x * x.dtype.type(self.slope))
        return out, x

    def backward(self, dout, cache):
        x = cache
        return np.where(x > 0, dout, dout * dout.dtype.type(self.slope))

    def config(self) -> dict:
        return {"slope": self.slope}


class ELU(Activation):
    """Exponential linear unit ``x if x > 0 else alpha * (exp(x) - 1)``.

    Parameters
    ----------
    alpha : float
        Saturation value for large negative inputs (default 1.0).
    """

    name = "elu"

    def __init__(self, alpha: float = 1.0):
        self.alpha = float(alpha)

    def forward(self, x):
        # expm1 of min(x, 0) avoids overflow warnings from the unused positive branch.
        negative = x.dtype.type(self.alpha) * np.expm1(np.minimum(x, 0))
        out = np.where(x > 0, x, negative)
        return out, (x, negative)

    def backward(self, dout, cache):
        x, negative = cache
        alpha = dout.dtype.type(self.alpha)
        return np.where(x > 0, dout, dout * (negative + alpha))

    def config(self) -> dict:
        return {"alpha": self.alpha}


class Maxout(Activation):
    """Maxout: the maximum over ``pieces`` affine pieces of each output unit.

    It takes the output of an affine layer that is ``pieces`` times wider than the
    unit count and keeps, for every unit, the largest of its pieces. Piece ``j`` of unit
    ``u`` is input column ``u * pieces + j``. :class:`~npdl.network.ClassificationNet`
    widens the affine layer before a Maxout automatically, so ``hidden_size`` still
    counts output units.

    Parameters
    ----------
    pieces : int
        Number of affine pieces per unit, k >= 2 (default 2).

    Notes
    -----
    ``forward(x)``: ``x`` of shape (N, H * pieces) -> ``out`` of shape (N, H).
    """

    name = "maxout"

    def __init__(self, pieces: int = 2):
        if int(pieces) < 2:
            raise ValueError(f"Maxout needs pieces >= 2, got pieces={pieces!r}")
        self.pieces = int(pieces)

    def forward(self, x):
        n, width = x.shape
        if width % self.pieces:
            raise ValueError(
                f"Maxout with pieces={self.pieces} needs an input width divisible by "
                f"{self.pieces}, got width {width}"
            )
        grouped = x.reshape(n, width // self.pieces, self.pieces)
        winner = grouped.argmax(axis=2)
        out = np.take_along_axis(grouped, winner[..., None], axis=2)[..., 0]
        return out, (winner, x.shape)

    def backward(self, dout, cache):
        winner, shape = cache
        n, width = shape
        dx = np.zeros((n, width // self.pieces, self.pieces), dtype=dout.dtype)
        np.put_along_axis(dx, winner[..., None], dout[..., None], axis=2)
        return dx.reshape(shape)

    def config(self) -> dict:
        return {"pieces": self.pieces}


ACTIVATIONS: dict[str, type[Activation]] = {
    cls.name: cls for cls in (Sigmoid, Tanh, Relu, LeakyRelu, ELU, Maxout)
}


def make_activation(name: str, **kwargs) -> Activation:
    """Build an activation from its registry name (``sigmoid``, ``relu``, ...).

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`ACTIVATIONS`, naming the allowed values.
    """
    key = str(name).lower()
    if key not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[key](**kwargs)


def as_activation(activation) -> Activation:
    """An activation from a registry name, an :class:`Activation` class or an instance
    (returned as it is).

    Raises
    ------
    TypeError
        If ``activation`` is none of these.
    """
    if isinstance(activation, str):
        activation = make_activation(activation)
    elif isinstance(activation, type) and issubclass(activation, Activation):
        activation = activation()
    if not isinstance(activation, Activation):
        raise TypeError(f"activation must be an npdl Activation or a name, got {activation!r}")
    return activation
