"""Successive halving: train many configurations briefly, keep training the best.

Synchronous brackets in the style of Hyperband/ASHA: rung 0 trains every point for
``min_epochs``; each following rung keeps the best ``1/eta`` of the previous rung and
trains them ``eta`` times longer, until ``max_epochs``. The driver only decides *what*
to train; *how* is the caller's ``run_batch`` (a loop, a process pool, a cluster
launcher), called once per rung so a whole rung can run in parallel.

Epoch counts are totals: a request ``(point_index, point, 9)`` for a point that ran 3
epochs in the previous rung asks for that trial trained to 9 epochs in all. A launcher
that keeps checkpoints resumes it and pays 6 epochs; :attr:`HalvingResult.epochs_spent`
and :func:`total_epochs` count the cost that way.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .controller import FidelityControl

#: ``run_batch(requests) -> scores``: one request ``(point_index, point, epochs)`` per
#: trial of a rung; one score per request, higher is better, None if the trial failed.
RunBatch = Callable[[list[tuple[int, dict, int]]], Sequence[float | None]]


def positive_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int ``>= minimum`` (a bool is not one); otherwise ValueError
    naming the argument ``name`` and its value."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an int >= {minimum}, got {name}={value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {name}={value!r}")
    return number


def checked_budgets(min_epochs: int, max_epochs: int, eta: int) -> tuple[int, int, int]:
    """``(min_epochs, max_epochs, eta)`` as ints, ``1 <= min_epochs <= max_epochs`` and
    ``eta >= 2``; a ValueError names the argument that is out of range."""
    min_epochs = positive_int("min_epochs", min_epochs, 1)
    max_epochs = positive_int("max_epochs", max_epochs, 1)
    eta = positive_int("eta", eta, 2)
    if min_epochs > max_epochs:
        raise ValueError(
            f"min_epochs must be <= max_epochs, got min_epochs={min_epochs}, "
            f"max_epochs={max_epochs}"
        )
    return min_epochs, max_epochs, eta


def epochs_spent(records: Sequence[TrialRecord]) -> int:
    """Epochs trained by ``records`` (in launch order), a trial that reached ``e``
    epochs before costing only its new epochs; a failed trial counts as if it ran."""
    trained_so_far: dict[int, int] = {}
    total = 0
    for record in records:
        total += record.epochs - trained_so_far.get(record.point_index, 0)
        trained_so_far[record.point_index] = record.epochs
    return total


def halving_rungs(
    n_configs: int, min_epochs: int, max_epochs: int, eta: int
) -> list[tuple[int, int]]:
    """The schedule of successive halving.

    Parameters
    ----------
    n_configs : int
        Points in rung 0, ``>= 1``.
    min_epochs, max_epochs : int
        Epochs of rung 0 and of the last rung, ``1 <= min_epochs <= max_epochs``.
    eta : int
        Reduction factor, ``>= 2``: each rung keeps ``max(1, n // eta)`` points and
        trains them ``min(epochs * eta, max_epochs)`` epochs.

    Returns
    -------
    list of (n_trials, epochs)
        One pair per rung. The schedule stops after the rung at ``max_epochs``, or at
        the first rung with a single point, which is trained straight to
        ``max_epochs`` (so ``n_configs == 1`` gives ``[(1, max_epochs)]``). Example:
        ``halving_rungs(27, 1, 27, 3) == [(27, 1), (9, 3), (3, 9), (1, 27)]``.

    Raises
    ------
    ValueError
        Naming the argument that is out of range.
    """
    n_configs = positive_int("n_configs", n_configs, 1)
    min_epochs, max_epochs, eta = checked_budgets(min_epochs, max_epochs, eta)
    rungs = [(n_configs, max_epochs if n_configs == 1 else min_epochs)]
    while True:
        n_trials, epochs = rungs[-1]
        if epochs >= max_epochs or n_trials == 1:
            return rungs
        next_trials = max(1, n_trials // eta)
        # A lone survivor has nothing left to compete against: train it to the end.
        next_epochs = max_epochs if next_trials == 1 else min(epochs * eta, max_epochs)
        rungs.append((next_trials, next_epochs))


def total_epochs(
    n_configs: int, min_epochs: int, max_epochs: int, eta: int, resume: bool = True
) -> int:
    """Epochs the full schedule of :func:`halving_rungs` costs.

    Parameters
    ----------
    n_configs, min_epochs, max_epochs, eta : int
        As for :func:`halving_rungs`.
    resume : bool
        True: a promoted trial resumes from its previous rung and costs only the new
        epochs (``epochs_new - epochs_old``). False: every rung retrains from scratch.

    Returns
    -------
    int
        E.g. ``total_epochs(27, 1, 27, 3) == 27*1 + 9*2 + 3*6 + 1*18 == 81``, against
        ``27 * 27 == 729`` for a grid search training every point to ``max_epochs``.
    """
    rungs = halving_rungs(n_configs, min_epochs, max_epochs, eta)
    previous_epochs = 0
    total = 0
    for n_trials, epochs in rungs:
        total += n_trials * (epochs - previous_epochs if resume else epochs)
        previous_epochs = epochs
    return total


@dataclass(frozen=True)
class TrialRecord:
    """One trial of one rung: point ``point_index`` trained to ``epochs`` in total.

    ``score`` is None if the trial failed (or returned a non-finite score);
    ``promoted`` says whether it went on to the next rung.
    """

    rung: int
    point_index: int
    epochs: int
    score: float | None
    promoted: bool


class BestTrial(NamedTuple):
    """The winner of a halving run."""

    point_index: int
    epochs: int
    score: float


@dataclass(frozen=True)
class HalvingResult:
    """What :func:`successive_halving` did.

    Attributes
    ----------
    schedule : list of (n_trials, epochs)
        The planned rungs (:func:`halving_rungs`). Rungs can end up smaller, or be
        skipped, when trials fail.
    records : list of TrialRecord
        Every trial, rung by rung, in request order.
    best : BestTrial or None
        The highest score of the highest rung that has any score (ties: lowest point
        index); None if every trial failed.
    """

    schedule: list[tuple[int, int]]
    records: list[TrialRecord]
    best: BestTrial | None
    #: What the fidelity controller did: ``{"rung", "kept", "why"}`` per decision.
    decisions: list[dict] = field(default_factory=list)

    @property
    def epochs_spent(self) -> int:
        """Epochs trained, counting a promoted trial as resumed from its last rung.

        A failed trial is counted as if it ran all the epochs it was asked for.
        """
        return epochs_spent(self.records)

    @property
    def rungs_run(self) -> int:
        """Number of rungs that ran (``<= len(schedule)``)."""
        return 1 + max((record.rung for record in self.records), default=-1)


def checked_score(score: Any, request: tuple[int, dict, int]) -> float | None:
    """A trial's score as a float, or None for a failed one.

    ``score`` is what ``run_batch`` returned for ``request = (point index, point,
    epochs)``: a real number or None; a NaN or infinite score counts as a failure
    (None). Anything else is a TypeError naming the point and epochs.
    """
    if score is None:
        return None
    if isinstance(score, bool) or not isinstance(score, numbers.Real):
        raise TypeError(
            f"run_batch returned score {score!r} for point {request[0]} at {request[2]} "
            "epochs; expected a number (higher is better) or None for a failed trial"
        )
    score = float(score)
    # A NaN (diverged) or infinite score cannot be ranked; it counts as a failure.
    return score if math.isfinite(score) else None


def successive_halving(
    points: Sequence[dict],
    min_epochs: int,
    max_epochs: int,
    eta: int,
    run_batch: RunBatch,
    always_promote: Sequence[int] = (),
    control: FidelityControl | None = None,
) -> HalvingResult:
    """Run successive halving over ``points``.

    Parameters
    ----------
    points : sequence of dict
        The configurations to compare (e.g. from
        :func:`~npdl.search.spaces.sample_points`); a point is known by its index.
    min_epochs, max_epochs, eta : int
        The schedule, see :func:`halving_rungs`.
    run_batch : callable
        ``run_batch(requests) -> scores``, called once per rung. ``requests`` is a list
        of ``(point_index, point, epochs)``, sorted by point index, ``epochs`` being
        the total the trial should reach (resume from the previous rung if you can).
        It returns one score per request, in order: higher is better (e.g. validation
        accuracy); None (or NaN) marks a failed or diverged trial, which is never
        promoted. The same ``(point_index, epochs)`` is never requested twice.
    always_promote : sequence of int
        Point indices promoted at every rung whatever their rank, unless they fail
        (the configured values: the winner then never scores below them at the top).
    control : FidelityControl, optional
        Keeps more than the schedule's share where scores tie within their noise or
        consecutive rungs disagree (:mod:`.controller`); None: the schedule's share.

    Returns
    -------
    HalvingResult

    Raises
    ------
    ValueError
        If ``points`` is empty, the schedule is invalid, or ``run_batch`` returns the
        wrong number of scores.

    Notes
    -----
    After each rung the ``n`` trials of the next rung are the ``n`` best scores
    (ties broken by the lower point index, so the run is deterministic). If fewer
    trials succeeded, all successful ones are promoted; if none did, the run stops.
    """
    points = list(points)
    if not points:
        raise ValueError("successive_halving needs at least one point, got an empty list")
    schedule = halving_rungs(len(points), min_epochs, max_epochs, eta)
    records: list[TrialRecord] = []
    requested: set[tuple[int, int]] = set()
    survivors = list(range(len(points)))
    best: BestTrial | None = None
    previous: dict[int, float | None] | None = None
    decisions: list[dict] = []
    for rung, (_, epochs) in enumerate(schedule):
        requests = [(index, points[index], epochs) for index in survivors]
        for index, _, _ in requests:
            # The schedule's epochs grow strictly, so this only fails on a bug here.
            assert (index, epochs) not in requested, (index, epochs)
            requested.add((index, epochs))
        scores = list(run_batch(requests))
        if len(scores) != len(requests):
            raise ValueError(
                f"run_batch returned {len(scores)} scores for {len(requests)} requests "
                f"(rung {rung}, {epochs} epochs); it must return one score per request"
            )
        score_of = {
            index: checked_score(score, request)
            for index, score, request in zip(survivors, scores, requests, strict=True)
        }
        ranking = sorted(
            (index for index, score in score_of.items() if score is not None),
            key=lambda index: (-score_of[index], index),
        )
        if ranking:
            best = BestTrial(ranking[0], epochs, score_of[ranking[0]])
        is_last = rung == len(schedule) - 1
        if is_last:
            promoted = set()
        elif control is None:
            promoted = set(ranking[: schedule[rung + 1][0]])
        else:
            chosen, made = control.promotions(
                ranking, score_of, schedule[rung + 1][0], previous, rung
            )
            promoted, decisions = set(chosen), decisions + made
        previous = score_of
        if not is_last:
            promoted |= {index for index in always_promote if score_of.get(index) is not None}
        records.extend(
            TrialRecord(rung, index, epochs, score_of[index], index in promoted)
            for index in survivors
        )
        if not promoted:
            break
        survivors = sorted(promoted)
    return HalvingResult(schedule=schedule, records=records, best=best, decisions=decisions)
