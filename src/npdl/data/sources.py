"""Image sources: labelled images on disk as a cheap listing plus on-demand decoding.

Three on-disk layouts are understood, all opened through :func:`open_image_source`:

* an **ImageFolder** directory ``root/<class>/<image>`` (:class:`FolderImageSource`,
  listed by :mod:`npdl.data.folders`);
* an **archive** (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``, ``.zip``)
  holding an ImageFolder tree, either at its top level or under one top-level folder
  (``cifar10-train/<class>/<image>``) (:class:`ArchiveImageSource`, listed and checked
  by :mod:`npdl.data.archives`);
* the **official CIFAR-10 python archive** ``cifar-10-python.tar.gz`` (pickled batches),
  recognised by its member names (:class:`~npdl.data.cifar.Cifar10PythonSource`).

Each is presented as an :class:`~npdl.data.source_base.ImageSource` (the contract, in
:mod:`npdl.data.source_base`): a listing (``classes``, ``names``, ``labels``) that costs
no decoding, and :meth:`~npdl.data.source_base.ImageSource.read_images`, which decodes
only the requested samples into one preallocated ``uint8`` array
(:mod:`npdl.data.decoding`). The two base classes are importable from here too.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .archives import (
    ARCHIVE_ERRORS,
    TarScan,
    archive_kind,
    list_archive,
    open_decompressed,
    scan_tar,
)
from .cifar import cifar_source_from_scan, is_cifar_member
from .folders import list_image_folder
from .source_base import ArrayImageSource, ImageSource

__all__ = [
    "ArchiveImageSource",
    "ArrayImageSource",
    "FolderImageSource",
    "ImageSource",
    "open_image_source",
]


class FolderImageSource(ImageSource):
    """An ImageFolder directory ``root/<class>/<image>`` (see :func:`list_image_folder`)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.path = Path(root)
        self.classes, self.names, self.labels = list_image_folder(self.path)

    def _iter_encoded(
        self, unique: np.ndarray, rows: np.ndarray
    ) -> Iterator[tuple[int, str, bytes]]:
        for sample, row in zip(unique.tolist(), rows.tolist(), strict=True):
            file_path = self.path / self.names[sample]
            yield row, str(file_path), file_path.read_bytes()


class ArchiveImageSource(ImageSource):
    """An ImageFolder tree inside a tar or zip archive, read without extraction.

    Opening lists the archive once. :meth:`read_images` on a compressed tar streams
    the archive once more, front to back, copying out only the requested members
    (a ``.tar.gz`` has no random access, so one sequential pass is the cheapest way
    to any subset); zip members are read directly.
    """

    def __init__(self, path: str | os.PathLike, *, _tar_scan: TarScan | None = None) -> None:
        self.path = Path(path)
        # open_image_source hands over the scan it made to detect CIFAR-10 batches.
        self._kind, self._tar_entries, listing = list_archive(self.path, _tar_scan)
        self.classes, self.names, self.labels = listing.classes, listing.names, listing.labels
        self._members = listing.members

    def _iter_encoded(
        self, unique: np.ndarray, rows: np.ndarray
    ) -> Iterator[tuple[int, str, bytes]]:
        if self._kind == "zip":
            yield from self._iter_zip(unique, rows)
        else:
            yield from self._iter_tar(unique, rows)

    def _iter_zip(self, unique: np.ndarray, rows: np.ndarray) -> Iterator[tuple[int, str, bytes]]:
        with zipfile.ZipFile(self.path) as zipped:
            for sample, row in zip(unique.tolist(), rows.tolist(), strict=True):
                member = self._members[sample]
                try:
                    data = zipped.read(member)
                except ARCHIVE_ERRORS as error:
                    raise ValueError(
                        f"cannot read member {member!r} of zip archive {self.path}: {error}"
                    ) from error
                yield row, f"{self.path}:{member}", data

    def _iter_tar(self, unique: np.ndarray, rows: np.ndarray) -> Iterator[tuple[int, str, bytes]]:
        members = [self._members[sample] for sample in unique.tolist()]
        entries = [self._tar_entries[member] for member in members]
        # Visiting members in stream order turns every seek into a short skip forward.
        order = sorted(range(len(members)), key=lambda position: entries[position].offset)
        row_list = rows.tolist()
        try:
            with open_decompressed(self.path) as stream:
                for position in order:
                    entry = entries[position]
                    stream.seek(entry.offset)
                    data = stream.read(entry.size)
                    if len(data) != entry.size:
                        raise EOFError(
                            f"member {members[position]!r} ends after {len(data)} of "
                            f"{entry.size} bytes"
                        )
                    yield row_list[position], f"{self.path}:{members[position]}", data
        except ARCHIVE_ERRORS as error:
            raise ValueError(f"cannot read tar archive {self.path}: {error}") from error


def open_image_source(path: str | os.PathLike | ImageSource) -> ImageSource:
    """Open a folder or archive of labelled images as an :class:`ImageSource`.

    * a directory -> :class:`FolderImageSource` (ImageFolder layout);
    * a tar archive whose members are the official CIFAR-10 python batches
      (``data_batch_1`` … ``batches.meta``) and no images ->
      :class:`~npdl.data.cifar.Cifar10PythonSource`, with an official train/test partition;
    * any other tar or zip archive -> :class:`ArchiveImageSource` (ImageFolder tree).

    The archive type is detected from its content, not its file name. An
    :class:`ImageSource` passed in is returned unchanged.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist, naming it.
    ValueError
        If ``path`` is neither a folder nor a readable archive, or its layout is not
        one of the above.
    """
    if isinstance(path, ImageSource):
        return path
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"image source {path} does not exist; expected an ImageFolder directory or an "
            "archive of one"
        )
    if path.is_dir():
        return FolderImageSource(path)
    if archive_kind(path) == "zip":
        return ArchiveImageSource(path)

    scan = scan_tar(path, capture=is_cifar_member)
    cifar = cifar_source_from_scan(path, scan)
    if cifar is not None:
        return cifar
    # The scan already listed the tar; a second pass would cost as much again.
    return ArchiveImageSource(path, _tar_scan=scan)
