"""The trial cache: finished trials and resumable checkpoints on disk.

Layout under the cache root::

    events.jsonl                       one JSON line per hit, miss, resume, store
    trials/<lineage>/checkpoint.npz    latest training state of a lineage (resume)
    trials/<lineage>/epochs-<E>/       a finished trial: result.json, model.npz

A *lineage* is a training configuration without its epoch budget (but with its
learning-rate schedule's horizon) on given data with a given library version: a
trial of E epochs and one of E' > E epochs of the same lineage share their first E
epochs, so the longer one resumes from the shorter one's checkpoint.

Every file is written atomically; a finished trial's folder is built aside and
renamed into place, so a reader sees a complete entry or none, whatever happens to
the writer, and two writers of the same entry leave one valid entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from ..io import load_json, load_npz, make_staging_folder, remove_stale_staging, save_json, save_npz


def stable_hash(payload) -> str:
    """sha256 of the canonical JSON of ``payload`` (sorted keys, no whitespace)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class TrialCache:
    """Finished trials and checkpoints under ``root`` (see the module docstring).

    Parameters
    ----------
    root : path
        Cache folder; may be shared by processes and hosts (a shared file system).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        (self.root / "trials").mkdir(parents=True, exist_ok=True)

    # -- paths ----------------------------------------------------------------------
    def lineage_dir(self, lineage: str) -> Path:
        return self.root / "trials" / lineage

    def entry_dir(self, lineage: str, epochs: int) -> Path:
        return self.lineage_dir(lineage) / f"epochs-{epochs:04d}"

    def checkpoint_path(self, lineage: str) -> Path:
        return self.lineage_dir(lineage) / "checkpoint.npz"

    # -- events ---------------------------------------------------------------------
    def log(self, event: str, lineage: str, epochs: int, **details) -> None:
        """Append one event line (hit, miss, resume, store, failed) to ``events.jsonl``."""
        record = {
            "event": event,
            "lineage": lineage,
            "epochs": epochs,
            "pid": os.getpid(),
            "time": round(time.time(), 3),
            **details,
        }
        # One short O_APPEND write per line: concurrent writers do not interleave.
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        fd = os.open(self.root / "events.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def events(self) -> list[dict]:
        """Every logged event, oldest first."""
        path = self.root / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    # -- finished trials ------------------------------------------------------------
    def load_result(self, lineage: str, epochs: int) -> dict | None:
        """The result of a finished trial, or None (an unreadable entry counts as none)."""
        path = self.entry_dir(lineage, epochs) / "result.json"
        if not path.is_file():
            return None
        try:
            return load_json(path)
        except (ValueError, OSError):
            return None

    def model_path(self, lineage: str, epochs: int) -> Path:
        return self.entry_dir(lineage, epochs) / "model.npz"

    def store_result(self, lineage: str, epochs: int, result: dict, model=None) -> Path:
        """Write a finished trial (``result`` JSON and optionally the model) as a unit.

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
            try:
                os.rename(staging, final)
            except OSError:
                if not (final / "result.json").is_file():
                    raise
                # Same entry written by a concurrent trial: both are valid; keep theirs.
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final

    # -- checkpoints ----------------------------------------------------------------
    def load_checkpoint(self, lineage: str) -> dict[str, np.ndarray] | None:
        """The latest checkpoint of a lineage, or None (unreadable counts as none)."""
        path = self.checkpoint_path(lineage)
        if not path.is_file():
            return None
        try:
            return load_npz(path)
        except (ValueError, OSError):
            return None

    def store_checkpoint(self, lineage: str, state: dict[str, np.ndarray]) -> None:
        """Replace the lineage's checkpoint atomically."""
        save_npz(self.checkpoint_path(lineage), state)
