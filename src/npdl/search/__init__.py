"""Hyperparameter search: spaces, the objective, successive halving, leaderboards.

Plain Python and NumPy; the Hydra sweepers and the ``tune`` stage build on these.
Trials are training runs of :mod:`npdl.run` (and its run store), launched through the
train stage; neither package imports the other.
"""

from . import controller, fidelity, proposers, schedulers
from .asha import AshaResult, asha, asha_budgets
from .halving import (
    BestTrial,
    HalvingResult,
    TrialRecord,
    halving_rungs,
    successive_halving,
    total_epochs,
)
from .hyperband import HyperbandResult, hyperband, hyperband_brackets
from .leaderboard import (
    LEADERBOARD_COLUMNS,
    format_overrides,
    format_table,
    leaderboard_row,
    rank_trials,
    write_leaderboard_csv,
    write_leaderboard_md,
    write_trial_log,
)
from .objective import Objective
from .proposers import GridProposer, Proposer, RandomProposer, TPEProposer
from .schedulers import (
    AsynchronousHalving,
    Hyperband,
    OneBudget,
    Proposals,
    Scheduler,
    SearchResult,
    SuccessiveHalving,
)
from .spaces import (
    Choice,
    Interval,
    describe_space,
    distinct_points,
    grid_points,
    sample_points,
    space_size,
)
from .tpe import TPEModel

__all__ = [
    "LEADERBOARD_COLUMNS",
    "AshaResult",
    "AsynchronousHalving",
    "BestTrial",
    "Choice",
    "GridProposer",
    "HalvingResult",
    "Hyperband",
    "HyperbandResult",
    "Interval",
    "Objective",
    "OneBudget",
    "Proposals",
    "Proposer",
    "RandomProposer",
    "Scheduler",
    "SearchResult",
    "SuccessiveHalving",
    "TPEModel",
    "TPEProposer",
    "TrialRecord",
    "asha",
    "asha_budgets",
    "controller",
    "describe_space",
    "distinct_points",
    "fidelity",
    "format_overrides",
    "format_table",
    "grid_points",
    "halving_rungs",
    "hyperband",
    "hyperband_brackets",
    "leaderboard_row",
    "proposers",
    "rank_trials",
    "sample_points",
    "schedulers",
    "space_size",
    "successive_halving",
    "total_epochs",
    "write_leaderboard_csv",
    "write_leaderboard_md",
    "write_trial_log",
]
