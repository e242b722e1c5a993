"""Schedulers: what budget each trial gets and which trials go on, over any proposer.

A scheduler asks :class:`Proposals` for points and has them trained through the
caller's ``evaluate(requests) -> scores`` (one request ``(point_index, point, epochs)``
per trial, as :data:`~.halving.RunBatch`; ``epochs`` None: the trial's own). The
caller runs the trials (a launcher, a table lookup in the benchmarks) and tells the
proposer each result; the scheduler only decides.

- :class:`OneBudget` (``none``): every trial at one budget; an adaptive proposer is
  asked ``n_jobs`` points at a time, the others all at once.
- :class:`SuccessiveHalving` (``halving``), :class:`AsynchronousHalving` (``asha``) and
  :class:`Hyperband` (``hyperband``): budgets from ``min_epochs`` to ``epochs``
  growing by ``eta``; promotions resume (:mod:`.halving`, :mod:`.asha`, :mod:`.hyperband`).

A scheduler is registered by name in :mod:`npdl.registry`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .asha import asha
from .controller import FidelityControl
from .halving import BestTrial, RunBatch, TrialRecord, positive_int, successive_halving
from .hyperband import hyperband
from .proposers import Proposer
from .spaces import space_size

log = logging.getLogger(__name__)


class Proposals:
    """The points a search starts: the configured values first, when given, then the
    proposer's. ``always_promote`` holds the configured values' index (0): a
    scheduler with rungs promotes it at every rung, so that the winner never scores
    below the configured values at the top."""

    def __init__(self, proposer: Proposer, configured: dict | None = None):
        self.proposer = proposer
        self.configured = configured
        self.queued = [configured] if configured is not None else []
        self.asked = 0
        self.warned = False

    @property
    def always_promote(self) -> list[int]:
        return [0] if self.configured is not None else []

    def ask(self, n: int) -> list[dict]:
        """Up to ``n`` points: what is queued, then the proposer's."""
        taken, self.queued = self.queued[:n], self.queued[n:]
        points = taken + self.proposer.ask(n - len(taken))
        self.asked += n
        size = space_size(self.proposer.space)
        if len(points) < n and size is not None and self.asked > size and not self.warned:
            self.warned = True
            log.warning(
                "the space has only %d points: each is tried once (asked for %d)", size, self.asked
            )
        return points


@dataclass(frozen=True)
class SearchResult:
    """What a scheduler did: ``points`` (``point_index`` refers to them), every trial
    as a :class:`~.halving.TrialRecord`, and the best at the top budget (None: a
    scheduler with one budget, whose caller ranks the trials with their losses; or
    no trial succeeded)."""

    points: list[dict]
    records: list[TrialRecord]
    best: BestTrial | None
    #: What the fidelity controller did (:mod:`.controller`): ``{"rung", "kept", "why"}``.
    decisions: list[dict] = field(default_factory=list)


class Scheduler:
    """Budgets and promotions.

    Parameters
    ----------
    n_trials : int
        Configurations to start (a proposer of a fixed size, a grid, gives all its own).
    epochs : int or None
        The top budget; None with one budget: the trials' own.
    min_epochs, eta : int
        The first budget and the growth factor (schedulers with rungs).
    n_jobs : int
        Trials launched at once (ASHA's workers; an adaptive proposer's batch).
    control : FidelityControl, optional
        Schedulers with rungs: keep more where scores tie within their noise or rungs
        disagree (:mod:`.controller`); None: the schedule's share.
    """

    #: Whether it compares trials at growing budgets (and can audit its eliminations).
    multi_fidelity: ClassVar[bool] = True

    def __init__(
        self,
        *,
        n_trials: int,
        epochs: int | None,
        min_epochs: int = 1,
        eta: int = 3,
        n_jobs: int = 1,
        control: FidelityControl | None = None,
    ):
        self.n_trials = positive_int("n_trials", n_trials, 1)
        self.n_jobs = positive_int("n_jobs", n_jobs, 1)
        if self.multi_fidelity and epochs is None:
            raise ValueError(f"{type(self).__name__} needs epochs (its top budget), got None")
        self.epochs = None if epochs is None else positive_int("epochs", epochs, 1)
        self.min_epochs, self.eta, self.control = min_epochs, eta, control

    def planned(self, proposer: Proposer) -> int | None:
        """Trials the search will run, where known in advance (a progress bar's total)."""
        return None

    def run(self, proposals: Proposals, evaluate: RunBatch) -> SearchResult:
        raise NotImplementedError

    def configurations(self, proposer: Proposer) -> int:
        """How many configurations to start: a grid's size, else ``n_trials``."""
        return proposer.size if proposer.size is not None else self.n_trials


