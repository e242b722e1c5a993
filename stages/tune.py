"""tune: hyperparameter search on the train/val splits -> ``models/tune/``
(``leaderboard.csv``, ``leaderboard.md``, ``best_overrides.json``), plot data and
pictures of the search.

The search is a Hydra multirun of the train stage with npdl's sweeper, ``tune.proposer``
under ``tune.scheduler`` (or the pair ``tune.sampler`` names), so the tune stage and
the command line share one implementation and one run store: rerunning a finished search trains nothing, and a search killed midway
continues where it stopped. ``tune.pin`` keys are left out of the space; with
``tune.enabled=false`` the configured hyperparameters pass through unchanged."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig

from common import PROJECT_ROOT, project_path, run_dir, stage_main
from launching import sweep_command
from npdl.config import PipelineConfig, search_of, searched_space
from npdl.io import load_json, save_json
from npdl.registry import search_name
from npdl.search.report import read_leaderboard, tune_metrics, write_search_report
from npdl.trial import TUNE_REPORTS, TuneOutputs


def run(cfg: PipelineConfig) -> dict:
    outputs = TuneOutputs.of(run_dir() / cfg.paths.models)
    metrics, pictures = run_dir() / cfg.paths.metrics, run_dir() / cfg.paths.plots
    if not cfg.tune.enabled:
        shutil.rmtree(outputs.folder, ignore_errors=True)
        save_json(outputs.best_overrides, best := {"sampler": "disabled", "overrides": {}})
        save_json(metrics / "tune.json", tune_metrics(best, []))
        write_search_report(None, {}, metrics, pictures)
        print("tuning disabled: training with the configured hyperparameters")
        return best
    sweep_dir = new_sweep_folder(
        project_path(cfg.paths.cache) / "tune-sweeps", cfg.tune.keep_sweeps
    )
    command = sweep_command(cfg, sweep_dir, list(HydraConfig.get().overrides.task))
    if subprocess.run(command, cwd=PROJECT_ROOT).returncode != 0:
        raise RuntimeError(
            f"the {search_name(*search_of(cfg.tune))} search failed; its log is above and in "
            f"{sweep_dir}"
        )
    outputs.folder.mkdir(parents=True, exist_ok=True)
    for name, target in zip(TUNE_REPORTS, outputs.reports, strict=True):
        shutil.copyfile(sweep_dir / name, target.with_name(f".{name}.tmp"))
        target.with_name(f".{name}.tmp").replace(target)
    inside = sweep_dir.is_relative_to(PROJECT_ROOT)  # the trials' logs: named, kept
    folder = str(sweep_dir.relative_to(PROJECT_ROOT) if inside else sweep_dir)
    save_json(outputs.sweep_json, {"folder": folder, "launcher": cfg.tune.launcher})
    print(f"search reports from {folder} (its trials' logs)")
    best = load_json(outputs.best_overrides)
    write_search_report(outputs.leaderboard_csv, searched_space(cfg.tune), metrics, pictures, best)
    save_json(metrics / "tune.json", tune_metrics(best, read_leaderboard(outputs.leaderboard_csv)))
    if not best["overrides"]:
        raise RuntimeError(f"no trial of the search succeeded; see {sweep_dir}")
    return best


def new_sweep_folder(sweeps: Path, keep: int) -> Path:
    """A new folder for this search's jobs, named by the time; of earlier searches'
    folders the newest ``keep - 1`` stay (their results live in the run store)."""
    earlier = sorted(p for p in sweeps.iterdir() if p.is_dir()) if sweeps.is_dir() else []
    for old in earlier[: max(0, len(earlier) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return sweeps / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


main = stage_main(run)

if __name__ == "__main__":
    main()
