"""tune: hyperparameter search on the train/val splits -> ``models/tune/``
(``leaderboard.csv``, ``leaderboard.md``, ``best_overrides.json``).

The search is a Hydra multirun of the train stage with npdl's sweeper for
``tune.sampler`` (grid, random or halving), so the tune stage and the command line
share one implementation and one trial cache: rerunning a finished search trains
nothing, and a search killed midway continues where it stopped. With
``tune.enabled=false`` the configured hyperparameters pass through unchanged."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig

from common import PROJECT_ROOT, SHORTCUTS, project_path, run_dir, stage_main
from npdl import plots
from npdl.config import PipelineConfig
from npdl.io import load_json, save_csv, save_json
from npdl.search import report

SWEEPERS = {"grid": "npdl_grid", "random": "npdl_random", "halving": "npdl_halving"}
REPORTS = ("leaderboard.csv", "leaderboard.md", "best_overrides.json")


def sweep_command(cfg: PipelineConfig, sweep_dir, forwarded: Sequence[str] = ()) -> list[str]:
    """The train stage's multirun that performs the configured search.

    ``forwarded``: this run's own command-line overrides (``python stages/tune.py
    paths.trial_cache=...``), passed on to every trial; Hydra's own keys and the keys
    the search sets itself are left out.
    """
    tune = cfg.tune
    args = [
        sys.executable,
        str(PROJECT_ROOT / "stages" / "train.py"),
        "--config-dir",
        str(PROJECT_ROOT),
        "--config-name",
        "params",
        "--multirun",
        f"hydra/sweeper={SWEEPERS[tune.sampler]}",
        f"hydra.sweep.dir={sweep_dir}",
        f"hydra.sweeper.seed={tune.seed}",
        f"hydra.sweeper.metric={tune.metric}",
        f"hydra.sweeper.fail_fast={str(tune.fail_fast).lower()}",
        f"solver.train_fraction={tune.train_fraction}",
        "tune.keep_trial_models=false",  # only the final training needs a model file
    ]
    if tune.sampler == "halving":
        args += [
            f"hydra.sweeper.n_configs={tune.n_trials}",
            f"hydra.sweeper.eta={tune.eta}",
            f"hydra.sweeper.min_epochs={tune.min_epochs}",
            f"hydra.sweeper.max_epochs={tune.epochs}",
        ]
    else:
        args.append(f"solver.epochs={tune.epochs}")
        if tune.sampler == "random":
            args.append(f"hydra.sweeper.n_trials={tune.n_trials}")
    if tune.n_jobs > 1:
        args += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={tune.n_jobs}"]
    args += [f"{key}={value}" for key, value in tune.space.items()]
    taken = {arg.split("=", 1)[0] for arg in args if "=" in arg}
    kept = [
        override
        for override in forwarded
        if not (key := override.split("=", 1)[0].lstrip("+~")).startswith("hydra")
        and key not in taken
        and SHORTCUTS.get(key) not in taken
    ]
    return args + kept


TRIALS_CSV = "tune_trials.csv"
PARALLEL_CSV = "tune_parallel.csv"


def write_plots(cfg: PipelineConfig, leaderboard: Path | None) -> None:
    """The search's plot data (``metrics/tune_*.csv``, for ``dvc plots``) and its
    pictures (``plots/tune_*.png``); empty ones when tuning is off."""
    metrics, pictures = run_dir() / cfg.paths.metrics, run_dir() / cfg.paths.plots
    rows = report.read_leaderboard(leaderboard) if leaderboard else []
    table, columns = report.trial_table(rows)
    log_columns = report.log_scaled(cfg.tune.space)
    long_rows = report.parallel_table(table, columns, log_columns)
    save_csv(metrics / TRIALS_CSV, table, ["rank", "val_acc", "epochs", *columns])
    save_csv(
        metrics / PARALLEL_CSV,
        long_rows,
        ["rank", "val_acc", "hyperparameter", "value", "position"],
    )
    plots.hyperparameter_scatter(table, columns, pictures / "tune_hyperparameters.png", log_columns)
    plots.parallel_coordinates(long_rows, columns, pictures / "tune_parallel.png")


def run(cfg: PipelineConfig) -> dict:
    out = run_dir() / cfg.paths.models / "tune"
    if not cfg.tune.enabled:
        best = {"sampler": "disabled", "overrides": {}}
        shutil.rmtree(out, ignore_errors=True)
        save_json(out / "best_overrides.json", best)
        write_plots(cfg, None)
        print("tuning disabled: training with the configured hyperparameters")
        return best
    sweeps = project_path(cfg.paths.cache) / "tune-sweeps"
    # Earlier sweeps' job folders are superseded: their results live in the trial
    # cache and their reports in models/tune.
    shutil.rmtree(sweeps, ignore_errors=True)
    sweep_dir = sweeps / time.strftime("%Y%m%d-%H%M%S")
    command = sweep_command(cfg, sweep_dir, list(HydraConfig.get().overrides.task))
    if subprocess.run(command, cwd=PROJECT_ROOT).returncode != 0:
        raise RuntimeError(
            f"the {cfg.tune.sampler} search failed; its log is above and in {sweep_dir}"
        )
    out.mkdir(parents=True, exist_ok=True)
    for name in REPORTS:
        shutil.copyfile(sweep_dir / name, out / f".{name}.tmp")
        (out / f".{name}.tmp").replace(out / name)
    best = load_json(out / "best_overrides.json")
    write_plots(cfg, out / "leaderboard.csv")
    if not best["overrides"]:
        raise RuntimeError(f"no trial of the search succeeded; see {sweep_dir}")
    return best


main = stage_main(run)

if __name__ == "__main__":
    main()
