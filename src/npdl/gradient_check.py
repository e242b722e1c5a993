"""Numerical gradient checks of a whole network, layer by layer (float64, centred
differences), as cs231n checks a layer before training it.

:func:`gradient_errors` compares each layer's backward pass (npdl's layer contract,
``model.layers``) with centred differences of its forward pass, then the loss's gradient
and ``model.backward`` (every layer together, and the L2 term), on a random subset of
the entries of each parameter and of each layer's input. It runs on a float64 copy of
the network (:func:`network_copy`); the network given is never changed. Dropout draws
the same masks in every forward pass (its generators, and NumPy's global one, are reset
before each), batch norm uses the batch's statistics, and fixed buffers (a projection
such as ``P0``) are not parameters, so they are not checked. Where a ReLU, LeakyReLU or
Maxout kink lies within the step of an entry, the two one-sided differences disagree;
such an entry is left out (and counted) when the analytic derivative matches the side
it was computed on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from .activations import make_activation
from .losses import CrossEntropyFromLogits

#: The finite-difference step (float64).
H = 1e-5
#: Errors below this share of the largest derivative checked are rounding, not errors.
RELATIVE_FLOOR = 1e-4
#: An entry whose two one-sided differences disagree (a kink within ``H``) is left out
#: when the analytic derivative matches one of them this closely.
KINK_TOLERANCE = 1e-2


@dataclass
class PartErrors:
    """The check of one part of a network: ``label`` (e.g. ``model.layers[2]
    (HiddenLayer: W2, b2, gamma2, beta2)``), the largest relative error per parameter
    (its model name) and ``input`` (None where every entry checked was at a kink), and
    the number of entries left out at kinks."""

    label: str
    errors: dict[str, float | None]
    kinks: int


# -- randomness ---------------------------------------------------------------------


class _SameDraws:
    """Makes every forward pass draw the same random numbers: each generator attribute
    of the objects (dropout's) is replaced by a fresh one of ``seed``, and NumPy's
    global state (course code's dropout) is set back, before each pass; ``close``
    leaves the global state as it was."""

    def __init__(self, objects: Sequence, seed: int):
        self.objects, self.seed = list(objects), seed
        self.global_state = np.random.get_state()  # noqa: NPY002 - course dropout draws from it

    def reset(self) -> None:
        for obj in self.objects:
            for name, value in list(getattr(obj, "__dict__", {}).items()):
                if isinstance(value, np.random.Generator):
                    setattr(obj, name, np.random.default_rng(self.seed))
        np.random.set_state(self.global_state)  # noqa: NPY002

    def close(self) -> None:
        np.random.set_state(self.global_state)  # noqa: NPY002


# -- copies of a network ------------------------------------------------------------


def network_copy(model, seed: int = 0, **changes):
    """A copy of ``model`` with the same weights and ``changes`` to its constructor
    arguments (``dtype``, ``dropout``, ``reg``): npdl networks are rebuilt from
    ``config()`` and ``state_dict()`` (dropout masks drawn from ``seed``); any other
    network is deep-copied (its regularisation as it is) and cast to
    ``changes['dtype']``."""
    config = getattr(model, "config", None)
    if callable(config) and hasattr(model, "load_state_dict"):
        try:
            arch = {**config(), **changes}
            activation = make_activation(arch.pop("activation"), **arch.pop("activation_kwargs"))
            clone = type(model)(activation=activation, rng=seed, **arch)
            clone.load_state_dict(model.state_dict())
            return clone
        except (TypeError, KeyError, ValueError):
            pass  # a subclass with other arguments: copied below
    clone = copy.deepcopy(model)
    if "dtype" in changes:
        _cast(clone, np.dtype(changes["dtype"]))
    return clone


def training_mode(model):
    """``model`` in training mode (the course's ``train()`` may return nothing)."""
    if hasattr(model, "train"):
        model.train()
    return model


def _cast(model, dtype: np.dtype) -> None:
    """Every parameter, gradient and buffer of ``model`` (and of its layers) as ``dtype``."""
    for owner in [model, *getattr(model, "layers", [])]:
        for attribute in ("params", "grads", "buffers"):
            arrays = getattr(owner, attribute, None)
            if isinstance(arrays, dict):
                for key, value in arrays.items():
                    arrays[key] = np.asarray(value, dtype=dtype)
    if hasattr(model, "dtype"):
        model.dtype = dtype


@dataclass
class _Derivatives:
    """Per checked entry: the analytic derivative and the centred, forward and backward
    differences of the same scalar."""

    analytic: list[float] = field(default_factory=list)
    central: list[float] = field(default_factory=list)
    forward: list[float] = field(default_factory=list)
    backward: list[float] = field(default_factory=list)


def _differences(evaluate: Callable, array: np.ndarray, entries, base, scalar) -> _Derivatives:
    """Perturb each entry of ``array`` (flat indices ``entries``) by +-H in place;
    ``scalar(a, b)`` is the change of the checked scalar between outputs ``a`` and ``b``."""
    found = _Derivatives()
    for flat in entries:
        index = np.unravel_index(flat, array.shape)
        old = array[index]
        array[index] = old + H
        plus = evaluate()
        array[index] = old - H
        minus = evaluate()
        array[index] = old
        found.central.append(scalar(plus, minus) / (2 * H))
        found.forward.append(scalar(plus, base) / H)
        found.backward.append(scalar(base, minus) / H)
    return found


def _errors(found: dict[str, _Derivatives], tolerance: float) -> tuple[dict, int]:
    """The largest relative error of each array's entries (None: only kinks) and the
    number of kink entries left out. Relative error: ``|a - n| / (|a| + |n|)``, the
    denominator at least ``RELATIVE_FLOOR`` times the largest derivative checked."""
    values = [abs(v) for d in found.values() for v in (*d.analytic, *d.central)]
    floor = max(RELATIVE_FLOOR * max(values, default=0.0), 1e-8)

    def relative(a: float, n: float) -> float:
        return abs(a - n) / max(abs(a) + abs(n), floor)

    errors, kinks = {}, 0
    for name, d in found.items():
        kept = []
        for a, c, f, b in zip(d.analytic, d.central, d.forward, d.backward, strict=True):
            error = relative(a, c)
            one_sided = min(relative(a, f), relative(a, b))
            if error > tolerance and relative(f, b) > error and one_sided < KINK_TOLERANCE:
                kinks += 1  # not smooth here: the analytic side's slope is right
                continue
            kept.append(error)
        errors[name] = max(kept) if kept else None
    return errors, kinks


def _sample(size: int, entries: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(size, min(entries, size), replace=False))


def _check_layer(layer, x: np.ndarray, names: dict, draws: _SameDraws, rng, entries: int):
    """A layer's derivatives: ``f = sum(layer.forward(x) * dout)`` for a random ``dout``;
    ``dout`` and ``dx`` are copied because a network's layers reuse their buffers."""

    def evaluate(inputs=x):
        draws.reset()
        return np.array(layer.forward(inputs.copy(), True), dtype=np.float64)

    base = evaluate()
    dout = rng.standard_normal(base.shape)
    dx = layer.backward(dout.copy())
    found = {}

    def scalar(a, b):
        return float(np.vdot(a - b, dout))

    for key, array in layer.params.items():
        analytic = np.array(layer.grads[key], dtype=np.float64).reshape(-1)
        picked = _sample(array.size, entries, rng)
        name = names.get(id(array), key)
        found[name] = _differences(evaluate, array, picked, base, scalar)
        found[name].analytic = analytic[picked].tolist()
    if dx is not None:
        dx = np.array(dx, dtype=np.float64).reshape(-1)
        picked = _sample(x.size, entries, rng)
        perturbed = x.copy()
        found["input"] = _differences(lambda: evaluate(perturbed), perturbed, picked, base, scalar)
        found["input"].analytic = dx[picked].tolist()
    return found


def _check_network(net, x, labels, loss_func, draws: _SameDraws, rng, entries: int):
    """The loss's gradient w.r.t. the logits, and ``model.backward`` (every layer
    together, and the L2 term) for ``f = sum(logits * dout) + sum(model.reg)``."""
    found: dict[str, _Derivatives] = {}

    def evaluate():
        draws.reset()
        logits = np.array(net.forward(x), dtype=np.float64)
        return logits, float(sum(getattr(net, "reg", {}).values()))

    base = evaluate()
    logits = base[0].copy()
    loss_grad = np.array(loss_func.backward(logits, labels), dtype=np.float64).reshape(-1)
    picked = _sample(logits.size, entries, rng)
    loss_found = _differences(
        lambda: loss_func.forward(logits, labels),
        logits,
        picked,
        loss_func.forward(logits, labels),
        lambda a, b: a - b,
    )
    loss_found.analytic = loss_grad[picked].tolist()
    dout = rng.standard_normal(base[0].shape)
    net.backward(dout.copy())
    grads = {name: np.array(net.grads[name], dtype=np.float64) for name in net.params}

    def scalar(a, b):
        return float(np.vdot(a[0] - b[0], dout)) + (a[1] - b[1])

    for name, array in net.params.items():
        picked = _sample(array.size, entries, rng)
        found[name] = _differences(evaluate, array, picked, base, scalar)
        found[name].analytic = grads[name].reshape(-1)[picked].tolist()
    return loss_found, found


def _layer_label(index: int, layer, names: dict) -> str:
    kind = type(layer).__name__
    if hasattr(layer, "activation"):
        kind = f"{kind}({type(layer.activation).__name__})"
    params = [names.get(id(array), key) for key, array in layer.params.items()]
    return f"model.layers[{index}] ({kind}{': ' + ', '.join(params) if params else ''})"


def gradient_errors(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    loss_func=None,
    entries: int = 10,
    tolerance: float = 1e-5,
    seed: int = 0,
) -> list[PartErrors]:
    """Each layer's backward pass, then the loss's and ``model.backward``, against
    centred differences (step ``H``) in float64, on ``entries`` random entries (from
    ``seed``) of each parameter and of each layer's input.

    Parameters
    ----------
    model : network (npdl's ``ClassificationNet`` or the course's contract)
    images : ndarray (N, ...), flattened to (N, D); a tiny batch (4 to 8 samples)
    labels : int ndarray (N,)
    loss_func : the loss (default ``CrossEntropyFromLogits()``)
    entries : entries checked per parameter and per layer input
    tolerance : the relative error above which an entry may be at a kink (see
        ``KINK_TOLERANCE``); errors are reported, not judged

    Returns
    -------
    list of PartErrors
        The layers in order (those with nothing to check left out: no parameters and
        no input gradient, as a fixed first projection), the loss, ``model.backward``.
    """
    loss_func = loss_func or CrossEntropyFromLogits()
    net = training_mode(network_copy(model, seed, dtype="float64"))
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    layers = list(getattr(net, "layers", []))
    names = {id(array): name for name, array in net.params.items()}
    draws = _SameDraws([net, *layers], seed)
    parts: list[tuple[str, dict]] = []
    try:
        with threadpool_limits(1, user_api="blas"):  # the same sums whatever the machine
            inputs, out = [], x
            draws.reset()
            for layer in layers:
                inputs.append(out.copy())
                out = layer.forward(out, True)
            for index, layer in enumerate(layers):
                found = _check_layer(layer, inputs[index], names, draws, rng, entries)
                parts.append((_layer_label(index, layer, names), found))
            loss_found, found = _check_network(net, x, labels, loss_func, draws, rng, entries)
    finally:
        draws.close()
    parts.append((f"loss ({type(loss_func).__name__})", {"logits": loss_found}))
    parts.append(("model.backward (all layers and the L2 term)", found))
    return [PartErrors(label, *_errors(found, tolerance)) for label, found in parts if found]
