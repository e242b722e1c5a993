"""Checks before any training, the course's way of starting: seconds, not hours.

- :func:`gradient_check`: every layer's backward pass against centred finite
  differences of its forward pass, on a tiny float64 batch, then the loss's and the
  whole network's (``model.backward``, with the L2 term): :mod:`npdl.gradient_check`;
- :func:`initial_loss_check`: the untrained network's loss is about ln C for C classes;
- :func:`overfit_check`: the course's recipe, overfit 1 sample, then 10, then 100 to
  >= 99% train accuracy within a fixed number of full-batch steps of the optimizer;
- :func:`check`: the three in that order, stopping at the first failure, as a
  :class:`SanityReport` (``report.raise_for_failure()`` raises :class:`SanityCheckFailed`).

They take any network of the course's contract (``forward``, ``backward``, ``params``,
``grads``, ``train``/``eval``); the layer-by-layer check needs npdl's layer contract
(``model.layers``), otherwise the network is checked as a whole. The network given is
never changed: the checks run on copies (a float64 one for the gradients; for the loss
at initialisation and the overfitting, one without dropout and L2, as the course
overfits without regularisation; its accuracy is the training mode's, batch norm on
the batch's statistics). The report holds no times: the same model, data and seed give
the same one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .gradient_check import gradient_errors, network_copy, training_mode
from .losses import CrossEntropyFromLogits
from .optimizers import OPTIMIZERS

#: The overfitting of a size stops when its loss grows past this many times its first.
DIVERGED = 100.0


class SanityCheckFailed(RuntimeError):
    """A sanity check failed; ``report`` holds every check's figures."""

    def __init__(self, report: SanityReport):
        super().__init__(report.failure.message)
        self.report = report


@dataclass
class CheckResult:
    """One check: ``name`` (``gradients``, ``initial_loss``, ``overfit``), ``status``
    (``passed``, ``failed``, ``skipped``), a one-line ``message`` and its ``figures``."""

    name: str
    status: str
    message: str
    figures: dict = field(default_factory=dict)


@dataclass
class SanityReport:
    """The checks of :func:`check`, in order; ``to_json()`` is ``metrics/sanity.json``."""

    checks: list[CheckResult]

    @property
    def failure(self) -> CheckResult | None:
        return next((c for c in self.checks if c.status == "failed"), None)

    @property
    def passed(self) -> bool:
        return self.failure is None

    @property
    def status(self) -> str:
        if self.failure:
            return "failed"
        return "skipped" if all(c.status == "skipped" for c in self.checks) else "passed"

    def to_json(self) -> dict:
        checks = {
            c.name: {"status": c.status, "message": c.message, **c.figures} for c in self.checks
        }
        return {"status": self.status, "checks": checks}

    def raise_for_failure(self) -> None:
        """Raise :class:`SanityCheckFailed` (the failed check's message) if one failed."""
        if self.failure:
            raise SanityCheckFailed(self)

    def __str__(self) -> str:
        return "\n".join(f"{c.name}: {c.status}: {c.message}" for c in self.checks)


def significant(value: float, digits: int = 3) -> float:
    """``value`` to ``digits`` significant digits (what a reader uses; the report's
    figures stay the same where rounding noise would not)."""
    return float(f"{value:.{digits}g}")


# -- gradients ----------------------------------------------------------------------


def gradient_check(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    loss_func=None,
    entries: int = 10,
    tolerance: float = 1e-5,
    seed: int = 0,
) -> CheckResult:
    """:func:`npdl.gradient_check.gradient_errors` judged: every relative error at most
    ``tolerance``, else a failure naming the first part and parameter over it.

    Parameters
    ----------
    model : network; images : ndarray (N, ...), a tiny batch; labels : int ndarray (N,)
    """
    parts = gradient_errors(model, images, labels, loss_func, entries, tolerance, seed)
    failure = None
    for part in parts:
        worst = max(part.errors, key=lambda k: part.errors[k] or 0.0)
        if failure is None and (part.errors[worst] or 0.0) > tolerance:
            what = "its input gradient" if worst == "input" else f"{worst!r}"
            failure = (
                f"gradient check failed: {part.label}, {what}: relative error "
                f"{significant(part.errors[worst])} > {tolerance:g}; its backward pass does "
                "not match its forward pass"
            )
    figures = [
        {
            "part": part.label,
            "relative_errors": {
                k: None if e is None else significant(e) for k, e in part.errors.items()
            },
            "kinks_left_out": part.kinks,
        }
        for part in parts
    ]
    errors = [e for f in figures for e in f["relative_errors"].values() if e is not None]
    largest = max(errors, default=0.0)
    result = {"tolerance": tolerance, "samples": len(images), "largest_error": largest}
    result["parts"] = figures
    if failure:
        return CheckResult("gradients", "failed", failure, result)
    message = f"{len(parts)} parts, largest relative error {largest:.2g} <= {tolerance:g}"
    return CheckResult("gradients", "passed", message, result)


# -- the loss at initialisation -----------------------------------------------------


