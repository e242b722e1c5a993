"""Datasets, splits and batching for labelled image arrays.

The course API is kept (``ImageFolderDataset``, ``DataLoader``,
``compute_image_mean_and_std``) with two changes that make it fast and reproducible:

* a dataset decodes its images **once**, into one ``uint8 (N, H, W, 3)`` array, and
  transforms run on whole batches (see :mod:`npdl.transforms`);
* every random choice (split, shuffling) draws from an explicit seed or
  :class:`numpy.random.Generator`.

Splits are stratified and *ordered round-robin across classes*: each mode's indices
run ``class 0, class 1, …, class C-1, class 0, …``, each class's samples in a random
order. So the first ``k`` indices of any mode are a class-balanced random subset, and
``limit_files`` only has to take a prefix. Which samples land in which mode never
depends on ``limit_files``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from .sources import ImageSource, open_image_source

__all__ = [
    "DEFAULT_SPLIT",
    "DataLoader",
    "ImageFolderDataset",
    "compute_image_mean_and_std",
    "split_source_indices",
    "stratified_split",
    "stratified_subset",
]

DEFAULT_SPLIT: Mapping[str, float] = MappingProxyType({"train": 0.6, "val": 0.2, "test": 0.2})
"""The course's 60/20/20 train/val/test ratios (read-only)."""

_COURSE_DOWNLOAD_ARGUMENTS = frozenset({"download_url", "force_download"})

Transform = Callable[[np.ndarray], np.ndarray]
SeedLike = int | np.random.Generator | None


# ------------------------------------------------------------------------------ splits


def _as_labels(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(
            f"labels must be a 1-D array of ints, got shape {labels.shape}, dtype {labels.dtype}"
        )
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got {labels.min()}")
    return labels.astype(np.int64, copy=False)


def _validated_ratios(split: Mapping[str, float]) -> dict[str, float]:
    ratios = {str(mode): float(ratio) for mode, ratio in dict(split).items()}
    total = math.fsum(ratios.values())
    if (
        not ratios
        or any(not math.isfinite(ratio) or ratio < 0 for ratio in ratios.values())
        or abs(total - 1.0) > 1e-6
    ):
        raise ValueError(
            f"split ratios {ratios} must be non-negative and sum to 1 (they sum to {total:g}), "
            "e.g. {'train': 0.6, 'val': 0.2, 'test': 0.2}"
        )
    return ratios


def _largest_remainder(count: int, ratios: np.ndarray) -> np.ndarray:
    """Split ``count`` items by ``ratios`` into ints that sum exactly to ``count``.

    Each share is rounded down, and the items left over go one each to the shares
    with the largest fractional parts (ties: earlier share first).
    """
    exact = count * ratios
    counts = np.floor(exact).astype(np.int64)
    leftover = count - int(counts.sum())
    by_fraction = np.argsort(-(exact - counts), kind="stable")
    counts[by_fraction[:leftover]] += 1
    return counts


def _round_robin_order(labels: np.ndarray) -> np.ndarray:
    """Order positions by (rank within class, class): one of each class in turn."""
    by_class = np.argsort(labels, kind="stable")
    sorted_labels = labels[by_class]
    class_starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    run_lengths = np.diff(np.r_[class_starts, len(labels)])
    ranks = np.empty(len(labels), dtype=np.int64)
    ranks[by_class] = np.arange(len(labels)) - np.repeat(class_starts, run_lengths)
    return np.lexsort((labels, ranks)).astype(np.int64)


def stratified_subset(labels: Sequence[int] | np.ndarray, limit: int | None) -> np.ndarray:
    """Pick the first ``limit`` samples, balanced across classes.

    Takes each class's samples in their current order, one class at a time in turn
    (class 0, 1, …, C-1, 0, 1, …); a class that runs out is skipped. Deterministic:
    shuffle beforehand for a random subset.

    Parameters
    ----------
    labels : array-like of int, shape (N,)
        Class of each sample.
    limit : int or None
        How many samples to keep; None or ``limit >= N`` keeps all of them.

    Returns
    -------
    numpy.ndarray
        ``int64`` positions into ``labels``, shape ``(min(limit, N),)``, in
        round-robin order. Applied to a mode of :func:`stratified_split` (already in
        round-robin order) this is ``arange(limit)``: the prefix.
    """
    labels = _as_labels(labels)
    if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < 0):
        raise ValueError(f"limit={limit!r} must be None or an int >= 0")
    order = _round_robin_order(labels)
    return order if limit is None else order[: int(limit)]


