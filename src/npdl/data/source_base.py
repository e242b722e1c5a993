"""The image-source contract: labelled images as a cheap listing plus on-demand decoding.

:class:`ImageSource` is what every layout on disk is presented as (the layouts and
:func:`~npdl.data.sources.open_image_source` are in :mod:`npdl.data.sources`, the CIFAR-10
python archive in :mod:`npdl.data.cifar`): a listing (``classes``, ``names``,
``labels``) that costs no decoding, and :meth:`ImageSource.read_images`, which decodes
only the requested samples into one preallocated ``uint8`` array
(:mod:`npdl.data.decoding`). :class:`ArrayImageSource` holds images decoded already.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .decoding import DEFAULT_IMAGE_SIZE, as_image_size, decode_into, resize_array

__all__ = ["ArrayImageSource", "ImageSource"]


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
        size = as_image_size(size)
        images = np.empty((len(indices), *size, 3), dtype=np.uint8)
        # Each distinct sample is read and decoded once, into the first row that asks
        # for it; repeats are copied afterwards.
        unique, first_row, inverse = np.unique(indices, return_index=True, return_inverse=True)
        items = self._iter_encoded(unique, first_row)
        decode_into(images, items, count=len(unique), workers=workers, progress=progress)
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
        size = as_image_size(size)
        images = self._images[indices]
        if images.shape[1:3] == size:
            return images
        resized = np.empty((len(images), *size, 3), dtype=np.uint8)
        for row, image in enumerate(images):
            resized[row] = resize_array(image, size)
        return resized

    def _iter_encoded(
        self, unique: np.ndarray, rows: np.ndarray
    ) -> Iterator[tuple[int, str, bytes]]:  # pragma: no cover - read_images overrides
        raise NotImplementedError("an ArrayImageSource holds decoded pixels")
