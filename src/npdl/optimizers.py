"""First-order optimizers with the course contract.

``optimizer = Adam(model, loss_func, learning_rate)`` and then ``optimizer.step()``
after every ``model.backward``: each parameter ``model.params[name]`` is updated in
place from ``model.grads[name]``. State (moments, velocities) is kept per parameter
name in ``optimizer.state``; updates are fused in-place NumPy operations on a scratch
buffer per parameter, so a step allocates nothing.

Weight decay, where offered, applies to weight matrices only (``ndim >= 2``), not to
biases or batch-norm parameters.
"""

from __future__ import annotations

import math

import numpy as np


def _add_l2(dw, w, decay, scratch) -> None:
    """``dw += decay * w`` in place (the gradient is recomputed by every backward)."""
    np.multiply(w, decay, out=scratch)
    dw += scratch


class Optimizer:
    """Base class.

    Parameters
    ----------
    model : object with ``params`` and ``grads`` dicts of arrays (same keys)
    loss_func : the loss (kept for the course's signature; unused by the update)
    learning_rate : float
    """

    def __init__(self, model, loss_func=None, learning_rate: float = 1e-3):
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
        self.model = model
        self.loss_func = loss_func
        self.lr = float(learning_rate)
        self.steps = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}

    def _slot(self, name: str, param: np.ndarray) -> dict[str, np.ndarray]:
        slot = self.state.get(name)
        if slot is None:
            slot = self.state[name] = self._new_slot(param)
        return slot

    def _new_slot(self, param: np.ndarray) -> dict[str, np.ndarray]:
        return {"scratch": np.empty_like(param)}

    def step(self) -> None:
        """Update every parameter in place from its gradient."""
        self.steps += 1
        for name, param in self.model.params.items():
            self._update(param, self.model.grads[name], self._slot(name, param))

    def _update(self, w, dw, slot) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat name -> array mapping of the optimizer's state (for checkpoints)."""
        flat = {"steps": np.asarray(self.steps), "lr": np.asarray(self.lr)}
        for name, slot in self.state.items():
            for key, value in slot.items():
                if key != "scratch":
                    flat[f"{name}/{key}"] = value
        return flat

    def load_state_dict(self, flat: dict[str, np.ndarray]) -> None:
        """Restore state written by :meth:`state_dict` (arrays are copied)."""
        self.steps = int(flat["steps"])
        self.lr = float(flat["lr"])
        self.state = {}
        for key, value in flat.items():
            if "/" not in key:
                continue
            name, slot_key = key.rsplit("/", 1)
            param = self.model.params[name]
            slot = self._slot(name, param)
            slot[slot_key] = np.array(value, dtype=param.dtype)


class SGD(Optimizer):
    """Plain stochastic gradient descent ``w -= lr * dw``."""

    def _update(self, w, dw, slot) -> None:
        scratch = np.multiply(dw, self.lr, out=slot["scratch"])
        w -= scratch


class SGDMomentum(Optimizer):
    """SGD with (optionally Nesterov) momentum and optional L2 weight decay.

    ``v = momentum * v + dw``; ``w -= lr * v`` (or ``lr * (dw + momentum * v)`` with
    Nesterov).

    Parameters
    ----------
    momentum : float
        In [0, 1) (default 0.9).
    nesterov : bool
    weight_decay : float
        Added to the gradient as ``weight_decay * w`` (weight matrices only).
    """

    def __init__(
        self,
        model,
        loss_func=None,
        learning_rate: float = 1e-3,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        **kwargs,
    ):
        super().__init__(model, loss_func, learning_rate)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)

    def _new_slot(self, param):
        return {"velocity": np.zeros_like(param), "scratch": np.empty_like(param)}

    def _update(self, w, dw, slot) -> None:
        velocity, scratch = slot["velocity"], slot["scratch"]
        if self.weight_decay and w.ndim >= 2:
            _add_l2(dw, w, self.weight_decay, scratch)
        velocity *= self.momentum
        velocity += dw
        if self.nesterov:
            np.multiply(velocity, self.momentum, out=scratch)
            scratch += dw
        else:
            np.copyto(scratch, velocity)
        scratch *= self.lr
        w -= scratch


class Adam(Optimizer):
    """Adam with bias correction; ``weight_decay`` is decoupled (AdamW) by default.

    Parameters
    ----------
    beta1, beta2 : float
        Decay rates of the first and second moment estimates.
    epsilon : float
    weight_decay : float
        Decoupled: ``w -= lr * weight_decay * w`` each step (AdamW); with
        ``decoupled=False`` it is added to the gradient instead (L2). Weight matrices only.
    decoupled : bool
    """

    def __init__(
        self,
        model,
        loss_func=None,
        learning_rate: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = True,
        **kwargs,
    ):
        super().__init__(model, loss_func, learning_rate)
        for key, value in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{key} must be in [0, 1), got {value!r}")
        self.beta1, self.beta2, self.epsilon = float(beta1), float(beta2), float(epsilon)
        self.weight_decay = float(weight_decay)
        self.decoupled = bool(decoupled)

    def _new_slot(self, param):
        return {
            "m": np.zeros_like(param),
            "v": np.zeros_like(param),
            "scratch": np.empty_like(param),
        }

    def step(self) -> None:
        # Bias correction folded into one step size and epsilon (exactly equivalent to
        # m_hat / (sqrt(v_hat) + eps)) so the per-element work is a few fused ops.
        t = self.steps + 1
        root_correction = math.sqrt(1.0 - self.beta2**t)
        self._step_size = self.lr * root_correction / (1.0 - self.beta1**t)
        self._eps_hat = self.epsilon * root_correction
        super().step()

    def _update(self, w, dw, slot) -> None:
        m, v, scratch = slot["m"], slot["v"], slot["scratch"]
        decay = self.weight_decay if w.ndim >= 2 else 0.0
        if decay and not self.decoupled:
            _add_l2(dw, w, decay, scratch)
        # m += (1 - beta1) * (dw - m)
        np.subtract(dw, m, out=scratch)
        scratch *= 1.0 - self.beta1
        m += scratch
        # v += (1 - beta2) * (dw**2 - v)
        np.multiply(dw, dw, out=scratch)
        scratch -= v
        scratch *= 1.0 - self.beta2
        v += scratch
        if decay and self.decoupled:
            w *= 1.0 - self.lr * decay
        np.sqrt(v, out=scratch)
        scratch += self._eps_hat
        np.divide(m, scratch, out=scratch)
        scratch *= self._step_size
        w -= scratch


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "sgd_momentum": SGDMomentum,
    "adam": Adam,
}
