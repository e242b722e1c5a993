"""The run store (``paths.run_store``): finished runs and resumable checkpoints.

It lives outside any workspace (:func:`store_root`: ``$NPDL_RUN_STORE``, else the
user's cache folder), so every workspace, clone and queued DVC experiment of a machine
shares it, and hosts share one on a shared file system. Layout under its root::

    events.jsonl                       one JSON line per hit, miss, resume, store, failed,
                                       corrupt, pruned; rotated past 4 MB into
    events.jsonl.1, events.jsonl.2     older lines, .1 the more recent (:mod:`.events`)
    trials/<lineage>/lineage.json      what the lineage is: training config, code and data hash
    trials/<lineage>/checkpoint.npz    latest training state of a lineage (resume)
    trials/<lineage>/epochs-<E>/       a finished run: result.json, model.npz, manifest.json
    failures/<lineage>/epochs-<E>.json the last failure of a run (traceback); never a hit
    corrupt/                           entries and checkpoints that failed verification
    locks/<lineage>.lock               held (shared) by every process using the lineage
    projects/<key>.json                a workspace that uses the store (:mod:`.projects`)

A *lineage* is a training configuration without its epoch budget (but with its
learning-rate schedule's horizon) on given data with given library code (see
:func:`npdl.run.training.lineage_of`): a run of E epochs and one of E' > E epochs of
the same lineage share their first E epochs, so the longer one resumes from the
shorter one's checkpoint.

Every file is written atomically; a finished run's folder is built aside and
renamed into place, so a reader sees a complete entry or none, whatever happens to
the writer, and two writers of the same entry leave one valid entry.

A process reading or writing a lineage holds it (:meth:`RunStore.holding`, a shared
``flock``); :mod:`npdl.run.gc` removes only what it can claim exclusively, so nothing
is removed while in use. A finished entry's folder's modification time is its last use
(a hit touches it): size policies drop the least recently used first.

Nothing is served that is not what was written: an entry's ``manifest.json`` holds the
sha256 of each of its files and a checkpoint carries the sha256 of its arrays, both
checked on every read. A mismatch (a truncated copy, a file damaged on a shared file
system, an entry edited by hand) is a miss: the entry is moved into ``corrupt/``, the
event is logged, and the run trains again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import (
    arrays_digest,
    load_json,
    load_npz,
    make_staging_folder,
    remove_stale_staging,
    save_json,
    save_npz,
)
from .events import EVENTS_KEPT, EVENTS_MAX_BYTES, EventLog

try:
    import fcntl
except ImportError:  # not POSIX: no locks, so gc must not run beside writers there
    fcntl = None

log = logging.getLogger("npdl.run")

MANIFEST = "manifest.json"
LINEAGE_FILE = "lineage.json"
#: The checkpoint array holding the sha256 of the others (see ``arrays_digest``).
DIGEST_KEY = "__sha256__"
#: Environment variable naming the run store's folder when ``paths.run_store`` is null.
STORE_ENV = "NPDL_RUN_STORE"


def user_cache_dir() -> Path:
    """The platform's per-user cache folder: ``$XDG_CACHE_HOME`` or ``~/.cache`` (Linux
    and other Unix), ``~/Library/Caches`` (macOS), ``%LOCALAPPDATA%`` (Windows)."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"


def store_root(configured: str | os.PathLike | None = None, base: Path | None = None) -> Path:
    """The run store's folder: ``configured`` (``paths.run_store``; a relative path is
    taken from ``base``) if given, else ``$NPDL_RUN_STORE``, else
    ``<user cache folder>/npdl/run-store``."""
    if configured not in (None, ""):
        path = Path(configured).expanduser()
        return path if path.is_absolute() or base is None else base / path
    named = os.environ.get(STORE_ENV, "")
    if named:
        return Path(named).expanduser().absolute()
    return user_cache_dir() / "npdl" / "run-store"


