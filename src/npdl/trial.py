"""A trial's result, one type for the run store, the train stage and the search.

:class:`TrialResult` is what one training run (a configuration at an epoch budget)
found: the train stage writes it as ``metrics/train.json`` and returns it to the
sweeper of a search; the run store keeps it (with the epoch history) in each finished
entry; a search's leaderboard rows carry its fields as columns. It is read back with
:meth:`TrialResult.from_json`, which refuses a mapping with a missing or an unknown
key: a renamed key is an error naming it, never a silent ``None``. Beside the fields, a
result's JSON may carry the training's diagnosis (:data:`ANNOTATIONS`), which it passes
over.

:class:`TuneOutputs` names the tune stage's outputs under the models folder, and
:data:`SWEEP_REPORTS` the report files a search writes into its sweep folder.

This module imports nothing of :mod:`npdl.run` or :mod:`npdl.search`: both use it.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: A trial's statuses: trained to its budget (or stopped early), its loss went
#: non-finite, or it raised (the run store keeps no result of it: it is retried).
STATUSES = ("ok", "diverged", "failed")


@dataclass(frozen=True)
class TrialResult:
    """What one training run (a configuration at an epoch budget) found.

    Attributes
    ----------
    status : str
        ``'ok'``, ``'diverged'`` (the loss went non-finite) or ``'failed'`` (the
        training raised; see ``error``).
    val_acc : float or None
        Validation accuracy in [0, 1] at the best epoch; None when no epoch finished.
    val_loss : float or None
        Validation loss (mean cross-entropy) at the best epoch; None when no epoch
        finished.
    best_epoch : int or None
        The epoch (counted from 1) whose weights the model holds; None when no epoch
        finished.
    epochs : int or None
        Epochs trained, resumed ones included (fewer than ``budget`` after early
        stopping or divergence); None when the job raised before training
        (:meth:`failed`).
    resumed_from : int or None
        The epoch of the lineage's checkpoint the training resumed from; None when it
        trained from scratch. A cache hit reports the original training's.
    seconds : float or None
        Wall time of the training that produced the result, in seconds (of the
        original run for a cache hit); None when unknown (:meth:`failed`).
    threads : int or None
        BLAS and update threads the training ran on; None when unknown.
    cache_hit : bool
        Whether the result was taken from the run store rather than trained.
    lineage : str or None
        The run store's lineage key (24 hex digits; ``npdl.run.training.lineage_of``);
        None when unknown (:meth:`failed`).
    budget : int or None
        The epoch budget asked for (``solver.epochs``): with ``lineage``, the run
        store's entry; None when unknown (:meth:`failed`).
    val_images : int or None
        Images the val scores are measured on (their precision: a val accuracy ``p``
        has the standard error ``sqrt(p (1 - p) / val_images)``); None when unknown,
        and for results written before it was recorded.
    error : str or None
        ``'<ExceptionType>: <message>'`` of a failed run; None otherwise.
    """

    status: str
    val_acc: float | None
    val_loss: float | None
    best_epoch: int | None
    epochs: int | None
    resumed_from: int | None
    seconds: float | None
    threads: int | None
    cache_hit: bool
    lineage: str | None
    budget: int | None
    val_images: int | None = None
    error: str | None = None

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(
                f"trial status {self.status!r} is not one of {', '.join(map(repr, STATUSES))}"
            )

    @classmethod
    def failed(cls, error: str) -> TrialResult:
        """The result of a job that raised before it could say anything else:
        ``status='failed'``, ``error`` as given, every measurement None."""
        return cls(
            status="failed",
            val_acc=None,
            val_loss=None,
            best_epoch=None,
            epochs=None,
            resumed_from=None,
            seconds=None,
            threads=None,
            cache_hit=False,
            lineage=None,
            budget=None,
            val_images=None,
            error=error,
        )

    def to_json(self) -> dict[str, Any]:
        """The fields as a dict of plain JSON values, in field order; ``error`` only
        where there is one (so an ok run's ``metrics/train.json`` holds the eleven
        other keys)."""
        fields = {name: getattr(self, name) for name in RESULT_FIELDS}
        if self.error is None:
            del fields["error"]
        return fields

    @classmethod
    def from_json(cls, mapping: Mapping[str, Any]) -> TrialResult:
        """The result :meth:`to_json` wrote (``error`` and ``val_images`` may be absent;
        :data:`ANNOTATIONS` are passed over).

        Raises
        ------
        ValueError
            Naming the keys missing from ``mapping`` and the keys it has that a
            result has not, or a status other than :data:`STATUSES`.
        """
        missing = [name for name in RESULT_FIELDS if name not in mapping and name not in OPTIONAL]
        known = (*RESULT_FIELDS, *ANNOTATIONS)
        unknown = sorted(str(key) for key in mapping if key not in known)
        if missing or unknown:
            problems = []
            if missing:
                problems.append(f"missing keys {missing}")
            if unknown:
                problems.append(f"unknown keys {unknown}")
            raise ValueError(
                f"not a trial result: {' and '.join(problems)}; a result has the keys "
                f"{list(RESULT_FIELDS)} ({', '.join(map(repr, OPTIONAL))} optional)"
            )
        return cls(**{name: mapping[name] for name in RESULT_FIELDS if name in mapping})


#: Keys a result may lack: ``error`` (only a failed run has one) and ``val_images``
#: (results written before it was recorded).
OPTIONAL = ("val_images", "error")
#: Keys a result's JSON may carry beside its fields, which ``from_json`` passes over:
#: the training's diagnosis (:meth:`npdl.diagnosis.Diagnosis.to_json`), which the train
#: stage writes into ``metrics/train.json`` and returns to the sweeper with the result.
ANNOTATIONS = ("diagnosis",)
#: The fields of :class:`TrialResult`, in order (the keys of ``to_json``).
RESULT_FIELDS = tuple(field.name for field in dataclasses.fields(TrialResult))


def _value_type(name: str) -> type:
    """The type of field ``name`` without its ``None`` (``float | None`` -> float)."""
    hint = typing.get_type_hints(TrialResult)[name]
    if isinstance(hint, types.UnionType):
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


_VALUE_TYPES = {name: _value_type(name) for name in RESULT_FIELDS}


def result_columns(*names: str) -> tuple[str, ...]:
    """``names``, checked to be fields of :class:`TrialResult`: a table's columns of
    results, so that a renamed field fails here, where the table is declared."""
    unknown = [name for name in names if name not in RESULT_FIELDS]
    if unknown:
        raise ValueError(f"{unknown} are not fields of a trial result {list(RESULT_FIELDS)}")
    return names


def field_from_text(name: str, text: str | None) -> Any:
    """A result field's value from its text in a CSV cell (``str(value)``, as
    ``csv`` writes it): ``''`` (or None) -> None, else the field's type
    (``'3'`` -> 3 for ``epochs``, ``'True'`` -> True for ``cache_hit``).

    Raises
    ------
    ValueError
        If ``name`` is no field of :class:`TrialResult` or ``text`` is not a value
        of its type (``'three'`` for ``epochs``).
    """
    if name not in _VALUE_TYPES:
        raise ValueError(f"{name!r} is not a field of a trial result {list(RESULT_FIELDS)}")
    if text is None or text == "":
        return None
    kind = _VALUE_TYPES[name]
    if kind is bool:
        if text not in ("True", "False"):
            raise ValueError(f"{name}={text!r}: expected True or False")
        return text == "True"
    try:
        return kind(text)
    except ValueError as error:
        raise ValueError(f"{name}={text!r} is not of type {kind.__name__}") from error


#: Report files a search writes into its sweep folder: the leaderboard (CSV and
#: Markdown), the winner (``best_overrides.json``) and the trial log.
LEADERBOARD_CSV = "leaderboard.csv"
LEADERBOARD_MD = "leaderboard.md"
BEST_OVERRIDES = "best_overrides.json"
TRIAL_LOG = "trials.csv"
SWEEP_REPORTS = (LEADERBOARD_CSV, LEADERBOARD_MD, BEST_OVERRIDES, TRIAL_LOG)
#: The sweep's reports the tune stage copies into ``models/tune/``.
TUNE_REPORTS = (LEADERBOARD_CSV, LEADERBOARD_MD, BEST_OVERRIDES)


@dataclass(frozen=True)
class TuneOutputs:
    """The tune stage's outputs, in ``<models>/tune/`` (:meth:`of`).

    Attributes
    ----------
    folder : Path
        ``<models>/tune``.
    """

    folder: Path

    @classmethod
    def of(cls, models_dir: str | os.PathLike) -> TuneOutputs:
        """The outputs under the models folder ``models_dir`` (``paths.models``)."""
        return cls(Path(models_dir) / "tune")

    @property
    def leaderboard_csv(self) -> Path:
        """Every trial ranked, with its run store entry (``lineage``, ``budget``)."""
        return self.folder / LEADERBOARD_CSV

    @property
    def leaderboard_md(self) -> Path:
        """The best trials as a Markdown table."""
        return self.folder / LEADERBOARD_MD

    @property
    def best_overrides(self) -> Path:
        """The winner's overrides and the search's figures (JSON)."""
        return self.folder / BEST_OVERRIDES

    @property
    def sweep_json(self) -> Path:
        """Which sweep folder (its trials' logs) and launcher the search used (JSON)."""
        return self.folder / "sweep.json"

    @property
    def reports(self) -> tuple[Path, ...]:
        """Where the tune stage puts the sweep's :data:`TUNE_REPORTS`, in that order."""
        return tuple(self.folder / name for name in TUNE_REPORTS)
