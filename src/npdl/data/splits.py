"""Stratified, reproducible splits of labelled samples into modes (train/val/test).

Splits are stratified and *ordered round-robin across classes*: each mode's indices
run ``class 0, class 1, …, class C-1, class 0, …``, each class's samples in a random
order. So the first ``k`` indices of any mode are a class-balanced random subset, and
``limit_files`` only has to take a prefix. Which samples land in which mode never
depends on ``limit_files``. Every random choice draws from an explicit seed or
:class:`numpy.random.Generator`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np

from .source_base import ImageSource

__all__ = [
    "DEFAULT_SPLIT",
    "as_labels",
    "split_source_indices",
    "stratified_split",
    "stratified_subset",
]

DEFAULT_SPLIT: Mapping[str, float] = MappingProxyType({"train": 0.6, "val": 0.2, "test": 0.2})
"""The course's 60/20/20 train/val/test ratios (read-only)."""

SeedLike = int | np.random.Generator | None


def as_labels(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """``labels`` (array-like of ints >= 0, shape ``(N,)``) as an ``int64 (N,)`` array
    (no copy when they are one already); ValueError for any other shape, dtype or a
    negative label."""
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
    labels = as_labels(labels)
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
    labels = as_labels(labels)
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