def stratified_split(
    labels: Sequence[int] | np.ndarray,
    split: Mapping[str, float] = DEFAULT_SPLIT,
    *,
    rng: SeedLike,
) -> dict[str, np.ndarray]:
    """Split sample indices into modes, class by class.

    Each class's samples are permuted with ``rng`` and cut by the ratios; rounding
    is by largest remainder, so the per-class counts add up exactly and each is
    within one sample of ``ratio * class size``.

    Parameters
    ----------
    labels : array-like of int, shape (N,)
        Class of each sample (non-negative ints).
    split : mapping of str to float, default {'train': 0.6, 'val': 0.2, 'test': 0.2}
        Mode name -> fraction; fractions non-negative, summing to 1.
    rng : int, numpy.random.Generator
        Seed or generator for the per-class permutations. The same seed gives the
        same split. (``None`` draws fresh OS entropy: not reproducible.)

    Returns
    -------
    dict of str to numpy.ndarray
        For each mode, in ``split``'s order, ``int64`` indices into ``labels``. Modes
        are disjoint and together cover every index. Within a mode, indices are in
        round-robin class order (see :func:`stratified_subset`), so any prefix is
        class-balanced.

    Raises
    ------
    ValueError
        If the ratios are negative, not finite or do not sum to 1, naming them.
    """
    labels = _as_labels(labels)
    ratios = _validated_ratios(split)
    rng = np.random.default_rng(rng)
    ratio_array = np.array(list(ratios.values()))
    chosen: dict[str, list[np.ndarray]] = {mode: [] for mode in ratios}
    by_class = np.argsort(labels, kind="stable")
    class_bounds = np.flatnonzero(np.diff(labels[by_class])) + 1
    for members in np.split(by_class, class_bounds):
        if members.size == 0:
            continue
        shuffled = rng.permutation(members)
        cuts = np.cumsum(_largest_remainder(len(shuffled), ratio_array))[:-1]
        for mode, part in zip(ratios, np.split(shuffled, cuts), strict=True):
            chosen[mode].append(part)
    result = {}
    for mode, parts in chosen.items():
        indices = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        # Within a class the parts are already in random order, so ordering by rank
        # within class keeps that randomness and interleaves the classes.
        result[mode] = indices[_round_robin_order(labels[indices])].astype(np.int64)
    return result


def split_source_indices(
    source: ImageSource,
    split: Mapping[str, float] = DEFAULT_SPLIT,
    *,
    rng: SeedLike,
) -> dict[str, np.ndarray]:
    """Split an image source into modes, honouring an official partition.

    * Sources without one (ImageFolders): :func:`stratified_split` of all samples.
    * Sources with one (the CIFAR-10 python archive): ``"test"`` is the official
      test set, whatever ``split`` says about it; the official training samples are
      split among the other modes of ``split``, their ratios rescaled to sum to 1
      (the default 60/20/20 becomes 75/25 train/val).

    Parameters
    ----------
    source : ImageSource
        Listing with ``labels`` (``int64 (N,)``) and optionally ``subsets``.
    split : mapping of str to float
        Mode ratios, as for :func:`stratified_split`.
    rng : int or numpy.random.Generator
        Seed or generator.

    Returns
    -------
    dict of str to numpy.ndarray
        ``int64`` indices into the source per mode, each in round-robin class order.
    """
    ratios = _validated_ratios(split)
    test_indices = source.official_test_indices
    if test_indices is None:
        return stratified_split(source.labels, ratios, rng=rng)
    train_pool = source.official_train_indices
    pool_ratios = {mode: ratio for mode, ratio in ratios.items() if mode != "test"}
    pool_total = math.fsum(pool_ratios.values())
    if pool_total <= 0:
        raise ValueError(
            f"split {ratios} leaves nothing for the official training samples of "
            f"{source.path}; give 'train' (and optionally 'val') a positive ratio"
        )
    pool_split = stratified_split(
        source.labels[train_pool],
        {mode: ratio / pool_total for mode, ratio in pool_ratios.items()},
        rng=rng,
    )
    result = {mode: train_pool[indices] for mode, indices in pool_split.items()}
    result["test"] = test_indices[stratified_subset(source.labels[test_indices], None)]
    return result


# ----------------------------------------------------------------------------- dataset


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
        :class:`~npdl.sources.ImageSource` (open once, build several modes).
    transform : callable, optional
        Batch transform ``(N, H, W, 3) array -> array`` (see :mod:`npdl.transforms`),
        applied by :meth:`__getitem__` and :meth:`get_batch`, never stored.
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
        Decoding processes; see :meth:`~npdl.sources.ImageSource.read_images`.
    **kwargs
        Accepted for the course's signature: ``download_url`` and
        ``force_download`` are ignored with a warning (nothing is downloaded). Any
        other keyword raises ``TypeError``.

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
        transform: Transform | None = None,
        mode: str = "train",
        limit_files: int | None = None,
        split: Mapping[str, float] = DEFAULT_SPLIT,
        seed: SeedLike = 0,
        image_size: int | Sequence[int] = (32, 32),
        workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        unexpected = sorted(set(kwargs) - _COURSE_DOWNLOAD_ARGUMENTS)
        if unexpected:
            raise TypeError(f"ImageFolderDataset got unexpected keyword arguments {unexpected}")
        if kwargs:
            warnings.warn(
                f"ImageFolderDataset ignores {sorted(kwargs)}: npdl reads local folders and "
                "archives only; download the data first and pass its path as root",
                UserWarning,
                stacklevel=2,
            )
        source = open_image_source(root)
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

    @classmethod
    def from_arrays(
        cls,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        classes: Sequence[str],
        transform: Transform | None = None,
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
            Batch transform, as for the constructor.
        names : sequence of str, optional
            Name per image; defaults to ``"<index>"``.

        Raises
        ------
        ValueError
            If shapes disagree or a label is out of range.
        """
        images = np.asarray(images)
        labels = _as_labels(labels)
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
        transform: Transform | None,
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

        The image is ``images[index]`` (``uint8 (H, W, 3)``) passed through the
        transform as a batch of one and unwrapped again, so the same batch-wise
        transforms serve single samples.
        """
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(
                f"index must be an int, got {type(index).__name__}; use get_batch for arrays"
            )
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image[np.newaxis])[0]
        return {"image": image, "label": int(self.labels[index])}

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """Return a batch, transformed as a whole.

        Parameters
        ----------
        indices : array-like of int, shape (B,)

        Returns
        -------
        dict
            ``'image'``: ``transform(images[indices])`` (``uint8 (B, H, W, 3)``
            without a transform); ``'label'``: ``int64 (B,)``.
        """
        indices = np.asarray(indices, dtype=np.int64)
        images = self.images[indices]
        if self.transform is not None:
            images = self.transform(images)
        return {"image": images, "label": self.labels[indices]}


