"""First-order optimizers with the course contract.

``optimizer = Adam(model, loss_func, learning_rate)`` and then ``optimizer.step()``
after every ``model.backward``: each parameter ``model.params[name]`` is updated in
place from ``model.grads[name]``. State (moments, velocities) is kept per parameter
name in ``optimizer.state``; updates are in-place NumPy operations on a scratch
buffer per parameter, so a step allocates nothing. Each parameter is updated in
cache-sized blocks spread over a few threads (:mod:`npdl.threads`); the update is
element-wise, so the result does not depend on the blocks or the threads.

Every optimizer takes ``weight_decay`` and ``decoupled``: coupled (L2), ``weight_decay
* w`` is added to the gradient; decoupled (as AdamW), ``w -= lr * weight_decay * w``
each step, outside the gradient's momentum. Decay applies to weight matrices only
(``ndim >= 2``), not to biases or batch-norm parameters.
"""

from __future__ import annotations

import math

import numpy as np

from .threads import blocks, run_blocks


def _course_optim_config(optimizer: str, kwargs: dict, allowed: dict[str, float]) -> dict:
    """The course's ``optim_config={'momentum': 0.9}`` as keyword arguments."""
    config = dict(kwargs.pop("optim_config", None) or {})
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ValueError(
            f"{optimizer} optim_config has unknown keys {unknown}; allowed: {sorted(allowed)}"
        )
    return {**allowed, **config}


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
    weight_decay : float
        Strength of the decay of weight matrices (see the module docstring); 0: none.
    decoupled : bool, optional
        Decoupled (``w -= lr * weight_decay * w``) or coupled (L2, added to the
        gradient); default: decoupled for Adam (AdamW), coupled for SGD.

    Notes
    -----
    A subclass names its per-parameter state arrays in ``slot_keys`` and implements
    ``_update(w, dw, state, decay)`` on aligned blocks: ``w``, ``dw`` and each array of
    ``state`` (in ``slot_keys`` order) are views of one block of a parameter, and
    ``decay`` is the weight decay for that parameter (0 for biases and batch-norm
    parameters). The blocks are updated in parallel (:mod:`npdl.threads`).
    """

    slot_keys: tuple[str, ...] = ("scratch",)

    def __init__(
        self,
        model,
        loss_func=None,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        decoupled: bool | None = None,
    ):
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
        self.model = model
        self.loss_func = loss_func
        self.lr = float(learning_rate)
        self.steps = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self._jobs: list[tuple] = []
        self._jobs_key: tuple = ()
        self._set_weight_decay(weight_decay, decoupled)

    def _slot(self, name: str, param: np.ndarray) -> dict[str, np.ndarray]:
        slot = self.state.get(name)
        if slot is None:
            slot = self.state[name] = {key: np.zeros_like(param) for key in self.slot_keys}
        return slot

    #: Whether weight decay is decoupled unless the caller says (AdamW's default for Adam).
    decoupled_by_default = False

    def _set_weight_decay(self, weight_decay: float, decoupled: bool | None) -> None:
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite value >= 0, got {weight_decay!r}")
        self.weight_decay = float(weight_decay)
        self.decoupled = self.decoupled_by_default if decoupled is None else bool(decoupled)

    def _decay_before(self, w, dw, decay, scratch) -> None:
        """Coupled decay: ``dw += decay * w`` (the gradient is recomputed every step)."""
        if decay and not self.decoupled:
            _add_l2(dw, w, decay, scratch)

    def _decay_after(self, w, decay) -> None:
        """Decoupled decay: ``w *= 1 - lr * decay``."""
        if decay and self.decoupled:
            w *= 1.0 - self.lr * decay

    def backward(self, y_pred, y_true) -> None:
        """Fill the model's gradients for a batch (course API, as its ``Solver`` calls).

        Parameters
        ----------
        y_pred : numpy.ndarray
            The model's output for the batch, e.g. logits ``(N, C)``.
        y_true : numpy.ndarray
            The targets, e.g. ``int (N,)`` labels.
        """
        self.model.backward(self.loss_func.backward(y_pred, y_true))

    def step(self) -> None:
        """Update every parameter in place from its gradient."""
        self.steps += 1
        run_blocks(self._update, self._block_jobs())

    def _block_jobs(self) -> list[tuple]:
        """``(w, dw, state, decay)`` per block of every parameter, rebuilt only when a
        parameter, gradient or state array was replaced."""
        grads = self.model.grads
        arrays = []
        for name, param in self.model.params.items():
            slot = self._slot(name, param)
            arrays.append((param, grads[name], *(slot[key] for key in self.slot_keys)))
        key = tuple(id(a) for group in arrays for a in group)
        if key != self._jobs_key:
            decay = self.weight_decay
            self._jobs = [
                (w, dw, tuple(state), decay if group[0].ndim >= 2 else 0.0)
                for group in arrays
                for w, dw, *state in blocks(*group)
            ]
            self._jobs_key = key
        return self._jobs

    def _update(self, w, dw, state, decay) -> None:
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
    """Plain stochastic gradient descent ``w -= lr * dw``, with optional weight decay."""

    def _update(self, w, dw, state, decay) -> None:
        (scratch,) = state
        self._decay_before(w, dw, decay, scratch)
        self._decay_after(w, decay)
        np.multiply(dw, self.lr, out=scratch)
        w -= scratch


class SGDMomentum(Optimizer):
    """SGD with (optionally Nesterov) momentum and optional weight decay.

    ``v = momentum * v + dw``; ``w -= lr * v`` (or ``lr * (dw + momentum * v)`` with
    Nesterov).

    Parameters
    ----------
    model, loss_func, learning_rate
        As for :class:`Optimizer`.
    momentum : float
        In [0, 1) (default 0.9).
    nesterov : bool
    weight_decay, decoupled
        As for every optimizer; coupled by default (added to the gradient, so it
        goes through the momentum).
    **kwargs
        ``optim_config`` (the course's ``{'momentum': ...}``) sets ``momentum``; any
        other keyword is ignored.
    """

    slot_keys = ("velocity", "scratch")

    def __init__(
        self,
        model,
        loss_func=None,
        learning_rate: float = 1e-3,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        decoupled: bool | None = None,
        **kwargs,
    ):
        super().__init__(model, loss_func, learning_rate, weight_decay, decoupled)
        momentum = _course_optim_config("sgd_momentum", kwargs, {"momentum": momentum})["momentum"]
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _update(self, w, dw, state, decay) -> None:
        velocity, scratch = state
        self._decay_before(w, dw, decay, scratch)
        self._decay_after(w, decay)
        velocity *= self.momentum
        velocity += dw
        if self.nesterov:
            np.multiply(velocity, self.momentum, out=scratch)
            scratch += dw
            scratch *= self.lr
        else:
            np.multiply(velocity, self.lr, out=scratch)
        w -= scratch


class Adam(Optimizer):
    """Adam with bias correction; ``weight_decay`` is decoupled (AdamW) by default.

    Parameters
    ----------
    model, loss_func, learning_rate
        As for :class:`Optimizer`.
    beta1, beta2 : float
        Decay rates of the first and second moment estimates.
    epsilon : float
    weight_decay : float
        Decoupled: ``w -= lr * weight_decay * w`` each step (AdamW); with
        ``decoupled=False`` it is added to the gradient instead (L2). Weight matrices only.
    decoupled : bool, optional
        Default True (AdamW).
    **kwargs
        ``optim_config`` (the course's ``{'beta1': ..., 'beta2': ..., 'epsilon': ...}``)
        sets those; any other keyword is ignored.

    Notes
    -----
    The moments are kept undamped, ``m = beta1 * m + dw`` and ``v = beta2 * v + dw**2``
    (the textbook moments divided by ``1 - beta1`` and ``1 - beta2``); those factors and
    the bias corrections are folded into one step size and one epsilon per step. The
    update is exactly Adam's, ``lr * m_hat / (sqrt(v_hat) + eps)``, in 11 passes over a
    block instead of 13.
    """

    slot_keys = ("m", "v", "scratch")
    decoupled_by_default = True

    def __init__(
        self,
        model,
        loss_func=None,
        learning_rate: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool | None = None,
        **kwargs,
    ):
        super().__init__(model, loss_func, learning_rate, weight_decay, decoupled)
        config = _course_optim_config(
            "Adam", kwargs, {"beta1": beta1, "beta2": beta2, "epsilon": epsilon}
        )
        beta1, beta2, epsilon = config["beta1"], config["beta2"], config["epsilon"]
        for key, value in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{key} must be in [0, 1), got {value!r}")
        self.beta1, self.beta2, self.epsilon = float(beta1), float(beta2), float(epsilon)

    def step(self) -> None:
        # m_hat = (1 - b1) m / (1 - b1^t) and v_hat = (1 - b2) v / (1 - b2^t), so
        # m_hat / (sqrt(v_hat) + eps) = c1 / c2 * m / (sqrt(v) + eps / c2).
        t = self.steps + 1
        c1 = (1.0 - self.beta1) / (1.0 - self.beta1**t)
        c2 = math.sqrt((1.0 - self.beta2) / (1.0 - self.beta2**t))
        self._step_size = self.lr * c1 / c2
        self._eps_hat = self.epsilon / c2
        super().step()

    def _update(self, w, dw, state, decay) -> None:
        m, v, scratch = state
        self._decay_before(w, dw, decay, scratch)
        m *= self.beta1
        m += dw
        v *= self.beta2
        np.multiply(dw, dw, out=scratch)
        v += scratch
        self._decay_after(w, decay)
        np.sqrt(v, out=scratch)
        scratch += self._eps_hat
        np.divide(m, scratch, out=scratch)
        scratch *= self._step_size
        w -= scratch


#: The course's name of SGD with momentum.
sgd_momentum = SGDMomentum

OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "sgd_momentum": SGDMomentum,
    "adam": Adam,
}
