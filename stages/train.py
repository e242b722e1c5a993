"""train: train ``ClassificationNet`` with the ``Solver`` on the train split (val for
model selection) -> ``models/model.npz``, ``metrics/train.json``,
``metrics/train_history.csv``. Under DVC they land in the project; run directly
(``python stages/train.py -m lr=1e-3,1e-4``) in each job's Hydra folder.

Training goes through the trial cache: a configuration trained before (on the same
data, same library version) is not trained again, and a killed run resumes from its
last epoch's checkpoint. In a sweep a failed trial is reported, not raised.

With ``tune.enabled`` a single run applies ``models/tune/best_overrides.json`` (the
tune stage's winner) on top of the configuration; keys given on the command line
win over it."""

from __future__ import annotations

import sys

from tqdm import tqdm

from common import apply_overrides, in_multirun, project_path, run_dir, stage_main
from npdl import plots
from npdl.config import PipelineConfig
from npdl.io import link_or_copy, load_json, save_csv, save_json
from npdl.search.cache import TrialCache
from npdl.search.trials import load_trial_data, run_trial

HISTORY_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]
METRIC_FIELDS = [
    "status",
    "val_acc",
    "val_loss",
    "best_epoch",
    "epochs",
    "resumed_from",
    "seconds",
    "threads",
    "cache_hit",
]


def tuned(cfg: PipelineConfig) -> PipelineConfig:
    """The configuration with the tune stage's best hyperparameters applied."""
    path = project_path(cfg.paths.models) / "tune" / "best_overrides.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"tune.enabled is true but {path} does not exist: run the tune stage "
            "(`dvc repro tune`) or set tune.enabled=false"
        )
    best = load_json(path)["overrides"] or {}
    if best:
        print(f"applying the tuned hyperparameters: {best}")
    return apply_overrides(cfg, best)


class EpochBar:
    """A tqdm bar over epochs, updated by a Solver callback with the epoch's figures."""

    def __init__(self, epochs: int):
        self.bar = tqdm(total=epochs, desc="training", unit="epoch")

    def callback(self, solver, stats: dict) -> bool:
        self.bar.n = solver.epoch  # a resumed run starts where its checkpoint ended
        self.bar.set_postfix(
            {k: f"{stats[k]:.4f}" for k in ("train_loss", "val_loss", "val_acc") if k in stats},
            refresh=True,
        )
        return False  # never asks the Solver to stop

    def close(self) -> None:
        self.bar.close()


def epoch_bar(epochs: int) -> EpochBar | None:
    return EpochBar(epochs) if sys.stderr.isatty() else None


def run(cfg: PipelineConfig) -> dict:
    if cfg.tune.enabled and not in_multirun():
        cfg = tuned(cfg)
    data = load_trial_data(
        project_path(cfg.paths.data), cfg.solver.train_fraction, cfg.normalize.method
    )
    cache = TrialCache(project_path(cfg.paths.trial_cache))
    sweeping = in_multirun()
    # On a terminal a single run shows a live bar; elsewhere (CI, logs, sweeps) the
    # Solver prints one line per epoch.
    bar = None if sweeping else epoch_bar(cfg.solver.epochs)
    result = run_trial(
        cfg,
        data,
        cache,
        verbose=bar is None,
        store_model=cfg.tune.keep_trial_models or not sweeping,
        callbacks=[bar.callback] if bar else [],
    )
    if bar:
        bar.close()
    metrics = {key: result[key] for key in METRIC_FIELDS}
    out = run_dir()
    save_json(out / cfg.paths.metrics / "train.json", metrics)
    if result["status"] == "failed":
        if sweeping:
            return metrics  # the sweep goes on; the traceback is in the trial cache
        raise RuntimeError(f"training failed: {result['error']}")
    if result["model_path"] is not None:
        link_or_copy(result["model_path"], out / cfg.paths.models / "model.npz")
    history = [{k: row[k] for k in HISTORY_FIELDS} for row in result["history"]]
    save_csv(out / cfg.paths.metrics / "train_history.csv", history, HISTORY_FIELDS)
    if not sweeping:  # a sweep's trials skip the picture: matplotlib costs ~1 s a trial
        plots.learning_curves(history, out / cfg.paths.plots / "learning_curves.png")
    print(f"trained: {metrics}")
    return metrics


main = stage_main(run)

if __name__ == "__main__":
    main()
