"""Hydra callbacks of npdl: :class:`BoundRunStore` trims the run store after a sweep;
:class:`JobOutputToLog` keeps a sweep's jobs off the console.

``conf/config.yaml`` registers both for every command-line multirun
(``python stages/train.py -m ...``, with any sweeper); the tune stage passes them to its
own sweep (``stages/launching.py``), whose config is ``params.yaml`` (DVC leaves Hydra's
section out of it).
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

#: The override that adds it to a sweep composed from ``params.yaml``.
OVERRIDE = "++hydra.callbacks.bound_run_store._target_=hydra_plugins.npdl_callbacks.BoundRunStore"
#: The override that adds :class:`JobOutputToLog` to a sweep composed from ``params.yaml``.
JOB_LOG_OVERRIDE = (
    "++hydra.callbacks.job_output_to_log._target_=hydra_plugins.npdl_callbacks.JobOutputToLog"
)


class JobOutputToLog(Callback):
    """A sweep's job writes what it prints, and its log records below warnings, into its
    own log file (Hydra's job logging file, ``<job folder>/<job name>.log``), not onto
    the console: the sweeper prints one line per finished trial instead. Warnings and
    errors still reach the console. A job that raised gets its traceback in that file.
    Single runs (not a multirun) are left alone. It runs in the job's process, so it
    works with any launcher (joblib's, Ray's and submitit's processes too)."""

    def __init__(self) -> None:
        self.saved: tuple | None = None
        self.file = None

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if OmegaConf.select(config, "hydra.mode") != RunMode.MULTIRUN:
            return
        root = logging.getLogger()
        files = [h.baseFilename for h in root.handlers if isinstance(h, logging.FileHandler)]
        runtime = config.hydra.runtime.output_dir
        path = Path(files[0]) if files else Path(runtime) / f"{config.hydra.job.name}.log"
        for handler in root.handlers:
            if type(handler) is logging.StreamHandler:  # the console, not a file
                handler.setLevel(max(handler.level, logging.WARNING))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", buffering=1)  # noqa: SIM115 (closed at the job's end)
        self.saved = (sys.stdout, sys.stderr)
        sys.stdout = sys.stderr = self.file

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if self.file is None:
            return
        error = getattr(job_return, "_return_value", None)
        if job_return.status == JobStatus.FAILED and isinstance(error, BaseException):
            traceback.print_exception(error, file=self.file)
        sys.stdout, sys.stderr = self.saved
        self.file.close()
        self.file, self.saved = None, None


class BoundRunStore(Callback):
    """After a sweep, trim the run store to ``paths.run_store_max_gb`` (null: nothing to
    do) by the policy of ``npdl cache gc --max-size N --keep-referenced``
    (:func:`npdl.run.gc.bound_store`): keeping the sweep's own trials (its jobs'
    ``metrics/train.json``) and what the workspace's tune leaderboard
    (:class:`npdl.trial.TuneOutputs`) and ``models/model.npz`` came from. Paths are
    taken from the current folder, which is the project root for the stages."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        limit = OmegaConf.select(config, "paths.run_store_max_gb", default=None)
        if limit is None:
            return
        from npdl.run.gc import bound_store, result_entries
        from npdl.run.store import RunStore, store_root

        root = store_root(OmegaConf.select(config, "paths.run_store", default=None), Path.cwd())
        if not (root / "trials").is_dir():
            return
        metrics = OmegaConf.select(config, "paths.metrics", default="metrics")
        jobs = Path(config.hydra.sweep.dir).glob(f"*/{metrics}/train.json")
        models = Path.cwd() / OmegaConf.select(config, "paths.models", default="models")
        bound_store(RunStore(root), float(limit), [models], keep=result_entries(jobs))
