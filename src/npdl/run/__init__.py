"""One training run: configuration -> objects -> a trained model, through the run store.

- :mod:`.build`: the configuration dataclasses turned into a model, optimizer,
  loaders and ``Solver`` (``build_training``), seeded from one key;
- :mod:`.training`: ``run_training`` trains a configuration at an epoch budget, with
  per-epoch checkpoints and resume, or takes its result from the store; its
  ``TrainingOutcome`` carries the trial's :class:`~npdl.trial.TrialResult`;
- :mod:`.store`: the run store on disk (finished runs, checkpoints, events), verified
  on every read.

A search's trials reach this package through the train stage (the sweepers launch
it); neither this package nor :mod:`npdl.search` imports the other.
"""

from .build import TrainingRun, build_training, training_config
from .store import RunStore, stable_hash
from .training import (
    RunData,
    RunOptions,
    TrainingOutcome,
    code_hash,
    lineage_of,
    load_run_data,
    run_training,
)

__all__ = [
    "RunData",
    "RunOptions",
    "RunStore",
    "TrainingOutcome",
    "TrainingRun",
    "build_training",
    "code_hash",
    "lineage_of",
    "load_run_data",
    "run_training",
    "stable_hash",
    "training_config",
]
