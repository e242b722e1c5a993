"""Hydra sweepers of npdl: the shared machinery, grid and random search (here),
successive halving, Hyperband and BOHB (``rungs.py``), TPE (``tpe.py``).

The search space comes from the command line (or ``hydra.sweeper.params``) in Hydra's
override grammar: ``choice(...)``, ``range(...)``, ``a,b,c``, ``interval(a,b)``,
``tag(log, interval(a,b))``; other overrides are passed to every trial. Trials run
through the configured launcher, so ``hydra/launcher=joblib`` parallelises any search.
Each trial's task function returns its metrics dict (``status``, ``val_acc``,
``val_loss``, ``epochs``, ``resumed_from``, ``seconds``, ``cache_hit``, ``lineage``,
``budget``); at the end the sweeper writes ``leaderboard.csv``, ``leaderboard.md``,
``best_overrides.json`` and the trial log ``trials.csv`` (wall time, cache hits) into the
sweep folder, prints the top of the leaderboard, and (multi-fidelity searches) removes
the run store's checkpoints of the trials it eliminated
(:meth:`SearchSweeper.drop_eliminated_checkpoints`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from npdl.config import debugging
from npdl.io import save_json

log = logging.getLogger(__name__)


def search_package():
    """The module ``npdl.search``, imported on first use: Hydra's plugin scan imports this module in
    every run, and a single training run does not load the search package."""
    import npdl.search

    return npdl.search


def parse_space(lines: list[str], parser: OverridesParser) -> tuple[dict, list[str]]:
    """Split overrides into a search space and overrides fixed for every trial.

    Returns
    -------
    space : dict key -> Choice (of override strings) or Interval
    fixed : list of ``key=value`` strings
    """
    space: dict = {}
    fixed: list[str] = []
    for override in parser.parse_overrides(lines):
        key = override.get_key_element()
        if not override.is_sweep_override():
            fixed.append(f"{key}={override.get_value_element_as_str()}")
        elif override.is_interval_sweep():
            sweep = override.value()
            integer = isinstance(sweep.start, int) and isinstance(sweep.end, int)
            space[key] = search_package().Interval(
                float(sweep.start), float(sweep.end), log="log" in sweep.tags, integer=integer
            )
        else:
            space[key] = search_package().Choice(tuple(override.sweep_string_iterator()))
    return space, fixed


def format_value(value: Any) -> str:
    """A value as override text (a choice's text is override text already)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(format_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | np.integer):
        return str(int(value))
    return repr(float(value))


class SearchSweeper(Sweeper):
    """Shared machinery: parsing, launching batches, recording and reporting trials."""

    sampler = "search"
    #: Keep the checkpoints of eliminated trials (multi-fidelity searches' option).
    keep_checkpoints = False

    def __init__(
        self,
        seed: int = 0,
        metric: str = "val_acc",
        fail_fast: bool = False,
        params: dict | None = None,
        include_defaults: bool = True,
        **options,
    ):
        super().__init__()
        self.seed, self.metric, self.include_defaults = seed, metric, include_defaults
        # NPDL_DEBUG: a failing trial stops the sweep with its traceback.
        self.fail_fast = fail_fast or debugging()
        try:
            self.objective = search_package().Objective(metric)
        except ValueError as error:
            raise ValueError(f"hydra.sweeper.{error}") from None
        self.params = dict(params or {})
        self.options = options
        self.rows: list[dict] = []
        #: budget (epochs) -> [(point, score)] of every trial run at it (multi-fidelity).
        self.observed: dict[int, list[tuple[dict, float | None]]] = {}
        self.planned: int | None = None  # trials the search will run, where known
        self.audit: dict | None = None  # eliminated trials trained to the top (audit)
        self.progress: tqdm | None = None
        self.job_index = 0

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[dict]:
        self.parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        lines = [f"{key}={value}" for key, value in self.params.items()] + list(arguments)
        space, self.fixed = parse_space(lines, self.parser)
        if not space:
            raise ValueError(
                f"{type(self).__name__} got an empty search space; give at least one "
                "sweep override, e.g. lr='tag(log, interval(1e-5, 1e-2))' or reg=1e-5,1e-4"
            )
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        log.info("%s search over %s", self.sampler, ", ".join(space))
        best = self.search(space)
        if self.progress is not None:
            self.progress.close()
        self.report(sweep_dir, best)
        self.drop_eliminated_checkpoints()
        return self.rows

    def top_budget(self) -> int | None:
        """The budget (epochs) a trial the search did not eliminate reaches; None for
        searches that train every trial at one budget (nothing is eliminated)."""
        return None

    def drop_eliminated_checkpoints(self) -> None:
        """Remove from the run store the checkpoints of the trials that stopped below
        :meth:`top_budget` (their results stay): a checkpoint only lets a longer run
        resume, and the search did not carry these further. Lineages another process
        holds, unfinished ones and checkpoints carried further are kept
        (:func:`npdl.run.gc.drop_checkpoints`)."""
        top = self.top_budget()
        if top is None or self.keep_checkpoints:
            return
        reached: dict[str, int] = {}
        for row in self.rows:
            if row["lineage"] and isinstance(row["budget"], int):
                reached[row["lineage"]] = max(reached.get(row["lineage"], 0), row["budget"])
        eliminated = {lineage: budget for lineage, budget in reached.items() if budget < top}
        if not eliminated:
            return
        from npdl.run.gc import drop_checkpoints, format_size
        from npdl.run.store import RunStore, store_root

        # The trials' store: paths.run_store from the project root (the current folder).
        configured = OmegaConf.select(self.config, "paths.run_store", default=None)
        root = store_root(configured, Path.cwd())
        if not (root / "trials").is_dir():
            return
        report = drop_checkpoints(RunStore(root), eliminated, f"eliminated below {top} epochs")
        log.info(
            "run store: removed the checkpoints of %d eliminated trials (%s)%s",
            len(report.removed),
            format_size(sum(part.size for part, _ in report.removed)),
            f"; {len(report.busy)} in use elsewhere kept" if report.busy else "",
        )

    def configured_point(self, space: dict) -> dict | None:
        """The configured values of the searched keys (override text), or None when
        ``include_defaults`` is off or a key has no configured value."""
        if not self.include_defaults:
            return None
        point = {}
        for key in space:
            value = OmegaConf.select(self.config, key, default=None, throw_on_missing=False)
            if value is None:
                return None
            plain = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            point[key] = format_value(plain)
        return point

    def sampled(self, space: dict, n: int) -> list[dict]:
        """``n`` distinct points: the configured values first (always a trial, as
        Optuna's ``enqueue_trial``), then seeded draws without repeats."""
        configured = self.configured_point(space)
        draws = search_package().distinct_points(space, n, np.random.default_rng(self.seed))
        points = [configured] if configured is not None else []
        points += [p for p in draws if configured is None or not same_point(p, configured)]
        size = search_package().space_size(space)
        if size is not None and size < n:
            log.warning("the space has only %d points: each is tried once (asked for %d)", size, n)
        return points[:n]

    def search(self, space: dict) -> dict:
        """Run the trials; return the best point (key -> override text), or None if
        no trial succeeded."""
        raise NotImplementedError

    def run_batch(self, points: list[dict], extra: list[str] = ()) -> list[dict]:
        """Launch one trial per point (plus ``extra`` overrides); record and return rows.

        Hydra's basic launcher runs jobs one after another anyway: it gets them one at a
        time, so that the progress bar moves with every trial.
        """
        batch = [
            [*self.fixed, *extra, *(f"{k}={format_value(v)}" for k, v in point.items())]
            for point in points
        ]
        sequential = isinstance(self.launcher, BasicLauncher)
        groups = [[i] for i in range(len(batch))] if sequential else [list(range(len(batch)))]
        rows = []
        for group in groups:
            returns = self.launcher.launch(
                [batch[i] for i in group], initial_job_idx=self.job_index
            )
            self.job_index += len(group)
            for i, job in zip(group, returns, strict=True):
                rows.append(self.record(points[i], job))
            self.show_progress(len(group))
        return rows

    def record(self, point: dict, job) -> dict:
        """The leaderboard row of one finished job."""
        try:
            value = dict(job.return_value or {})
        except Exception as error:  # the job raised: a failed trial
            if self.fail_fast:
                raise
            value = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
        row = {
            "overrides": {k: self.typed(k, v) for k, v in point.items()},
            "status": value.get("status", "failed"),
            "val_acc": value.get("val_acc"),
            "val_loss": value.get("val_loss"),
            "epochs": value.get("epochs"),
            "resumed_from": value.get("resumed_from"),
            "seconds": value.get("seconds"),
            "cache_hit": bool(value.get("cache_hit", False)),
            # The run store's entry it came from (npdl cache gc --keep-referenced).
            "lineage": value.get("lineage"),
            "budget": value.get("budget"),
        }
        if row["status"] == "failed" and self.fail_fast:
            raise RuntimeError(f"trial {row['overrides']} failed: {value.get('error')}")
        self.rows.append(row)
        return row

    def show_progress(self, finished: int) -> None:
        """Advance the progress bar (a terminal) or log a line (anything else): trials
        done of planned, best so far, cache hits."""
        best = self.objective.best_value(self.rows)
        hits = sum(row["cache_hit"] for row in self.rows)
        status = {"best " + self.metric: f"{best:.4f}" if best is not None else "-", "cached": hits}
        if self.progress is None:
            self.progress = tqdm(
                total=self.planned, desc=f"{self.sampler} search", unit="trial", disable=None
            )
        if not self.progress.disable:
            self.progress.update(finished)
            self.progress.set_postfix(status, refresh=True)
            return
        planned = f"/{self.planned}" if self.planned else ""
        log.info(
            "%d%s trials done; best %s %s; %d from the cache",
            len(self.rows),
            planned,
            self.metric,
            status["best " + self.metric],
            hits,
        )

    def typed(self, key: str, value: Any) -> Any:
        """The value an override sets (a choice's text parsed as Hydra would)."""
        if not isinstance(value, str):
            return value
        parsed = self.parser.parse_override(f"{key}={value}").value()
        return OmegaConf.to_container(parsed) if OmegaConf.is_config(parsed) else parsed

    def report(self, sweep_dir: Path, best: dict | None) -> None:
        fidelity = search_package().fidelity
        ranked = search_package().rank_trials(self.rows, self.objective)
        correlations = fidelity.rung_correlations(self.rows, self.objective)
        footer = ""
        if correlations:
            text = fidelity.describe(correlations)
            footer = "Rank agreement between budgets (Spearman):\n\n" + "\n".join(
                f"- {line}" for line in text.splitlines()
            )
            log.info("rank agreement between budgets:\n%s", text)
            for c in correlations:
                if c["spearman"] is not None and c["spearman"] < fidelity.WARN_BELOW:
                    log.warning(
                        "the %d-epoch ranking predicts the %d-epoch one poorly (Spearman %.2f "
                        "< %.1f): the first rungs may eliminate the best trials; consider a "
                        "larger min_epochs",
                        c["from_epochs"],
                        c["to_epochs"],
                        c["spearman"],
                        fidelity.WARN_BELOW,
                    )
        search_package().write_leaderboard_csv(sweep_dir / "leaderboard.csv", ranked)
        search_package().write_trial_log(sweep_dir / "trials.csv", self.rows)
        search_package().write_leaderboard_md(
            sweep_dir / "leaderboard.md",
            ranked,
            title=f"{self.sampler} search: {len(ranked)} trials",
            footer=footer,
        )
        hits = sum(row["cache_hit"] for row in self.rows)
        save_json(
            sweep_dir / "best_overrides.json",
            {
                "sampler": self.sampler,
                "metric": self.metric,
                "overrides": best,
                "trials": len(self.rows),
                "cache_hits": hits,
                # A resumed trial trained only the epochs after its checkpoint.
                "epochs_trained": sum(
                    (row["epochs"] or 0) - (row["resumed_from"] or 0)
                    for row in self.rows
                    if not row["cache_hit"]
                ),
                "fidelity": correlations,
                "audit": self.audit,
            },
        )
        print(search_package().format_table(ranked, top=10), flush=True)
        print(
            f"{len(self.rows)} trials, {hits} from the cache; best: {json.dumps(best)}", flush=True
        )

    def best_of(self, rows: list[dict]) -> dict | None:
        ranked = [
            row
            for row in search_package().rank_trials(rows, self.objective)
            if row["status"] == "ok"
        ]
        if not ranked:
            return None
        return {k: format_value(v) for k, v in ranked[0]["overrides"].items()}


class GridSweeper(SearchSweeper):
    """Every combination of the choices (no intervals)."""

    sampler = "grid"

    def search(self, space: dict) -> dict | None:
        points = search_package().grid_points(space)
        self.planned = len(points)
        return self.best_of(self.run_batch(points))


class RandomSweeper(SearchSweeper):
    """``n_trials`` points drawn with ``seed``; growing ``n_trials`` only adds points."""

    sampler = "random"

    def __init__(self, n_trials: int = 10, **kwargs):
        super().__init__(**kwargs)
        if n_trials <= 0:
            raise ValueError(f"hydra.sweeper.n_trials must be > 0, got {n_trials}")
        self.n_trials = n_trials

    def search(self, space: dict) -> dict | None:
        points = self.sampled(space, self.n_trials)
        self.planned = len(points)
        return self.best_of(self.run_batch(points))


def point_identity(point: dict) -> str:
    """A point (key -> value or override text) as one JSON string: each value as
    :func:`format_value` writes it, keys sorted, so the key order does not matter."""
    return json.dumps({k: format_value(v) for k, v in sorted(point.items())})


def same_point(one: dict, two: dict) -> bool:
    """Whether two points set the same values (:func:`point_identity`)."""
    return point_identity(one) == point_identity(two)


def inside_space(space: dict, point: dict) -> bool:
    """Whether ``point`` (key -> value or override text, every key of ``space``) lies in
    ``space`` (key -> Choice or Interval): each value one of the choice's values, or a
    number within the interval's bounds. The configured values may not."""
    for key, dimension in space.items():
        value = point[key]
        if isinstance(dimension, search_package().Choice):
            if value not in dimension.values:
                return False
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                return False
            if not dimension.low <= number <= dimension.high:
                return False
    return True
