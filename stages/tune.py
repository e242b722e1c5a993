"""tune: hyperparameter search on the train/val splits.

Until the search lands (issue 4) this stage passes the configured hyperparameters
through unchanged: it writes an empty set of overrides for the train stage."""

from __future__ import annotations

from common import run_dir, stage_main
from npdl.config import PipelineConfig
from npdl.io import save_json


def run(cfg: PipelineConfig) -> dict:
    best = {"search": "disabled", "overrides": {}}
    save_json(run_dir() / cfg.paths.models / "tune" / "best_overrides.json", best)
    print("tuning disabled: training with the configured hyperparameters")
    return best


main = stage_main(run)

if __name__ == "__main__":
    main()
