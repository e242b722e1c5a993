"""The search's registry: every proposer and scheduler by name, and the named searches.

A search is a **proposer** (where configurations come from: ``grid``, ``random``,
``tpe``) under a **scheduler** (what budget each trial gets and which go on: ``none``,
``halving``, ``asha``, ``hyperband``); any proposer runs under any scheduler. Each
entry names the class by ``module:Class`` and is imported on first use, so that this
module (which :mod:`npdl.config` reads to check ``tune.proposer`` and
``tune.scheduler``) loads nothing; a class object may stand in for the path (a
proposer defined in a test or a notebook). Adding a proposer or a scheduler is its
module and one line here.

``tune.sampler`` (and ``hydra/sweeper=npdl_<name>``) names a pair of
:data:`NAMED_SEARCHES`: ``bohb`` is Hyperband with the TPE proposer.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple


class Scheduler(NamedTuple):
    """A scheduler's entry: its class, and whether it compares trials at growing
    budgets (rungs), which an audit of its eliminations needs."""

    target: Any
    multi_fidelity: bool


PROPOSERS: dict[str, Any] = {
    "grid": "npdl.search.proposers:GridProposer",
    "random": "npdl.search.proposers:RandomProposer",
    "tpe": "npdl.search.proposers:TPEProposer",
}
SCHEDULERS: dict[str, Scheduler] = {
    "none": Scheduler("npdl.search.schedulers:OneBudget", multi_fidelity=False),
    "halving": Scheduler("npdl.search.schedulers:SuccessiveHalving", multi_fidelity=True),
    "asha": Scheduler("npdl.search.schedulers:AsynchronousHalving", multi_fidelity=True),
    "hyperband": Scheduler("npdl.search.schedulers:Hyperband", multi_fidelity=True),
}
#: ``tune.sampler`` names: (proposer, scheduler).
NAMED_SEARCHES: dict[str, tuple[str, str]] = {
    "grid": ("grid", "none"),
    "random": ("random", "none"),
    "halving": ("random", "halving"),
    "asha": ("random", "asha"),
    "hyperband": ("random", "hyperband"),
    "tpe": ("tpe", "none"),
    "bohb": ("tpe", "hyperband"),
}


def search_pair(sampler: str | None, proposer: str, scheduler: str) -> tuple[str, str]:
    """The (proposer, scheduler) a search runs: the pair ``sampler`` names when it is
    set (it takes precedence), else ``proposer`` and ``scheduler``."""
    if sampler is None:
        return proposer, scheduler
    if sampler not in NAMED_SEARCHES:
        raise ValueError(
            f"sampler={sampler!r} is not allowed: expected null or one of "
            f"{', '.join(NAMED_SEARCHES)}"
        )
    return NAMED_SEARCHES[sampler]


def search_name(proposer: str, scheduler: str) -> str:
    """The name of a search in reports: the named pair's name (``bohb``), else
    ``proposer+scheduler`` (``tpe+asha``)."""
    for name, pair in NAMED_SEARCHES.items():
        if pair == (proposer, scheduler):
            return name
    return f"{proposer}+{scheduler}"


def is_multi_fidelity(scheduler: str) -> bool:
    """Whether the scheduler ``scheduler`` compares trials at growing budgets."""
    return SCHEDULERS[scheduler].multi_fidelity


def proposer_class(name: str) -> type:
    """The proposer class registered as ``name``."""
    return _load("proposer", name, PROPOSERS.get(name), PROPOSERS)


def scheduler_class(name: str) -> type:
    """The scheduler class registered as ``name``."""
    entry = SCHEDULERS.get(name)
    return _load("scheduler", name, entry.target if entry else None, SCHEDULERS)


def _load(kind: str, name: str, target: Any, known: dict) -> type:
    if target is None:
        raise ValueError(f"{kind}={name!r} is not allowed: expected one of {', '.join(known)}")
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
