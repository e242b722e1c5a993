"""What the stages need from Hydra's launchers: the tune stage's sweep command, threads
per job, and module paths for launchers that start fresh interpreters."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from configuration import SHORTCUTS
from hydra_plugins.npdl_callbacks import JOB_LOG_OVERRIDE
from hydra_plugins.npdl_callbacks import OVERRIDE as BOUND_RUN_STORE
from npdl.config import PipelineConfig, TuneConfig, search_of, searched_space
from npdl.overrides import override_text
from npdl.threads import set_num_threads, threads_per_worker

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Launchers that run jobs in fresh interpreters (submitit locally or on SLURM) unpickle
# the job function by module name: they must find this folder's modules too.
_STAGES = str(Path(__file__).resolve().parent)
if _STAGES not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [_STAGES, os.environ.get("PYTHONPATH")])
    )


def launcher_threads() -> int | None:
    """Threads each job of this sweep should use, from the launcher's configuration:
    the joblib launcher's ``cores // n_jobs`` (``n_jobs=-1``: one job per core), the
    CPUs a Ray task reserves (``ray.remote.num_cpus``) or a submitit job gets
    (``cpus_per_task``). None for single runs and sequential launchers."""
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    launcher = HydraConfig.get().launcher
    n_jobs = OmegaConf.select(launcher, "n_jobs", default=None)
    if n_jobs is not None:
        n_jobs = int(n_jobs)
        return 1 if n_jobs < 0 else threads_per_worker(n_jobs)
    for key in ("ray.remote.num_cpus", "cpus_per_task"):
        cpus = OmegaConf.select(launcher, key, default=None)
        if cpus:
            return max(1, int(cpus))
    return None


def match_threads_to_launcher() -> None:
    """Give each of the sweep's parallel jobs its share of the cores (BLAS threads and
    npdl's update threads), so that two jobs on two cores run two threads, not four."""
    threads = launcher_threads()
    if threads is not None:
        set_num_threads(threads)


#: The tune stage's keys that npdl's sweeper takes under the same name.
SWEEPER_KEYS = ("seed", "metric", "fail_fast", "n_trials", "epochs", "min_epochs", "eta")
SWEEPER_KEYS += ("n_jobs", "audit", "keep_checkpoints", "n_startup", "fidelity_control", "tie_sd")
SWEEPER_KEYS += ("min_agreement", "warm_start", "rung_schedule")


def launcher_overrides(tune: TuneConfig) -> list[str]:
    """``hydra/launcher`` for ``tune.launcher`` (``basic`` with ``n_jobs`` > 1: joblib with
    that many processes) and every ``tune.launcher_settings`` as a ``hydra.launcher`` key."""
    name = "joblib" if tune.launcher == "basic" and tune.n_jobs > 1 else tune.launcher
    args = [] if name == "basic" else [f"hydra/launcher={name}"]
    if name == "joblib":
        args.append(f"hydra.launcher.n_jobs={tune.n_jobs}")
    settings = _flattened(tune.launcher_settings or {})
    return args + [f"++hydra.launcher.{key}={override_text(v)}" for key, v in settings.items()]


def _flattened(settings: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat |= _flattened(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def sweep_command(cfg: PipelineConfig, sweep_dir, forwarded=()) -> list[str]:
    """The train stage's multirun that performs the configured search; ``forwarded``
    (this run's own overrides) reach every trial, but for Hydra's and the search's keys."""
    tune = cfg.tune
    proposer, scheduler = search_of(tune)
    args = [sys.executable, str(PROJECT_ROOT / "stages" / "train.py")]
    args += ["--config-dir", str(PROJECT_ROOT), "--config-name", "params", "--multirun"]
    args += ["hydra/sweeper=npdl", f"hydra.sweep.dir={sweep_dir}"]
    args += [f"hydra.sweeper.proposer={proposer}", f"hydra.sweeper.scheduler={scheduler}"]
    args += [f"hydra.sweeper.{key}={override_text(getattr(tune, key))}" for key in SWEEPER_KEYS]
    args += [f"solver.train_fraction={tune.train_fraction}", "tune.keep_trial_models=false"]
    args.append(BOUND_RUN_STORE)  # paths.run_store_max_gb after the search
    args.append(JOB_LOG_OVERRIDE)  # each trial's output into its log, not the console
    args += launcher_overrides(tune)
    args += [f"{key}={value}" for key, value in searched_space(tune).items()]
    taken = {arg.split("=", 1)[0] for arg in args if "=" in arg}
    keys = [(o, o.split("=", 1)[0].lstrip("+~")) for o in forwarded]
    return args + [
        o for o, k in keys if not k.startswith("hydra") and {k, SHORTCUTS.get(k)}.isdisjoint(taken)
    ]
