"""A verdict on a training from its history: ``overfitting``, ``underfitting``,
``diverged`` or ``ok``, with the evidence and the course's advice for it.

The course (TUM i2dl, "Hyperparameter Tuning") reads learning curves this way:

- **overfitting** (training accuracy well above validation, validation loss rising):
  increase the regularisation strength (weight decay, dropout, augmentation), decrease
  the model's capacity, stop earlier;
- **underfitting** (training accuracy low): train longer, increase the capacity, a
  higher learning rate, less regularisation;
- **diverged** (the loss became NaN/inf, or grew far above its start): lower the
  learning rate, check the gradients (``npdl sanity``, the sanity stage) and the data.

:func:`diagnose` applies these rules to the rows a :class:`~npdl.solver.Solver` keeps
(``Solver.history``) or the train stage writes (``metrics/train_history.csv``); every
threshold is one of its parameters. The diagnosis only reads a training: it changes
nothing of it and is no part of a run's identity in the run store.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: The verdicts, in the order :func:`diagnose` tests them (the course's: a model that
#: cannot fit its training data is fixed before its generalisation is).
VERDICTS = ("diverged", "underfitting", "overfitting", "ok")

#: The course's advice for each verdict (underfitting's depends on the trend, below).
ADVICE = {
    "diverged": "lower the learning rate; check the gradients (`npdl sanity`, the sanity "
    "stage) and the data (images and labels matching, normalised)",
    "overfitting": "increase the regularisation strength (weight decay, dropout, "
    "augmentation), decrease the model's capacity, or stop earlier",
    "underfitting": "train longer; then increase the model's capacity, raise the learning "
    "rate or regularise less",
    "ok": "nothing to fix; for more accuracy grow the model until it overfits, then regularise it",
}
#: Underfitting with a flat training accuracy: training longer gains little.
FLAT_UNDERFITTING_ADVICE = (
    "increase the model's capacity, raise the learning rate or regularise less "
    "(training longer gains little: the training accuracy is flat)"
)


@dataclass(frozen=True)
class Diagnosis:
    """A verdict on one training.

    Attributes
    ----------
    verdict : str
        One of :data:`VERDICTS`.
    evidence : str
        The figures of the history that decided it, e.g. ``'train 88.9% vs val 70.2%
        (gap 18.7 points); val loss rising since epoch 61 (min 0.853 -> 1.02, +20%)'``.
    advice : str
        What the course advises for the verdict.
    since_epoch : int or None
        Overfitting: the epoch of the lowest val loss when it has risen since, else
        the first epoch of the gap's last stretch at or above the threshold.
        Diverged: the epoch whose loss became non-finite or far above its start.
        None for underfitting and ok.
    """

    verdict: str
    evidence: str
    advice: str
    since_epoch: int | None = None

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {', '.join(VERDICTS)}")

    def to_json(self) -> dict[str, Any]:
        """``verdict``, ``evidence``, ``advice``, ``since_epoch`` as plain JSON values."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.verdict}: {self.evidence}; advice: {self.advice}"


@dataclass(frozen=True)
class _Curves:
    """A history's columns as float64 arrays (E,), NaN where a value is missing."""

    epochs: np.ndarray
    train_loss: np.ndarray
    train_acc: np.ndarray
    val_loss: np.ndarray
    val_acc: np.ndarray

    @classmethod
    def of(cls, history: Iterable[Mapping[str, Any]]) -> _Curves:
        rows = list(history)
        columns = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")
        return cls(*(np.array([_number(row.get(c)) for row in rows]) for c in columns))

    @property
    def validated(self) -> np.ndarray:
        """Indices of the epochs with a val accuracy and loss."""
        return np.flatnonzero(np.isfinite(self.val_acc) & np.isfinite(self.val_loss))


