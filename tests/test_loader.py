"""DataLoader (npdl.data.loader)."""

import numpy as np
import pytest

from npdl.data.dataset import ImageFolderDataset
from npdl.data.loader import DataLoader
from npdl.data.transforms import FlattenTransform, RescaleTransform


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


def test_prefetching_yields_the_same_batches_and_draws(image_files):
    from npdl.data.transforms import RandomFlipCrop

    images = image_files.random_images(0, 40)
    labels = np.arange(40) % 10

    def epochs(prefetch):
        dataset = ImageFolderDataset.from_arrays(
            images, labels, [str(i) for i in range(10)], transform=RandomFlipCrop(rng=4)
        )
        loader = DataLoader(dataset, batch_size=16, shuffle=True, rng=2, prefetch=prefetch)
        return [[(b["image"].copy(), b["label"]) for b in loader] for _ in range(2)]

    plain, ahead = epochs(False), epochs(True)
    assert len(plain[0]) == len(ahead[0]) == 3
    for epoch_plain, epoch_ahead in zip(plain, ahead, strict=True):
        for (x1, y1), (x2, y2) in zip(epoch_plain, epoch_ahead, strict=True):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)


class _FailingDataset:
    def __init__(self, fail_at):
        self.fail_at = fail_at

    def __len__(self):
        return 10

    def __getitem__(self, index):
        if index == self.fail_at:
            raise OSError(f"image {index} is unreadable")
        return {"image": np.zeros(3), "label": index}


def test_prefetching_raises_the_dataset_error_at_its_batch_and_can_stop_early():
    loader = DataLoader(_FailingDataset(fail_at=5), batch_size=2, prefetch=True)
    seen = []
    with pytest.raises(OSError, match="image 5 is unreadable"):
        for batch in loader:
            seen.append(batch["label"].tolist())
    assert seen == [[0, 1], [2, 3]]
    iterator = iter(DataLoader(_FailingDataset(fail_at=99), batch_size=2, prefetch=True))
    assert next(iterator)["label"].tolist() == [0, 1]
    iterator.close()  # stopping early waits for the batch in flight and ends cleanly
    with pytest.raises(StopIteration):
        next(iterator)
