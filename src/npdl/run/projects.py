"""The projects (workspaces) that use a run store, and what their outputs came from.

A stage that opens the store registers its workspace (:func:`register_project`) in
``projects/<key>.json`` of the store, written atomically::

    {"workspace": "/home/me/npdl", "host": "laptop", "models": ["/home/me/npdl/models"],
     "used": 1718000000.0, "npdl": "0.2.0"}

``<key>`` is the first 16 hex digits of the sha256 of ``host`` and ``workspace``;
``used`` is the last time a stage of the workspace opened the store.

What a workspace's outputs came from (:func:`workspace_references`) are the rows of
``<models>/tune/leaderboard.csv`` (their ``lineage`` and ``budget``) and the model file
``<models>/model.npz`` (its sha256), read from the workspace itself and from the
outputs its ``dvc.lock`` names, the file in the workspace and the one of the last git
commit, resolved in the workspace's DVC cache: so a workspace with another experiment
checked out still protects what its committed pipeline produced. ``npdl cache gc
--keep-referenced`` and ``paths.run_store_max_gb`` keep the references of every
registered project (:func:`project_references`).

A project of this host whose folder is gone, or no longer holds one of ``MARKERS``,
is forgotten (:func:`forget_gone`, at every gc). A project registered from another host
is read where its folder is reachable (a shared file system) and otherwise left alone.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import re
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..io import load_json, save_json
from ..trial import TuneOutputs, field_from_text
from ..version import __version__
from .store import RunStore, file_digest

log = logging.getLogger("npdl.run")

PROJECTS = "projects"
#: A workspace holding none of these is no project any more (forgotten at the next gc).
MARKERS = ("dvc.yaml", "params.yaml")
#: A registration younger than this is not rewritten (every trial of a search opens
#: the store).
REFRESH_SECONDS = 60.0


@dataclass
class Project:
    """One registered workspace (``projects/<key>.json``)."""

    record: Path
    workspace: Path
    host: str
    models: list[Path]
    used: float

    @property
    def state(self) -> str:
        """``live``; ``gone`` (of this host, folder or markers missing): forgotten at the
        next gc; ``elsewhere`` (another host's, its folder not reachable here)."""
        if any((self.workspace / marker).is_file() for marker in MARKERS):
            return "live"
        return "gone" if self.host == socket.gethostname() else "elsewhere"


@dataclass
class References:
    """Entries ``(lineage, epochs)`` named by leaderboards, and sha256 digests of model
    files (matched against the entries' manifests)."""

    entries: set = field(default_factory=set)
    model_digests: set = field(default_factory=set)

    def __or__(self, other: References) -> References:
        return References(self.entries | other.entries, self.model_digests | other.model_digests)


def project_key(workspace: Path, host: str) -> str:
    return hashlib.sha256(f"{host}\0{workspace}".encode()).hexdigest()[:16]


def register_project(
    store: RunStore,
    workspace: str | Path,
    models_dirs: Iterable[str | Path],
    now: float | None = None,
) -> Path:
    """Record that ``workspace`` (its ``models_dirs``) uses ``store`` now; returns the
    record's path. A record younger than ``REFRESH_SECONDS`` with the same content is
    left as it is."""
    now = time.time() if now is None else now
    workspace = Path(workspace).absolute()
    host = socket.gethostname()
    record = store.root / PROJECTS / f"{project_key(workspace, host)}.json"
    content = {
        "workspace": str(workspace),
        "host": host,
        "models": sorted(str(Path(folder).absolute()) for folder in models_dirs),
        "npdl": __version__,
    }
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        old = load_json(record)
        if {key: old.get(key) for key in content} == content and now - old[
            "used"
        ] < REFRESH_SECONDS:
            return record
    save_json(record, {**content, "used": round(now, 3)})
    return record


def registered_projects(store: RunStore) -> list[Project]:
    """Every readable record of ``projects/``, most recently used first."""
    projects = []
    folder = store.root / PROJECTS
    for record in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = load_json(record)
            projects.append(
                Project(
                    record,
                    Path(data["workspace"]),
                    str(data["host"]),
                    [Path(p) for p in data["models"]],
                    float(data["used"]),
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("run store %s: unreadable project record %s", store.root, record)
    return sorted(projects, key=lambda project: -project.used)


def forget_gone(store: RunStore, dry_run: bool = False) -> list[Project]:
    """Remove the records of this host's projects whose folder is gone (or holds none of
    ``MARKERS``); return them (in a dry run, those it would remove)."""
    gone = [project for project in registered_projects(store) if project.state == "gone"]
    if not dry_run:
        for project in gone:
            with contextlib.suppress(FileNotFoundError):
                project.record.unlink()
    return gone


def project_references(store: RunStore) -> tuple[References, list[Project]]:
    """The references of every live registered project, and those projects."""
    refs, live = References(), []
    for project in registered_projects(store):
        if project.state == "live":
            live.append(project)
            refs = refs | workspace_references(project.models, project.workspace)
    return refs, live


def workspace_references(
    models_dirs: Iterable[str | Path], workspace: str | Path | None = None
) -> References:
    """What the outputs in ``models_dirs`` came from; with ``workspace``, also what its
    ``dvc.lock`` (the file, and the one committed in git) names under those folders."""
    refs = References()
    folders = [Path(folder) for folder in models_dirs]
    for folder in folders:
        board = TuneOutputs.of(folder).leaderboard_csv
        with contextlib.suppress(OSError):
            refs.entries |= leaderboard_entries(board.read_text())
        model = folder / "model.npz"
        with contextlib.suppress(OSError):
            refs.model_digests.add(file_digest(model))
    if workspace is None:
        return refs
    workspace = Path(workspace)
    locks = [_read(workspace / "dvc.lock"), _committed(workspace, "dvc.lock")]
    outs = [out for text in locks if text for out in _lock_outs(text)]
    if not outs:
        return refs
    caches = _dvc_caches(workspace)
    for folder in folders:
        try:
            relative = folder.absolute().relative_to(workspace.absolute()).as_posix()
        except ValueError:
            continue  # outside the workspace: no DVC output
        board = TuneOutputs.of(Path(relative)).leaderboard_csv.as_posix()
        for path in _cached(outs, board, caches):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                refs.entries |= leaderboard_entries(path.read_text())
        for path in _cached(outs, f"{relative}/model.npz", caches):
            with contextlib.suppress(OSError):
                refs.model_digests.add(file_digest(path))
    return refs


def leaderboard_entries(text: str) -> set:
    """``(lineage, budget)`` of every row of a ``leaderboard.csv``'s text (its result
    columns, :func:`~npdl.trial.field_from_text`); a row without both is skipped."""
    entries = set()
    for row in csv.DictReader(io.StringIO(text)):
        try:
            lineage = field_from_text("lineage", row.get("lineage"))
            budget = field_from_text("budget", row.get("budget"))
        except ValueError:
            continue
        if lineage and budget is not None and budget >= 0:
            entries.add((lineage, budget))
    return entries


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _committed(workspace: Path, name: str) -> str | None:
    """``name`` (relative to ``workspace``) as of the last git commit, or None."""
    try:
        shown = subprocess.run(
            ["git", "-C", str(workspace), "show", f"HEAD:./{name}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return shown.stdout if shown.returncode == 0 else None


def _lock_outs(text: str) -> list[tuple[str, str]]:
    """``(path, md5)`` of every stage output of a ``dvc.lock``'s text."""
    import yaml  # only here: the library reads dvc.lock, it never imports DVC

    try:
        lock = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    outs = []
    stages = lock.get("stages") if isinstance(lock, dict) else None
    for stage in (stages or {}).values():
        for out in (stage or {}).get("outs") or []:
            if isinstance(out, dict) and out.get("path") and out.get("md5"):
                outs.append((str(out["path"]).strip("/"), str(out["md5"])))
    return outs


def _dvc_caches(workspace: Path) -> list[Path]:
    """The workspace's DVC cache folder: ``cache.dir`` of ``.dvc/config.local`` or
    ``.dvc/config`` (relative to ``.dvc/``), else ``.dvc/cache``."""
    dvc = workspace / ".dvc"
    for name in ("config.local", "config"):
        text = _read(dvc / name) or ""
        section = None
        for line in text.splitlines():
            header = re.fullmatch(r"\s*\[\s*'?\"?([^\]'\"]+)\"?'?\s*\]\s*", line)
            if header:
                section = header.group(1).strip()
                continue
            setting = re.fullmatch(r"\s*dir\s*=\s*(.+?)\s*", line)
            if section == "cache" and setting:
                return [(dvc / Path(setting.group(1)).expanduser()).absolute()]
    return [dvc / "cache"]


def _cache_file(caches: list[Path], md5: str) -> Path | None:
    """An object of the DVC cache (DVC 3's ``files/md5/ab/cdef...`` or DVC 2's
    ``ab/cdef...``), or None."""
    for cache in caches:
        for base in (cache / "files" / "md5", cache):
            path = base / md5[:2] / md5[2:]
            if path.is_file():
                return path
    return None


def _cached(outs: list[tuple[str, str]], relative: str, caches: list[Path]) -> list[Path]:
    """The cached copies of the workspace file ``relative``: an output itself, or a
    file inside a directory output (its ``.dir`` listing)."""
    found = []
    for path, md5 in outs:
        if path == relative and not md5.endswith(".dir"):
            target = _cache_file(caches, md5)
        elif relative.startswith(f"{path}/") and md5.endswith(".dir"):
            listing = _cache_file(caches, md5)
            try:
                files = json.loads(listing.read_text()) if listing else []
                inner = relative[len(path) + 1 :]
                digest = next((f["md5"] for f in files if f.get("relpath") == inner), None)
            except (OSError, ValueError, TypeError, AttributeError):
                digest = None
            target = _cache_file(caches, digest) if digest else None
        else:
            continue
        if target is not None and target not in found:
            found.append(target)
    return found
