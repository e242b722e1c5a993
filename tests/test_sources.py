"""Image sources (npdl.data.sources): reading samples by index, and the real archive."""

import numpy as np
import pytest

from npdl.data.sources import FolderImageSource, open_image_source


def test_png_folder_reads_the_exact_pixels(png_folder):
    source = open_image_source(png_folder.root)
    assert isinstance(source, FolderImageSource)
    images = source.read_images()
    assert images.dtype == np.uint8
    assert images.shape == (30, 32, 32, 3)
    np.testing.assert_array_equal(images, png_folder.images)


def test_read_images_follows_the_requested_order_with_repeats(png_folder):
    source = open_image_source(png_folder.root)
    images = source.read_images([7, 2, 7, -1])
    np.testing.assert_array_equal(images, png_folder.images[[7, 2, 7, 29]])
    assert source.read_images([]).shape == (0, 32, 32, 3)
    with pytest.raises(IndexError, match="30"):
        source.read_images([30])


# -------------------------------------------------------------------- real data


@pytest.mark.slow
def test_shared_jpeg_archive_subset(shared_cifar_jpeg_archive):
    from npdl.data import ImageFolderDataset

    source = open_image_source(shared_cifar_jpeg_archive)
    classes = ["airplane", "automobile", "bird", "cat", "deer"]
    classes += ["dog", "frog", "horse", "ship", "truck"]
    assert source.classes == classes
    assert len(source) == 50_000
    np.testing.assert_array_equal(np.bincount(source.labels), [5000] * 10)
    assert source.names[0] == "airplane/0000.jpg"

    dataset = ImageFolderDataset(source, mode="train", limit_files=100, seed=0)
    assert dataset.images.shape == (100, 32, 32, 3)
    assert dataset.images.dtype == np.uint8
    assert dataset.classes == classes
    np.testing.assert_array_equal(np.bincount(dataset.labels), [10] * 10)
    assert all(
        name.split("/")[0] == classes[label]
        for name, label in zip(dataset.names, dataset.labels, strict=True)
    )
    assert 40 < dataset.images.mean() < 200  # real photos, not blank buffers
