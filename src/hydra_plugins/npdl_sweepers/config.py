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
    #: The configured values of the searched keys are a trial (the first), and halving
    #: and hyperband always promote them: the winner never scores below them.
    include_defaults: bool = True
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
class RungsConf(SearchConf):
    """What every multi-fidelity search takes: budgets from ``min_epochs`` to
    ``max_epochs``, growing by ``eta``."""

    eta: int = 3
    min_epochs: int = 1
    max_epochs: int = 27
    #: Config key of the epoch budget, and of the schedule horizon (set to max_epochs
    #: so a promoted trial continues the learning-rate curve it started on).
    epochs_key: str = "solver.epochs"
    horizon_key: Optional[str] = "solver.schedule_epochs"
    #: Eliminated configurations trained to max_epochs afterwards, to count how many
    #: would have beaten the winner (a check of the early rungs' judgement).
    audit: int = 0
    #: Keep the run store's checkpoints of eliminated trials (by default removed when the
    #: search ends; their results stay): a grown search then resumes a trial it promotes
    #: further instead of training it from scratch.
    keep_checkpoints: bool = False


@dataclass
class HalvingSweeperConf(RungsConf):
    """Successive halving: ``n_configs`` random points at ``min_epochs``; the best
    1/``eta`` go on to ``eta`` times the epochs (resumed, not retrained), up to
    ``max_epochs``."""

    _target_: str = "hydra_plugins.npdl_sweepers.rungs.HalvingSweeper"
    n_configs: int = 27


@dataclass
class AshaSweeperConf(HalvingSweeperConf):
    """Asynchronous successive halving: ``workers`` jobs per batch (the launcher's
    parallel jobs), promoting a trial as soon as it ranks in the top 1/eta so far."""

    _target_: str = "hydra_plugins.npdl_sweepers.rungs.AshaSweeper"
    workers: int = 1


@dataclass
class HyperbandSweeperConf(RungsConf):
    """Hyperband: brackets of successive halving from ``min_epochs`` (most aggressive)
    to ``max_epochs`` (no halving), each bracket's promotions resumed."""

    _target_: str = "hydra_plugins.npdl_sweepers.rungs.HyperbandSweeper"


@dataclass
class BOHBSweeperConf(HyperbandSweeperConf):
    """Hyperband with new configurations from a TPE model of the largest budget that
    has enough results (BOHB)."""

    _target_: str = "hydra_plugins.npdl_sweepers.rungs.BOHBSweeper"


@dataclass
class TPESweeperConf(SearchConf):
    """``n_trials`` proposals of Optuna's TPE sampler, ``batch_size`` at a time (the
    launcher's parallel jobs), after ``n_startup`` random ones."""

    _target_: str = "hydra_plugins.npdl_sweepers.tpe.TPESweeper"
    n_trials: int = 20
    batch_size: int = 1
    n_startup: int = 8


for name, node in [
    ("npdl_grid", GridSweeperConf),
    ("npdl_random", RandomSweeperConf),
    ("npdl_halving", HalvingSweeperConf),
    ("npdl_asha", AshaSweeperConf),
    ("npdl_hyperband", HyperbandSweeperConf),
    ("npdl_bohb", BOHBSweeperConf),
    ("npdl_tpe", TPESweeperConf),
]:
    ConfigStore.instance().store(group="hydra/sweeper", name=name, node=node, provider="npdl")
