"""The tune stage's configuration: the search (a proposer under a scheduler, or a named
pair), its space, budgets and launcher, with each value's constraints beside it.

Part of the pipeline's schema (:mod:`npdl.config` re-exports every name here).
"""

# OmegaConf 2.3 reads ``Optional[...]`` annotations, not ``X | None``.
# ruff: noqa: UP045

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from .constraints import Constraints, Interval, OneOf, Positive, Rule, Satisfies
from .registry import NAMED_SEARCHES, PROPOSERS, SCHEDULERS, is_multi_fidelity, search_pair

#: ``tune.launcher`` choices: Hydra's basic launcher, joblib, and ``conf/hydra/launcher/``.
LAUNCHERS = ("basic", "joblib", "ray_cluster", "ray_local", "slurm", "local_submitit")
#: ``tune.sampler`` choices: the named (proposer, scheduler) pairs.
SAMPLERS = tuple(NAMED_SEARCHES)


def _pins_are_keys_of_the_space(tune: TuneConfig) -> None:
    for key in tune.pin:
        OneOf(tune.space, sort=True).check("tune.pin", key)


def _something_is_searched(tune: TuneConfig) -> str | None:
    if not tune.enabled or searched_space(tune):
        return None
    return (
        "at least one key to search (and not pinned), "
        "e.g. {optimizer.lr: 'tag(log, interval(1e-5, 1e-2))'}"
    )


def _min_epochs_within_epochs(tune: TuneConfig) -> str | None:
    within = 0 < tune.min_epochs <= tune.epochs
    return None if within else f"between 1 and tune.epochs ({tune.epochs})"


def _launcher_settings_need_a_launcher(tune: TuneConfig) -> str | None:
    if not tune.launcher_settings or tune.launcher != "basic" or tune.n_jobs > 1:
        return None
    return "null for tune.launcher=basic (it takes no settings; choose another launcher)"


def _audit_needs_rungs(tune: TuneConfig) -> str | None:
    _, scheduler = search_of(tune)
    if tune.audit == 0 or is_multi_fidelity(scheduler):
        return None
    rungs = ", ".join(name for name in SCHEDULERS if is_multi_fidelity(name))
    named = f"tune.sampler={tune.sampler}" if tune.sampler else f"tune.scheduler={scheduler}"
    return f"0 for {named} (an audit checks the schedulers with rungs: {rungs})"


def _sampler_agrees_with_the_pair(tune: TuneConfig) -> str | None:
    """A named pair may not contradict a proposer or scheduler that was set (else one of
    them would be silently ignored)."""
    if tune.sampler is None:
        return None
    pair = search_of(tune)
    if (tune.proposer, tune.scheduler) in ((TuneConfig.proposer, TuneConfig.scheduler), pair):
        return None
    return (
        f"null when tune.proposer and tune.scheduler are set (tune.proposer={tune.proposer} "
        f"tune.scheduler={tune.scheduler}; {tune.sampler} is tune.proposer={pair[0]} "
        f"tune.scheduler={pair[1]})"
    )


