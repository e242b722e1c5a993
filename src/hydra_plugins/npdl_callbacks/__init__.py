"""Hydra callbacks of npdl: :class:`BoundRunStore` trims the run store after a sweep.

``conf/config.yaml`` registers it for every command-line multirun
(``python stages/train.py -m ...``, with any sweeper); the tune stage passes it to its
own sweep (``stages/launching.py``), whose config is ``params.yaml`` (DVC leaves Hydra's
section out of it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

#: The override that adds it to a sweep composed from ``params.yaml``.
OVERRIDE = "++hydra.callbacks.bound_run_store._target_=hydra_plugins.npdl_callbacks.BoundRunStore"


class BoundRunStore(Callback):
    """After a sweep, trim the run store to ``paths.run_store_max_gb`` (null: nothing to
    do) by the policy of ``npdl cache gc --max-size N --keep-referenced``
    (:func:`npdl.run.gc.bound_store`): keeping the sweep's own trials (its jobs'
    ``metrics/train.json``) and what the workspace's tune leaderboard
    (:class:`npdl.trial.TuneOutputs`) and ``models/model.npz`` came from. Paths are
    taken from the current folder, which is the project root for the stages."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        limit = OmegaConf.select(config, "paths.run_store_max_gb", default=None)
        if limit is None:
            return
        from npdl.run.gc import bound_store, result_entries
        from npdl.run.store import RunStore, store_root

        root = store_root(OmegaConf.select(config, "paths.run_store", default=None), Path.cwd())
        if not (root / "trials").is_dir():
            return
        metrics = OmegaConf.select(config, "paths.metrics", default="metrics")
        jobs = Path(config.hydra.sweep.dir).glob(f"*/{metrics}/train.json")
        models = Path.cwd() / OmegaConf.select(config, "paths.models", default="models")
        bound_store(RunStore(root), float(limit), [models], keep=result_entries(jobs))
