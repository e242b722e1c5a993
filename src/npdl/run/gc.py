"""What a run store holds, and trimming it to a size or an age (``npdl cache ls``,
``du``, ``gc``; ``paths.run_store_max_gb`` after every sweep and training).

The store's parts (:class:`Part`) are finished entries, checkpoints, failure records,
set-aside (corrupt) parts and the leftovers of killed writers. A policy removes, in
this order, as many as it takes to fit ``max_bytes``, and every part unused for
longer than ``older_than``:

1. leftovers of dead writers (of this host) and set-aside parts, then failure records;
2. checkpoints of finished lineages (ones with a stored result): a checkpoint only
   lets a longer run of its lineage resume, the results are what a rerun hits;
3. results and the remaining checkpoints: those of other code versions (never a hit
   again for this code) first, then the least recently used.

Never removed: anything of a lineage some process holds (:meth:`RunStore.holding`:
a search or training reading or writing it), and ``keep``'s entries (see
:func:`referenced`, and :func:`registered_references` for every project registered in
the store). A part is renamed to a hidden name before it is deleted, so a reader sees
it whole or not at all; a gc killed half-way leaves a leftover that the next gc (or
writer) removes.

At the end of a multi-fidelity search the sweeper removes the checkpoints of the trials
it eliminated (:func:`drop_checkpoints`), by the same claim and rename: their results
stay, and a search that promotes one of them later trains it from scratch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import load_json, remove_stale_staging, staging_prefix
from ..trial import TrialResult
from .projects import Project, References, forget_gone, project_references, workspace_references
from .sizes import format_age as format_age  # re-exported
from .sizes import format_size as format_size  # re-exported
from .sizes import parse_age as parse_age  # re-exported
from .sizes import parse_size as parse_size  # re-exported
from .store import LINEAGE_FILE, MANIFEST, RunStore
from .training import code_hash

log = logging.getLogger("npdl.run")

#: Kinds of parts, and the removal tier of each (lower goes first).
TIERS = {"leftover": 0, "corrupt": 0, "failure": 1, "checkpoint": 3, "entry": 3}


@dataclass
class Part:
    """One removable unit of a store.

    Attributes
    ----------
    kind : str
        ``entry``, ``checkpoint``, ``failure``, ``corrupt``, ``leftover`` or
        ``description`` (a lineage's ``lineage.json``, removed with the lineage).
    path : Path
    lineage : str or None
    epochs : int or None
        An entry's or failure's epoch budget.
    size : int
        Bytes of its files.
    used : float
        Last use (its modification time; a hit touches an entry), seconds since the epoch.
    status : str or None
        An entry's result status (``ok``, ``diverged``).
    code : str or None
        Hash of the library code that wrote it (entries), where known.
    model_digest : str or None
        sha256 of an entry's model file, from its manifest.
    removable : bool
        False for a leftover of a live writer or of another host.
    """

    kind: str
    path: Path
    lineage: str | None
    epochs: int | None
    size: int
    used: float
    status: str | None = None
    code: str | None = None
    model_digest: str | None = None
    removable: bool = True


def tree_size(path: Path) -> int:
    """Bytes of the files at or under ``path`` (0 if it vanished meanwhile)."""
    try:
        if not path.is_dir():
            return path.lstat().st_size
    except FileNotFoundError:
        return 0
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except FileNotFoundError:
        return 0.0


def _is_stale_leftover(path: Path) -> bool:
    """A hidden ``.<name>.<host>-<pid>.…`` of a process of this host that has ended."""
    marker = f".{socket.gethostname()}-"
    name = path.name
    at = name.find(marker, 1)
    if not name.startswith(".") or at < 0:
        return False
    pid = name[at + len(marker) :].split(".", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _entry(path: Path, lineage: str) -> Part:
    epochs = int(path.name.split("-", 1)[1]) if path.name[7:].isdigit() else None
    part = Part("entry", path, lineage, epochs, tree_size(path), _mtime(path))
    with contextlib.suppress(OSError, ValueError, AttributeError):
        result = load_json(path / "result.json")
        part.status, part.code = result.get("status"), result.get("code")
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        part.model_digest = load_json(path / MANIFEST)["files"].get("model.npz")
    return part


def _leftover(path: Path, lineage: str | None) -> Part:
    return Part(
        "leftover",
        path,
        lineage,
        None,
        tree_size(path),
        _mtime(path),
        removable=_is_stale_leftover(path),
    )


def inventory(store: RunStore) -> list[Part]:
    """Every part of the store (see :class:`Part`), lineage by lineage."""
    parts: list[Part] = []
    trials = store.root / "trials"
    for folder in sorted(trials.iterdir()) if trials.is_dir() else []:
        if folder.name.startswith("."):
            parts.append(_leftover(folder, None))
            continue
        if not folder.is_dir():
            continue
        lineage = folder.name
        for item in sorted(folder.iterdir()):
            if item.name.startswith("."):
                parts.append(_leftover(item, lineage))
            elif item.is_dir() and item.name.startswith("epochs-"):
                parts.append(_entry(item, lineage))
            elif item.name == "checkpoint.npz":
                parts.append(Part("checkpoint", item, lineage, None, tree_size(item), _mtime(item)))
            elif item.name == LINEAGE_FILE:
                parts.append(Part("description", item, lineage, None, tree_size(item), 0.0))
    failures = store.root / "failures"
    for record in sorted(failures.glob("*/*")) if failures.is_dir() else []:
        lineage = record.parent.name
        if record.name.startswith("."):
            parts.append(_leftover(record, lineage))
            continue
        epochs = record.stem.split("-", 1)[-1]
        budget = int(epochs) if epochs.isdigit() else None
        parts.append(Part("failure", record, lineage, budget, tree_size(record), _mtime(record)))
    for item in sorted(store.corrupt_dir.iterdir()) if store.corrupt_dir.is_dir() else []:
        parts.append(Part("corrupt", item, None, None, tree_size(item), _mtime(item)))
    # The lineage's code, for its checkpoint too: from lineage.json, else an entry.
    codes = {}
    for part in parts:
        if part.kind == "entry" and part.code:
            codes.setdefault(part.lineage, part.code)
    for part in parts:
        if part.kind == "description":
            description = store.description(part.lineage) or {}
            if description.get("code"):
                codes[part.lineage] = description["code"]
    for part in parts:
        if part.kind in ("checkpoint", "entry") and part.code is None:
            part.code = codes.get(part.lineage)
    return parts


def referenced(parts: Iterable[Part], models_dirs: Iterable[str | os.PathLike]) -> set:
    """Entries ``(lineage, epochs)`` that a workspace's outputs came from: every row of
    ``<models>/tune/leaderboard.csv`` (its ``lineage`` and ``budget`` columns) and the
    entry whose model file is ``<models>/model.npz`` (same sha256), for each folder."""
    return resolve(parts, workspace_references(models_dirs))


def resolve(parts: Iterable[Part], refs: References) -> set:
    """The entries ``(lineage, epochs)`` of ``refs``: its entries, and those whose model
    file has one of its digests."""
    by_model = {
        (p.lineage, p.epochs)
        for p in parts
        if p.kind == "entry" and p.model_digest in refs.model_digests
    }
    return set(refs.entries) | by_model


def registered_references(store: RunStore, parts: Iterable[Part]) -> tuple[set, list[Project]]:
    """The entries every live project registered in ``store`` references (see
    :mod:`.projects`), and those projects."""
    refs, live = project_references(store)
    return resolve(parts, refs), live


def drop_checkpoints(store: RunStore, reached: dict[str, int], why: str) -> Collection:
    """Remove the checkpoint of each lineage of ``reached`` (lineage -> the budget its
    training stopped at, e.g. the rung a search eliminated it at), under its claim.

    Kept: the checkpoint of a lineage some process holds (``busy``), of one without a
    finished entry at that budget (a failed or killed run: a rerun resumes it), and one
    at a later epoch than that budget (another run carried the lineage further). Each
    removal is logged as a ``pruned`` event.
    """
    report = Collection()
    for lineage, budget in sorted(reached.items()):
        path = store.checkpoint_path(lineage)
        if not path.is_file():
            continue
        with store.claiming(lineage) as claimed:
            if not claimed:
                report.busy.add(lineage)
                continue
            if not (store.entry_dir(lineage, budget) / "result.json").is_file():
                continue
            position = checkpoint_epoch(path)
            if position is None or position > budget:
                continue
            part = Part("checkpoint", path, lineage, None, tree_size(path), _mtime(path))
            hidden = path.with_name(f"{staging_prefix(path)}gc")
            try:
                os.rename(path, hidden)
            except FileNotFoundError:
                continue
            _delete_path(hidden)
        report.removed.append((part, why))
        store.log("pruned", lineage, budget, from_epoch=position, reason=why)
    return report


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch a checkpoint holds the state after (its ``position``), or None if it
    cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return int(archive["position"][0])
    except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile):
        return None


@dataclass
class Collection:
    """What a gc removed (or, in a dry run, would remove), and what it left."""

    removed: list[tuple[Part, str]] = field(default_factory=list)  # (part, why)
    busy: set = field(default_factory=set)  # lineages held by another process
    kept: int = 0  # referenced entries kept
    projects: list = field(default_factory=list)  # live registered projects whose entries it kept
    forgotten: list = field(default_factory=list)  # projects forgotten (folder gone)
    size_before: int = 0
    size_after: int = 0


def _order(parts: list[Part], keep: set, current: str) -> list[Part]:
    finished = {p.lineage for p in parts if p.kind == "entry"}

    def tier(part: Part) -> int:
        if part.kind == "checkpoint" and part.lineage in finished:
            return 2
        return TIERS[part.kind]

    candidates = [
        p
        for p in parts
        if p.kind in TIERS
        and p.removable
        and not (p.kind == "entry" and (p.lineage, p.epochs) in keep)
    ]
    other_code = {p.path: p.code is not None and p.code != current for p in candidates}
    return sorted(candidates, key=lambda p: (tier(p), not other_code[p.path], p.used, str(p.path)))


def collect(
    store: RunStore,
    max_bytes: int | None = None,
    older_than: float | None = None,
    keep: set = frozenset(),
    dry_run: bool = False,
    now: float | None = None,
) -> Collection:
    """Remove parts of ``store`` by the policy of the module docstring.

    Parameters
    ----------
    max_bytes : int, optional
        Remove parts until the store holds at most this many bytes (as far as held
        lineages and ``keep`` allow).
    older_than : float, optional
        Remove every part unused for longer than this many seconds.
    keep : set of (lineage, epochs)
        Entries never removed (:func:`referenced`).
    dry_run : bool
        Remove nothing; report what would go.
    """
    now = time.time() if now is None else now
    parts = inventory(store)
    total = sum(part.size for part in parts)
    report = Collection(size_before=total)
    report.kept = sum(1 for p in parts if p.kind == "entry" and (p.lineage, p.epochs) in keep)
    # A lineage's description goes with its last result or checkpoint.
    remaining = {}
    for part in parts:
        if part.kind in ("entry", "checkpoint"):
            remaining[part.lineage] = remaining.get(part.lineage, 0) + 1
    descriptions = {p.lineage: p.size for p in parts if p.kind == "description"}
    for part in _order(parts, keep, code_hash()):
        old = older_than is not None and now - part.used > older_than
        if not old and (max_bytes is None or total <= max_bytes):
            continue
        if part.lineage in report.busy:
            continue
        if not _remove(store, part, dry_run):
            report.busy.add(part.lineage)
            continue
        total -= part.size
        if part.kind in ("entry", "checkpoint"):
            remaining[part.lineage] -= 1
            total -= descriptions.get(part.lineage, 0) if remaining[part.lineage] == 0 else 0
        report.removed.append((part, "unused for longer than the limit" if old else "over size"))
    report.size_after = total if dry_run else sum(p.size for p in inventory(store))
    return report


def _remove(store: RunStore, part: Part, dry_run: bool) -> bool:
    """Remove one part under its lineage's claim; False if another process holds it."""
    if part.lineage is None or part.kind == "leftover":
        if not dry_run:
            _delete(part)
        return True
    if dry_run:
        return not store.in_use(part.lineage)
    with store.claiming(part.lineage) as claimed:
        if not claimed:
            return False
        hidden = part.path.with_name(f"{staging_prefix(part.path)}gc")
        try:
            os.rename(part.path, hidden)
        except FileNotFoundError:
            return True  # gone meanwhile
        folder = store.lineage_dir(part.lineage)
        rest = (
            [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []
        )
        if {p.name for p in rest} <= {LINEAGE_FILE} and part.kind != "failure":
            # The lineage's last result or checkpoint: the lineage goes with it (unless
            # a writer's staging folder is still in it).
            _delete_path(hidden)
            _delete_path(folder / LINEAGE_FILE)
            with contextlib.suppress(OSError):
                folder.rmdir()
                store.drop_lock(part.lineage)
                (store.root / "failures" / part.lineage).rmdir()
    _delete_path(hidden)
    return True


def _delete(part: Part) -> None:
    if part.kind == "leftover":
        # The writer's own clean-up, which also puts back a folder it was swapping.
        marker = f".{socket.gethostname()}-"
        remove_stale_staging(
            part.path.with_name(part.path.name[1 : part.path.name.find(marker, 1)])
        )
        return
    hidden = part.path.with_name(f"{staging_prefix(part.path)}gc")
    with contextlib.suppress(FileNotFoundError):
        os.rename(part.path, hidden)
        _delete_path(hidden)


def _delete_path(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def enforce_limit(
    store: RunStore, max_gb: float | None, models_dirs: Iterable[str | os.PathLike], keep=()
) -> Collection | None:
    """Trim ``store`` to ``max_gb`` gigabytes (``paths.run_store_max_gb``; None: no
    limit) keeping what the workspaces' ``models_dirs`` and every live registered
    project came from, and ``keep``; projects whose folder is gone are forgotten."""
    if max_gb is None:
        return None
    forgotten = forget_gone(store)
    parts = inventory(store)
    registered, projects = registered_references(store, parts)
    protected = referenced(parts, models_dirs) | registered | set(keep)
    report = collect(store, max_bytes=int(max_gb * 1e9), keep=protected)
    report.projects, report.forgotten = projects, forgotten
    for project in forgotten:
        log.info("run store %s: forgot project %s (folder gone)", store.root, project.workspace)
    if report.removed:
        log.info(
            "run store %s trimmed to %s (limit %s): %d parts removed",
            store.root,
            format_size(report.size_after),
            format_size(int(max_gb * 1e9)),
            len(report.removed),
        )
    return report


def bound_store(
    store: RunStore,
    max_gb: float | None,
    models_dirs: Iterable[str | os.PathLike],
    keep: Iterable[tuple[str, int]] = (),
) -> Collection | None:
    """Trim ``store`` after a training or a sweep: :func:`enforce_limit`, with a warning
    where what is left stays over ``max_gb`` (all of it referenced or in use).

    Parameters
    ----------
    store : RunStore
    max_gb : float or None
        ``paths.run_store_max_gb``; None: no limit, nothing to do.
    models_dirs : paths
        The workspace's models folders: what their leaderboard and model came from is
        kept (:func:`referenced`).
    keep : iterable of (lineage, budget)
        Entries kept besides, e.g. a sweep's own trials (:func:`result_entries`).
    """
    report = enforce_limit(store, max_gb, models_dirs, keep=set(keep))
    if report is not None and report.size_after > max_gb * 1e9:
        log.warning(
            "the run store %s stays over paths.run_store_max_gb=%s: what is left is "
            "referenced or in use",
            store.root,
            max_gb,
        )
    return report


def result_entries(paths: Iterable[str | os.PathLike]) -> set[tuple[str, int]]:
    """The run store entries ``(lineage, budget)`` that trial result files (a sweep's
    jobs' ``metrics/train.json``, :meth:`TrialResult.to_json`) name. A file that is no
    trial result (another version's, or one a job that failed early left half-written)
    is skipped, as is a result with no entry (:meth:`TrialResult.failed`)."""
    entries = set()
    for path in paths:
        try:
            result = TrialResult.from_json(load_json(path))
            if result.lineage is not None and result.budget is not None:
                entries.add((str(result.lineage), int(result.budget)))
        except (OSError, ValueError, TypeError):
            continue
    return entries