@dataclass
class TuneConfig:
    """tune: hyperparameter search on train/val before the final training.

    ``space`` maps config keys to Hydra sweep syntax (``choice(...)``, ``a,b``,
    ``interval(a,b)``, ``tag(log, interval(a,b))``). Use the real keys
    (``optimizer.lr``, ``model.reg``), not the top-level shortcuts ``lr``/``reg``.
    ``pin`` lists keys of the space to leave out: searched no more, they keep the
    configured value while the rest is tuned.
    """

    enabled: bool = True
    #: The search: a proposer (``PROPOSERS``: where configurations come from) under a
    #: scheduler (``SCHEDULERS``: budgets and promotions). ``sampler``, when set, names
    #: a pair instead (``NAMED_SEARCHES``, e.g. bohb: tpe under hyperband).
    proposer: str = "tpe"
    scheduler: str = "hyperband"
    sampler: Optional[str] = None
    space: dict[str, str] = field(
        default_factory=lambda: {
            "optimizer.lr": "tag(log, interval(3e-4, 3e-3))",
            "optimizer.weight_decay": "tag(log, interval(0.005, 0.1))",
            "model.dropout": "interval(0.0, 0.3)",
        }
    )
    pin: list[str] = field(default_factory=list)
    n_trials: int = 12
    seed: int = 0
    epochs: int = 8
    min_epochs: int = 2
    eta: int = 2
    train_fraction: float = 0.25
    metric: str = "val_acc"
    #: Schedulers with rungs: eliminated configurations trained to ``epochs`` after
    #: the search, reporting how many beat the winner (``metrics/tune.json``).
    audit: int = 0
    #: Schedulers with rungs: keep the checkpoints of eliminated trials in the run store.
    keep_checkpoints: bool = False
    #: TPE under scheduler none: random proposals before its model is used.
    n_startup: int = 8
    #: Schedulers with rungs: the fidelity controller (npdl.search.controller) keeps the
    #: configurations whose val accuracy ties within ``tie_sd`` standard errors of the
    #: last one promoted, and twice as many where a rung's ranking agrees with the rung
    #: before below ``min_agreement`` (Spearman).
    fidelity_control: bool = False
    tie_sd: float = 1.0
    min_agreement: float = 0.5
    #: Tell the proposer the run store's trials of earlier searches on the same data,
    #: code and recipe whose values lie in the space (a model-based proposer learns from
    #: them; a search's own earlier runs are never told). Off by default: a search killed
    #: between a trial's storing and its recording would tell that trial on its rerun.
    warm_start: bool = False
    #: Schedulers with rungs: ``shared`` (every rung on the top budget's learning-rate
    #: schedule; a promotion resumes) or ``own`` (each rung's schedule ends at its budget,
    #: so its score is a finished run's; a promotion trains afresh).
    rung_schedule: str = "shared"
    n_jobs: int = 1
    #: Hydra launcher of the trials (``LAUNCHERS``); ``launcher_settings`` (dotted or
    #: nested keys; null: the launcher's own) go to ``hydra.launcher``. ``basic`` with
    #: ``n_jobs`` > 1 is joblib.
    launcher: str = "basic"
    launcher_settings: Optional[dict[str, Any]] = None
    fail_fast: bool = False
    keep_trial_models: bool = True
    #: Job folders of this many searches are kept (the newest); older ones are removed.
    keep_sweeps: int = 5

    constraints: ClassVar[Constraints] = {
        "proposer": OneOf(PROPOSERS),
        "scheduler": OneOf(SCHEDULERS),
        "sampler": (
            Satisfies(
                lambda name: name is None or name in SAMPLERS,
                f"one of {', '.join(SAMPLERS)}, or null for tune.proposer and tune.scheduler",
            ),
            Rule(_sampler_agrees_with_the_pair),
        ),
        "pin": Rule(_pins_are_keys_of_the_space),
        "space": Rule(_something_is_searched),
        "n_trials": Positive(expected="a positive number of trials"),
        "epochs": Positive(expected="a positive number of epochs"),
        "min_epochs": Rule(_min_epochs_within_epochs),
        "eta": Interval(2, None, closed="left", what="a reduction factor"),
        "train_fraction": Interval(0, 1, closed="right", what="a fraction"),
        "metric": OneOf(("val_acc", "val_loss")),
        "n_jobs": Interval(1, None, closed="left"),
        "n_startup": Interval(0, None, closed="left"),
        "tie_sd": Interval(0, None, closed="left"),
        "min_agreement": Interval(-1, 1, closed="both"),
        "rung_schedule": OneOf(("shared", "own")),
        "launcher": OneOf(LAUNCHERS),
        "launcher_settings": Rule(_launcher_settings_need_a_launcher),
        "keep_sweeps": Interval(1, None, closed="left", expected=">= 1 (this search's)"),
        "audit": (Interval(0, None, closed="left"), Rule(_audit_needs_rungs)),
    }


def searched_space(tune: TuneConfig) -> dict[str, str]:
    """``tune.space`` without the keys of ``tune.pin``."""
    return {key: value for key, value in tune.space.items() if key not in tune.pin}


def search_of(tune: TuneConfig) -> tuple[str, str]:
    """The (proposer, scheduler) the tune stage runs (``tune.sampler``'s pair when set)."""
    return search_pair(tune.sampler, tune.proposer, tune.scheduler)