class OneBudget(Scheduler):
    """Every trial at ``epochs`` (None: its own configured epochs)."""

    multi_fidelity = False

    def planned(self, proposer: Proposer) -> int | None:
        return self.configurations(proposer)

    def run(self, proposals: Proposals, evaluate: RunBatch) -> SearchResult:
        proposer, wanted = proposals.proposer, self.configurations(proposals.proposer)
        points: list[dict] = []

        def launch(batch: list[dict]) -> None:
            start = len(points)
            points.extend(batch)
            evaluate([(start + i, p, self.epochs) for i, p in enumerate(batch)])

        if not proposer.adaptive:
            launch(proposals.ask(wanted))
            return SearchResult(points, [], None)
        if proposals.configured is not None:
            launch(proposals.ask(1))  # the model learns from it before it proposes
        while len(points) < wanted:
            batch = proposals.ask(min(self.n_jobs, wanted - len(points)))
            if not batch:
                break
            launch(batch)
        return SearchResult(points, [], None)


class SuccessiveHalving(Scheduler):
    """Synchronous rungs (:func:`~.halving.successive_halving`): ``n_trials`` points at
    ``min_epochs``, the best ``1/eta`` on to ``eta`` times the epochs, up to ``epochs``."""

    def run(self, proposals: Proposals, evaluate: RunBatch) -> SearchResult:
        points = proposals.ask(self.configurations(proposals.proposer))
        if not points:
            return SearchResult([], [], None)
        result = successive_halving(
            points,
            self.min_epochs,
            self.epochs,
            self.eta,
            evaluate,
            always_promote=proposals.always_promote,
            control=self.control,
        )
        return SearchResult(points, result.records, result.best, result.decisions)


class AsynchronousHalving(Scheduler):
    """ASHA (:func:`~.asha.asha`): ``n_jobs`` jobs per batch, each the most advanced
    one available; a new configuration is asked for only when a slot has nothing to
    promote, so a model-based proposer learns from every result so far."""

    def run(self, proposals: Proposals, evaluate: RunBatch) -> SearchResult:
        wanted = self.configurations(proposals.proposer)
        started = 0

        def next_point() -> dict | None:
            nonlocal started
            if started >= wanted:
                return None
            started += 1
            points = proposals.ask(1)
            return points[0] if points else None

        result = asha(
            next_point,
            self.min_epochs,
            self.epochs,
            self.eta,
            evaluate,
            self.n_jobs,
            always_promote=proposals.always_promote,
            control=self.control,
        )
        return SearchResult(result.points, result.records, result.best)


class Hyperband(Scheduler):
    """Brackets of successive halving from ``min_epochs`` to ``epochs``
    (:func:`~.hyperband.hyperband`); each bracket asks the proposer for its points as
    it starts, after the earlier brackets' results (``n_trials`` is not used)."""

    def run(self, proposals: Proposals, evaluate: RunBatch) -> SearchResult:
        result = hyperband(
            lambda bracket, n: proposals.ask(n),
            self.min_epochs,
            self.epochs,
            self.eta,
            evaluate,
            always_promote=proposals.always_promote,
            control=self.control,
        )
        records = [record for bracket in result.brackets for record in bracket.records]
        decisions = [d for bracket in result.brackets for d in bracket.decisions]
        return SearchResult(result.points, records, result.best, decisions)


def telling(proposer: Proposer, evaluate: RunBatch, history: dict) -> RunBatch:
    """``evaluate`` that also tells ``proposer`` every result and adds it to
    ``history`` (budget -> [(point, score)])."""

    def evaluate_and_tell(requests: Sequence[tuple[int, dict, Any]]) -> list[float | None]:
        scores = list(evaluate(list(requests)))
        for (_, point, epochs), score in zip(requests, scores, strict=True):
            history.setdefault(epochs, []).append((point, score))
            proposer.tell(point, score, epochs)
        return scores

    return evaluate_and_tell


#: ``evaluate(requests) -> scores``, as :data:`~.halving.RunBatch`.
Evaluate = Callable[[list[tuple[int, dict, Any]]], Sequence[float | None]]
