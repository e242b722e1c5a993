"""Multi-fidelity sweepers: successive halving, asynchronous halving (ASHA), Hyperband
and BOHB.

Each compares configurations at growing epoch budgets (rungs); a promoted trial
resumes from its checkpoint in the run store. All three keep the configured values to
the top rung, and can audit their eliminations (``audit``). At the end the checkpoints
of the trials that did not reach ``max_epochs`` are removed from the store
(``keep_checkpoints=true`` keeps them, for a search to be grown later).
"""

from __future__ import annotations

import logging

import numpy as np

from .sweepers import SearchSweeper, format_value, inside_space, search_package

log = logging.getLogger(__name__)


class HalvingSweeper(SearchSweeper):
    """Successive halving; each rung is one launcher batch, promotions resume."""

    sampler = "halving"

    def __init__(
        self,
        n_configs: int = 27,
        eta: int = 3,
        min_epochs: int = 1,
        max_epochs: int = 27,
        epochs_key: str = "solver.epochs",
        horizon_key: str | None = "solver.schedule_epochs",
        audit: int = 0,
        keep_checkpoints: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.keep_checkpoints = keep_checkpoints
        if audit < 0:
            raise ValueError(f"hydra.sweeper.audit must be >= 0, got {audit}")
        self.audit_size = audit
        if n_configs <= 0:
            raise ValueError(f"hydra.sweeper.n_configs must be > 0, got {n_configs}")
        self.n_configs, self.eta = n_configs, eta
        self.min_epochs, self.max_epochs = min_epochs, max_epochs
        self.epochs_key, self.horizon_key = epochs_key, horizon_key

    def search(self, space: dict) -> dict | None:
        points = self.sampled(space, self.n_configs)
        keep = [0] if self.configured_point(space) is not None else []
        result = search_package().successive_halving(
            points, self.min_epochs, self.max_epochs, self.eta, self.run_rung, keep=keep
        )
        if result.best is None:
            return None
        self.run_audit(points, result.records, result.best)
        return {k: format_value(v) for k, v in points[result.best[0]].items()}

    def top_budget(self) -> int | None:
        return self.max_epochs

    def run_audit(self, points: list[dict], records, best) -> None:
        """Train ``audit`` randomly chosen eliminated configurations to ``max_epochs``
        and count how many beat the winner there. Their rows are kept out of the
        leaderboard: the audit checks the search, it does not change its answer."""
        if not self.audit_size:
            return
        reached: dict[int, tuple[int, float | None]] = {}
        for record in records:
            if record.epochs >= reached.get(record.point_index, (0, None))[0]:
                reached[record.point_index] = (record.epochs, record.score)
        eliminated = sorted(
            i
            for i, (epochs, score) in reached.items()
            if epochs < self.max_epochs and score is not None
        )
        rng = np.random.default_rng(self.seed + 1)
        chosen = sorted(rng.permutation(eliminated)[: self.audit_size].tolist())
        before = len(self.rows)
        scores = self.run_rung([(i, points[i], self.max_epochs) for i in chosen])
        rows, self.rows[before:] = self.rows[before:], []
        beat = [s is not None and s > best.score for s in scores]
        self.audit = {
            "trained": len(chosen),
            "beat_winner": sum(beat),
            "trials": [
                {"overrides": row["overrides"], self.metric: row[self.metric], "beat_winner": b}
                for row, b in zip(rows, beat, strict=True)
            ],
        }
        log.info(
            "audit: %d of %d eliminated configurations trained to %d epochs beat the winner",
            sum(beat),
            len(chosen),
            self.max_epochs,
        )

    def run_rung(self, requests: list[tuple[int, dict, int]]) -> list[float | None]:
        """Train each ``(index, point, epochs)`` request (one launcher batch per budget,
        all on the schedule horizon of ``max_epochs``); scores, higher is better."""
        horizon = [f"{self.horizon_key}={self.max_epochs}"] if self.horizon_key else []
        by_budget: dict[int, list[int]] = {}
        for position, (_, _, epochs) in enumerate(requests):
            by_budget.setdefault(epochs, []).append(position)
        scores: list[float | None] = [None] * len(requests)
        for epochs, positions in by_budget.items():
            rows = self.run_batch(
                [requests[p][1] for p in positions], [*horizon, f"{self.epochs_key}={epochs}"]
            )
            for position, row in zip(positions, rows, strict=True):
                scores[position] = self.objective.score(row)
                self.observed.setdefault(epochs, []).append(
                    (requests[position][1], scores[position])
                )
        return scores


class HyperbandSweeper(HalvingSweeper):
    """Hyperband: brackets of successive halving starting at different budgets."""

    sampler = "hyperband"

    def search(self, space: dict) -> dict | None:
        brackets = search_package().hyperband_brackets(self.min_epochs, self.max_epochs, self.eta)
        self.pool = self.sampled(space, sum(n for n, _ in brackets))
        self.space = space
        keep = [0] if self.configured_point(space) is not None else []
        result = search_package().hyperband(
            self.propose, self.min_epochs, self.max_epochs, self.eta, self.run_rung, keep=keep
        )
        if result.best is None:
            return None
        records = [record for bracket in result.brackets for record in bracket.records]
        self.run_audit(result.points, records, result.best)
        return {k: format_value(v) for k, v in result.points[result.best[0]].items()}

    def propose(self, bracket: int, n: int) -> list[dict]:
        """The next ``n`` of the seeded distinct draws (configured values first)."""
        taken, self.pool = self.pool[:n], self.pool[n:]
        return taken


class BOHBSweeper(HyperbandSweeper):
    """Hyperband whose new configurations come from a TPE model (BOHB): fitted on the
    largest budget with enough results (more than the space has keys), else random."""

    sampler = "bohb"

    def propose(self, bracket: int, n: int) -> list[dict]:
        enough = len(self.space) + 1
        budgets = [b for b, results in self.observed.items() if len(results) > enough]
        if bracket == 0 or not budgets:
            return super().propose(bracket, n)
        results = self.observed[max(budgets)]
        model = search_package().TPEProposer(self.space, self.seed + bracket, n_startup=0)
        model.observe((p, s) for p, s in results if inside_space(self.space, p))
        return [point for _, point in model.ask(n)]


class AshaSweeper(HalvingSweeper):
    """Asynchronous successive halving: ``workers`` jobs per launcher batch, each the
    most advanced one available (a promotion as soon as a trial ranks in the top
    1/eta of its rung so far, else a new configuration)."""

    sampler = "asha"

    def __init__(self, workers: int = 1, **kwargs):
        super().__init__(**kwargs)
        if workers <= 0:
            raise ValueError(f"hydra.sweeper.workers must be > 0, got {workers}")
        self.workers = workers

    def search(self, space: dict) -> dict | None:
        points = self.sampled(space, self.n_configs)
        keep = [0] if self.configured_point(space) is not None else []
        result = search_package().asha(
            points, self.min_epochs, self.max_epochs, self.eta, self.run_rung, self.workers, keep
        )
        if result.best is None:
            return None
        self.run_audit(points, result.records, result.best)
        return {k: format_value(v) for k, v in points[result.best[0]].items()}
