"""Listing archives (tar, zip) that hold an ImageFolder tree, and the checks on their members.

An archive (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``, ``.zip``) holds an
ImageFolder tree, either at its top level or under one top-level folder
(``cifar10-train/<class>/<image>``). A tar is listed in one pass, from memory when its
decompressed stream is small enough (:data:`IN_MEMORY_TAR_BYTES`).

Archives are read in memory and never extracted (only the course's ``download_url`` is
unpacked, by :mod:`npdl.data.unpacking`, with these checks), so a member called
``../../x`` could not write anywhere; such names (``..`` or absolute) are still
refused, because an archive carrying them is either broken or hostile. So is a member claiming more than
:data:`MAX_MEMBER_BYTES` uncompressed (a decompression bomb).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .decoding import IMAGE_EXTENSIONS
from .folders import is_hidden, is_image_name, labels_from_counts

__all__ = [
    "ARCHIVE_ERRORS",
    "IN_MEMORY_TAR_BYTES",
    "MAX_MEMBER_BYTES",
    "TarScan",
    "archive_kind",
    "check_member_name",
    "check_member_size",
    "list_archive",
    "list_image_archive",
    "member_parts",
    "open_decompressed",
    "scan_tar",
]

#: The exception types a broken tar or zip archive raises while it is read; readers
#: catch them and report one ValueError naming the archive.
ARCHIVE_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zlib.error,
    gzip.BadGzipFile,
    lzma.LZMAError,
    EOFError,
)

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def check_member_name(archive: Path, member_name: str) -> None:
    """Refuse an archive member name that is absolute or climbs out with ``..``.

    Called on every member where an archive is listed or unpacked, so later code can
    trust names.

    Raises
    ------
    ValueError
        If ``member_name`` starts with ``/`` or a drive letter, or has a ``..`` part,
        naming ``archive`` and the member.
    """
    normalised = member_name.replace("\\", "/")
    if (
        normalised.startswith("/")
        or _WINDOWS_DRIVE.match(normalised)
        or ".." in normalised.split("/")
    ):
        raise ValueError(
            f"archive {archive} contains the member {member_name!r}, an absolute path or a "
            "path with '..'; refusing it (members must be relative paths inside the archive)"
        )


def member_parts(member_name: str) -> tuple[str, ...]:
    """Split a (checked) member name into path parts, dropping empty and ``.`` parts
    (``"./top//cat/1.png"`` -> ``("top", "cat", "1.png")``; ``\\`` separates too)."""
    return tuple(
        part for part in member_name.replace("\\", "/").split("/") if part not in ("", ".")
    )


@dataclass(frozen=True)
class _ImageFolderListing:
    classes: list[str]
    names: list[str]
    labels: np.ndarray
    members: list[str]  # archive member name of each entry of ``names``


def _list_image_members(
    archive: Path, files: Iterable[str], folders: Iterable[str]
) -> _ImageFolderListing:
    """Find the ImageFolder tree among archive member names.

    ``files`` are regular-file members, ``folders`` directory members (archives may
    omit the latter; they only matter to detect empty class folders).
    """
    images: dict[tuple[str, ...], str] = {}
    for member in files:
        parts = member_parts(member)
        if parts and not any(is_hidden(part) for part in parts) and is_image_name(parts[-1]):
            # Appending to a tar can store a name twice; the last copy is current.
            images[parts] = member
    if not images:
        raise ValueError(
            f"archive {archive} holds no images (looked for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))} in <class>/<image> or <top>/<class>/<image>)"
        )
    depths = {len(parts) for parts in images}
    tops = {parts[0] for parts in images}
    if depths == {2}:
        prefix: tuple[str, ...] = ()
    elif depths == {3} and len(tops) == 1:
        prefix = (next(iter(tops)),)
    else:
        example = min(images.values(), key=lambda member: (-len(member), member))
        raise ValueError(
            f"archive {archive} is not an ImageFolder tree: images must all be "
            f"<class>/<image> or all <top>/<class>/<image> under one top folder, but found "
            f"depths {sorted(depths)} and top-level entries {sorted(tops)[:5]} "
            f"(e.g. member {example!r})"
        )

    by_class: dict[str, list[str]] = {}
    for parts in images:
        by_class.setdefault(parts[len(prefix)], []).append(parts[-1])
    for member in folders:
        parts = member_parts(member)
        is_class_folder = len(parts) == len(prefix) + 1 and parts[: len(prefix)] == prefix
        if is_class_folder and not is_hidden(parts[-1]) and parts[-1] not in by_class:
            raise ValueError(
                f"class folder {member!r} in archive {archive} holds no images; "
                "remove it or add images"
            )

    classes = sorted(by_class)
    names: list[str] = []
    members: list[str] = []
    counts: list[int] = []
    for class_name in classes:
        files_of_class = sorted(by_class[class_name])
        names.extend(f"{class_name}/{file_name}" for file_name in files_of_class)
        members.extend(images[(*prefix, class_name, file_name)] for file_name in files_of_class)
        counts.append(len(files_of_class))
    return _ImageFolderListing(classes, names, labels_from_counts(counts), members)


class _TarEntry(NamedTuple):
    offset: int  # position of the data in the decompressed tar stream
    size: int


@dataclass
class TarScan:
    """What one pass over a tar archive found (:func:`scan_tar`).

    Attributes
    ----------
    files : dict of str to (offset, size)
        Every regular-file member -> where its data lies in the decompressed stream
        (``offset``, ``size`` in bytes).
    folders : list of str
        The directory members.
    captured : dict of str to bytes
        The content of the members the scan was asked to read.
    """

    files: dict[str, _TarEntry]
    folders: list[str]
    captured: dict[str, bytes]


#: Largest archive member read into memory. Every member is read whole (nothing is
#: extracted to disk); an official CIFAR batch is 30 MB, an image a few KB, so anything
#: larger is a corrupt or malicious archive (a decompression bomb), refused up front.
MAX_MEMBER_BYTES = 256 * 2**20


def check_member_size(archive: Path, name: str, size: int) -> None:
    """Refuse a member whose uncompressed ``size`` (bytes) is over :data:`MAX_MEMBER_BYTES`
    (a decompression bomb), naming ``archive`` and the member ``name``: ValueError."""
    if size > MAX_MEMBER_BYTES:
        raise ValueError(
            f"archive {archive} member {name!r} claims {size:,} bytes uncompressed, over the "
            f"{MAX_MEMBER_BYTES:,}-byte limit for one member; refusing to read it"
        )


def scan_tar(archive: Path, capture: Callable[[str], bool] = lambda name: False) -> TarScan:
    """List a tar archive in one streaming pass; read the members ``capture`` selects.

    Parameters
    ----------
    archive : pathlib.Path
        A tar archive, plain or gzip/bz2/xz-compressed.
    capture : callable ``(member name) -> bool``, optional
        Which regular-file members to read into :attr:`TarScan.captured` (default none).

    Returns
    -------
    TarScan

    Raises
    ------
    ValueError
        If the archive cannot be read, or a member fails :func:`check_member_name` or
        :func:`check_member_size`, or an image member is a link or special file.
    """
    files: dict[str, _TarEntry] = {}
    folders: list[str] = []
    captured: dict[str, bytes] = {}
    try:
        # tarfile's random-access reader over the decompressed bytes lists about twice
        # as fast as its stream reader; archives too large to hold are streamed ("r|*").
        in_memory = _tar_in_memory(archive)
        how = (
            {"fileobj": in_memory, "mode": "r:"}
            if in_memory is not None
            else {"name": archive, "mode": "r|*"}
        )
        with tarfile.open(**how) as tar:
            for member in tar:
                check_member_name(archive, member.name)
                if member.isdir():
                    folders.append(member.name)
                elif member.isfile() and not member.issparse():
                    check_member_size(archive, member.name, member.size)
                    files[member.name] = _TarEntry(member.offset_data, member.size)
                    if capture(member.name):
                        extracted = tar.extractfile(member)
                        assert extracted is not None  # regular files always extract
                        captured[member.name] = extracted.read()
                elif is_image_name(member.name):
                    raise ValueError(
                        f"archive {archive} member {member.name!r} is a link or special "
                        "file; image members must be regular files"
                    )
    except ARCHIVE_ERRORS as error:
        raise ValueError(f"cannot read tar archive {archive}: {error}") from error
    return TarScan(files, folders, captured)


#: A tar archive whose decompressed size is at most this is listed from memory.
IN_MEMORY_TAR_BYTES = 256 * 2**20


def _tar_in_memory(archive: Path) -> io.BytesIO | None:
    """The decompressed tar stream of ``archive`` as an in-memory file, or None when it
    is larger than :data:`IN_MEMORY_TAR_BYTES`."""
    with open_decompressed(archive) as stream:
        data = stream.read(IN_MEMORY_TAR_BYTES + 1)
    return io.BytesIO(data) if len(data) <= IN_MEMORY_TAR_BYTES else None


def open_decompressed(archive: Path) -> io.BufferedIOBase:
    """Open a tar archive as its decompressed byte stream (seekable, forward cheaply).

    The compression (gzip, bz2, xz or none) is told by the file's first bytes, not its
    name. The caller closes the stream.
    """
    with open(archive, "rb") as raw:
        magic = raw.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(archive, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(archive, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(archive, "rb")
    return open(archive, "rb")


def _list_zip(archive: Path) -> tuple[list[str], list[str]]:
    try:
        with zipfile.ZipFile(archive) as zipped:
            infos = zipped.infolist()
    except ARCHIVE_ERRORS as error:
        raise ValueError(f"cannot read zip archive {archive}: {error}") from error
    for info in infos:
        check_member_name(archive, info.filename)
        check_member_size(archive, info.filename, info.file_size)
    files = [info.filename for info in infos if not info.is_dir()]
    folders = [info.filename for info in infos if info.is_dir()]
    return files, folders


def archive_kind(path: Path) -> str:
    """``"zip"`` or ``"tar"``, told from the content of ``path``; ValueError for anything
    else (naming ``path`` and the layouts a source may have)."""
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise ValueError(
        f"{path} is neither a folder nor a readable archive; expected an ImageFolder "
        "directory, a .tar/.tar.gz/.tgz/.tar.bz2/.tar.xz or .zip archive of one, or the "
        "official cifar-10-python.tar.gz"
    )


def list_archive(
    archive: Path, tar_scan: TarScan | None = None
) -> tuple[str, dict[str, _TarEntry] | None, _ImageFolderListing]:
    """List the ImageFolder tree in a tar or zip archive: ``(kind, tar entries, listing)``.

    ``kind`` is ``"tar"`` or ``"zip"``; the tar entries (member -> data offset and size
    in the decompressed stream) are None for a zip. The listing holds ``classes``,
    ``names`` and ``labels`` (``int64 (N,)``) as :func:`list_image_archive` returns them,
    and ``members``, the archive member of each name. A ``tar_scan`` already made (by
    :func:`npdl.data.sources.open_image_source`, to detect CIFAR-10 batches) is used
    instead of listing the archive again.
    """
    if not archive.exists():
        raise FileNotFoundError(f"archive {archive} does not exist")
    kind = "tar" if tar_scan is not None else archive_kind(archive)
    if kind == "tar":
        scan = tar_scan if tar_scan is not None else scan_tar(archive)
        return kind, scan.files, _list_image_members(archive, scan.files, scan.folders)
    files, folders = _list_zip(archive)
    return kind, None, _list_image_members(archive, files, folders)


def list_image_archive(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """List the ImageFolder tree inside an archive without decoding or extracting.

    Same rules and return values as :func:`~npdl.data.folders.list_image_folder`; the tree may sit at
    the archive's top level or under a single top-level folder, which is not part of
    the returned names.

    Parameters
    ----------
    path : path-like
        A ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz`` or ``.zip`` file.

    Returns
    -------
    classes : list of str
    names : list of str
        ``"<class>/<file>"`` for every image, grouped by class in class order.
    labels : numpy.ndarray
        ``int64`` array of shape ``(len(names),)``.
    """
    _kind, _entries, listing = list_archive(Path(path))
    return listing.classes, listing.names, listing.labels
