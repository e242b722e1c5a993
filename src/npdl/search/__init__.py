"""Hyperparameter search: spaces, successive halving, leaderboards, the trial cache.

Plain Python and NumPy; the Hydra sweepers and the ``tune`` stage build on these.
"""

from .cache import TrialCache, stable_hash
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
from .spaces import Choice, Interval, describe_space, grid_points, sample_points
from .trials import TrialData, lineage_of, load_trial_data, run_trial

__all__ = [
    "LEADERBOARD_COLUMNS",
    "BestTrial",
    "Choice",
    "HalvingResult",
    "Interval",
    "TrialCache",
    "TrialData",
    "TrialRecord",
    "describe_space",
    "format_overrides",
    "format_table",
    "grid_points",
    "halving_rungs",
    "lineage_of",
    "load_trial_data",
    "rank_trials",
    "run_trial",
    "sample_points",
    "stable_hash",
    "successive_halving",
    "total_epochs",
    "write_leaderboard_csv",
    "write_leaderboard_md",
]
