"""What a new search may learn from: the run store's earlier trials of other searches.

A trial's lineage identity (``lineage.json``: its training settings, data hash, npdl
version and code hash) says what it was. :func:`earlier_results` finds every stored
result whose identity equals a template's in everything but the searched keys: the
same data, code and recipe with other hyperparameter values, trained by any earlier
search or single run. A search tells its proposer those (a warm start).

A search must not learn from its own earlier runs (a rerun, a grown or a killed-and-
rerun search would then propose differently from an uninterrupted one), so each search
records under its identity the points it launches, before it launches them, and the
lineages they ran (:func:`record_search_trials`); a warm start leaves both out. The
points are recorded first so that a search killed between a trial's storing its result
and the search's recording that trial still knows the trial as its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io import load_json, save_json
from ..trial import RESULT_FIELDS, TrialResult
from .store import LINEAGE_FILE, RunStore

#: The store's folder of searches' records: ``searches/<search id>.json``.
SEARCHES = "searches"
_ENTRY = re.compile(r"epochs-(\d+)")
_MISSING = object()


@dataclass(frozen=True)
class EarlierResult:
    """One stored result: the searched keys' ``values``, its budget and its result."""

    values: dict[str, Any]
    epochs: int
    result: TrialResult
    lineage: str


def search_record(store: RunStore, search_id: str) -> tuple[set[str], set[str]]:
    """The lineages and the points (:func:`point_key` texts) the search ``search_id``
    has run or launched so far (empty: none recorded)."""
    try:
        record = load_json(store.root / SEARCHES / f"{search_id}.json")
        return set(record["lineages"]), set(record.get("points", []))
    except (OSError, ValueError, KeyError, TypeError):
        return set(), set()


def record_search_trials(
    store: RunStore, search_id: str, lineages=(), points: list[dict] = ()
) -> None:
    """Add ``lineages`` and ``points`` (search points: key -> value) to the search's
    record (written atomically)."""
    known, launched = search_record(store, search_id)
    added = {lineage for lineage in lineages if lineage} - known
    new_points = {point_key(point) for point in points} - launched
    if added or new_points:
        path = store.root / SEARCHES / f"{search_id}.json"
        save_json(
            path, {"lineages": sorted(known | added), "points": sorted(launched | new_points)}
        )


def point_key(point: dict) -> str:
    """A search point as one text (its overrides, keys sorted): the same for the point a
    search launched and for that trial's values read back from its lineage."""
    from ..overrides import point_text

    return " ".join(f"{key}={point_text(point[key])}" for key in sorted(point))


def earlier_results(
    store: RunStore, template: str, keys: list[str], exclude: set[str] = frozenset()
) -> list[EarlierResult]:
    """Stored results whose lineage identity equals ``template``'s but for ``keys``.

    Parameters
    ----------
    store : RunStore
    template : str
        A lineage of the search (its configured values' trial, say).
    keys : list of str
        The searched keys, dotted into the training settings (``optimizer.lr``).
    exclude : set of str
        Lineages to leave out (the search's own).

    Returns
    -------
    list of EarlierResult
        Every readable, non-failed result, in a stable order (lineage, then epochs);
        empty when ``template`` is not described or a key is not a training setting.
    """
    base = store.description(template)
    if base is None or any(_get(base.get("training", {}), key) is _MISSING for key in keys):
        return []
    found = []
    for folder in sorted((store.root / "trials").iterdir()):
        lineage = folder.name
        if lineage in exclude or not (folder / LINEAGE_FILE).is_file():
            continue
        identity = store.description(lineage)
        if identity is None or not _same_but(identity, base, keys):
            continue
        values = {key: _get(identity["training"], key) for key in keys}
        found += [
            EarlierResult(values, epochs, result, lineage)
            for epochs, result in _stored_results(folder)
        ]
    return found


def _same_but(identity: dict, base: dict, keys: list[str]) -> bool:
    if any(identity.get(part) != base.get(part) for part in ("data", "npdl", "code")):
        return False
    return _without(identity.get("training", {}), keys) == _without(base["training"], keys)


def _without(settings: dict, keys: list[str]) -> dict:
    """``settings`` with each dotted key removed (copied, nested dicts included)."""
    copy = {
        group: dict(values) if isinstance(values, dict) else values
        for group, values in settings.items()
    }
    for key in keys:
        group, _, name = key.partition(".")
        if isinstance(copy.get(group), dict):
            copy[group].pop(name, None)
    return copy


def _get(settings: dict, key: str) -> Any:
    group, _, name = key.partition(".")
    values = settings.get(group)
    if not isinstance(values, dict) or name not in values:
        return _MISSING
    return values[name]


def _stored_results(folder: Path) -> list[tuple[int, TrialResult]]:
    """``(epochs, result)`` of a lineage's readable results (read only, unverified: a
    hint for a proposer, never served as a trial's result)."""
    results = []
    for entry in sorted(folder.glob("epochs-*")):
        match = _ENTRY.fullmatch(entry.name)
        if match is None:
            continue
        try:
            record = load_json(entry / "result.json")
            fields = {k: v for k, v in record.items() if k in RESULT_FIELDS}
            result = TrialResult.from_json({**fields, "cache_hit": True})
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if result.status != "failed":
            results.append((int(match.group(1)), result))
    return results
