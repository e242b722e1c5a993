"""The run store's event log: ``events.jsonl``, one JSON line per hit, miss, resume,
store, failed, corrupt and pruned event, bounded by rotation.

Past ``max_bytes`` the log is rotated: ``events.jsonl`` -> ``events.jsonl.1`` ->
``events.jsonl.2`` ..., the oldest beyond ``kept`` files dropped. Appenders and readers
hold ``events.lock`` shared and a rotation holds it exclusively, so no process has the
log open while it is renamed: every line lands whole in the current file, never in a
file being dropped, and two processes rotating at once rotate once.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no locks (see EventLog._lock)
    fcntl = None

#: ``events.jsonl`` is rotated past this size, and this many older files are kept.
EVENTS_MAX_BYTES = 4 * 10**6
EVENTS_KEPT = 2
EVENTS_FILE = "events.jsonl"


class EventLog:
    """``folder/events.jsonl`` and its rotated files (see the module docstring).

    Parameters
    ----------
    folder : path
        The run store's root.
    max_bytes : int
        ``events.jsonl`` is rotated once it is larger.
    kept : int
        Rotated files kept (``events.jsonl.1`` .. ``events.jsonl.<kept>``).
    """

    def __init__(
        self, folder: str | os.PathLike, max_bytes: int = EVENTS_MAX_BYTES, kept: int = EVENTS_KEPT
    ):
        self.folder, self.max_bytes, self.kept = Path(folder), max_bytes, kept

    def files(self) -> list[Path]:
        """The log's files that exist, oldest first: ``events.jsonl.<kept>`` ..
        ``events.jsonl.1``, then ``events.jsonl``."""
        names = [f"{EVENTS_FILE}.{n}" for n in range(self.kept, 0, -1)] + [EVENTS_FILE]
        return [self.folder / name for name in names if (self.folder / name).is_file()]

    def append(self, record: dict) -> None:
        """Append ``record`` as one line; rotate the log once it is past ``max_bytes``."""
        # One short O_APPEND write per line: concurrent writers do not interleave.
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        with self._lock(exclusive=False):
            fd = os.open(self.folder / EVENTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
        if size > self.max_bytes:
            self._rotate()

    def read(self) -> list[dict]:
        """Every event still kept, oldest first."""
        texts = []
        with self._lock(exclusive=False):
            for path in self.files():
                with contextlib.suppress(FileNotFoundError):  # rotated meanwhile (no locks)
                    texts.append(path.read_text())
        return [json.loads(line) for text in texts for line in text.splitlines() if line.strip()]

    def _rotate(self) -> None:
        """``events.jsonl`` -> ``.1`` -> ``.2`` ..., the oldest beyond ``kept`` dropped;
        a no-op if another process rotated first."""
        with self._lock(exclusive=True):
            current = self.folder / EVENTS_FILE
            try:
                if current.stat().st_size <= self.max_bytes:
                    return  # rotated by another process while this one waited
            except FileNotFoundError:
                return
            # Tolerant of files vanishing: without locks two processes may rotate at
            # once, and a log line must never fail a run.
            with contextlib.suppress(FileNotFoundError):
                if self.kept < 1:
                    current.unlink()
                    return
                for number in range(self.kept, 1, -1):
                    older = self.folder / f"{EVENTS_FILE}.{number - 1}"
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(older, self.folder / f"{EVENTS_FILE}.{number}")
                os.replace(current, self.folder / f"{EVENTS_FILE}.1")

    @contextlib.contextmanager
    def _lock(self, exclusive: bool) -> Iterator[None]:
        """``events.lock``: shared by appenders and readers, exclusive for a rotation.
        Without locks (not POSIX, or a file system that refuses them) it goes on
        unlocked: a line may then land in a file a concurrent rotation drops."""
        fd = None
        if fcntl is not None:
            try:
                fd = os.open(self.folder / "events.lock", os.O_RDWR | os.O_CREAT, 0o666)
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            except OSError:
                if fd is not None:
                    os.close(fd)
                fd = None
        try:
            yield
        finally:
            if fd is not None:
                os.close(fd)
