"""Proposers: where a search's configurations come from, asked for and told results.

A proposer gives new points on :meth:`Proposer.ask` and learns from
:meth:`Proposer.tell`; a scheduler (:mod:`.schedulers`) decides what budget each point
is trained for and which go on. Any proposer runs under any scheduler:

- :class:`GridProposer`: every combination of a space of choices, in grid order;
- :class:`RandomProposer`: seeded distinct draws (:func:`~.spaces.iter_distinct_points`);
- :class:`TPEProposer`: Optuna's TPE sampler (:class:`~.tpe.TPEModel`). Under a
  scheduler with one budget it is one ask/tell study; under a scheduler with rungs it
  is BOHB's model (Falkner et al., 2018): fitted, at every ask, on the largest budget
  with more results than the space has keys, and random draws until one has.

A proposer is registered by name in :mod:`npdl.registry`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from .spaces import (
    Space,
    checked_space,
    grid_points,
    inside_space,
    iter_distinct_points,
    point_identity,
    same_point,
    space_size,
)
from .tpe import TPEModel

#: Results a search has seen, by budget (epochs; None where the trials set none):
#: ``[(point, score)]``, score oriented (higher is better), None for a failed trial.
History = dict[int | None, list[tuple[dict, float | None]]]


class Proposer:
    """Where configurations come from.

    Parameters
    ----------
    space : Space
        The search space (key -> Choice or Interval).
    seed : int
        Its randomness, all of it.
    exclude : iterable of dict
        Points never to propose (the configured values, which the search runs itself).
    history : History, optional
        Results of every trial the search ran so far, by budget, including earlier
        searches of the same sweeper; proposers may read it, never write it.
    multi_fidelity : bool
        Whether the scheduler compares trials at growing budgets (rungs).
    n_startup : int
        Random proposals before a model is used (model-based proposers).
    """

    #: Proposals depend on the results told: a scheduler with one budget then asks in
    #: batches of the parallel jobs instead of all at once.
    adaptive: ClassVar[bool] = False
    #: The configured values are the first trial of a search with this proposer.
    takes_configured: ClassVar[bool] = True

    def __init__(
        self,
        space: Space,
        seed: int,
        *,
        exclude: Iterable[Mapping[str, Any]] = (),
        history: History | None = None,
        multi_fidelity: bool = False,
        n_startup: int = 8,
    ):
        self.space = dict(checked_space(space))
        self.seed = int(seed)
        self.exclude = [dict(point) for point in exclude]
        self.history: History = history if history is not None else {}
        self.multi_fidelity = multi_fidelity
        self.n_startup = n_startup

    @property
    def size(self) -> int | None:
        """How many points it proposes in all when that is fixed in advance (a grid:
        a scheduler then runs every one), else None."""
        return None

    def ask(self, n: int) -> list[dict]:
        """Up to ``n`` new points (key -> value or override text); fewer only when the
        proposer has run out (a finite space)."""
        raise NotImplementedError

    def tell(self, point: Mapping[str, Any], score: float | None, epochs: int | None) -> None:
        """The result of a trial of ``point`` trained to ``epochs`` (score oriented:
        higher is better; None: failed). The point may be one it did not propose."""


class GridProposer(Proposer):
    """Every point of a space of choices, in grid order (the last key varying
    fastest); the configured values are not added."""

    takes_configured = False

    def __init__(self, space: Space, seed: int, **kwargs):
        super().__init__(space, seed, **kwargs)
        self.points = grid_points(self.space)
        self.given = 0

    @property
    def size(self) -> int:
        return len(self.points)

    def ask(self, n: int) -> list[dict]:
        taken = self.points[self.given : self.given + n]
        self.given += len(taken)
        return taken


class RandomProposer(Proposer):
    """Seeded distinct draws, the excluded points skipped: the same seed gives the same
    sequence, and asking for more only adds points."""

    def __init__(self, space: Space, seed: int, **kwargs):
        super().__init__(space, seed, **kwargs)
        self.draws = iter_distinct_points(self.space, self.seed)

    def ask(self, n: int) -> list[dict]:
        fresh = (p for p in self.draws if not any(same_point(p, e) for e in self.exclude))
        return list(itertools.islice(fresh, n))


class TPEProposer(Proposer):
    """Optuna's TPE sampler (see the module docstring for its two modes)."""

    adaptive = True

    def __init__(self, space: Space, seed: int, **kwargs):
        super().__init__(space, seed, **kwargs)
        self.space_size = space_size(self.space)
        if self.multi_fidelity:
            self.draws = RandomProposer(self.space, self.seed, exclude=self.exclude)
            self.asks = 0
        else:
            self.model = TPEModel(self.space, self.seed, n_startup=self.n_startup)
            #: point identity -> score of every point run (or told) in this search
            self.known: dict[str, float | None] = {}
            self.tickets: dict[str, int] = {}

    def ask(self, n: int) -> list[dict]:
        if self.multi_fidelity:
            return self._ask_model_of_a_budget(n)
        if self.space_size is not None and len(self.known) >= self.space_size:
            return []
        batch: list[tuple[int, dict]] = []
        for _ in range(50 * n):
            if len(batch) == n:
                break
            ((ticket, point),) = self.model.ask(1)
            repeat = any(same_point(point, p) for _, p in batch)
            if point_identity(point) in self.known or repeat:
                # Told its known score (None for a repeat within the batch), asked again.
                self.model.tell(ticket, self.known.get(point_identity(point)))
                continue
            batch.append((ticket, point))
        self.tickets.update((point_identity(point), ticket) for ticket, point in batch)
        return [point for _, point in batch]

    def tell(self, point: Mapping[str, Any], score: float | None, epochs: int | None) -> None:
        if self.multi_fidelity:
            return  # the model is fitted on the history at every ask
        identity = point_identity(point)
        self.known[identity] = score
        ticket = self.tickets.pop(identity, None)
        if ticket is not None:
            self.model.tell(ticket, score)
        elif inside_space(self.space, point):  # the configured values: added as a trial
            self.model.observe([(point, score)])

    def _ask_model_of_a_budget(self, n: int) -> list[dict]:
        """BOHB's rule: a model of the largest budget with enough results (seeded by
        the ask's number), random draws at the first ask and until then."""
        asked, self.asks = self.asks, self.asks + 1
        enough = len(self.space) + 1
        budgets = [
            budget
            for budget, results in self.history.items()
            if budget is not None and len(results) > enough
        ]
        if asked == 0 or not budgets:
            return self.draws.ask(n)
        model = TPEModel(self.space, self.seed + asked, n_startup=0)
        results = self.history[max(budgets)]
        model.observe((p, s) for p, s in results if inside_space(self.space, p))
        return [point for _, point in model.ask(n)]
