"""What a training's metrics say beside its result: on what it trained and which weights
it kept (a single run), the diagnosis of its history (every run); and its history as rows
for ``metrics/train_history.csv``."""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..config import PipelineConfig
from ..diagnosis import Diagnosis, diagnose
from .training import TrainingOutcome

#: The columns of ``metrics/train_history.csv``.
HISTORY_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]


def training_summary(cfg: PipelineConfig, outcome: TrainingOutcome, train_images: int) -> dict:
    """``refit``, ``trained_on`` (train or train+val), ``train_images``, ``kept_epoch``
    (the best epoch on val, or the last one), ``weight_average`` (the decay or None)
    and ``final_train_acc``."""
    result = outcome.result
    return {
        "refit": cfg.solver.refit,
        "trained_on": "train+val" if cfg.solver.refit else "train",
        "train_images": train_images,
        "kept_epoch": result.best_epoch if result.best_epoch is not None else result.epochs,
        "weight_average": cfg.solver.ema,
        "final_train_acc": outcome.history[-1]["train_acc"] if outcome.history else None,
    }


def train_metrics(
    cfg: PipelineConfig,
    outcome: TrainingOutcome,
    diagnosis: Diagnosis | None,
    train_images: int | None = None,
) -> dict:
    """What ``metrics/train.json`` holds: the result (:meth:`TrialResult.to_json
    <npdl.trial.TrialResult.to_json>`: a sweep reads it back with ``from_json``, which
    passes over the diagnosis); with ``train_images`` (a single run's training images;
    None for a sweep's job) the :func:`training_summary`; and the ``diagnosis``
    (:meth:`~npdl.diagnosis.Diagnosis.to_json`) where there is one."""
    metrics = outcome.result.to_json()
    if train_images is not None:
        metrics.update(training_summary(cfg, outcome, train_images))
    if diagnosis is not None:
        metrics["diagnosis"] = diagnosis.to_json()
    return metrics


def training_diagnosis(outcome: TrainingOutcome, num_classes: int) -> Diagnosis | None:
    """The diagnosis of the training's history and status (:func:`npdl.diagnosis.diagnose`),
    a cache hit's too (from its stored history); None for a failed run, or one that
    finished no epoch and did not diverge."""
    status = outcome.result.status
    if status == "failed" or (not outcome.history and status != "diverged"):
        return None
    return diagnose(outcome.history, status, num_classes=num_classes)


def history_rows(history: Iterable[dict], fields: list[str] = HISTORY_FIELDS) -> list[dict]:
    """``fields`` of each epoch's row, NaN (a refit's val columns) as None: an empty CSV
    cell, a gap in a plot."""
    return [{key: _number(row[key]) for key in fields} for row in history]


def _number(value):
    return None if isinstance(value, float) and math.isnan(value) else value