def _unregularised(model, seed: int):
    """A training-mode copy of ``model`` with its weights, without dropout and L2."""
    return training_mode(network_copy(model, seed, dropout=0.0, reg=0.0))


def initial_loss_check(
    model, images: np.ndarray, labels: np.ndarray, loss_func=None, tolerance: float = 0.5, seed=0
) -> CheckResult:
    """The untrained network's loss on ``images`` (N, ...) with int ``labels`` (N,) is
    ln C for C classes (the logits' width) within ``tolerance`` times ln C: untrained
    logits are near zero, so every class is about as likely (label smoothing keeps it so)."""
    return _initial_loss(_unregularised(model, seed), images, labels, loss_func, tolerance)


def _initial_loss(net, images, labels, loss_func, tolerance: float) -> CheckResult:
    loss_func = loss_func or CrossEntropyFromLogits()
    labels = np.asarray(labels)
    with np.errstate(all="ignore"):
        logits = np.asarray(net.forward(np.asarray(images).reshape(len(images), -1)))
    classes = logits.shape[1]
    expected = math.log(classes)
    if labels.min() < 0 or labels.max() >= classes:
        message = (
            f"initial loss check failed: labels from {labels.min()} to {labels.max()}, but the "
            f"network has {classes} outputs (labels must be 0 to {classes - 1})"
        )
        return CheckResult("initial_loss", "failed", message, {"classes": classes})
    with np.errstate(all="ignore"):
        loss = float(loss_func.forward(logits, labels))
    figures = {
        "loss": significant(loss),
        "ln_classes": significant(expected),
        "classes": classes,
        "samples": len(labels),
        "tolerance": tolerance,
    }
    if math.isfinite(loss) and abs(loss - expected) <= tolerance * expected:
        message = f"{loss:.3g} at initialisation, ln({classes}) = {expected:.3g}"
        return CheckResult("initial_loss", "passed", message, figures)
    cause = (
        "the initial weights are too large (model.init, model.std) or the outputs are not "
        "raw logits"
        if not loss < expected
        else "the loss is too small for untrained weights: is it averaged over the batch, "
        "and do the labels come from the images (a label leaking into the input)?"
    )
    message = (
        f"initial loss check failed: loss {loss:.3g} at initialisation, expected about "
        f"ln({classes}) = {expected:.3g} (within {tolerance:.0%}); {cause}; or the labels do "
        "not match the images"
    )
    return CheckResult("initial_loss", "failed", message, figures)


# -- the overfit ladder -------------------------------------------------------------


def _make_optimizer(optimizer, net, loss_func, learning_rate: float, kwargs: dict | None):
    """The optimizer (a name of ``OPTIMIZERS`` or a class) with weight decay off."""
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {optimizer!r}; allowed: {', '.join(sorted(OPTIMIZERS))}"
            )
        optimizer = OPTIMIZERS[optimizer]
    kwargs = dict(kwargs or {})
    if "weight_decay" in kwargs:
        kwargs["weight_decay"] = 0.0  # regularisation off, as the course overfits
    return optimizer(net, loss_func, learning_rate, **kwargs)


def _overfit_size(net, opt, x, y, loss_func, steps: int, accuracy: float) -> dict:
    """Full-batch steps on (x, y) until the train accuracy reaches ``accuracy``."""
    first = None
    for step in range(steps + 1):
        logits = net.forward(x)
        reached = float(np.mean(np.argmax(logits, axis=1) == y))
        loss = float(loss_func.forward(logits, y))
        first = loss if first is None else first
        diverged = not math.isfinite(loss) or loss > DIVERGED * max(first, 1.0)
        if reached >= accuracy or step == steps or diverged:
            break
        net.backward(loss_func.backward(logits, y))
        opt.step()
    return {
        "samples": len(y),
        "passed": reached >= accuracy and math.isfinite(loss),
        "accuracy": significant(reached),
        "steps": step,
        "first_loss": significant(first),
        "last_loss": significant(loss) if math.isfinite(loss) else str(loss),
        "loss_rose": not loss <= first,  # nan included
    }


def _overfit_failure(size: dict, name: str, learning_rate: float, steps: int, need: float):
    first, last = size["first_loss"], size["last_loss"]
    if size["loss_rose"]:
        cause = (
            f"the loss went from {first:.3g} to {last if isinstance(last, str) else f'{last:.3g}'}"
            f": the learning rate is probably too high (lr={learning_rate!r})"
        )
    else:
        cause = (
            f"the loss fell only from {first:.3g} to {last:.3g}: the learning rate may be too "
            f"low (lr={learning_rate!r}), or the steps too few"
        )
    return (
        f"overfit check failed: {size['samples']} image{'s' * (size['samples'] != 1)} "
        f"reached {size['accuracy']:.0%} "
        f"train accuracy (needed {need:.0%}) after {size['steps']} of {steps} full-batch "
        f"steps of {name}; {cause}; else a layer is broken or the labels do not match the "
        "images"
    )


