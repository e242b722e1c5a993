"""The launching part of npdl's sweeper: trials as launcher batches, their rows, one
console line per finished trial, and the run store's clean-up after a search with rungs."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from npdl.overrides import point_text
from npdl.trial import TrialResult

log = logging.getLogger(__name__)


class TrialLauncher:
    """Launch trials and record their rows (``rows``, in the order they finished).

    Parameters
    ----------
    launcher : Hydra launcher
    parser : OverridesParser
        Turns a choice's override text back into the value it sets.
    fixed : list of str
        ``key=value`` overrides of every trial.
    objective : npdl.search.Objective
    fail_fast : bool
        A failed trial stops the search (it is recorded as failed otherwise).
    label : str
        The search's name.
    """

    def __init__(
        self,
        launcher,
        parser: OverridesParser,
        fixed: list[str],
        objective,
        fail_fast: bool,
        label: str,
    ):
        self.launcher, self.parser, self.fixed = launcher, parser, fixed
        self.objective, self.fail_fast, self.label = objective, fail_fast, label
        self.rows: list[dict] = []
        #: Called with each group of points before it is launched, and with each row
        #: as its trial finishes (the warm start records both).
        self.on_launch = None
        self.on_row = None
        #: Trials the search will run, where known (the trial lines' "7/16").
        self.planned: int | None = None
        self.job_index = 0

    def run_batch(self, points: list[dict], extra: list[str] = ()) -> list[dict]:
        """Launch one trial per point (plus ``extra`` overrides); record and return rows.

        Hydra's basic launcher runs jobs one after another anyway: it gets them one at a
        time, so that each trial's line comes as it finishes.
        """
        batch = [
            [*self.fixed, *extra, *(f"{k}={point_text(v)}" for k, v in point.items())]
            for point in points
        ]
        sequential = isinstance(self.launcher, BasicLauncher)
        groups = [[i] for i in range(len(batch))] if sequential else [list(range(len(batch)))]
        rows = []
        for group in groups:
            if self.on_launch is not None:
                self.on_launch([points[i] for i in group])
            returns = self.launcher.launch(
                [batch[i] for i in group], initial_job_idx=self.job_index
            )
            self.job_index += len(group)
            for i, job in zip(group, returns, strict=True):
                rows.append(self.record(points[i], job))
                self.show(rows[-1], job)
        return rows

    def record(self, point: dict, job) -> dict:
        """The leaderboard row of one finished job: the point's values and the job's
        :class:`~npdl.trial.TrialResult` (a job that raised is a failed trial)."""
        from npdl.search.leaderboard import leaderboard_row

        try:
            # Hydra writes "Error executing job with overrides: [...]" to stderr: the
            # trial's line says it, with the path of the job's log.
            with contextlib.redirect_stderr(io.StringIO()):
                value = job.return_value
        except Exception as error:  # the job raised: a failed trial
            if self.fail_fast:
                raise
            result = TrialResult.failed(f"{type(error).__name__}: {error}")
        else:
            result = TrialResult.from_json(value)
        if result.status == "failed" and self.fail_fast:
            raise RuntimeError(f"trial {point} failed: {result.error}")
        row = leaderboard_row({k: self.value_of(k, v) for k, v in point.items()}, result)
        self.rows.append(row)
        if self.on_row is not None:
            self.on_row(row)
        return row

    def value_of(self, key: str, value: Any) -> Any:
        """The value an override sets (a choice's text parsed as Hydra would)."""
        if not isinstance(value, str):
            return value
        parsed = self.parser.parse_override(f"{key}={value}").value()
        return OmegaConf.to_container(parsed) if OmegaConf.is_config(parsed) else parsed

    def show(self, row: dict, job) -> None:
        """Print the finished trial's line (:func:`npdl.search.console.trial_line`)."""
        from npdl.search.console import trial_line

        best = self.objective.best_value(self.rows)
        line = trial_line(len(self.rows), self.planned, row, self.objective, best, job_log(job))
        print(line, flush=True)


def job_log(job) -> str | None:
    """The log file of a launched job (Hydra's job logging writes
    ``<job folder>/<job name>.log``, and npdl's JobOutputToLog callback the job's own
    output into it); None where the job says nothing of its folder."""
    hydra = getattr(job, "hydra_cfg", None)
    folder = OmegaConf.select(hydra, "hydra.runtime.output_dir", default=None) if hydra else None
    if not folder:
        return None
    name = OmegaConf.select(hydra, "hydra.job.name", default=None) or "train"
    return str(Path(folder) / f"{name}.log")


def drop_eliminated_checkpoints(config: DictConfig, rows: list[dict], top: int) -> None:
    """Remove from the run store the checkpoints of the trials that stopped below
    ``top`` epochs (their results stay): a checkpoint only lets a longer run resume,
    and the search did not carry these further. Lineages another process holds,
    unfinished ones and checkpoints carried further are kept
    (:func:`npdl.run.gc.drop_checkpoints`)."""
    reached: dict[str, int] = {}
    for row in rows:
        if row["lineage"] and isinstance(row["budget"], int):
            reached[row["lineage"]] = max(reached.get(row["lineage"], 0), row["budget"])
    eliminated = {lineage: budget for lineage, budget in reached.items() if budget < top}
    if not eliminated:
        return
    from npdl.run.gc import drop_checkpoints, format_size
    from npdl.run.store import RunStore, store_root

    # The trials' store: paths.run_store from the project root (the current folder).
    configured = OmegaConf.select(config, "paths.run_store", default=None)
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