# ------------------------------------------------------------------------------ loader


class DataLoader:
    """Iterate over a dataset in batches.

    Parameters
    ----------
    dataset : object
        Anything with ``__len__`` and ``__getitem__(i) -> dict``. If it also has
        ``get_batch(indices) -> dict`` (like :class:`ImageFolderDataset`), each batch
        is fetched with one vectorised call; otherwise samples are fetched one by one
        and stacked per key (the course's behaviour, for custom datasets).
    batch_size : int, default 1
    shuffle : bool, default False
        Draw a fresh permutation of the samples for every epoch (every ``iter``).
    drop_last : bool, default False
        Drop the last batch if it is smaller than ``batch_size``.
    rng : int or numpy.random.Generator, optional
        Seed or generator for shuffling; the same seed replays the same sequence of
        epochs. None draws fresh OS entropy (not reproducible).

    Yields
    ------
    dict
        ``'image'``: the batch of images (whatever the dataset's transform makes of
        them, e.g. ``float32 (B, D)``); ``'label'``: ``int64 (B,)``; plus any other
        keys a custom dataset returns, stacked.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        rng: SeedLike = None,
    ) -> None:
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be an int >= 1")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rng = np.random.default_rng(rng)

    def __len__(self) -> int:
        """Number of batches per epoch."""
        if self.drop_last:
            return len(self.dataset) // self.batch_size
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        sample_count = len(self.dataset)
        order = self.rng.permutation(sample_count) if self.shuffle else np.arange(sample_count)
        get_batch = getattr(self.dataset, "get_batch", None)
        for batch_number in range(len(self)):
            batch_indices = order[
                batch_number * self.batch_size : (batch_number + 1) * self.batch_size
            ]
            if get_batch is not None:
                yield get_batch(batch_indices)
            else:
                yield self._stack_samples(batch_indices)

    def _stack_samples(self, batch_indices: np.ndarray) -> dict[str, np.ndarray]:
        samples = [self.dataset[int(index)] for index in batch_indices]
        batch = {key: np.stack([sample[key] for sample in samples]) for key in samples[0]}
        if "label" in batch:
            batch["label"] = batch["label"].astype(np.int64)
        return batch


# --------------------------------------------------------------------------- statistics


def compute_image_mean_and_std(
    images: np.ndarray, chunk_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of a set of images.

    ``uint8`` images are measured on the ``[0, 1]`` scale (pixel / 255), which is
    what :class:`~npdl.transforms.NormalizeTransform` sees after
    ``RescaleTransform()``; floating-point images are measured as they are.
    Computed in float64, two passes over chunks of images (mean, then squared
    deviations), so memory stays at one chunk and no precision is lost to
    ``E[x^2] - E[x]^2`` cancellation.

    Parameters
    ----------
    images : numpy.ndarray
        Shape ``(N, H, W, C)``, ``uint8`` or floating point, N >= 1.
    chunk_size : int, default 4096
        Images per chunk.

    Returns
    -------
    mean, std : numpy.ndarray
        ``float64`` arrays of shape ``(C,)``; ``std`` is the population standard
        deviation (``ddof=0``).
    """
    images = np.asarray(images)
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must have shape (N, H, W, C) with N >= 1, got {images.shape}")
    if images.dtype == np.uint8:
        scale = 1.0 / 255.0
    elif np.issubdtype(images.dtype, np.floating):
        scale = 1.0
    else:
        raise ValueError(f"images must be uint8 or floating point, got {images.dtype}")
    pixels_per_channel = images.shape[0] * images.shape[1] * images.shape[2]

    def chunks() -> Iterator[np.ndarray]:
        for start in range(0, images.shape[0], chunk_size):
            yield images[start : start + chunk_size].astype(np.float64) * scale

    mean = sum(chunk.sum(axis=(0, 1, 2)) for chunk in chunks()) / pixels_per_channel
    variance = sum(((chunk - mean) ** 2).sum(axis=(0, 1, 2)) for chunk in chunks())
    return mean, np.sqrt(variance / pixels_per_channel)
