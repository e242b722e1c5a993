"""ImageFolderDataset: the labelled images of one mode, decoded once into memory.

The course API is kept with two changes that make it fast and reproducible:

* a dataset decodes its images **once**, into one ``uint8 (N, H, W, 3)`` array, and
  npdl's transforms run on whole batches (see :mod:`npdl.data.transforms`; a plain
  per-image callable gets one image at a time, see :mod:`npdl.data.transform_base`);
* every random choice (the split) draws from an explicit seed or
  :class:`numpy.random.Generator` (see :mod:`npdl.data.splits`).

As in the course, ``dataset[i]['image']`` without a transform is a fresh, writable
``float64 (H, W, 3)`` copy, and ``download_url`` fetches and unpacks the data into
``root`` when ``root`` is missing or empty.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .download import download_and_unpack
from .source_base import ImageSource
from .sources import open_image_source
from .splits import DEFAULT_SPLIT, SeedLike, as_labels, split_source_indices, stratified_subset
from .transform_base import apply_to_batch, apply_to_one

__all__ = ["ImageFolderDataset"]

#: The course's keyword arguments that have no effect here (its ``Dataset`` printed
#: download progress with ``verbose``; npdl shows a progress bar when tqdm is there).
_COURSE_IGNORED_ARGUMENTS = frozenset({"verbose"})

#: An npdl Transform or a plain per-image callable.
TransformLike = Callable[[np.ndarray], np.ndarray]


def _read_only_view(array: np.ndarray) -> np.ndarray:
    # Datasets hand out views of their arrays (``dataset[i]`` without a transform);
    # read-only makes an accidental in-place edit fail loudly instead of corrupting
    # every later epoch.
    view = array.view()
    view.flags.writeable = False
    return view


class ImageFolderDataset:
    """Labelled images of one mode (train/val/test), decoded once into memory.

    Parameters
    ----------
    root : path-like or ImageSource
        An ImageFolder directory, an archive of one (``.tar.gz``, ``.zip``, …), the
        official ``cifar-10-python.tar.gz``, or an already opened
        :class:`~npdl.data.source_base.ImageSource` (open once, build several modes).
    transform : callable, optional
        An npdl transform (run on whole batches, see :mod:`npdl.data.transforms`) or a
        plain callable written for one ``(H, W, 3)`` image (run image by image, see
        :func:`~npdl.data.transform_base.apply_to_batch`); applied by
        :meth:`__getitem__` and :meth:`get_batch`, never stored.
    mode : str, default "train"
        Which part of the split; one of ``split``'s keys (plus ``"test"`` for the
        official CIFAR-10 archive).
    limit_files : int, optional
        Keep at most this many images of the mode, a class-balanced random subset
        (prefix of the round-robin order). Applied before decoding: only the kept
        images are read.
    split : mapping of str to float, default {'train': 0.6, 'val': 0.2, 'test': 0.2}
        Mode ratios for :func:`stratified_split`. For the official CIFAR-10 archive,
        ``"test"`` is the official test batch and the official training images are
        split among the other modes (see :func:`split_source_indices`).
    seed : int or numpy.random.Generator, default 0
        Seed of the split. Build every mode with the same int seed to get disjoint
        modes.
    image_size : int or (int, int), default (32, 32)
        ``(height, width)`` images are decoded to (resized with bilinear filtering
        if they differ).
    workers : int, optional
        Decoding processes; see :meth:`~npdl.data.source_base.ImageSource.read_images`.
    download_url : str, optional
        The course's: an archive (``.zip``, ``.tar.gz``, ...) downloaded and unpacked
        into ``root`` when ``root`` is missing or empty (see
        :func:`~npdl.data.download.download_and_unpack`; checked against its md5 when
        the URL is a known one). Unused when ``root`` holds data.
    force_download : bool, default False
        Download and unpack again even if ``root`` holds data (the course's).
    **kwargs
        ``verbose`` (the course's) is accepted and has no effect; any other keyword
        raises ``TypeError``.

    Attributes
    ----------
    images : numpy.ndarray
        ``uint8`` array of shape ``(N, H, W, 3)``, read-only.
    labels : numpy.ndarray
        ``int64`` array of shape ``(N,)``, read-only.
    classes : list of str
        Class names; ``labels`` index into it.
    class_to_idx : dict of str to int
        Class name -> label.
    names : list of str
        Source name of each image (``"<class>/<file>"`` for ImageFolders).
    source_indices : numpy.ndarray or None
        ``int64 (N,)`` index of each image in its source listing (None for
        :meth:`from_arrays`).
    mode : str or None
        The mode, or None for :meth:`from_arrays`.
    transform : callable or None
    """

    def __init__(
        self,
        root: str | os.PathLike | ImageSource,
        transform: TransformLike | None = None,
        mode: str = "train",
        limit_files: int | None = None,
        split: Mapping[str, float] = DEFAULT_SPLIT,
        seed: SeedLike = 0,
        image_size: int | Sequence[int] = (32, 32),
        workers: int | None = None,
        download_url: str | None = None,
        force_download: bool = False,
        **kwargs: Any,
    ) -> None:
        unexpected = sorted(set(kwargs) - _COURSE_IGNORED_ARGUMENTS)
        if unexpected:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments {unexpected}")
        source = self._open_source(root, download_url, bool(force_download))
        indices_by_mode = split_source_indices(source, split, rng=seed)
        if mode not in indices_by_mode:
            raise ValueError(
                f"mode={mode!r} is not one of the split's modes {sorted(indices_by_mode)} "
                f"for {source.path}"
            )
        indices = indices_by_mode[mode]
        indices = indices[stratified_subset(source.labels[indices], limit_files)]
        self._set_arrays(
            images=source.read_images(indices, size=image_size, workers=workers),
            labels=source.labels[indices],
            classes=source.classes,
            names=[source.names[index] for index in indices.tolist()],
            transform=transform,
        )
        self.mode: str | None = mode
        self.source_indices: np.ndarray | None = _read_only_view(indices)

    def _open_source(
        self,
        root: str | os.PathLike | ImageSource,
        download_url: str | None,
        force_download: bool,
    ) -> ImageSource:
        """The source behind ``root``, fetched from ``download_url`` first if need be."""
        if download_url is not None and not isinstance(root, ImageSource):
            download_and_unpack(download_url, root, force=force_download)
        return open_image_source(root)

    @classmethod
    def from_arrays(
        cls,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        classes: Sequence[str],
        transform: TransformLike | None = None,
        names: Sequence[str] | None = None,
    ) -> ImageFolderDataset:
        """Build a dataset from arrays already in memory (e.g. prepared ``.npy`` files).

        Parameters
        ----------
        images : numpy.ndarray
            Shape ``(N, H, W, C)``, normally ``uint8``; not copied (a read-only view
            is kept), so a memory-mapped array stays memory-mapped.
        labels : array-like of int, shape (N,)
            Values in ``[0, len(classes))``.
        classes : sequence of str
            Class names.
        transform : callable, optional
            As for the constructor (an npdl transform or a per-image callable).
        names : sequence of str, optional
            Name per image; defaults to ``"<index>"``.

        Raises
        ------
        ValueError
            If shapes disagree or a label is out of range.
        """
        images = np.asarray(images)
        labels = as_labels(labels)
        if images.ndim != 4 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"images must have shape (N, H, W, C) with N = len(labels) = {len(labels)}, "
                f"got {images.shape}"
            )
        if labels.size and labels.max() >= len(classes):
            raise ValueError(
                f"labels must lie in [0, {len(classes)}) for classes {list(classes)}, "
                f"got max {labels.max()}"
            )
        if names is not None and len(names) != len(labels):
            raise ValueError(f"names has {len(names)} entries, labels {len(labels)}")
        dataset = cls.__new__(cls)
        dataset._set_arrays(
            images=images,
            labels=labels,
            classes=list(classes),
            names=list(names) if names is not None else [str(i) for i in range(len(labels))],
            transform=transform,
        )
        dataset.mode = None
        dataset.source_indices = None
        return dataset

    def _set_arrays(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        classes: Sequence[str],
        names: list[str],
        transform: TransformLike | None,
    ) -> None:
        self.images = _read_only_view(images)
        self.labels = _read_only_view(labels.astype(np.int64, copy=False))
        self.classes = list(classes)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        self.names = names
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(mode={self.mode!r}, {len(self)} images of shape "
            f"{self.images.shape[1:]}, {len(self.classes)} classes)"
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return one sample, ``{'image': array, 'label': int}``.

        Without a transform the image is a writable ``float64 (H, W, 3)`` copy of
        ``images[index]`` (the course's ``np.asarray(image, dtype=float)``). With one,
        it is what the transform makes of that one image
        (:func:`~npdl.data.transform_base.apply_to_one`), e.g. ``float32 (H*W*3,)``
        after ``FlattenTransform``.
        """
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(
                f"index must be an int, got {type(index).__name__}; use get_batch for arrays"
            )
        image = self.images[index]
        if self.transform is None:
            image = image.astype(np.float64)
        else:
            image = apply_to_one(self.transform, image)
        return {"image": image, "label": int(self.labels[index])}

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """Return a batch, transformed as a whole.

        Parameters
        ----------
        indices : array-like of int, shape (B,)

        Returns
        -------
        dict
            ``'image'``: the transformed batch (:func:`~npdl.data.transform_base.apply_to_batch`:
            one call for npdl's transforms, image by image for a plain callable;
            ``uint8 (B, H, W, 3)`` without a transform); ``'label'``: ``int64 (B,)``.
        """
        indices = np.asarray(indices, dtype=np.int64)
        images = self.images[indices]
        if self.transform is not None:
            images = apply_to_batch(self.transform, images)
        return {"image": images, "label": self.labels[indices]}
