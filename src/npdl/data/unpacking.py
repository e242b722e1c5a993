"""Unpacking a downloaded archive into a folder, with the checks archive listing makes.

npdl reads archives in memory (:mod:`npdl.data.archives`); unpacking is only for the
course's ``download_url``, whose archive is meant to become ``root``. Every member is
checked as when listing (no absolute names, no ``..``, no member over
:data:`~npdl.data.archives.MAX_MEMBER_BYTES`); only regular files and folders are
written (links and special files are skipped), each inside the destination. An
ImageFolder tree under one top-level folder (``cifar10/<class>/<image>``) is unpacked
without that folder, so the destination itself is the ImageFolder.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from .archives import (
    ARCHIVE_ERRORS,
    archive_kind,
    check_member_name,
    check_member_size,
    member_parts,
    open_decompressed,
)
from .folders import is_hidden, is_image_name

__all__ = ["unpack_archive"]


def _tar_files(archive: Path) -> Iterator[tuple[str, tarfile.TarFile, tarfile.TarInfo]]:
    with open_decompressed(archive) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            check_member_name(archive, member.name)
            if member.isfile() and not member.issparse():
                check_member_size(archive, member.name, member.size)
                yield member.name, tar, member


def _read_members(archive: Path, kind: str) -> Iterator[tuple[str, bytes]]:
    """``(member name, content)`` of every regular file, one at a time."""
    if kind == "zip":
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                check_member_name(archive, info.filename)
                if not info.is_dir():
                    check_member_size(archive, info.filename, info.file_size)
                    yield info.filename, zipped.read(info)
        return
    for name, tar, member in _tar_files(archive):
        extracted = tar.extractfile(member)
        assert extracted is not None  # regular files always extract
        yield name, extracted.read()


def _member_names(archive: Path, kind: str) -> list[str]:
    if kind == "zip":
        with zipfile.ZipFile(archive) as zipped:
            return [info.filename for info in zipped.infolist() if not info.is_dir()]
    return [name for name, _tar, _member in _tar_files(archive)]


def _wrapper_folder(names: list[str]) -> str | None:
    """The one top-level folder wrapping an ImageFolder tree (all images at depth 3)."""
    images = [
        parts
        for parts in map(member_parts, names)
        if parts and is_image_name(parts[-1]) and not any(map(is_hidden, parts))
    ]
    if images and {len(parts) for parts in images} == {3} and len({p[0] for p in images}) == 1:
        return images[0][0]
    return None


def unpack_archive(archive: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Unpack the regular files of a tar or zip archive into ``destination``.

    Files are first written to a temporary folder beside ``destination`` and moved into
    place only when the whole archive was read, so a damaged archive leaves nothing
    half-written. A missing or empty ``destination`` is replaced whole; files of an
    existing one are overwritten by the archive's files of the same name.

    Parameters
    ----------
    archive : path-like
        ``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2`` or ``.tar.xz``.
    destination : path-like
        The folder to fill (created with its parents).

    Returns
    -------
    pathlib.Path
        ``destination``.

    Raises
    ------
    ValueError
        If the archive is unreadable, or a member is absolute, climbs out with ``..``
        or is too large, naming the archive and member.
    """
    archive, destination = Path(archive), Path(destination)
    kind = archive_kind(archive)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{destination.name}.", dir=destination.parent) as tmp:
        unpacked = Path(tmp) / "unpacked"
        unpacked.mkdir()
        try:
            wrapper = _wrapper_folder(_member_names(archive, kind))
            for name, data in _read_members(archive, kind):
                parts = member_parts(name)
                if wrapper is not None and len(parts) > 1 and parts[0] == wrapper:
                    parts = parts[1:]
                target = unpacked.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        except ARCHIVE_ERRORS as error:
            raise ValueError(f"cannot unpack archive {archive}: {error}") from error
        if destination.is_dir() and not any(destination.iterdir()):
            destination.rmdir()
        if not destination.exists():
            os.replace(unpacked, destination)
            return destination
        for path in sorted(unpacked.rglob("*")):
            target = destination / path.relative_to(unpacked)
            if path.is_dir():
                target.mkdir(exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, target)
    return destination
