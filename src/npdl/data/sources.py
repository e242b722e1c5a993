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

Each is presented as an :class:`ImageSource`: a listing (``classes``, ``names``,
``labels``) that costs no decoding, and :meth:`ImageSource.read_images`, which decodes
only the requested samples into one preallocated ``uint8`` array
(:mod:`npdl.data.decoding`).
"""

from __future__ import annotations

import os
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .archives import (
    _ARCHIVE_ERRORS,
    _archive_kind,
    _list_archive,
    _open_decompressed,
    _scan_tar,
    _TarScan,
)
from .decoding import DEFAULT_IMAGE_SIZE, _as_image_size, _decode_into, _resize_array
from .folders import _is_hidden, _is_image_name, list_image_folder

__all__ = [
    "ArchiveImageSource",
    "ArrayImageSource",
    "FolderImageSource",
    "ImageSource",
    "open_image_source",
]


class ImageSource(ABC):
    """Labelled images on disk: a cheap listing plus on-demand decoding.

    Attributes
    ----------
    path : pathlib.Path
        The folder or archive.
    classes : list of str
        Class names; ``labels`` index into this list.
    names : list of str
        One name per sample, unique within the source (``"<class>/<file>"`` for
        ImageFolders).
    labels : numpy.ndarray
        ``int64`` array of shape ``(len(self),)``.
    subsets : numpy.ndarray or None
        For sources that carry an official partition (the CIFAR-10 python archive),
        a ``str`` array of shape ``(len(self),)`` holding ``"train"`` or ``"test"``;
        ``None`` for ImageFolders, which have to be split by the caller.
    """

    path: Path
    classes: list[str]
    names: list[str]
    labels: np.ndarray
    subsets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, {len(self)} images, "
            f"{len(self.classes)} classes)"
        )

    @property
    def official_train_indices(self) -> np.ndarray | None:
        """``int64`` indices of the official training samples, or None (no partition)."""
        if self.subsets is None:
            return None
        return np.flatnonzero(self.subsets == "train").astype(np.int64)

    @property
    def official_test_indices(self) -> np.ndarray | None:
        """``int64`` indices of the official test samples, or None (no partition)."""
        if self.subsets is None:
            return None
        return np.flatnonzero(self.subsets == "test").astype(np.int64)

    def _checked_indices(self, indices: Sequence[int] | np.ndarray | None) -> np.ndarray:
        if indices is None:
            return np.arange(len(self), dtype=np.int64)
        indices = np.asarray(indices)
        if indices.ndim != 1 or not (indices.size == 0 or np.issubdtype(indices.dtype, np.integer)):
            raise ValueError(
                f"indices must be a 1-D array of ints, got shape {indices.shape} "
                f"and dtype {indices.dtype}"
            )
        indices = indices.astype(np.int64, copy=False)
        if indices.size and (indices.min() < -len(self) or indices.max() >= len(self)):
            raise IndexError(
                f"indices must lie in [{-len(self)}, {len(self)}) for {self!r}; "
                f"got min {indices.min()}, max {indices.max()}"
            )
        return indices % max(len(self), 1)

    def read_images(
        self,
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        size: int | Sequence[int] = DEFAULT_IMAGE_SIZE,
        workers: int | str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Decode the selected images into one array.

        Parameters
        ----------
        indices : array-like of int, shape (M,), optional
            Which samples, in the order wanted (repeats allowed). Default: all.
        size : int or (int, int), default (32, 32)
            Output ``(height, width)``; other sizes are resized (see
            :func:`decode_image`).
        workers : int, 'auto' or a pool from :func:`decoding_pool`, optional
            Decoding processes. Default (None), ``0`` or ``1``: decode in this
            process. ``'auto'``: one per available CPU when at least 4096 images are
            decoded. More than one spawns processes, which re-import the caller's
            main module: use it only under an ``if __name__ == "__main__":`` guard.
        progress : callable ``(decoded, total)``, optional
            Called as chunks of images are decoded (for a progress bar).

        Returns
        -------
        numpy.ndarray
            ``uint8`` array of shape ``(M, height, width, 3)``; row ``k`` is sample
            ``indices[k]``.
        """
        indices = self._checked_indices(indices)
        size = _as_image_size(size)
        images = np.empty((len(indices), *size, 3), dtype=np.uint8)
        # Each distinct sample is read and decoded once, into the first row that asks
        # for it; repeats are copied afterwards.
        unique, first_row, inverse = np.unique(indices, return_index=True, return_inverse=True)
        items = self._iter_encoded(unique, first_row)
        _decode_into(images, items, count=len(unique), workers=workers, progress=progress)
        source_row = first_row[inverse.reshape(-1)]
        repeated = np.flatnonzero(source_row != np.arange(len(indices)))
        if repeated.size:
            images[repeated] = images[source_row[repeated]]
        return images

    @abstractmethod
    def _iter_encoded(
        self, unique: np.ndarray, rows: np.ndarray
    ) -> Iterator[tuple[int, str, bytes]]:
        """Yield ``(rows[k], display name, encoded bytes)`` for sample ``unique[k]``.

        Items may come in any order; sources yield them in whatever order is cheapest
        to read.
        """


