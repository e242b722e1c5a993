"""sanity: before any tuning, the course's way of starting, in seconds ->
``metrics/sanity.json``: a float64 gradient check of every layer of the configured
network, its loss at initialisation (about ln C), and overfitting 1, 10, then 100 train
images with the configured optimizer and learning rate (:mod:`npdl.sanity`). A failed
check stops the pipeline here with one line naming what failed (``NPDL_DEBUG=1``: every
figure and the traceback); the report is written either way. ``sanity.enabled=false``
skips the checks."""

from __future__ import annotations

import json
import time

from common import project_path, run_dir, stage_main
from npdl.config import PipelineConfig, debugging
from npdl.io import save_json
from npdl.run.sanity import run_sanity


def run(cfg: PipelineConfig) -> dict:
    started = time.perf_counter()
    report = run_sanity(cfg, project_path(cfg.paths.data))
    metrics = report.to_json()  # no times in it: the tune stage depends on this file
    save_json(run_dir() / cfg.paths.metrics / "sanity.json", metrics)
    if debugging():
        print(json.dumps(metrics, indent=2))
    if report.passed:
        print(f"{report}\n({time.perf_counter() - started:.1f} s)")
    report.raise_for_failure()
    return metrics


main = stage_main(run)

if __name__ == "__main__":
    main()
