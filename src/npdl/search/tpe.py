"""Model-based proposals: Optuna's TPE sampler used as a library, through ask/tell.

Optuna (>= 5) only proposes points here; what runs a trial, caches it, resumes it and
ranks it stays ours. No Optuna storage is kept: a study is rebuilt from the results a
search already has (:meth:`TPEModel.observe`), so a resumed, grown or re-run search
needs no database, and a seeded proposer fed the same results proposes the same points.

The space is ours (:mod:`.spaces`): an :class:`~.spaces.Interval` becomes a float (or
int) distribution, log-scaled where it is; a :class:`~.spaces.Choice` becomes a
categorical one over its values (the override texts of a Hydra sweep).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .spaces import Choice, Interval, Space, checked_space


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def distributions(space: Space) -> dict[str, Any]:
    """Optuna distributions of a space, by key."""
    optuna = _optuna()
    out = {}
    for key, dimension in checked_space(space).items():
        if isinstance(dimension, Interval) and dimension.integer:
            out[key] = optuna.distributions.IntDistribution(
                int(dimension.low), int(dimension.high), log=dimension.log
            )
        elif isinstance(dimension, Interval):
            out[key] = optuna.distributions.FloatDistribution(
                float(dimension.low), float(dimension.high), log=dimension.log
            )
        elif isinstance(dimension, Choice):
            out[key] = optuna.distributions.CategoricalDistribution(list(dimension.values))
    return out


class TPEModel:
    """Points proposed by a seeded ``TPESampler``, rebuilt from known results.

    Parameters
    ----------
    space : Space
    seed : int
    n_startup : int
        Random proposals before the model is used (Optuna's ``n_startup_trials``).
    """

    def __init__(self, space: Space, seed: int, n_startup: int = 10):
        optuna = _optuna()
        self.space = dict(checked_space(space))
        self.distributions = distributions(self.space)
        sampler = optuna.samplers.TPESampler(
            seed=int(seed), n_startup_trials=int(n_startup), constant_liar=True, multivariate=True
        )
        # Scores are oriented (higher is better, see npdl.search.objective).
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self._pending: dict[int, Any] = {}

    def observe(self, results: Iterable[tuple[Mapping[str, Any], float | None]]) -> None:
        """Add finished trials ``(point, score)`` to the model (None: a failure)."""
        optuna = _optuna()
        for point, score in results:
            params = {key: point[key] for key in self.space}
            state = (
                optuna.trial.TrialState.COMPLETE
                if score is not None
                else optuna.trial.TrialState.FAIL
            )
            trial = optuna.trial.create_trial(
                params=params,
                distributions=self.distributions,
                value=float(score) if score is not None else None,
                state=state,
            )
            self.study.add_trial(trial)

    def ask(self, n: int) -> list[tuple[int, dict[str, Any]]]:
        """``n`` proposals ``(ticket, point)``; tell each result with :meth:`tell`.

        Proposals asked together (a parallel batch) are kept apart by Optuna's
        constant liar, so a batch does not propose one point ``n`` times.
        """
        proposals = []
        for _ in range(int(n)):
            trial = self.study.ask(self.distributions)
            self._pending[trial.number] = trial
            proposals.append((trial.number, {key: trial.params[key] for key in self.space}))
        return proposals

    def tell(self, ticket: int, score: float | None) -> None:
        """The result of a proposal (None: the trial failed or diverged)."""
        optuna = _optuna()
        trial = self._pending.pop(ticket)
        if score is None:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, float(score))
