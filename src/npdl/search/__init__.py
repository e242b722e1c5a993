"""Hyperparameter search: spaces, the objective, successive halving, leaderboards.

Plain Python and NumPy; the Hydra sweepers and the ``tune`` stage build on these.
Trials are training runs of :mod:`npdl.run` (and its run store), launched through the
train stage; neither package imports the other.
"""

from .halving import (
    BestTrial,
    HalvingResult,
    TrialRecord,
    halving_rungs,
    successive_halving,
    total_epochs,
)
from .leaderboard import (
    LEADERBOARD_COLUMNS,
    format_overrides,
    format_table,
    rank_trials,
    write_leaderboard_csv,
    write_leaderboard_md,
)
from .objective import Objective
from .spaces import Choice, Interval, describe_space, grid_points, sample_points

__all__ = [
    "LEADERBOARD_COLUMNS",
    "BestTrial",
    "Choice",
    "HalvingResult",
    "Interval",
    "Objective",
    "TrialRecord",
    "describe_space",
    "format_overrides",
    "format_table",
    "grid_points",
    "halving_rungs",
    "rank_trials",
    "sample_points",
    "successive_halving",
    "total_epochs",
    "write_leaderboard_csv",
    "write_leaderboard_md",
]
