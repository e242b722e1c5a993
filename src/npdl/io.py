"""Atomic file writes and safe loading of arrays, metrics and models' files.

Every artifact is written to a temporary file in the destination folder, flushed
and fsynced, then renamed over the destination: a reader sees the old file or the
new one, never a half-written one, even if the writer is killed.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import json
import os
import shutil
import socket
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary file beside ``path``; on success fsync and rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    fd, tmp_name = tempfile.mkstemp(prefix=staging_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file private (0600); give it the mode open() would.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        _name_the_file(error, path)
        raise
    _fsync_dir(path.parent)


def _name_the_file(error: BaseException, path: Path) -> None:
    """Re-raise an OSError that names no file (a failed write: full disk, file size
    limit) as the same error naming ``path``."""
    if isinstance(error, OSError) and error.filename is None and error.errno is not None:
        raise OSError(error.errno, error.strerror, str(path)) from error


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def make_staging_folder(path: Path) -> Path:
    """A new hidden folder beside ``path`` to build its replacement in, with the mode
    ``mkdir`` would give (mkdtemp's is private, 0700)."""
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(path), dir=path.parent))
    os.chmod(staging, 0o777 & ~_UMASK)
    return staging


def staging_prefix(path: Path, pid: int | None = None) -> str:
    """Hidden name prefix of a temporary file or folder for ``path``; it names the
    writing host and process so that a later writer can tell a dead one's leftovers."""
    return f".{path.name}.{socket.gethostname()}-{os.getpid() if pid is None else pid}."


def remove_stale_staging(path: Path) -> None:
    """Delete temporary files and folders for ``path`` left by killed writers on this
    host (their process no longer exists). A writer killed while swapping a folder
    leaves the old folder aside and ``path`` missing: the old folder is put back."""
    host_prefix = f".{path.name}.{socket.gethostname()}-"
    for leftover in sorted(path.parent.glob(f"{glob.escape(host_prefix)}*")):
        pid_text = leftover.name[len(host_prefix) :].split(".", 1)[0]
        if not pid_text.isdigit() or _process_exists(int(pid_text)):
            continue
        if leftover.name.endswith(".old") and not path.exists():
            os.replace(leftover, path)
        elif leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform allows opening a folder.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh staging folder beside ``path``; on success it replaces ``path``
    as a whole (files fsynced first), on an exception it is removed and ``path`` is
    left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    staging = make_staging_folder(path)
    try:
        yield staging
        for file in staging.iterdir():
            if file.is_file():
                with open(file, "rb") as handle:
                    os.fsync(handle.fileno())
        old = None
        if path.exists():
            old = path.with_name(f"{staging_prefix(path)}old")
            os.replace(path, old)
        os.replace(staging, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(path.parent)
    except BaseException as error:
        _name_the_file(error, path)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def link_or_copy(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Make ``destination`` the same file as ``source``: a hard link where the file
    system allows (no extra space), else a copy; atomic either way.

    Safe because files here are never modified in place, only replaced.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.link")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.replace(temporary, destination)


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to an uncompressed ``.npz`` atomically and byte-reproducibly.

    ``np.savez`` stamps each member with the current time; a fixed timestamp makes the
    same arrays give the same bytes, so reruns of a stage produce identical files.
    """
    with atomic_write(path) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file into memory, never unpickling.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is truncated, not an ``.npz`` file, or holds pickled objects;
        the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as error:
        raise ValueError(
            f"{path} is not a readable .npz file (truncated or corrupt?): {error}"
        ) from error
    except ValueError as error:
        raise ValueError(f"{path}: cannot load without unpickling ({error})") from error


def save_json(path: str | os.PathLike, data) -> None:
    """Write ``data`` as indented JSON atomically."""
    with atomic_write(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")


def save_csv(path: str | os.PathLike, rows: list[dict], fieldnames: list[str]) -> None:
    """Write ``rows`` (dicts keyed by ``fieldnames``) as a CSV file atomically."""
    with atomic_write(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def load_json(path: str | os.PathLike):
    """Read a JSON file, naming the file in any error."""
    path = Path(path)
    try:
        with open(path) as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 of named arrays: each name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.data if value.size else b"")
    return digest.hexdigest()
