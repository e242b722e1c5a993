"""npdl's Hydra sweeper: a proposer under a scheduler, over one run store.

:class:`NpdlSweeper` composes the three parts of a search: the proposer and the
scheduler named by ``proposer`` and ``scheduler`` (:mod:`npdl.registry`, e.g. ``tpe``
under ``asha``), the trials' launching (:mod:`.trials`) and the reports
(:mod:`.reporting`). ``hydra/sweeper=npdl`` takes the two names;
``hydra/sweeper=npdl_<name>`` presets a named pair (``npdl_bohb``: ``tpe`` under
``hyperband``).

The search space comes from the command line (or ``hydra.sweeper.params``) in Hydra's
override grammar: ``choice(...)``, ``range(...)``, ``a,b,c``, ``interval(a,b)``,
``tag(log, interval(a,b))``; other overrides are passed to every trial. Trials run
through the configured launcher, so ``hydra/launcher=joblib`` parallelises any search.
Each trial's task function returns its metrics dict (``status``, ``val_acc``,
``val_loss``, ``epochs``, ``resumed_from``, ``seconds``, ``cache_hit``, ``lineage``,
``budget``); at the end the sweeper writes the reports into the sweep folder (with each
hyperparameter's importance), prints the top of the leaderboard and (schedulers with
rungs) removes the run store's checkpoints of the trials it eliminated.

The console holds a header, one line per finished trial and the summary
(:mod:`npdl.search.console`); Hydra's own lines (the launcher's ``#N : overrides``) go
to ``sweep.log`` in the sweep folder, warnings and errors to both, and each job's
logging and output to its own folder's log (npdl's ``JobOutputToLog`` callback).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from npdl import registry
from npdl.config import debugging
from npdl.overrides import point_text

from .reporting import SWEEP_LOG, log_to_file, search_importance, write_reports
from .trials import TrialLauncher, drop_eliminated_checkpoints
from .warm import WarmStart, search_identity

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


class NpdlSweeper(Sweeper):
    """A search: ``proposer`` under ``scheduler``; the other fields are
    :class:`~hydra_plugins.npdl_sweepers.config.SearchConf`'s (the tune stage's names)."""

    def __init__(
        self,
        proposer: str = "random",
        scheduler: str = "none",
        seed: int = 0,
        metric: str = "val_acc",
        fail_fast: bool = False,
        include_defaults: bool = True,
        params: dict | None = None,
        n_trials: int = 10,
        epochs: int | None = None,
        min_epochs: int = 1,
        eta: int = 3,
        n_jobs: int = 1,
        audit: int = 0,
        keep_checkpoints: bool = False,
        n_startup: int = 8,
        fidelity_control: bool = False,
        tie_sd: float = 1.0,
        min_agreement: float = 0.5,
        warm_start: bool = False,
        rung_schedule: str = "shared",
        epochs_key: str = "solver.epochs",
        horizon_key: str | None = "solver.schedule_epochs",
        n_configs: int | None = None,
        max_epochs: int | None = None,
        workers: int | None = None,
        batch_size: int | None = None,
    ):
        super().__init__()
        # The older names of the named searches' options: n_configs (halving, asha) is
        # n_trials, max_epochs is epochs, workers (asha) and batch_size (tpe) are n_jobs.
        n_trials = n_configs if n_configs is not None else n_trials
        epochs = max_epochs if max_epochs is not None else epochs
        n_jobs = next((v for v in (workers, batch_size) if v is not None), n_jobs)
        self.proposer_class = registry.proposer_class(proposer)
        self.scheduler_class = registry.scheduler_class(scheduler)
        self.sampler = registry.search_name(proposer, scheduler)
        self.names = {"proposer": proposer, "scheduler": scheduler}
        if audit < 0:
            raise ValueError(f"hydra.sweeper.audit must be >= 0, got {audit}")
        for name, value in (("n_trials", n_trials), ("n_jobs", n_jobs)):
            if value <= 0:
                raise ValueError(f"hydra.sweeper.{name} must be > 0, got {value}")
        self.seed, self.metric, self.include_defaults = seed, metric, include_defaults
        # NPDL_DEBUG: a failing trial stops the sweep with its traceback.
        self.fail_fast = fail_fast or debugging()
        try:
            self.objective = search_package().Objective(metric)
        except ValueError as error:
            raise ValueError(f"hydra.sweeper.{error}") from None
        self.params = dict(params or {})
        self.budgets = {"n_trials": n_trials, "epochs": epochs, "min_epochs": min_epochs}
        self.budgets |= {"eta": eta, "n_jobs": n_jobs}
        self.audit_size, self.keep_checkpoints, self.n_startup = audit, keep_checkpoints, n_startup
        self.epochs_key, self.horizon_key = epochs_key, horizon_key
        self.control_options = (fidelity_control, tie_sd, min_agreement)
        #: What the fidelity controller did, decision by decision.
        self.decisions: list[dict] = []
        self.rows: list[dict] = []
        #: budget -> [(point, score)] of every trial this sweeper ran (proposers read it).
        self.history: dict = {}
        self.audit: dict | None = None
        self.warm_start = warm_start
        if rung_schedule not in ("shared", "own"):
            raise ValueError(
                f"hydra.sweeper.rung_schedule={rung_schedule!r} is not allowed: expected "
                "shared (every rung on the top budget's schedule) or own (each rung's ends "
                "at its budget)"
            )
        self.rung_schedule = rung_schedule
        self.warm: WarmStart | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[dict]:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        lines = [f"{key}={value}" for key, value in self.params.items()] + list(arguments)
        space, fixed = parse_space(lines, parser)
        if not space and self.sampler == "grid" and fixed:  # `-m lr=1e-3`: Hydra's one job
            key, value = fixed.pop().split("=", 1)
            space[key] = search_package().Choice((value,))
        if not space:
            raise ValueError(
                f"the {self.sampler} search got an empty search space; give at least one "
                "sweep override, e.g. lr='tag(log, interval(1e-5, 1e-2))' or reg=1e-5,1e-4"
            )
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        log_to_file(self.config, sweep_dir / SWEEP_LOG)
        self.trials = TrialLauncher(
            self.launcher, parser, fixed, self.objective, self.fail_fast, self.sampler
        )
        self.trials.rows = self.rows
        if self.warm_start:
            self.warm = WarmStart.of(self.config, self.identity(space, fixed))
            self.trials.on_launch, self.trials.on_row = self.warm.launching, self.warm.record
        log.info("%s search over %s", self.sampler, ", ".join(space))
        best = self.search(space)
        about = {**self.names, "sampler": self.sampler, "audit": self.audit}
        about["controller"] = self.decisions if self.control_options[0] else None
        about["warm_start"] = {"trials": self.warm.told} if self.warm else None
        about["importance"] = search_importance(
            self.rows, space, self.trials.value_of, self.objective
        )
        write_reports(sweep_dir, self.rows, self.objective, best, about)
        if self.scheduler_class.multi_fidelity and not self.keep_checkpoints:
            drop_eliminated_checkpoints(self.config, self.rows, self.top_epochs())
        return self.rows

    def run_batch(self, points: list[dict], extra: list[str] = ()) -> list[dict]:
        """Launch one trial per point (plus ``extra`` overrides); their rows."""
        return self.trials.run_batch(points, extra)

    def identity(self, space: dict, fixed: list[str]) -> str:
        """This search's identity in the run store (:func:`.warm.search_identity`)."""
        return search_identity(
            {
                **self.names,
                "seed": self.seed,
                "metric": self.metric,
                "space": {key: repr(dimension) for key, dimension in space.items()},
                "fixed": sorted(fixed),
                "budgets": {k: v for k, v in self.budgets.items() if k != "n_trials"},
                "n_startup": self.n_startup,
                "include_defaults": self.include_defaults,
            }
        )

    def top_epochs(self) -> int | None:
        """The top budget: ``epochs``, else (schedulers with rungs) the configured one."""
        epochs = self.budgets["epochs"]
        if epochs is None and self.scheduler_class.multi_fidelity:
            epochs = int(OmegaConf.select(self.config, self.epochs_key))
        return epochs

    def search(self, space: dict) -> dict | None:
        """Run the trials; return the best point (key -> override text), or None if
        no trial succeeded."""
        configured = self.configured_point(space)
        if not self.proposer_class.takes_configured:
            configured = None
        multi_fidelity = self.scheduler_class.multi_fidelity
        self.space = space
        self.proposer = proposer = self.proposer_class(
            space,
            self.seed,
            exclude=[configured] if configured is not None else [],
            history=self.history,
            multi_fidelity=multi_fidelity,
            n_startup=self.n_startup,
        )
        budgets = {**self.budgets, "epochs": self.top_epochs()}
        scheduler = self.scheduler_class(**budgets, control=self.fidelity_control())
        if hasattr(self, "trials"):
            self.trials.planned = scheduler.planned(proposer)
            self.announce(space, budgets)
        first_row = len(self.rows)
        evaluate = search_package().schedulers.telling(proposer, self.run_requests, self.history)
        proposals = search_package().Proposals(proposer, configured)
        result = scheduler.run(proposals, evaluate)
        for decision in result.decisions:
            log.info(
                "fidelity control, rung %d: kept %d more (%s)",
                decision["rung"],
                decision["kept"],
                decision["why"],
            )
        self.decisions += result.decisions
        if not multi_fidelity:
            return self.best_of(self.rows[first_row:])
        if result.best is None:
            return None
        self.run_audit(result, evaluate, scheduler.epochs)
        return point_overrides(result.points[result.best.point_index])

    def announce(self, space: dict, budgets: dict) -> None:
        """Print the search's header: what it searches, and where its logs go."""
        from npdl.search.console import search_header, shown_epochs

        top = shown_epochs(budgets["epochs"] or OmegaConf.select(self.config, self.epochs_key))
        if self.scheduler_class.multi_fidelity:
            budget = f"{budgets['min_epochs']} to {top} (eta {budgets['eta']})"
        else:
            budget = f"{top} each"
        folder = Path(self.config.hydra.sweep.dir)
        logs = f"{folder / SWEEP_LOG} (the launcher's), {folder}/<trial>/<job>.log (each trial's)"
        header = search_header(self.sampler, list(space), self.trials.planned, budget, logs)
        print(header, flush=True)

    def fidelity_control(self):
        """The scheduler's :class:`~npdl.search.controller.FidelityControl` (None when
        ``fidelity_control`` is off): ties within ``tie_sd`` standard errors of a val
        accuracy on the trials' val images (none for a loss), wider promotions where
        consecutive rungs agree below ``min_agreement``."""
        enabled, tie_sd, min_agreement = self.control_options
        if not enabled:
            return None
        standard_error = self.accuracy_standard_error if self.metric == "val_acc" else None
        control = search_package().controller.FidelityControl
        return control(standard_error, tie_sd=tie_sd, min_agreement=min_agreement)

    def accuracy_standard_error(self, accuracy: float) -> float:
        """The standard error of a val accuracy on the val images the latest trials
        report (0 when none says: no tie is kept)."""
        images = next((r.get("val_images") for r in reversed(self.rows) if r.get("val_images")), 0)
        if not images:
            return 0.0
        return search_package().controller.accuracy_standard_error(images)(accuracy)

    def run_requests(self, requests: list[tuple[int, dict, int | None]]) -> list[float | None]:
        """Train each ``(index, point, epochs)`` request: one launcher batch per budget.
        With ``rung_schedule=shared`` every rung is on the schedule horizon of the top
        budget (a promoted trial resumes and continues its learning-rate curve); with
        ``own`` each rung's schedule ends at its budget (its score is a finished run's;
        a promoted trial trains afresh). Scores, higher is better."""
        by_budget: dict[int | None, list[int]] = {}
        for position, (_, _, epochs) in enumerate(requests):
            by_budget.setdefault(epochs, []).append(position)
        scores: list[float | None] = [None] * len(requests)
        for epochs, positions in by_budget.items():
            budget = [] if epochs is None else [f"{self.epochs_key}={epochs}"]
            points = [requests[p][1] for p in positions]
            rows = self.run_batch(points, [*self.horizon(epochs), *budget])
            for position, row in zip(positions, rows, strict=True):
                scores[position] = self.objective.score(row)
        if self.warm is not None:
            self.warm.tell(
                self.rows,
                self.space,
                self.proposer,
                self.history,
                self.objective.score,
                self.trials.value_of,
                self.warm_budget,
            )
        return scores

    def horizon(self, epochs: int | None) -> list[str]:
        """The schedule horizon override of a rung at ``epochs`` (none with one budget)."""
        if not self.scheduler_class.multi_fidelity or not self.horizon_key:
            return []
        end = epochs if self.rung_schedule == "own" else self.top_epochs()
        return [f"{self.horizon_key}={end}"]

    def warm_budget(self, epochs: int) -> bool:
        """Whether an earlier result at ``epochs`` speaks to this search: its one budget
        (none), or any budget up to the top (schedulers with rungs)."""
        if self.scheduler_class.multi_fidelity:
            return epochs <= self.top_epochs()
        budget = self.budgets["epochs"] or OmegaConf.select(self.config, self.epochs_key)
        return epochs == int(budget)

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
            point[key] = point_text(plain)
        return point

    def run_audit(self, result, evaluate, top: int) -> None:
        """Train ``audit`` randomly chosen eliminated configurations to the top budget
        and count how many beat the winner there. Their rows are kept out of the
        leaderboard: the audit checks the search, it does not change its answer."""
        if not self.audit_size:
            return
        reached: dict[int, tuple[int, float | None]] = {}
        for record in result.records:
            if record.epochs >= reached.get(record.point_index, (0, None))[0]:
                reached[record.point_index] = (record.epochs, record.score)
        eliminated = sorted(
            i for i, (epochs, score) in reached.items() if epochs < top and score is not None
        )
        rng = np.random.default_rng(self.seed + 1)
        chosen = sorted(rng.permutation(eliminated)[: self.audit_size].tolist())
        before = len(self.rows)
        scores = evaluate([(i, result.points[i], top) for i in chosen])
        rows, self.rows[before:] = self.rows[before:], []
        beat = [s is not None and s > result.best.score for s in scores]
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
            top,
        )

    def best_of(self, rows: list[dict]) -> dict | None:
        """The best ``ok`` row's point, by the leaderboard's ranking (ties: the lower
        val_loss, then the earlier trial)."""
        ranked = [
            row
            for row in search_package().rank_trials(rows, self.objective)
            if row["status"] == "ok"
        ]
        return point_overrides(ranked[0]["overrides"]) if ranked else None


def point_overrides(point: dict) -> dict:
    """A point as key -> override text (``best_overrides.json``'s form)."""
    return {key: point_text(value) for key, value in point.items()}
