"""Structured configs of the sweepers, registered in Hydra's ConfigStore."""

# OmegaConf 2.3 reads ``Optional[...]`` annotations, not ``X | None``.
# ruff: noqa: UP045

from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore


@dataclass
class SearchConf:
    """What every npdl search takes."""

    seed: int = 0
    #: Trial metric to maximise (val_acc) or minimise (val_loss).
    metric: str = "val_acc"
    #: Stop the sweep at the first failed trial instead of recording it.
    fail_fast: bool = False
    #: Search space in Hydra's override grammar, e.g. {lr: "tag(log, interval(1e-5, 1e-2))"},
    #: added to the sweep overrides of the command line.
    params: Optional[dict[str, str]] = None


@dataclass
class GridSweeperConf(SearchConf):
    """Every combination of the sweep's choices, with a leaderboard at the end."""

    _target_: str = "hydra_plugins.npdl_sweepers.sweepers.GridSweeper"


@dataclass
class RandomSweeperConf(SearchConf):
    """``n_trials`` points drawn with ``seed`` from the sweep's interval/choice space."""

    _target_: str = "hydra_plugins.npdl_sweepers.sweepers.RandomSweeper"
    n_trials: int = 10


@dataclass
class HalvingSweeperConf(SearchConf):
    """Successive halving: ``n_configs`` random points at ``min_epochs``; the best
    1/``eta`` go on to ``eta`` times the epochs (resumed, not retrained), up to
    ``max_epochs``."""

    _target_: str = "hydra_plugins.npdl_sweepers.sweepers.HalvingSweeper"
    n_configs: int = 27
    eta: int = 3
    min_epochs: int = 1
    max_epochs: int = 27
    #: Config key of the epoch budget, and of the schedule horizon (set to max_epochs
    #: so a promoted trial continues the learning-rate curve it started on).
    epochs_key: str = "solver.epochs"
    horizon_key: Optional[str] = "solver.schedule_epochs"


for name, node in [
    ("npdl_grid", GridSweeperConf),
    ("npdl_random", RandomSweeperConf),
    ("npdl_halving", HalvingSweeperConf),
]:
    ConfigStore.instance().store(group="hydra/sweeper", name=name, node=node, provider="npdl")
