"""train: train ``ClassificationNet`` with the ``Solver`` on the train split (val for
model selection) -> ``models/model.npz``, ``metrics/train.json``,
``metrics/train_history.csv``. Under DVC they land in the project; run directly
(``python stages/train.py -m lr=1e-3,1e-4``) in each job's Hydra folder."""

from __future__ import annotations

import time

from common import project_path, run_dir, stage_main
from npdl.config import PipelineConfig
from npdl.io import save_csv, save_json
from npdl.prepared import load_manifest, load_split
from npdl.preprocessing import load_normalization
from npdl.training import train_model

HISTORY_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]


def run(cfg: PipelineConfig) -> dict:
    start = time.perf_counter()
    data = project_path(cfg.paths.data)
    manifest = load_manifest(data / "prepared")
    stats = load_normalization(data / "normalized" / "stats.json")
    model, solver = train_model(
        cfg,
        load_split(data / "prepared", "train", mmap=False),
        load_split(data / "prepared", "val", mmap=False),
        manifest["classes"],
        stats,
    )
    model.metadata["data_hash"] = manifest["content_hash"]
    out = run_dir()
    model.save_model(out / cfg.paths.models / "model.npz")
    best = solver.best_model_stats or {}
    metrics = {
        "val_acc": best.get("val_acc"),
        "val_loss": best.get("val_loss"),
        "best_epoch": solver.best_epoch,
        "epochs_run": solver.epoch,
        "status": solver.status,
        "seconds": round(time.perf_counter() - start, 1),
    }
    save_json(out / cfg.paths.metrics / "train.json", metrics)
    history = [{k: row[k] for k in HISTORY_FIELDS} for row in solver.history]
    save_csv(out / cfg.paths.metrics / "train_history.csv", history, HISTORY_FIELDS)
    print(f"trained: {metrics}")
    return metrics


main = stage_main(run)

if __name__ == "__main__":
    main()
