"""ImageFolderDataset (npdl.data.dataset)."""

import numpy as np
import pytest

import npdl.data.decoding
from npdl.data.dataset import ImageFolderDataset
from npdl.data.sources import open_image_source
from npdl.data.transform_base import BatchTransform
from npdl.data.transforms import FlattenTransform


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
    original = npdl.data.decoding._decode_rgb_bytes

    def counting_decoder(data, name, size):
        decoded.append(name)
        return original(data, name, size)

    monkeypatch.setattr(npdl.data.decoding, "_decode_rgb_bytes", counting_decoder)
    dataset = ImageFolderDataset(png_folder.root, mode="train", limit_files=4, workers=1)
    assert len(dataset) == 4
    assert sorted(decoded) == sorted(str(png_folder.root / name) for name in dataset.names)


def test_unknown_mode_names_the_allowed_ones(png_folder):
    with pytest.raises(ValueError, match=r"mode='training'.*\['test', 'train', 'val'\]"):
        ImageFolderDataset(png_folder.root, mode="training")


def test_course_keyword_arguments(png_folder):
    # root holds data: download_url is not fetched (this URL could not be reached).
    dataset = ImageFolderDataset(
        png_folder.root, download_url="https://example.org/cifar.zip", verbose=True
    )
    assert len(dataset) == 18
    with pytest.raises(TypeError, match="limit_file"):
        ImageFolderDataset(png_folder.root, limit_file=3)


def test_getitem_applies_a_batch_transform_to_a_batch_of_one(png_folder):
    seen_shapes = []

    def transform(images):
        seen_shapes.append(images.shape)
        return images.astype(np.float32) / 255

    dataset = ImageFolderDataset(
        png_folder.root, transform=BatchTransform(transform), mode="test", seed=0
    )
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

    dataset = ImageFolderDataset(
        png_folder.root, transform=BatchTransform(transform), mode="train", seed=0
    )
    batch = dataset.get_batch([3, 0, 5])
    assert calls == [(3, 32, 32, 3)]
    assert batch["image"].shape == (3, 32 * 32 * 3)
    assert batch["label"].dtype == np.int64
    np.testing.assert_array_equal(batch["label"], dataset.labels[[3, 0, 5]])


def test_dataset_arrays_are_read_only_and_samples_are_copies(png_folder):
    dataset = ImageFolderDataset(png_folder.root, mode="test")
    with pytest.raises(ValueError, match="read-only"):
        dataset.images[0, 0, 0, 0] = 1
    sample = dataset[0]["image"]  # the course's writable float copy
    sample[0, 0, 0] = 1000.0
    assert dataset.images[0, 0, 0, 0] != 1000 and dataset[0]["image"][0, 0, 0] < 256


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