def overfit_check(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    loss_func=None,
    optimizer="adam",
    learning_rate: float = 1e-3,
    optimizer_kwargs: dict | None = None,
    sizes: Sequence[int] = (1, 10, 100),
    steps: int = 200,
    accuracy: float = 0.99,
    seed: int = 0,
) -> CheckResult:
    """The course's recipe: overfit the first 1, then 10, then 100 samples (``sizes``)
    of ``images`` (N, ...) with int ``labels`` (N,), each from the network's initial
    weights, to ``accuracy`` train accuracy within ``steps`` full-batch steps of
    ``optimizer`` (a name, e.g. ``'adam'``, or an optimizer class taking ``(model,
    loss_func, learning_rate, **optimizer_kwargs)``), without dropout, L2 or weight decay.
    Sizes above N are cut to N."""
    net = _unregularised(model, seed)
    return _overfit(
        net,
        images,
        labels,
        loss_func,
        optimizer,
        learning_rate,
        optimizer_kwargs,
        sizes,
        steps,
        accuracy,
    )


def _overfit(net, images, labels, loss_func, optimizer, lr, kwargs, sizes, steps, accuracy):
    loss_func = loss_func or CrossEntropyFromLogits()
    x = np.asarray(images).reshape(len(images), -1)
    labels = np.asarray(labels)
    name = optimizer if isinstance(optimizer, str) else getattr(optimizer, "__name__", "optimizer")
    initial = net.state_dict() if hasattr(net, "load_state_dict") else copy.deepcopy(net)
    results = []
    with np.errstate(all="ignore"):  # a learning rate far too high overflows: a finding
        for n in sorted({min(int(size), len(x)) for size in sizes}):
            if isinstance(initial, dict):
                net.load_state_dict(initial)
            else:
                net = copy.deepcopy(initial)
            opt = _make_optimizer(optimizer, net, loss_func, lr, kwargs)
            results.append(_overfit_size(net, opt, x[:n], labels[:n], loss_func, steps, accuracy))
            if not results[-1]["passed"]:
                break
    figures = {
        "optimizer": name,
        "learning_rate": lr,
        "steps_budget": steps,
        "accuracy_needed": accuracy,
        "sizes": results,
    }
    if not results[-1]["passed"]:
        message = _overfit_failure(results[-1], name, lr, steps, accuracy)
        return CheckResult("overfit", "failed", message, figures)
    reached = ", ".join(f"{r['samples']} in {r['steps']} steps" for r in results)
    message = f"{accuracy:.0%} train accuracy with {name} at lr={lr!r}: {reached}"
    return CheckResult("overfit", "passed", message, figures)


# -- all of them --------------------------------------------------------------------

CHECKS = ("gradients", "initial_loss", "overfit")


def skipped_report(reason: str) -> SanityReport:
    """A report of no checks run, each saying ``reason`` (e.g. ``sanity.enabled=false``)."""
    return SanityReport([CheckResult(name, "skipped", reason) for name in CHECKS])


def check(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    loss_func=None,
    optimizer="adam",
    learning_rate: float = 1e-3,
    optimizer_kwargs: dict | None = None,
    *,
    gradient_samples: int = 8,
    gradient_entries: int = 10,
    gradient_tolerance: float = 1e-5,
    init_loss_tolerance: float = 0.5,
    overfit_sizes: Sequence[int] = (1, 10, 100),
    overfit_steps: int = 200,
    overfit_accuracy: float = 0.99,
    seed: int = 0,
) -> SanityReport:
    """:func:`gradient_check` on the first ``gradient_samples`` of ``images``,
    :func:`initial_loss_check` on the first ``max(overfit_sizes)``, then
    :func:`overfit_check`; a check after a failed one is skipped.

    Parameters
    ----------
    model : network (npdl's ``ClassificationNet`` or the course's contract); not changed
    images : ndarray (N, ...), the model's input (normalised as for training)
    labels : int ndarray (N,)
    loss_func : default ``CrossEntropyFromLogits()``
    optimizer, learning_rate, optimizer_kwargs : as for the ``Solver``

    Examples
    --------
    >>> report = npdl.sanity.check(model, X_train[:100], y_train[:100], learning_rate=1e-3)
    >>> print(report)
    >>> report.raise_for_failure()
    """
    images, labels = np.asarray(images), np.asarray(labels)
    results = [
        gradient_check(
            model,
            images[:gradient_samples],
            labels[:gradient_samples],
            loss_func,
            gradient_entries,
            gradient_tolerance,
            seed,
        )
    ]
    net = _unregularised(model, seed)
    most = max(overfit_sizes)
    steps = [
        lambda: _initial_loss(net, images[:most], labels[:most], loss_func, init_loss_tolerance),
        lambda: _overfit(
            net,
            images,
            labels,
            loss_func,
            optimizer,
            learning_rate,
            optimizer_kwargs,
            overfit_sizes,
            overfit_steps,
            overfit_accuracy,
        ),
    ]
    for name, step in zip(CHECKS[1:], steps, strict=True):
        if results[-1].status == "failed" or results[-1].status == "skipped":
            failed = next(r.name for r in results if r.status == "failed")
            results.append(CheckResult(name, "skipped", f"not run: the {failed} check failed"))
        else:
            results.append(step())
    return SanityReport(results)