def stable_hash(payload) -> str:
    """sha256 of the canonical JSON of ``payload`` (sorted keys, no whitespace)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, hex."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass
class Problem:
    """A part of the store that failed verification."""

    path: Path
    reason: str


class RunStore:
    """Finished runs and checkpoints under ``root`` (see the module docstring).

    Parameters
    ----------
    root : path
        Cache folder; may be shared by processes and hosts (a shared file system).
    events_max_bytes : int
        ``events.jsonl`` is rotated once it is larger (:mod:`npdl.run.events`).
    events_kept : int
        Rotated event files kept (``events.jsonl.1`` .. ``events.jsonl.<events_kept>``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        events_max_bytes: int = EVENTS_MAX_BYTES,
        events_kept: int = EVENTS_KEPT,
    ):
        self.root = Path(root)
        (self.root / "trials").mkdir(parents=True, exist_ok=True)
        self.event_log = EventLog(self.root, events_max_bytes, events_kept)

    # -- paths ----------------------------------------------------------------------
    def lineage_dir(self, lineage: str) -> Path:
        return self.root / "trials" / lineage

    def entry_dir(self, lineage: str, epochs: int) -> Path:
        return self.lineage_dir(lineage) / f"epochs-{epochs:04d}"

    def checkpoint_path(self, lineage: str) -> Path:
        return self.lineage_dir(lineage) / "checkpoint.npz"

    @property
    def corrupt_dir(self) -> Path:
        return self.root / "corrupt"

    def lock_path(self, lineage: str) -> Path:
        return self.root / "locks" / f"{lineage}.lock"

    # -- who uses a lineage ---------------------------------------------------------
    @contextlib.contextmanager
    def holding(self, lineage: str) -> Iterator[None]:
        """Hold ``lineage`` while reading or writing it (a shared lock: any number of
        processes at once); ``npdl cache gc`` removes none of it meanwhile. Where the
        file system has no locks (or the store is read-only) the run goes on unlocked,
        and gc, unable to claim anything there, removes nothing."""
        try:
            fd = self._lock(lineage, shared=True)
        except OSError as error:
            log.warning("run store %s: cannot lock %s (%s)", self.root, lineage, error)
            fd = None
        try:
            yield
        finally:
            if fd is not None:
                os.close(fd)

    @contextlib.contextmanager
    def claiming(self, lineage: str) -> Iterator[bool]:
        """Claim ``lineage`` for removing parts of it: yields True, holding it
        exclusively, if no process holds it, else False at once (never waits). A
        claimer that removed the whole lineage calls :meth:`drop_lock` before leaving."""
        if fcntl is None:
            yield True
            return
        try:
            fd = self._lock(lineage, shared=False)
        except OSError:  # no locks here: a holder could not be seen, so claim nothing
            fd = None
        try:
            yield fd is not None
        finally:
            if fd is not None:
                os.close(fd)

    def in_use(self, lineage: str) -> bool:
        """Whether some process holds ``lineage`` now."""
        if fcntl is None or not self.lock_path(lineage).exists():
            return False
        with self.claiming(lineage) as claimed:
            return not claimed

    def drop_lock(self, lineage: str) -> None:
        """Remove the lock file of a lineage this process claims (see ``claiming``)."""
        with contextlib.suppress(FileNotFoundError):
            self.lock_path(lineage).unlink()

    def _lock(self, lineage: str, shared: bool) -> int | None:
        if fcntl is None:
            return None
        path = self.lock_path(lineage)
        path.parent.mkdir(exist_ok=True)
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX | fcntl.LOCK_NB
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, mode)
            except BlockingIOError:
                os.close(fd)
                return None
            except OSError:
                os.close(fd)
                raise
            # A claimer may have removed the file we waited on: a lock on a removed
            # file excludes nobody, so lock the current file instead.
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            opened = os.fstat(fd)
            if current is not None and (current.st_dev, current.st_ino) == (
                opened.st_dev,
                opened.st_ino,
            ):
                return fd
            os.close(fd)

    # -- what a lineage is ----------------------------------------------------------
    def describe(self, lineage: str, description: dict) -> None:
        """Record what ``lineage`` is (its training config, code and data hash) in its
        ``lineage.json``, once; ``npdl cache ls`` shows it."""
        path = self.lineage_dir(lineage) / LINEAGE_FILE
        if not path.is_file():
            save_json(path, description)

    def description(self, lineage: str) -> dict | None:
        """The lineage's ``lineage.json``, or None (stores of older versions)."""
        try:
            return load_json(self.lineage_dir(lineage) / LINEAGE_FILE)
        except (OSError, ValueError):
            return None

    # -- events ---------------------------------------------------------------------
    def log(self, event: str, lineage: str, epochs: int, **details) -> None:
        """Append one event line (hit, miss, resume, store, failed, corrupt, pruned) to
        the store's event log (:class:`~npdl.run.events.EventLog`)."""
        record = {
            "event": event,
            "lineage": lineage,
            "epochs": epochs,
            "pid": os.getpid(),
            "time": round(time.time(), 3),
            **details,
        }
        self.event_log.append(record)

    def events(self) -> list[dict]:
        """Every logged event still kept (the rotated files' first), oldest first."""
        return self.event_log.read()

    # -- finished runs --------------------------------------------------------------
    def load_result(self, lineage: str, epochs: int) -> dict | None:
        """The result of a finished run, or None.

        An entry that fails verification (see ``verify_entry``) counts as none: it is
        moved into ``corrupt/`` and logged as a ``corrupt`` event. A ``failed`` result
        (stored by older versions) counts as none too: failures are retried.
        """
        entry = self.entry_dir(lineage, epochs)
        if not (entry / "result.json").is_file():
            return None
        try:
            identity = entry.stat().st_ino
        except FileNotFoundError:
            return None
        reason = self.verify_entry(entry)
        if reason is None:
            try:
                result = load_json(entry / "result.json")
            except (ValueError, OSError) as error:
                reason = f"result.json unreadable: {error}"
            else:
                if result.get("status") == "failed":
                    return None
                with contextlib.suppress(OSError):
                    os.utime(entry)  # its last use: size policies keep recent entries
                return result
        self._set_aside(entry, identity, lineage, epochs, reason)
        return None

    def verify_entry(self, entry: Path) -> str | None:
        """Why the finished-run folder ``entry`` is not what was written, or None.

        Every file the manifest lists must exist with its sha256, and no other file
        may be there.
        """
        try:
            manifest = load_json(entry / MANIFEST)
            expected = dict(manifest["files"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            return f"no readable {MANIFEST} ({type(error).__name__}: {error})"
        present = {path.name for path in entry.iterdir()} - {MANIFEST}
        if present != set(expected):
            return f"files {sorted(present)} differ from the manifest's {sorted(expected)}"
        for name, digest in sorted(expected.items()):
            try:
                actual = file_digest(entry / name)
            except OSError as error:
                return f"{name} unreadable: {error}"
            if actual != digest:
                return f"{name}: sha256 {actual} where the manifest says {digest}"
        return None

    def _set_aside(self, path: Path, identity: int, lineage: str, epochs: int, reason: str):
        """Move a bad entry or checkpoint into ``corrupt/`` and log why. If another
        process replaced it meanwhile (another inode), the replacement stays."""
        self.corrupt_dir.mkdir(exist_ok=True)
        name = f"{lineage}-{path.name}-{time.time_ns()}-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_ino == identity:
                os.rename(path, self.corrupt_dir / name)
        self.log("corrupt", lineage, epochs, path=str(path), reason=reason, moved_to=name)

    def model_path(self, lineage: str, epochs: int) -> Path:
        return self.entry_dir(lineage, epochs) / "model.npz"

    def store_result(self, lineage: str, epochs: int, result: dict, model=None) -> Path:
        """Write a finished run (``result`` JSON and optionally the model) as a unit.

        If another process stored the same entry meanwhile, its entry is kept.
        """
        final = self.entry_dir(lineage, epochs)
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(final)
        staging = make_staging_folder(final)
        try:
            if model is not None:
                model.save_model(staging / "model.npz")
            save_json(staging / "result.json", result)
            files = {path.name: file_digest(path) for path in sorted(staging.iterdir())}
            save_json(staging / MANIFEST, {"files": files})
            try:
                os.rename(staging, final)
            except OSError:
                if not (final / "result.json").is_file():
                    raise
                # Same entry written by a concurrent run: both are valid; keep theirs.
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final

    def record_failure(self, lineage: str, epochs: int, result: dict) -> Path:
        """Keep the last failure of a run (its traceback) for reading, and log it; it
        is never served as a result, so the next run trains again."""
        path = self.root / "failures" / lineage / f"epochs-{epochs:04d}.json"
        save_json(path, result)
        self.log("failed", lineage, epochs, error=result.get("error"))
        return path

    # -- checkpoints ----------------------------------------------------------------
    def load_checkpoint(self, lineage: str) -> dict[str, np.ndarray] | None:
        """The latest checkpoint of a lineage, or None.

        One that is unreadable or whose arrays do not match their stored sha256 counts
        as none: it is moved into ``corrupt/`` and logged.
        """
        path = self.checkpoint_path(lineage)
        try:
            identity = path.stat().st_ino
        except FileNotFoundError:
            return None
        state, reason = read_checkpoint(path)
        if reason is None:
            return state
        self._set_aside(path, identity, lineage, -1, f"checkpoint: {reason}")
        return None

    def store_checkpoint(self, lineage: str, state: dict[str, np.ndarray]) -> None:
        """Replace the lineage's checkpoint atomically, with the sha256 of its arrays."""
        save_npz(self.checkpoint_path(lineage), {**state, DIGEST_KEY: arrays_digest(state)})

    # -- verification ---------------------------------------------------------------
    def verify(self) -> tuple[int, list[Problem]]:
        """Check every finished run and checkpoint in the store without changing it.

        Returns
        -------
        checked : int
            Entries and checkpoints read.
        problems : list of Problem
        """
        checked, problems = 0, []
        for lineage in sorted((self.root / "trials").iterdir()):
            if not lineage.is_dir() or lineage.name.startswith("."):
                continue
            for part in sorted(lineage.iterdir()):
                if part.name.startswith("."):
                    continue  # a writer's staging folder or temporary file
                if part.name == LINEAGE_FILE:  # a description, not an entry: never served
                    if self.description(lineage.name) is None:
                        problems.append(Problem(part, "unreadable JSON"))
                    continue
                checked += 1
                if part.is_dir():
                    reason = self.verify_entry(part)
                elif part.name == "checkpoint.npz":
                    reason = read_checkpoint(part)[1]
                else:
                    reason = "not a file the store writes"
                if reason is not None:
                    problems.append(Problem(part, reason))
        return checked, problems

    def set_aside(self, problem: Problem) -> None:
        """Move a part ``verify`` found bad into ``corrupt/`` (and log it)."""
        lineage = problem.path.parent.name
        with contextlib.suppress(FileNotFoundError):
            identity = problem.path.stat().st_ino
            self._set_aside(problem.path, identity, lineage, -1, problem.reason)


def read_checkpoint(path: Path) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """A checkpoint's arrays, verified against their stored sha256.

    Returns
    -------
    state : dict or None
        The arrays (without the digest), or None if they cannot be trusted.
    reason : str or None
        Why not, or None.
    """
    try:
        state = load_npz(path)
    except (ValueError, OSError) as error:
        return None, str(error)
    stored = state.pop(DIGEST_KEY, None)
    if stored is None:
        return None, "no stored sha256"
    actual = arrays_digest(state)
    if str(stored) != actual:
        return None, f"arrays' sha256 {actual} where the file says {stored}"
    return state, None
