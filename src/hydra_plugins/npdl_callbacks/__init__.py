"""Hydra callbacks of npdl: :class:`BoundRunStore` trims the run store after a sweep.

``conf/config.yaml`` registers it for every command-line multirun
(``python stages/train.py -m ...``, with any sweeper); the tune stage passes it to its
own sweep (``stages/launching.py``), whose config is ``params.yaml`` (DVC leaves Hydra's
section out of it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

#: The override that adds it to a sweep composed from ``params.yaml``.
OVERRIDE = "++hydra.callbacks.bound_run_store._target_=hydra_plugins.npdl_callbacks.BoundRunStore"


class BoundRunStore(Callback):
    """After a sweep, trim the run store to ``paths.run_store_max_gb`` (null: nothing to
    do) by the policy of ``npdl cache gc --max-size N --keep-referenced``: keeping the
    sweep's own trials (its jobs' ``metrics/train.json``) and what the workspace's
    ``models/tune/leaderboard.csv`` and ``models/model.npz`` came from. Paths are taken
    from the current folder, which is the project root for the stages."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        limit = OmegaConf.select(config, "paths.run_store_max_gb", default=None)
        if limit is None:
            return
        from npdl.run.gc import enforce_limit
        from npdl.run.store import RunStore, store_root

        root = store_root(OmegaConf.select(config, "paths.run_store", default=None), Path.cwd())
        if not (root / "trials").is_dir():
            return
        metrics = OmegaConf.select(config, "paths.metrics", default="metrics")
        own = set()
        for path in Path(config.hydra.sweep.dir).glob(f"*/{metrics}/train.json"):
            try:
                job = json.loads(path.read_text())
                own.add((job["lineage"], int(job["budget"])))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a job of another version, or one that failed early
        models = Path.cwd() / OmegaConf.select(config, "paths.models", default="models")
        report = enforce_limit(RunStore(root), float(limit), [models], keep=own)
        if report is not None and report.size_after > limit * 1e9:
            log.warning(
                "the run store %s stays over paths.run_store_max_gb=%s: what is left is "
                "referenced or in use",
                root,
                limit,
            )
