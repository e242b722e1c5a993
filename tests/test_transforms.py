"""Batch-wise transforms, checked against slow per-image reference loops."""

import numpy as np
import pytest

from npdl.data.transform_base import BatchTransform
from npdl.data.transforms import (
    ComposeTransform,
    FlattenTransform,
    NormalizeTransform,
    RandomCrop,
    RandomFlipCrop,
    RandomHorizontalFlip,
    RescaleTransform,
)


@pytest.fixture
def batch(image_files):
    """uint8 (16, 32, 32, 3), read-only like a dataset's stored images."""
    images = image_files.random_images(0, 16)
    images.flags.writeable = False
    return images


# ---------------------------------------------------------------------- flip


def test_flip_matches_a_per_image_reference_loop(batch):
    flipped = RandomHorizontalFlip(p=0.5, rng=3)(batch)

    # The documented draw: one uniform number per image, flip where it is < p.
    decisions = np.random.default_rng(3).random(len(batch)) < 0.5
    expected = np.empty_like(batch)
    for index, image in enumerate(batch):
        expected[index] = image[:, ::-1] if decisions[index] else image
    assert 0 < decisions.sum() < len(batch)
    np.testing.assert_array_equal(flipped, expected)
    assert flipped.dtype == np.uint8


def test_flip_probability_extremes(batch):
    np.testing.assert_array_equal(RandomHorizontalFlip(p=0.0, rng=0)(batch), batch)
    np.testing.assert_array_equal(RandomHorizontalFlip(p=1.0, rng=0)(batch), batch[:, :, ::-1])
    with pytest.raises(ValueError, match=r"p=1\.5"):
        RandomHorizontalFlip(p=1.5)


def test_flip_rate_follows_p(image_files):
    images = image_files.random_images(1, 2000, size=(2, 4))
    flipped = RandomHorizontalFlip(p=0.3, rng=0)(images)
    was_flipped = np.all(flipped == images[:, :, ::-1], axis=(1, 2, 3)) & np.any(
        flipped != images, axis=(1, 2, 3)
    )
    assert 0.25 < was_flipped.mean() < 0.35


def test_flips_are_reproducible_and_differ_between_calls(batch):
    first, second = RandomHorizontalFlip(rng=9), RandomHorizontalFlip(rng=9)
    calls = [first(batch) for _ in range(3)]
    for result in calls:
        np.testing.assert_array_equal(result, second(batch))
    assert not all(np.array_equal(calls[0], result) for result in calls[1:])


# ---------------------------------------------------------------------- crop


def _window_offsets(crop, image, padding):
    """All (top, left) where ``crop`` equals a window of the zero-padded ``image``."""
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    height, width = crop.shape[:2]
    return [
        (top, left)
        for top in range(padded.shape[0] - height + 1)
        for left in range(padded.shape[1] - width + 1)
        if np.array_equal(padded[top : top + height, left : left + width], crop)
    ]


def test_crop_matches_a_per_image_reference_loop(batch):
    cropped = RandomCrop(size=32, padding=4, rng=5)(batch)

    # The documented draw: all top offsets, then all left offsets, uniform in [0, 2p].
    rng = np.random.default_rng(5)
    tops, lefts = rng.integers(0, 9, len(batch)), rng.integers(0, 9, len(batch))
    expected = np.empty_like(batch)
    for index, image in enumerate(batch):
        padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
        expected[index] = padded[tops[index] : tops[index] + 32, lefts[index] : lefts[index] + 32]
    np.testing.assert_array_equal(cropped, expected)
    assert cropped.dtype == np.uint8
    assert cropped.flags.c_contiguous


def test_every_crop_is_a_window_of_its_padded_image(batch):
    cropped = RandomCrop(size=(28, 30), padding=2, rng=1)(batch)
    assert cropped.shape == (16, 28, 30, 3)
    offsets = [
        _window_offsets(crop, image, padding=2) for crop, image in zip(cropped, batch, strict=True)
    ]
    assert all(offsets), "some crop is not a window of its own padded image"
    assert len({found[0] for found in offsets}) > 4  # positions vary across the batch


def test_crop_without_padding_at_full_size_is_the_identity(batch):
    cropped = RandomCrop(size=32, padding=0, rng=0)(batch)
    np.testing.assert_array_equal(cropped, batch)
    assert not np.shares_memory(cropped, batch)


def test_crop_larger_than_padded_image_is_refused(batch):
    with pytest.raises(
        ValueError, match=r"crop size \(40, 40\) is larger than the padded images \(36, 36\)"
    ):
        RandomCrop(size=40, padding=2)(batch)


