"""train: ``ClassificationNet`` + ``Solver`` on the train split (val selects the epoch)
-> ``models/model.npz``, ``metrics/train.json``, ``metrics/train_history.csv``: in the
project under DVC, in each job's Hydra folder when run directly (``-m lr=1e-3,1e-4``).
Through the run store (trained before: not again; killed: resumes). With
``tune.enabled`` a single run applies the tune stage's winner first."""

from __future__ import annotations

from dataclasses import dataclass

from common import bound_run_store, in_multirun, project_path, run_dir, run_store, stage_main
from configuration import apply_tune_winner
from npdl import plots
from npdl.config import PipelineConfig, debugging
from npdl.io import save_csv, save_json
from npdl.run import load_run_data, run_training
from npdl.trial import TuneOutputs
from progress import epoch_bar

HISTORY_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]


@dataclass(frozen=True)
class Job:
    """How a sweep's job differs from a single run: this is the one place."""

    sweeping: bool
    apply_tuned: bool  # a single run trains the tune stage's winner
    store_model: bool  # a sweep keeps trial models only with tune.keep_trial_models
    show_progress: bool  # a live bar; matplotlib pictures (~1 s, so not per trial)

    @classmethod
    def of(cls, cfg: PipelineConfig) -> Job:
        if in_multirun():
            return cls(True, False, cfg.tune.keep_trial_models, False)
        return cls(False, cfg.tune.enabled, True, True)


def run(cfg: PipelineConfig) -> dict:
    job, winner = Job.of(cfg), TuneOutputs.of(project_path(cfg.paths.models)).best_overrides
    cfg = apply_tune_winner(cfg, winner) if job.apply_tuned else cfg
    data = load_run_data(
        project_path(cfg.paths.data), cfg.solver.train_fraction, cfg.normalize.method
    )
    bar = epoch_bar(cfg.solver.epochs) if job.show_progress else None
    out, store = run_dir(), run_store(cfg)
    outcome = run_training(
        cfg,
        data,
        store,
        callbacks=[bar.callback] if bar else [],
        verbose=bar is None,
        fail_fast=debugging(),
        store_model=job.store_model,
        model_out=out / cfg.paths.models / "model.npz",
    )
    if bar:
        bar.close()
    metrics = outcome.result.to_json()  # the sweeper reads it back: TrialResult.from_json
    save_json(out / cfg.paths.metrics / "train.json", metrics)
    if outcome.result.status == "failed":
        if job.sweeping:
            return metrics  # the sweep goes on; the traceback is in the store's failures/
        raise RuntimeError(f"training failed: {outcome.result.error}")
    history = [{k: row[k] for k in HISTORY_FIELDS} for row in outcome.history]
    save_csv(out / cfg.paths.metrics / "train_history.csv", history, HISTORY_FIELDS)
    if job.show_progress:
        plots.learning_curves(history, out / cfg.paths.plots / "learning_curves.png")
    if not job.sweeping:  # a sweep trims the store once, at its end
        bound_run_store(cfg, store)
    print(f"trained: {metrics}")
    return metrics


main = stage_main(run)

if __name__ == "__main__":
    main()
