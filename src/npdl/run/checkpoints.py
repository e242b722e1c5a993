"""A run's checkpoints in the run store: when they are written (by time, and at a
budget a search resumes from) and how a run resumes from one."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .build import training_state
from .store import RunStore

log = logging.getLogger("npdl.run")


def resume(run, store: RunStore | None, lineage: str, epochs: int) -> int | None:
    """Load the lineage's checkpoint if it is a prefix of this run."""
    if store is None:
        return None
    state = store.load_checkpoint(lineage)
    if state is None:
        return None
    checkpoint_epoch = int(state["position"][0])
    if checkpoint_epoch > epochs:
        return None  # a longer run of the lineage: start afresh, leave it alone
    run.load_state(state)
    store.log("resume", lineage, epochs, from_epoch=checkpoint_epoch)
    log.info("run %s resumes from epoch %d of %d", lineage, checkpoint_epoch, epochs)
    return checkpoint_epoch


#: The clock that times checkpoints (seconds; a test may replace it).
clock = time.monotonic


def checkpointer(
    generators: dict,
    store: RunStore,
    lineage: str,
    seconds: float,
    budget: int,
    horizon: int,
) -> Callable:
    """A Solver callback writing the lineage's checkpoint at the end of an epoch (before
    the best weights are restored): of the epoch ``budget`` (the run's last, which a
    search's promotion resumes from), and of any epoch ending ``seconds`` or more after
    the previous checkpoint was written (or training began). A killed run loses at most
    ``seconds`` plus an epoch. Nothing is written from the epoch ``horizon`` (the end of
    the schedule) on: the result is stored there and no longer run of the lineage
    resumes from it.

    It is handed the solver and holds only the run's generators: holding the run would
    make a cycle (run -> solver -> callback -> run) that only a garbage collection
    frees, keeping a finished run's memory alive."""
    written = clock()

    def save(solver, stats) -> bool:
        nonlocal written
        if solver.epoch >= horizon:
            return False
        if solver.epoch == budget or clock() - written >= seconds:
            store.store_checkpoint(lineage, training_state(solver, generators))
            written = clock()
        return False

    return save