@pytest.mark.parametrize("dtype", [np.uint8, np.float16, np.float32])
def test_flip_crop_is_the_flip_then_the_crop_on_one_generator(batch, dtype):
    images = batch.astype(dtype)
    images.flags.writeable = False
    fused = RandomFlipCrop(size=(30, 28), padding=3, rng=np.random.default_rng(7), fill=2)
    shared = np.random.default_rng(7)
    apart = ComposeTransform(
        [RandomHorizontalFlip(rng=shared), RandomCrop(size=(30, 28), padding=3, rng=shared, fill=2)]
    )
    for _ in range(3):  # the padded work array is reused: its border must stay the fill
        np.testing.assert_array_equal(fused(images), apart(images))
    assert fused(images).dtype == dtype
    smaller = fused(images[:5])  # another batch size gets its own work array
    assert smaller.shape == (5, 30, 28, 3)


def test_crop_results_are_fresh_arrays_while_the_work_array_is_reused(batch):
    crop = RandomCrop(padding=4, rng=0)
    first = crop(batch)
    kept = first.copy()
    crop(batch[::-1])
    np.testing.assert_array_equal(first, kept)


# ----------------------------------------------------------- rescale / normalize


def test_rescale_maps_uint8_to_the_unit_interval():
    images = np.array([0, 51, 255], np.uint8).reshape(1, 1, 3, 1)
    rescaled = RescaleTransform()(images)
    assert rescaled.dtype == np.float32
    np.testing.assert_allclose(rescaled.ravel(), [0.0, 0.2, 1.0], rtol=1e-6)
    symmetric = RescaleTransform(out_range=(-1, 1), dtype=np.float64)(images)
    assert symmetric.dtype == np.float64
    np.testing.assert_allclose(symmetric.ravel(), [-1.0, -0.6, 1.0], rtol=1e-12)


def test_normalize_per_channel():
    images = np.array([[0.5, 0.2, 0.9], [0.1, 0.6, 0.3]], np.float32).reshape(1, 1, 2, 3)
    mean, std = [0.3, 0.4, 0.5], [0.1, 0.2, 0.4]
    normalised = NormalizeTransform(mean, std)(images)
    assert normalised.dtype == np.float32
    expected = [[2.0, -1.0, 1.0], [-2.0, 1.0, -0.5]]
    np.testing.assert_allclose(normalised.reshape(2, 3), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        NormalizeTransform(0.5, 0.25)(images).ravel(), (images.ravel() - 0.5) / 0.25, rtol=1e-6
    )


def test_normalize_refuses_bad_parameters():
    with pytest.raises(
        ValueError, match=r"std must be > 0 in every channel, got \[0.1, 0.0, 0.2\]"
    ):
        NormalizeTransform([0, 0, 0], [0.1, 0.0, 0.2])
    with pytest.raises(ValueError, match="3 channels"):
        NormalizeTransform([0, 0, 0], [1, 1, 1])(np.zeros((1, 2, 2, 4), np.float32))


def test_flatten_is_row_major_per_image():
    images = np.arange(2 * 2 * 3 * 3).reshape(2, 2, 3, 3)
    flat = FlattenTransform()(images)
    assert flat.shape == (2, 18)
    np.testing.assert_array_equal(flat[1], images[1].ravel())


def test_compose_applies_in_order_and_keeps_uint8_until_rescale(batch):
    seen = []

    def spy(images):
        seen.append(images.dtype)
        return images

    pipeline = ComposeTransform(
        [
            RandomHorizontalFlip(rng=0),
            RandomCrop(rng=0),
            BatchTransform(spy),  # a batch function sees the whole uint8 batch
            RescaleTransform(),
            NormalizeTransform([0.5] * 3, [0.25] * 3),
            FlattenTransform(),
        ]
    )
    output = pipeline(batch)
    assert seen == [np.uint8]
    assert output.shape == (16, 3072)
    assert output.dtype == np.float32


def test_no_transform_modifies_its_input(batch):
    original = batch.copy()
    transforms = [
        RandomHorizontalFlip(p=1.0, rng=0),
        RandomCrop(padding=4, rng=0),
        RescaleTransform(),
        NormalizeTransform([100.0] * 3, [50.0] * 3),
        FlattenTransform(),
    ]
    for transform in transforms:
        transform(batch)  # the fixture is read-only: an in-place edit would raise
    writable = original.copy()
    for transform in transforms:
        transform(writable)
    np.testing.assert_array_equal(writable, original)


def test_arrays_that_are_neither_a_batch_nor_an_image_are_refused_with_a_hint():
    with pytest.raises(ValueError, match=r"batch of shape \(N, H, W, C\) or one image"):
        RescaleTransform()(np.zeros((32, 32), np.uint8))
