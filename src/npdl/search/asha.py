"""Asynchronous successive halving (ASHA, Li et al. 2018): promote without rung barriers.

Synchronous halving waits for a whole rung before promoting anyone, so with ``n``
workers the last trials of a rung leave the others idle. Here every free worker takes
the most advanced job available: a trial that ranks in the top ``1/eta`` of its rung
*so far* is promoted at once; otherwise a new configuration starts at the first rung.
Jobs go out in batches of ``workers`` (one launcher batch each), so the same
``workers`` gives the same schedule; another number of workers promotes at other
moments and can reach another winner (the rankings "so far" differ).

Epoch counts are totals, as in :mod:`.halving`: a promoted trial resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .controller import FidelityControl
from .halving import (
    BestTrial,
    RunBatch,
    TrialRecord,
    checked_budgets,
    checked_score,
    epochs_spent,
    positive_int,
)


def asha_budgets(min_epochs: int, max_epochs: int, eta: int) -> list[int]:
    """The rungs' epochs: ``min_epochs * eta**k`` below ``max_epochs``, then ``max_epochs``."""
    min_epochs, max_epochs, eta = checked_budgets(min_epochs, max_epochs, eta)
    budgets = [min_epochs]
    while budgets[-1] < max_epochs:
        budgets.append(min(budgets[-1] * eta, max_epochs))
    return budgets


@dataclass(frozen=True)
class AshaResult:
    """What :func:`asha` did: every trial in launch order, the best at the top, and
    the points it started (``point_index`` refers to them)."""

    budgets: list[int]
    records: list[TrialRecord]
    best: BestTrial | None
    points: list[dict] = field(default_factory=list)

    @property
    def epochs_spent(self) -> int:
        """Epochs trained, a promoted trial counted from its previous rung."""
        return epochs_spent(self.records)


#: ``next_point() -> point`` for a configuration about to start, None when there is none.
NextPoint = Callable[[], "dict | None"]


def asha(
    points: Sequence[dict] | NextPoint,
    min_epochs: int,
    max_epochs: int,
    eta: int,
    run_batch: RunBatch,
    workers: int = 1,
    always_promote: Sequence[int] = (),
    control: FidelityControl | None = None,
) -> AshaResult:
    """Run asynchronous successive halving on ``workers`` slots.

    Parameters
    ----------
    points : sequence of dict, or callable
        The configurations, or ``next_point()`` giving each new one as a slot has
        nothing to promote (None: no more), so that a proposer can learn from the
        results so far.
    min_epochs, max_epochs, eta, run_batch, always_promote
        As for :func:`~npdl.search.halving.successive_halving` (``always_promote``:
        promoted whenever they finish a rung).
    workers : int
        Jobs per batch (the launcher's parallel jobs).
    control : FidelityControl, optional
        Its ties: a trial within the noise of the top ``1/eta`` so far is eligible too
        (ASHA compares rungs that are still filling, so rank agreement is not used).

    Returns
    -------
    AshaResult
        ``records[i].promoted`` says whether that trial went on. The run ends when
        every point has started and no trial can be promoted; if nothing reached
        ``max_epochs`` by then, the best of the highest rung is trained to it.
    """
    workers = positive_int("workers", workers, 1)
    budgets = asha_budgets(min_epochs, max_epochs, eta)
    next_point = points if callable(points) else iter(list(points)).__next__
    scores: list[dict[int, float | None]] = [{} for _ in budgets]  # rung -> index -> score
    promoted: list[set[int]] = [set() for _ in budgets]
    records: list[TrialRecord] = []
    started: list[dict] = []
    exhausted = False
    while True:
        batch: list[tuple[int, int]] = []  # (rung, point index)
        for _ in range(workers):
            job = _promotion(scores, promoted, budgets, eta, always_promote, batch, control)
            if job is None and not exhausted:
                point = _next_or_none(next_point)
                exhausted = point is None
                if point is not None:
                    started.append(point)
                    job = (0, len(started) - 1)
            if job is None:
                break
            if job[0] > 0:
                promoted[job[0] - 1].add(job[1])
            batch.append(job)
        if not batch:
            batch = _finish(scores, promoted)
        if not batch:
            break
        requests = [(index, started[index], budgets[rung]) for rung, index in batch]
        results = list(run_batch(requests))
        if len(results) != len(batch):
            raise ValueError(f"run_batch returned {len(results)} scores for {len(batch)} requests")
        for (rung, index), score, request in zip(batch, results, requests, strict=True):
            scores[rung][index] = checked_score(score, request)
            records.append(TrialRecord(rung, index, budgets[rung], scores[rung][index], False))
    records = [
        TrialRecord(r.rung, r.point_index, r.epochs, r.score, r.point_index in promoted[r.rung])
        for r in records
    ]
    top = {i: s for i, s in scores[-1].items() if s is not None}
    best = None
    if top:
        index = min(top, key=lambda i: (-top[i], i))
        best = BestTrial(index, budgets[-1], top[index])
    return AshaResult(budgets, records, best, started)


def _next_or_none(next_point: NextPoint) -> dict | None:
    try:
        return next_point()
    except StopIteration:
        return None


def _finish(scores, promoted) -> list[tuple[int, int]]:
    """With every point started and nothing to promote, but nothing yet at the top
    budget (too few configurations to fill the upper rungs): the best of the highest
    rung reached has nothing left to compete against and is trained to the end."""
    top = len(scores) - 1
    if any(s is not None for s in scores[top].values()):
        return []
    for rung in range(top - 1, -1, -1):
        done = {i: s for i, s in scores[rung].items() if s is not None and i not in promoted[rung]}
        if done:
            index = min(done, key=lambda i: (-done[i], i))
            promoted[rung].add(index)
            return [(top, index)]
    return []


def _promotion(
    scores, promoted, budgets, eta, always_promote, batch, control=None
) -> tuple[int, int] | None:
    """The highest-rung promotion available now, or None."""
    busy = {index for _, index in batch}
    for rung in range(len(budgets) - 2, -1, -1):
        done = {i: s for i, s in scores[rung].items() if s is not None}
        ranked = sorted(done, key=lambda i: (-done[i], i))
        top = ranked[: len(scores[rung]) // eta]
        if control is not None and control.standard_error is not None and top:
            width = control.tie_sd * control.standard_error(done[top[-1]])
            top += [i for i in ranked[len(top) :] if done[i] >= done[top[-1]] - width]
        eligible = top + [i for i in always_promote if i in done]
        for index in eligible:
            if index not in promoted[rung] and index not in busy:
                return rung + 1, index
    return None
