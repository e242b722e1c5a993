"""train: ``ClassificationNet`` + ``Solver`` -> ``models/model.npz``, ``metrics/``: under
DVC, or in each job's Hydra folder (``-m lr=1e-3``); through the run store (trained
before: not again; killed: resumes). A single run applies tune's winner and, with
``solver.refit``, trains on train + val keeping its last epoch; a sweep's job trains on
train, val selects the epoch. Either says its diagnosis. The test split is never read."""

from __future__ import annotations

from dataclasses import dataclass, replace

from common import bound_run_store, in_multirun, project_path, run_dir, run_store, stage_main
from configuration import apply_tune_winner
from npdl import plots
from npdl.config import PipelineConfig, debugging
from npdl.io import save_csv, save_json
from npdl.run import load_run_data, run_training
from npdl.run.summary import HISTORY_FIELDS, history_rows, train_metrics, training_diagnosis
from npdl.trial import TuneOutputs
from progress import epoch_bar


@dataclass(frozen=True)
class Job:
    """How a sweep's job differs from a single run: this is the one place."""

    sweeping: bool
    apply_tuned: bool  # a single run trains the tune stage's winner
    store_model: bool  # a sweep keeps trial models only with tune.keep_trial_models
    show_progress: bool  # a live bar; matplotlib pictures (~1 s, so not per trial)
    refit: bool  # train on train + val, keep the last epoch (single runs only)

    @classmethod
    def of(cls, cfg: PipelineConfig) -> Job:
        if in_multirun():  # a sweep compares its jobs on val: none may train on it
            return cls(True, False, cfg.tune.keep_trial_models, False, False)
        return cls(False, cfg.tune.enabled, True, True, cfg.solver.refit)


def run(cfg: PipelineConfig) -> dict:
    job, winner = Job.of(cfg), TuneOutputs.of(project_path(cfg.paths.models)).best_overrides
    cfg = apply_tune_winner(cfg, winner) if job.apply_tuned else cfg
    cfg = replace(cfg, solver=replace(cfg.solver, refit=job.refit))
    folder, fraction = project_path(cfg.paths.data), cfg.solver.train_fraction
    data = load_run_data(folder, fraction, cfg.normalize.method, with_val=job.refit)
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
    diagnosis = training_diagnosis(outcome, len(data.classes))
    metrics = train_metrics(cfg, outcome, diagnosis, None if job.sweeping else len(data.train[1]))
    save_json(out / cfg.paths.metrics / "train.json", metrics)
    if outcome.result.status == "failed":
        if job.sweeping:
            return metrics  # the sweep goes on; the traceback is in the store's failures/
        raise RuntimeError(f"training failed: {outcome.result.error}")
    history = history_rows(outcome.history)
    save_csv(out / cfg.paths.metrics / "train_history.csv", history, HISTORY_FIELDS)
    if job.show_progress:
        plots.learning_curves(history, out / cfg.paths.plots / "learning_curves.png", diagnosis)
    if not job.sweeping:  # a sweep trims the store once, at its end
        bound_run_store(cfg, store)
    said = bar is None and not outcome.result.cache_hit  # the verbose Solver's last line
    print(f"trained: {metrics}" + ("" if said else f"\ndiagnosis: {diagnosis}"))
    return metrics


main = stage_main(run)

if __name__ == "__main__":
    main()
