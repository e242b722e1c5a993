"""Hyperband: brackets of successive halving that start at different budgets.

Successive halving bets on the first rung's ranking being right; Hyperband (Li et al.,
2017) hedges that bet. Bracket ``s`` (from ``s_max`` down to 0) starts
``ceil((s_max + 1) / (s + 1) * eta**s)`` new configurations at ``max_epochs / eta**s``
epochs and halves them up to ``max_epochs``; the last bracket trains a few
configurations at the full budget from the start. Each bracket is one run of
:func:`~npdl.search.halving.successive_halving`, so a configuration's shorter rung is
the prefix of its longer run (resumed, not retrained, where the launcher keeps
checkpoints).

Which configurations a bracket gets is the caller's ``propose(bracket, n)``: random
draws for Hyperband, a model of the results so far for BOHB.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from .controller import FidelityControl
from .halving import BestTrial, HalvingResult, RunBatch, checked_budgets, successive_halving

#: ``propose(bracket_index, n) -> n points`` for a bracket about to start.
Propose = Callable[[int, int], list[dict]]


def hyperband_brackets(min_epochs: int, max_epochs: int, eta: int) -> list[tuple[int, int]]:
    """``(n_configs, first_epochs)`` of every bracket, the most aggressive first.

    Example: ``hyperband_brackets(1, 27, 3) == [(27, 1), (12, 3), (6, 9), (4, 27)]``.

    Raises
    ------
    ValueError
        Naming the argument that is out of range.
    """
    min_epochs, max_epochs, eta = checked_budgets(min_epochs, max_epochs, eta)
    # The largest s with max_epochs / eta**s >= min_epochs (exactly, in integers).
    s_max = 0
    while max_epochs // eta ** (s_max + 1) >= min_epochs:
        s_max += 1
    return [
        (math.ceil((s_max + 1) / (s + 1) * eta**s), max(min_epochs, max_epochs // eta**s))
        for s in range(s_max, -1, -1)
    ]


@dataclass(frozen=True)
class HyperbandResult:
    """What :func:`hyperband` did.

    Attributes
    ----------
    points : list of dict
        Every configuration, in order of proposal; ``point_index`` refers to it.
    brackets : list of HalvingResult
        One per bracket, with point indices into ``points``.
    best : BestTrial or None
        The highest score at ``max_epochs`` over all brackets (ties: lowest index).
    """

    points: list[dict]
    brackets: list[HalvingResult]
    best: BestTrial | None

    @property
    def epochs_spent(self) -> int:
        """Epochs trained, a promoted trial counted from its previous rung."""
        return sum(bracket.epochs_spent for bracket in self.brackets)


def hyperband(
    propose: Propose,
    min_epochs: int,
    max_epochs: int,
    eta: int,
    run_batch: RunBatch,
    always_promote: Sequence[int] = (),
    control: FidelityControl | None = None,
) -> HyperbandResult:
    """Run Hyperband: each bracket of :func:`hyperband_brackets` in turn.

    Parameters
    ----------
    propose : callable
        ``propose(bracket, n) -> list of n points``, called once as each bracket
        starts (after the earlier brackets finished, so a model can learn from them).
    min_epochs, max_epochs, eta : int
        The budgets, see :func:`hyperband_brackets`.
    run_batch : callable
        As for :func:`~npdl.search.halving.successive_halving`, with point indices
        into :attr:`HyperbandResult.points`.
    always_promote : sequence of int
        Indices, within the first bracket's points, that are always promoted (the
        configured values, so that the winner is never worse than them at the top).
    """
    points: list[dict] = []
    brackets: list[HalvingResult] = []
    best: BestTrial | None = None
    for bracket, (n_configs, first_epochs) in enumerate(
        hyperband_brackets(min_epochs, max_epochs, eta)
    ):
        offset = len(points)
        proposed = list(propose(bracket, n_configs))
        if not proposed:
            continue  # nothing left to try (a small finite space)
        points.extend(proposed)

        def shifted(requests, offset=offset):
            return run_batch([(offset + index, point, epochs) for index, point, epochs in requests])

        result = successive_halving(
            proposed,
            first_epochs,
            max_epochs,
            eta,
            shifted,
            always_promote=always_promote if bracket == 0 else (),
            control=control,
        )
        result = _shift(result, offset)
        brackets.append(result)
        top = result.best
        if (
            top is not None
            and top.epochs == max_epochs
            and (best is None or top.score > best.score)
        ):
            best = top
    return HyperbandResult(points, brackets, best)


def _shift(result: HalvingResult, offset: int) -> HalvingResult:
    """The same result with point indices moved by ``offset``."""
    records = [
        replace(record, point_index=record.point_index + offset) for record in result.records
    ]
    best = None
    if result.best is not None:
        best = BestTrial(result.best.point_index + offset, result.best.epochs, result.best.score)
    decisions = [{**decision, "bracket_offset": offset} for decision in result.decisions]
    return HalvingResult(result.schedule, records, best, decisions)