def diagnose(
    history: Iterable[Mapping[str, Any]],
    status: str | None = None,
    *,
    num_classes: int = 10,
    gap_points: float = 10.0,
    loss_rise: float = 0.10,
    rise_epochs: int = 3,
    low_accuracy: float = 0.60,
    window: int = 3,
    rising_points: float = 1.0,
    divergence_ratio: float = 2.0,
    loss_limit_chances: float = 10.0,
) -> Diagnosis:
    """The verdict on a training, tested in the order of :data:`VERDICTS`.

    Parameters
    ----------
    history : iterable of mappings
        One row per epoch with ``epoch``, ``train_loss``, ``train_acc``, ``val_loss``,
        ``val_acc`` (accuracies in [0, 1]); numbers or their text (a CSV's cells),
        None/NaN/``''`` where missing. A history without val (a refit) cannot show
        overfitting: the evidence says so and only the other verdicts are judged.
    status : str, optional
        The Solver's or the trial's status; ``'diverged'`` means the epoch after the
        history's last one hit a non-finite loss (the Solver records no row for it).
    num_classes : int
        Chance is ``1 / num_classes`` accuracy and ``ln(num_classes)`` cross-entropy.
    gap_points : float
        Overfitting when the last validated epoch's train accuracy is this many
        percentage points above its val accuracy. 10 points is far beyond the noise of
        either (the standard error of a val accuracy on 5,000 images is under 1 point),
        and training accuracy here is measured with dropout and augmentation on, which
        lowers it: a gap this large is the model learning its training images.
    loss_rise, rise_epochs : float, int
        Overfitting, too, when the last val loss is at least ``1 + loss_rise`` times its
        minimum (10%: beyond the epoch-to-epoch noise of a few percent) and that
        minimum lies at least ``rise_epochs`` epochs back (one noisy epoch is no trend):
        the signal early stopping acts on.
    low_accuracy : float
        Underfitting when the last train accuracy is below it, rising or flat: the model
        does not fit its own training data. 0.6 suits CIFAR-10, where a network of
        enough capacity fits far more (the default MLP 89% in 140 epochs, 45% after 3);
        set it for another dataset.
    window, rising_points : int, float
        Train accuracy is "still rising" when it gained at least ``rising_points``
        percentage points over the last ``window`` epochs (the accuracy before the first
        epoch counts as chance), which selects the advice: train longer, or change the
        model when it is flat.
    divergence_ratio : float
        Diverged, too, when an epoch's train loss exceeds ``divergence_ratio`` times the
        first epoch's: training that doubles its loss has left its minimum behind.
    loss_limit_chances : float
        Diverged, too, when a train loss (the first epoch's included) exceeds this many
        times ``ln(num_classes)``, a uniform guess's cross-entropy (where training
        starts): 10 such guesses' loss (23 for 10 classes) is no training; no L2 term at
        initialisation comes near it.

    Raises
    ------
    ValueError
        When the history has no epoch and the status is not ``'diverged'``.
    """
    curves = _Curves.of(history)
    if len(curves.epochs) == 0 and status != "diverged":
        raise ValueError("no epoch to diagnose: the history is empty")
    chance_loss = math.log(num_classes)
    diverged = _diverged(curves, status, divergence_ratio, loss_limit_chances, chance_loss)
    if diverged is not None:
        return diverged
    gap = _gap(curves, gap_points)
    underfitting = _underfitting(curves, num_classes, low_accuracy, window, rising_points, gap)
    if underfitting is not None:
        return underfitting
    if len(curves.validated) == 0:
        trend = _trend(curves, num_classes, window, rising_points)[0]
        unjudged = "no validation data (a refit?): overfitting cannot be judged"
        return Diagnosis("ok", f"{trend}; {unjudged}", ADVICE["ok"])
    rising = _val_loss_rising(curves, loss_rise, rise_epochs)
    best = curves.validated[np.nanargmin(curves.val_loss[curves.validated])]
    last_loss = curves.val_loss[curves.validated[-1]]
    last = int(curves.epochs[curves.validated[-1]])
    lowest = (
        f"val loss lowest in epoch {int(curves.epochs[best])} of {last} "
        f"({curves.val_loss[best]:.3g}, last {last_loss:.3g})"
    )
    if gap[1] is not None or rising is not None:
        facts = [gap[0], rising[0] if rising is not None else lowest]
        since = rising[1] if rising is not None else gap[1]
        return Diagnosis("overfitting", "; ".join(facts), ADVICE["overfitting"], since)
    return Diagnosis("ok", f"{gap[0]}; {lowest}", ADVICE["ok"])


def _diverged(
    curves: _Curves, status: str | None, ratio: float, chances: float, chance_loss: float
) -> Diagnosis | None:
    """Diverged: a non-finite train loss (in the history, or ``status``), one above
    ``ratio`` times the first epoch's, or one above ``chances`` times ``chance_loss``."""
    broken = np.flatnonzero(~np.isfinite(curves.train_loss))
    if len(broken) or status == "diverged":
        index = int(broken[0]) if len(broken) else len(curves.epochs)
        epoch = int(curves.epochs[index]) if len(broken) else _next_epoch(curves)
        before = (
            f" (train loss {curves.train_loss[index - 1]:.3g} in epoch {epoch - 1})"
            if index > 0
            else ""
        )
        return Diagnosis(
            "diverged", f"loss became NaN/inf in epoch {epoch}{before}", ADVICE["diverged"], epoch
        )
    losses, first = curves.train_loss, curves.train_loss[0]
    limit = chances * chance_loss
    high = np.flatnonzero((losses > ratio * first) | (losses > limit))
    if len(high) == 0:
        return None
    index = int(high[0])
    epoch, loss = int(curves.epochs[index]), losses[index]
    why = (
        f"{loss / first:.3g}x the first epoch's {first:.3g}"
        if loss > ratio * first
        else f"above {limit:.3g} ({chances:g}x a uniform guess's {chance_loss:.3g})"
    )
    evidence = f"train loss {loss:.3g} in epoch {epoch}, {why}"
    return Diagnosis("diverged", evidence, ADVICE["diverged"], epoch)


