"""Structured configs of npdl's sweeper, registered in Hydra's ConfigStore.

``hydra/sweeper=npdl`` takes a proposer and a scheduler by name; each named search of
:data:`npdl.registry.NAMED_SEARCHES` is ``hydra/sweeper=npdl_<name>`` with its pair
preset. The fields carry the tune stage's names (``tune.n_trials`` is
``hydra.sweeper.n_trials``) and its defaults (:class:`npdl.config.TuneConfig`).
"""

# OmegaConf 2.3 reads ``Optional[...]`` annotations, not ``X | None``.
# ruff: noqa: UP045

from dataclasses import dataclass, make_dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore

from npdl.config import TuneConfig
from npdl.registry import NAMED_SEARCHES

TUNE = TuneConfig()


@dataclass
class SearchConf:
    """A search: ``proposer`` (grid, random, tpe) under ``scheduler`` (none, halving,
    asha, hyperband); see docs/tuning.md for each option."""

    _target_: str = "hydra_plugins.npdl_sweepers.sweepers.NpdlSweeper"
    proposer: str = TUNE.proposer
    scheduler: str = TUNE.scheduler
    seed: int = 0
    #: Trial metric to maximise (val_acc) or minimise (val_loss).
    metric: str = TUNE.metric
    #: Stop the sweep at the first failed trial instead of recording it.
    fail_fast: bool = TUNE.fail_fast
    #: The configured values of the searched keys are a trial (the first), and the
    #: schedulers with rungs always promote them: the winner never scores below them.
    include_defaults: bool = True
    #: Search space in Hydra's override grammar, e.g. {lr: "tag(log, interval(1e-5, 1e-2))"},
    #: added to the sweep overrides of the command line.
    params: Optional[dict[str, str]] = None
    #: Configurations to start (a grid runs all of its own; hyperband sizes its brackets).
    n_trials: int = TUNE.n_trials
    #: Epochs of every trial (scheduler none) or of the top rung; null: the trials'
    #: configured ``epochs_key``.
    epochs: Optional[int] = None
    min_epochs: int = TUNE.min_epochs
    eta: int = TUNE.eta
    #: Trials launched at once: ASHA's workers, an adaptive proposer's batch.
    n_jobs: int = TUNE.n_jobs
    #: Eliminated configurations trained to the top budget afterwards, to count how many
    #: would have beaten the winner (schedulers with rungs).
    audit: int = TUNE.audit
    #: Keep the run store's checkpoints of eliminated trials (by default removed when the
    #: search ends; their results stay): a grown search then resumes a trial it promotes
    #: further instead of training it from scratch.
    keep_checkpoints: bool = TUNE.keep_checkpoints
    #: Random proposals before TPE's model is used (one budget).
    n_startup: int = TUNE.n_startup
    #: Schedulers with rungs: keep configurations whose val accuracy ties within tie_sd
    #: standard errors, and twice as many where consecutive rungs agree below
    #: min_agreement (npdl.search.controller).
    fidelity_control: bool = TUNE.fidelity_control
    tie_sd: float = TUNE.tie_sd
    min_agreement: float = TUNE.min_agreement
    #: Tell the proposer the run store's trials of earlier searches (npdl_sweepers.warm).
    warm_start: bool = TUNE.warm_start
    #: Schedulers with rungs: every rung on the top budget's schedule (shared; promotions
    #: resume) or each rung's schedule ending at its budget (own; a finished run's score).
    rung_schedule: str = TUNE.rung_schedule
    #: Config key of the epoch budget, and of the schedule horizon (set to the top budget
    #: so a promoted trial continues the learning-rate curve it started on).
    epochs_key: str = "solver.epochs"
    horizon_key: Optional[str] = "solver.schedule_epochs"


@dataclass
class NamedSearchConf(SearchConf):
    """A named search; it also takes the older names of its options: ``n_configs``
    (n_trials), ``max_epochs`` (epochs), ``workers`` and ``batch_size`` (n_jobs)."""

    n_configs: Optional[int] = None
    max_epochs: Optional[int] = None
    workers: Optional[int] = None
    batch_size: Optional[int] = None


store = ConfigStore.instance()
store.store(group="hydra/sweeper", name="npdl", node=SearchConf, provider="npdl")
for name, (proposer, scheduler) in NAMED_SEARCHES.items():
    node = make_dataclass(
        f"{name.title()}SearchConf",
        [("proposer", str, proposer), ("scheduler", str, scheduler)],
        bases=(NamedSearchConf,),
    )
    store.store(group="hydra/sweeper", name=f"npdl_{name}", node=node, provider="npdl")
