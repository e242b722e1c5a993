"""Warm starts: a search learns from the run store's trials of earlier searches.

After a search's first trials, :class:`WarmStart` finds the stored results of the same
data, code and recipe with other values of the searched keys
(:func:`npdl.run.earlier.earlier_results`), keeps those inside the search space, adds
them to the search's history by budget and tells them to its proposer (a model-based
proposer learns from them; random and grid ignore them). Trials the search itself ran,
in this run or an earlier run of the same search (rerun, grown or killed), are recorded
in the store under the search's identity and never told: the search stays
repeatable: a search records each point before it launches it, and each trial's
lineage as it finishes. ``warm_start=true`` turns it on (off by default).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def search_identity(description: dict) -> str:
    """A search's identity: a hash of what decides its proposals (never ``n_trials``,
    so that a grown search is the same search)."""
    from npdl.run.store import stable_hash

    return stable_hash(json.loads(json.dumps(description, sort_keys=True, default=str)))[:24]


class WarmStart:
    """The run store side of a search's warm start (see the module docstring)."""

    def __init__(self, store, search_id: str):
        self.store, self.search_id = store, search_id
        self.done = False
        #: Earlier trials told to the proposer.
        self.told = 0

    @classmethod
    def of(cls, config: DictConfig, search_id: str) -> WarmStart:
        """The warm start of a sweep over ``config``'s run store (the trials' store:
        ``paths.run_store`` from the project root, the current folder)."""
        from npdl.run.store import RunStore, store_root

        root = store_root(OmegaConf.select(config, "paths.run_store", default=None), Path.cwd())
        return cls(RunStore(root), search_id)

    def launching(self, points: list[dict]) -> None:
        """Add ``points`` to this search's record in the store before they are launched,
        so that a killed search's rerun knows every trial it started as its own."""
        from npdl.run.earlier import record_search_trials

        record_search_trials(self.store, self.search_id, points=points)

    def record(self, row: dict) -> None:
        """Add the lineage of a finished trial's ``row`` to this search's record."""
        from npdl.run.earlier import record_search_trials

        record_search_trials(self.store, self.search_id, [row.get("lineage")])

    def tell(
        self,
        rows: list[dict],
        space: dict,
        proposer,
        history: dict,
        score: Callable[[dict], float | None],
        value_of: Callable[[str, str], object],
        budgets: Callable[[int], bool],
    ) -> None:
        """Once, after the search's first trials (``rows``): tell ``proposer`` and add to
        ``history`` every earlier result inside ``space`` at a budget ``budgets`` keeps."""
        if self.done:
            return
        self.done = True
        from npdl.run.earlier import earlier_results, point_key, search_record

        own = {row["lineage"] for row in rows if row.get("lineage")}
        template = next(iter(sorted(own)), None)
        if template is None:
            return
        lineages, launched = search_record(self.store, self.search_id)
        for earlier in earlier_results(self.store, template, list(space), own | lineages):
            point = point_in(space, earlier.values, value_of)
            if point is None or not budgets(earlier.epochs) or point_key(point) in launched:
                continue
            value = score(earlier.result.to_json())
            history.setdefault(earlier.epochs, []).append((point, value))
            proposer.tell(point, value, earlier.epochs)
            self.told += 1
        if self.told:
            log.info("warm start: %d trials of earlier searches told to the proposer", self.told)


def point_in(space: dict, values: dict, value_of: Callable[[str, str], object]) -> dict | None:
    """``values`` (typed, from a trial's settings) as a point of ``space``: a choice's
    override text whose value it is, a number within an interval; None when outside."""
    import npdl.search as search

    point = {}
    for key, dimension in space.items():
        value = values[key]
        if isinstance(dimension, search.Choice):
            texts = [text for text in dimension.values if value_of(key, text) == value]
            if not texts:
                return None
            point[key] = texts[0]
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            if not dimension.low <= value <= dimension.high:
                return None
            point[key] = int(value) if dimension.integer else float(value)
    return point