def _underfitting(
    curves: _Curves,
    num_classes: int,
    low_accuracy: float,
    window: int,
    rising_points: float,
    gap: tuple[str, int | None],
) -> Diagnosis | None:
    """Underfitting: the last train accuracy below ``low_accuracy``."""
    final = curves.train_acc[-1]
    if not final < low_accuracy:
        return None
    below = f", below {100 * low_accuracy:.0f}%,"
    trend, rising = _trend(curves, num_classes, window, rising_points, below)
    facts = [trend]
    if len(curves.validated):
        facts.append(f"val {100 * curves.val_acc[curves.validated[-1]]:.1f}%")
        if gap[1] is not None:
            facts.append(f"also {gap[0]}")
    advice = ADVICE["underfitting"] if rising else FLAT_UNDERFITTING_ADVICE
    return Diagnosis("underfitting", "; ".join(facts), advice)


def _trend(
    curves: _Curves, num_classes: int, window: int, rising_points: float, qualifier: str = ""
) -> tuple[str, bool]:
    """``'train accuracy 42.6%<qualifier> and still rising (+4.3 points over the last 3
    epochs)'`` (or ``'flat'``) and whether it is rising; before epoch 1 the accuracy is
    chance."""
    accuracy = np.concatenate([[1.0 / num_classes], curves.train_acc])
    span = min(window, len(accuracy) - 1)
    gain = 100 * (accuracy[-1] - accuracy[-1 - span])
    rising = bool(gain >= rising_points)
    epochs = f"the last {span} epochs" if span > 1 else "the last epoch"
    if span == len(accuracy) - 1:
        epochs += f", from chance {100 / num_classes:.0f}%"
    state = f"{'still rising' if rising else 'flat'} ({gain:+.1f} points over {epochs})"
    return f"train accuracy {100 * accuracy[-1]:.1f}%{qualifier} and {state}", rising


def _gap(curves: _Curves, gap_points: float) -> tuple[str, int | None]:
    """``'train 88.9% vs val 70.2% (gap 18.7 points)'`` at the last validated epoch, and
    the first epoch of the gap's last stretch at or above ``gap_points`` (None when the
    last gap is below it)."""
    validated = curves.validated
    if len(validated) == 0:
        return "no validation data", None
    gaps = 100 * (curves.train_acc[validated] - curves.val_acc[validated])
    last = validated[-1]
    text = (
        f"train {100 * curves.train_acc[last]:.1f}% vs val {100 * curves.val_acc[last]:.1f}% "
        f"(gap {gaps[-1]:.1f} points)"
    )
    if not gaps[-1] >= gap_points:
        return text, None
    below = np.flatnonzero(~(gaps >= gap_points))
    start = validated[below[-1] + 1] if len(below) else validated[0]
    return text, int(curves.epochs[start])


def _val_loss_rising(curves: _Curves, loss_rise: float, rise_epochs: int) -> tuple[str, int] | None:
    """``('val loss rising since epoch 61 (min 0.853 -> 1.02, +20%)', 61)`` when the last
    val loss is ``1 + loss_rise`` times its minimum, ``rise_epochs`` or more epochs on."""
    validated = curves.validated
    losses = curves.val_loss[validated]
    lowest = int(np.argmin(losses))
    rise = losses[-1] / losses[lowest] - 1 if losses[lowest] > 0 else 0.0
    if len(losses) - 1 - lowest < rise_epochs or rise < loss_rise:
        return None
    epoch = int(curves.epochs[validated[lowest]])
    text = (
        f"val loss rising since epoch {epoch} "
        f"(min {losses[lowest]:.3g} -> {losses[-1]:.3g}, {100 * rise:+.0f}%)"
    )
    return text, epoch


def _next_epoch(curves: _Curves) -> int:
    """The epoch after the history's last (1 for an empty history)."""
    return int(curves.epochs[-1]) + 1 if len(curves.epochs) else 1


def _number(cell) -> float:
    """A history cell as a float: NaN for a missing value (None or ``''``)."""
    return math.nan if cell is None or cell == "" else float(cell)
