"""Structured configs of the sweepers, registered in Hydra's ConfigStore."""

# OmegaConf 2.3 reads ``Optional[...]`` annotations, not ``X | None``.
# ruff: noqa: UP045

from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore


@dataclass
class GridSweeperConf:
    """Every combination of the sweep's choices, with a leaderboard at the end."""

    _target_: str = "hydra_plugins.npdl_sweepers.sweepers.GridSweeper"
    seed: int = 0
    metric: str = "val_acc"
    fail_fast: bool = False
    params: Optional[dict[str, str]] = None


@dataclass
class RandomSweeperConf:
    """``n_trials`` points drawn with ``seed`` from the sweep's interval/choice space."""

    _target_: str = "hydra_plugins.npdl_sweepers.sweepers.RandomSweeper"
    n_trials: int = 10
    seed: int = 0
    metric: str = "val_acc"
    fail_fast: bool = False
    #: Search space in Hydra's override grammar, e.g. {lr: "tag(log, interval(1e-5, 1e-2))"}
    params: Optional[dict[str, str]] = None


@dataclass
class HalvingSweeperConf:
    """Successive halving: ``n_configs`` random points at ``min_epochs``; the best
    1/``eta`` go on to ``eta`` times the epochs (resumed, not retrained), up to
    ``max_epochs``."""

    _target_: str = "hydra_plugins.npdl_sweepers.sweepers.HalvingSweeper"
    n_configs: int = 27
    eta: int = 3
    min_epochs: int = 1
    max_epochs: int = 27
    seed: int = 0
    metric: str = "val_acc"
    fail_fast: bool = False
    #: Config key of the epoch budget, and of the schedule horizon (set to max_epochs
    #: so a promoted trial continues the learning-rate curve it started on).
    epochs_key: str = "solver.epochs"
    horizon_key: Optional[str] = "solver.schedule_epochs"
    params: Optional[dict[str, str]] = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="npdl_grid", node=GridSweeperConf, provider="npdl"
)
ConfigStore.instance().store(
    group="hydra/sweeper", name="npdl_random", node=RandomSweeperConf, provider="npdl"
)
ConfigStore.instance().store(
    group="hydra/sweeper", name="npdl_halving", node=HalvingSweeperConf, provider="npdl"
)