class ArrayImageSource(ImageSource):
    """Images already decoded, held in memory: :meth:`read_images` just indexes them.

    Parameters
    ----------
    path : path-like
        Where the arrays came from (for messages).
    images : numpy.ndarray
        ``uint8 (N, H, W, 3)``.
    labels : array-like of int, shape (N,)
        Values in ``[0, len(classes))``.
    classes : sequence of str
    names : sequence of str
        One unique name per image.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        classes: Sequence[str],
        names: Sequence[str],
    ) -> None:
        self.path = Path(path)
        self._images = np.asarray(images)
        self.labels = np.asarray(labels, dtype=np.int64)
        if (
            self._images.dtype != np.uint8
            or self._images.ndim != 4
            or self._images.shape[-1] != 3
            or len(self._images) != len(self.labels)
        ):
            raise ValueError(
                f"{self.path}: images must be uint8 of shape (N, H, W, 3) with N = "
                f"{len(self.labels)} labels, got {self._images.dtype} {self._images.shape}"
            )
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= len(classes)):
            raise ValueError(
                f"{self.path}: labels must lie in [0, {len(classes)}) for classes "
                f"{list(classes)}, got [{self.labels.min()}, {self.labels.max()}]"
            )
        self.classes = list(classes)
        self.names = list(names)

    def read_images(
        self,
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        size: int | Sequence[int] = DEFAULT_IMAGE_SIZE,
        workers: int | str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Return the selected images; see :meth:`ImageSource.read_images`.

        ``workers`` and ``progress`` are accepted for interface compatibility and
        unused (the images are decoded already).
        """
        indices = self._checked_indices(indices)
        size = _as_image_size(size)
        images = self._images[indices]
        if images.shape[1:3] == size:
            return images
        resized = np.empty((len(images), *size, 3), dtype=np.uint8)
        for row, image in enumerate(images):
            resized[row] = _resize_array(image, size)
        return resized

    def _iter_encoded(
        self, unique: np.ndarray, rows: np.ndarray
    ) -> Iterator[tuple[int, str, bytes]]:  # pragma: no cover - read_images overrides
        raise NotImplementedError("an ArrayImageSource holds decoded pixels")


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

    def __init__(self, path: str | os.PathLike, *, _tar_scan: _TarScan | None = None) -> None:
        self.path = Path(path)
        # open_image_source hands over the scan it made to detect CIFAR-10 batches.
        self._kind, self._tar_entries, listing = _list_archive(self.path, _tar_scan)
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
                except _ARCHIVE_ERRORS as error:
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
            with _open_decompressed(self.path) as stream:
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
        except _ARCHIVE_ERRORS as error:
            raise ValueError(f"cannot read tar archive {self.path}: {error}") from error


def open_image_source(path: str | os.PathLike | ImageSource) -> ImageSource:
    """Open a folder or archive of labelled images as an :class:`ImageSource`.

    * a directory -> :class:`FolderImageSource` (ImageFolder layout);
    * a tar archive whose members are the official CIFAR-10 python batches
      (``data_batch_1`` … ``batches.meta``) and no images ->
      :class:`Cifar10PythonSource`, with an official train/test partition;
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
    # cifar.py subclasses ImageSource, so it imports this module; importing it here
    # rather than at the top breaks the cycle.
    from .cifar import (
        _CIFAR_META,
        _CIFAR_TRAIN_BATCHES,
        Cifar10PythonSource,
        _cifar_member_name,
        _is_cifar_member,
        _parse_cifar_archive,
    )

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
    if _archive_kind(path) == "zip":
        return ArchiveImageSource(path)

    scan = _scan_tar(path, capture=_is_cifar_member)
    has_images = any(
        _is_image_name(name) and not _is_hidden(name.rpartition("/")[2]) for name in scan.files
    )
    cifar_members = {_cifar_member_name(name) for name in scan.captured}
    if not has_images and _CIFAR_TRAIN_BATCHES[0] in cifar_members and _CIFAR_META in cifar_members:
        return Cifar10PythonSource(path, _parsed=_parse_cifar_archive(path, scan.captured))
    # The scan already listed the tar; a second pass would cost as much again.
    return ArchiveImageSource(path, _tar_scan=scan)
