"""Model-based search: proposals of Optuna's TPE sampler, through ask/tell."""

from __future__ import annotations

from .sweepers import SearchSweeper, inside_space, point_identity, same_point, search_package


class TPESweeper(SearchSweeper):
    """``n_trials`` points proposed by Optuna's TPE sampler (ask/tell), ``batch_size``
    at a time; the configured values first. The model is rebuilt from the trials'
    results on every run, which the run store serves: no Optuna database."""

    sampler = "tpe"

    def __init__(self, n_trials: int = 20, batch_size: int = 1, n_startup: int = 8, **kwargs):
        super().__init__(**kwargs)
        if n_trials <= 0 or batch_size <= 0:
            raise ValueError(
                f"hydra.sweeper.n_trials and batch_size must be > 0, got {n_trials}, {batch_size}"
            )
        self.n_trials, self.batch_size, self.n_startup = n_trials, batch_size, n_startup

    def search(self, space: dict) -> dict | None:
        self.planned = self.n_trials
        model = search_package().TPEProposer(space, self.seed, n_startup=self.n_startup)
        known: dict[str, float | None] = {}
        configured = self.configured_point(space)
        if configured is not None:
            (row,) = self.run_batch([configured])
            known[point_identity(configured)] = self.objective.score(row)
            if inside_space(space, configured):
                model.observe([(configured, known[point_identity(configured)])])
        size = search_package().space_size(space)
        while len(known) < self.n_trials and (size is None or len(known) < size):
            batch = self._ask_new(model, known, min(self.batch_size, self.n_trials - len(known)))
            if not batch:
                break
            rows = self.run_batch([point for _, point in batch])
            for (ticket, point), row in zip(batch, rows, strict=True):
                known[point_identity(point)] = self.objective.score(row)
                model.tell(ticket, known[point_identity(point)])
        return self.best_of(self.rows)

    def _ask_new(self, model, known: dict, n: int) -> list[tuple[int, dict]]:
        """``n`` proposals not tried before; a repeat is told its known score and
        asked again (a finite space runs out)."""
        batch = []
        for _ in range(50 * n):
            if len(batch) == n:
                break
            ((ticket, point),) = model.ask(1)
            if point_identity(point) in known or any(same_point(point, p) for _, p in batch):
                model.tell(ticket, known.get(point_identity(point)))
                continue
            batch.append((ticket, point))
        return batch
