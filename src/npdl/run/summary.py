"""What a single training's metrics say beside its result: on what it trained and which
weights it kept; and its history as rows for ``metrics/train_history.csv``."""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..config import PipelineConfig
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


def history_rows(history: Iterable[dict], fields: list[str] = HISTORY_FIELDS) -> list[dict]:
    """``fields`` of each epoch's row, NaN (a refit's val columns) as None: an empty CSV
    cell, a gap in a plot."""
    return [{key: _number(row[key]) for key in fields} for row in history]


def _number(value):
    return None if isinstance(value, float) and math.isnan(value) else value
