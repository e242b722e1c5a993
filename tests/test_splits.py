"""Stratified, reproducible splits (npdl.data.splits)."""

import numpy as np
import pytest

from npdl.data.sources import open_image_source
from npdl.data.splits import split_source_indices, stratified_split, stratified_subset

# Unequal class sizes (10, 7, 23, 1) exercise the rounding.
UNEVEN_LABELS = np.repeat(np.arange(4), [10, 7, 23, 1])


def test_same_seed_gives_the_same_split():
    first = stratified_split(UNEVEN_LABELS, rng=7)
    second = stratified_split(UNEVEN_LABELS, rng=np.random.default_rng(7))
    assert list(first) == ["train", "val", "test"]
    for mode in first:
        np.testing.assert_array_equal(first[mode], second[mode])


def test_different_seeds_give_different_splits():
    first = stratified_split(UNEVEN_LABELS, rng=1)
    second = stratified_split(UNEVEN_LABELS, rng=2)
    assert not np.array_equal(np.sort(first["test"]), np.sort(second["test"]))


def test_split_modes_are_disjoint_and_cover_everything():
    split = stratified_split(UNEVEN_LABELS, rng=0)
    combined = np.concatenate(list(split.values()))
    assert combined.dtype == np.int64
    np.testing.assert_array_equal(np.sort(combined), np.arange(len(UNEVEN_LABELS)))


def test_split_is_stratified_by_largest_remainder():
    split = stratified_split(UNEVEN_LABELS, rng=0)
    counts = {
        mode: np.bincount(UNEVEN_LABELS[indices], minlength=4) for mode, indices in split.items()
    }
    # 10 -> 6/2/2; 7 -> 4.2/1.4/1.4 -> 4/2/1; 23 -> 13.8/4.6/4.6 -> 14/5/4; 1 -> 1/0/0.
    np.testing.assert_array_equal(counts["train"], [6, 4, 14, 1])
    np.testing.assert_array_equal(counts["val"], [2, 2, 5, 0])
    np.testing.assert_array_equal(counts["test"], [2, 1, 4, 0])


def test_split_with_custom_modes_and_ratios():
    labels = np.repeat(np.arange(3), 100)
    split = stratified_split(labels, {"fit": 0.9, "holdout": 0.1}, rng=0)
    assert list(split) == ["fit", "holdout"]
    np.testing.assert_array_equal(np.bincount(labels[split["holdout"]]), [10, 10, 10])


@pytest.mark.parametrize(
    "split",
    [
        {"train": 0.7, "val": 0.2, "test": 0.2},
        {"train": 1.2, "val": -0.2},
        {"train": float("nan"), "val": 1.0},
        {},
    ],
)
def test_invalid_ratios_are_refused_naming_them(split):
    with pytest.raises(ValueError, match=r"split ratios .* must be non-negative and sum to 1"):
        stratified_split(UNEVEN_LABELS, split, rng=0)


def test_split_modes_are_in_round_robin_class_order():
    labels = np.repeat(np.arange(3), 50)
    for indices in stratified_split(labels, rng=0).values():
        mode_labels = labels[indices]
        period = len(np.unique(mode_labels))
        np.testing.assert_array_equal(
            mode_labels, np.tile(np.arange(period), len(indices) // period)
        )


def test_stratified_subset_is_a_balanced_prefix():
    labels = np.array([2, 2, 2, 2, 0, 0, 1, 2, 0])
    subset = stratified_subset(labels, 5)
    assert subset.dtype == np.int64
    # One of each class in turn, each class in its current order; class 1 runs out.
    np.testing.assert_array_equal(subset, [4, 6, 0, 5, 1])
    np.testing.assert_array_equal(stratified_subset(labels, None), [4, 6, 0, 5, 1, 8, 2, 3, 7])
    np.testing.assert_array_equal(stratified_subset(labels, 100), stratified_subset(labels, None))
    with pytest.raises(ValueError, match="limit"):
        stratified_subset(labels, -1)


def test_split_source_indices_uses_the_official_test_set(cifar_archive):
    source = open_image_source(cifar_archive.path)
    split = split_source_indices(source, rng=0)
    np.testing.assert_array_equal(np.sort(split["test"]), np.arange(40, 49))
    train_and_val = np.concatenate([split["train"], split["val"]])
    np.testing.assert_array_equal(np.sort(train_and_val), np.arange(40))
    # 60/20 of the non-test ratios become 75/25 of the official training images.
    assert abs(len(split["train"]) - 30) <= 3
