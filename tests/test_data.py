"""Splits, ImageFolderDataset, DataLoader and image statistics."""

import numpy as np
import pytest

import npdl.sources
from npdl.data import (
    DataLoader,
    ImageFolderDataset,
    compute_image_mean_and_std,
    split_source_indices,
    stratified_split,
    stratified_subset,
)
from npdl.sources import open_image_source
from npdl.transforms import FlattenTransform, RescaleTransform

# Unequal class sizes (10, 7, 23, 1) exercise the rounding.
UNEVEN_LABELS = np.repeat(np.arange(4), [10, 7, 23, 1])


# ------------------------------------------------------------------------- splits


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


# ------------------------------------------------------------------------ dataset


def test_dataset_modes_are_disjoint_and_cover_all_files(png_folder):
    datasets = {
        mode: ImageFolderDataset(png_folder.root, mode=mode, seed=3)
        for mode in ("train", "val", "test")
    }
    names = [name for dataset in datasets.values() for name in dataset.names]
    assert sorted(names) == sorted(png_folder.names)
    assert {mode: len(dataset) for mode, dataset in datasets.items()} == {
        "train": 18,
        "val": 6,
        "test": 6,
    }
    for dataset in datasets.values():
        np.testing.assert_array_equal(np.bincount(dataset.labels), [len(dataset) // 3] * 3)


def test_dataset_arrays_match_the_files(png_folder):
    dataset = ImageFolderDataset(png_folder.root, mode="val", seed=0)
    assert dataset.images.dtype == np.uint8
    assert dataset.images.shape == (6, 32, 32, 3)
    assert dataset.labels.dtype == np.int64
    assert dataset.classes == ["cat", "dog", "frog"]
    assert dataset.class_to_idx == {"cat": 0, "dog": 1, "frog": 2}
    expected = [png_folder.names.index(name) for name in dataset.names]
    np.testing.assert_array_equal(dataset.source_indices, expected)
    np.testing.assert_array_equal(dataset.images, png_folder.images[expected])
    np.testing.assert_array_equal(dataset.labels, png_folder.labels[expected])


def test_dataset_seed_controls_the_split(png_folder):
    same = [ImageFolderDataset(png_folder.root, mode="test", seed=5).names for _ in range(2)]
    other = ImageFolderDataset(png_folder.root, mode="test", seed=6).names
    assert same[0] == same[1]
    assert sorted(same[0]) != sorted(other)


def test_limit_files_is_a_class_balanced_prefix(png_folder):
    full = ImageFolderDataset(png_folder.root, mode="train", seed=1)
    limited = ImageFolderDataset(png_folder.root, mode="train", seed=1, limit_files=7)
    assert len(limited) == 7
    assert limited.names == full.names[:7]
    np.testing.assert_array_equal(np.bincount(limited.labels), [3, 2, 2])
    assert len(ImageFolderDataset(png_folder.root, mode="train", limit_files=1000)) == 18


def test_limit_files_applies_before_decoding(png_folder, monkeypatch):
    decoded = []
    original = npdl.sources._decode_rgb_bytes

    def counting_decoder(data, name, size):
        decoded.append(name)
        return original(data, name, size)

    monkeypatch.setattr(npdl.sources, "_decode_rgb_bytes", counting_decoder)
    dataset = ImageFolderDataset(png_folder.root, mode="train", limit_files=4, workers=1)
    assert len(dataset) == 4
    assert sorted(decoded) == sorted(str(png_folder.root / name) for name in dataset.names)


def test_unknown_mode_names_the_allowed_ones(png_folder):
    with pytest.raises(ValueError, match=r"mode='training'.*\['test', 'train', 'val'\]"):
        ImageFolderDataset(png_folder.root, mode="training")


def test_course_keyword_arguments(png_folder):
    with pytest.warns(UserWarning, match="download_url"):
        ImageFolderDataset(png_folder.root, download_url="https://example.org/cifar.zip")
    with pytest.raises(TypeError, match="limit_file"):
        ImageFolderDataset(png_folder.root, limit_file=3)


def test_getitem_applies_the_transform_to_a_batch_of_one(png_folder):
    seen_shapes = []

    def transform(images):
        seen_shapes.append(images.shape)
        return images.astype(np.float32) / 255

    dataset = ImageFolderDataset(png_folder.root, transform=transform, mode="test", seed=0)
    sample = dataset[2]
    assert set(sample) == {"image", "label"}
    assert seen_shapes == [(1, 32, 32, 3)]
    assert sample["image"].shape == (32, 32, 3)
    assert isinstance(sample["label"], int)
    assert sample["label"] == dataset.labels[2]
    np.testing.assert_allclose(sample["image"], dataset.images[2] / 255, rtol=1e-6)
    raw = ImageFolderDataset(png_folder.root, mode="test", seed=0)[-1]["image"]
    np.testing.assert_array_equal(raw, dataset.images[-1])


def test_get_batch_transforms_the_whole_batch(png_folder):
    calls = []

    def transform(images):
        calls.append(images.shape)
        return images.reshape(len(images), -1)

    dataset = ImageFolderDataset(png_folder.root, transform=transform, mode="train", seed=0)
    batch = dataset.get_batch([3, 0, 5])
    assert calls == [(3, 32, 32, 3)]
    assert batch["image"].shape == (3, 32 * 32 * 3)
    assert batch["label"].dtype == np.int64
    np.testing.assert_array_equal(batch["label"], dataset.labels[[3, 0, 5]])


def test_dataset_arrays_are_read_only(png_folder):
    dataset = ImageFolderDataset(png_folder.root, mode="test")
    with pytest.raises(ValueError, match="read-only"):
        dataset.images[0, 0, 0, 0] = 1
    with pytest.raises(ValueError, match="read-only"):
        dataset[0]["image"][0, 0, 0] = 1


@pytest.mark.parametrize("archive_kind", ["tar.gz", "zip"])
def test_archive_and_folder_datasets_are_identical(
    tmp_path, jpeg_folder, image_files, archive_kind
):
    if archive_kind == "zip":
        archive = image_files.pack_zip(jpeg_folder.root, tmp_path / "images.zip")
    else:
        archive = image_files.pack_tar(jpeg_folder.root, tmp_path / "images.tar.gz")
    for mode in ("train", "val", "test"):
        from_folder = ImageFolderDataset(jpeg_folder.root, mode=mode, seed=4, limit_files=5)
        from_archive = ImageFolderDataset(archive, mode=mode, seed=4, limit_files=5)
        assert from_archive.names == from_folder.names
        np.testing.assert_array_equal(from_archive.images, from_folder.images)
        np.testing.assert_array_equal(from_archive.labels, from_folder.labels)


def test_an_opened_source_can_serve_every_mode(png_folder):
    source = open_image_source(png_folder.root)
    from_source = ImageFolderDataset(source, mode="val", seed=2)
    from_path = ImageFolderDataset(png_folder.root, mode="val", seed=2)
    np.testing.assert_array_equal(from_source.images, from_path.images)


def test_official_archive_dataset_test_mode_is_the_test_batch(cifar_archive):
    test = ImageFolderDataset(cifar_archive.path, mode="test")
    order = np.argsort(test.source_indices)
    np.testing.assert_array_equal(test.images[order], cifar_archive.test_images)
    np.testing.assert_array_equal(test.labels[order], cifar_archive.test_labels)

    train = ImageFolderDataset(cifar_archive.path, mode="train", seed=0)
    val = ImageFolderDataset(cifar_archive.path, mode="val", seed=0)
    assert len(train) + len(val) == 40
    assert not set(train.names) & set(val.names)
    assert all(name.startswith("data_batch_") for name in train.names + val.names)


def test_from_arrays(image_files):
    images = image_files.random_images(0, 6)
    labels = [0, 1, 0, 1, 0, 1]
    dataset = ImageFolderDataset.from_arrays(
        images, labels, ["a", "b"], transform=FlattenTransform()
    )
    assert len(dataset) == 6
    assert dataset.mode is None
    assert dataset.get_batch([1, 2])["image"].shape == (2, 3072)
    np.testing.assert_array_equal(dataset[4]["image"], images[4].reshape(-1))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        ImageFolderDataset.from_arrays(images, [0, 1, 2, 0, 0, 0], ["a", "b"])
    with pytest.raises(ValueError, match="N = len"):
        ImageFolderDataset.from_arrays(images, [0, 1], ["a", "b"])


# ------------------------------------------------------------------------- loader


def _indexed_dataset(count):
    """A dataset whose image i is filled with the value i, so batches reveal indices."""
    images = np.broadcast_to(
        np.arange(count, dtype=np.uint8)[:, None, None, None], (count, 2, 2, 3)
    )
    return ImageFolderDataset.from_arrays(images.copy(), np.arange(count) % 3, ["a", "b", "c"])


def _batch_indices(batch):
    return batch["image"][:, 0, 0, 0].astype(int)


def test_loader_batches_and_lengths():
    dataset = _indexed_dataset(10)
    loader = DataLoader(dataset, batch_size=4)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert [len(batch["label"]) for batch in batches] == [4, 4, 2]
    assert batches[0]["image"].shape == (4, 2, 2, 3)
    assert batches[0]["label"].dtype == np.int64
    np.testing.assert_array_equal(
        np.concatenate([_batch_indices(b) for b in batches]), np.arange(10)
    )

    dropping = DataLoader(dataset, batch_size=4, drop_last=True)
    assert len(dropping) == 2
    assert [len(batch["label"]) for batch in dropping] == [4, 4]
    assert len(DataLoader(dataset, batch_size=5, drop_last=True)) == 2
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(dataset, batch_size=0)


def test_shuffled_epochs_are_permutations_reproducible_from_the_seed():
    dataset = _indexed_dataset(25)
    first = DataLoader(dataset, batch_size=4, shuffle=True, rng=11)
    second = DataLoader(dataset, batch_size=4, shuffle=True, rng=11)
    epochs = []
    for _ in range(3):
        order = np.concatenate([_batch_indices(batch) for batch in first])
        replay = np.concatenate([_batch_indices(batch) for batch in second])
        np.testing.assert_array_equal(order, replay)
        np.testing.assert_array_equal(np.sort(order), np.arange(25))
        epochs.append(order)
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[0], np.arange(25))
    other_seed = np.concatenate(
        [_batch_indices(batch) for batch in DataLoader(dataset, 4, True, rng=12)]
    )
    assert not np.array_equal(other_seed, epochs[0])


def test_loader_fetches_whole_batches_with_get_batch():
    class NoSingleSamples(type(_indexed_dataset(1))):
        def __getitem__(self, index):
            raise AssertionError("the loader must not fetch samples one by one")

    base = _indexed_dataset(7)
    dataset = NoSingleSamples.from_arrays(base.images, base.labels, base.classes)
    batches = list(DataLoader(dataset, batch_size=3))
    np.testing.assert_array_equal(_batch_indices(batches[2]), [6])


class CourseStyleDataset:
    """A dataset written the course's way: only __len__ and __getitem__."""

    def __init__(self, images, labels):
        self.images = images
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {"image": self.images[index] / 255.0, "label": self.labels[index], "index": index}


def test_loader_falls_back_to_stacking_samples(image_files):
    images = image_files.random_images(4, 7)
    labels = np.array([2, 0, 1, 1, 0, 2, 1])
    batches = list(
        DataLoader(CourseStyleDataset(images, labels), batch_size=3, shuffle=True, rng=0)
    )
    assert [len(batch["label"]) for batch in batches] == [3, 3, 1]
    for batch in batches:
        assert batch["label"].dtype == np.int64
        np.testing.assert_array_equal(batch["image"], images[batch["index"]] / 255.0)
        np.testing.assert_array_equal(batch["label"], labels[batch["index"]])
    np.testing.assert_array_equal(
        np.sort(np.concatenate([b["index"] for b in batches])), np.arange(7)
    )


def test_loader_applies_the_dataset_transform(image_files):
    images = image_files.random_images(1, 5)
    transform = lambda batch: FlattenTransform()(RescaleTransform()(batch))  # noqa: E731
    dataset = ImageFolderDataset.from_arrays(images, [0] * 5, ["only"], transform=transform)
    batch = next(iter(DataLoader(dataset, batch_size=5)))
    assert batch["image"].dtype == np.float32
    np.testing.assert_allclose(batch["image"], images.reshape(5, -1) / 255, rtol=1e-6)


# --------------------------------------------------------------------- statistics


def test_mean_and_std_of_uint8_images_are_on_the_unit_scale(image_files):
    images = image_files.random_images(9, 11)
    mean, std = compute_image_mean_and_std(images, chunk_size=4)
    scaled = images / 255.0
    assert mean.shape == std.shape == (3,)
    assert mean.dtype == std.dtype == np.float64
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, scaled.std(axis=(0, 1, 2)), rtol=1e-12)


def test_mean_and_std_of_float_images_are_taken_as_they_are():
    images = np.random.default_rng(0).normal(5.0, 2.0, (6, 4, 4, 3)).astype(np.float32)
    mean, std = compute_image_mean_and_std(images)
    np.testing.assert_allclose(mean, images.astype(np.float64).mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, images.astype(np.float64).std(axis=(0, 1, 2)), rtol=1e-12)
    with pytest.raises(ValueError, match="N >= 1"):
        compute_image_mean_and_std(images[:0])
