"""Image sources (npdl.data.sources): reading samples by index, the real archive, and
which checksum the prepare-split stage applies to which source."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npdl.config import CIFAR10_MD5, CIFAR10_URL, PipelineConfig
from npdl.data.sources import FolderImageSource, open_image_source

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))


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


# ------------------------------------------------- the prepare-split stage's md5


def prepare(source, folder, *overrides):
    """``stages/prepare_split.py data.source=<source>`` into ``folder``, without
    CIFAR10_SOURCE."""
    env = {key: value for key, value in os.environ.items() if key != "CIFAR10_SOURCE"}
    command = [sys.executable, str(ROOT / "stages" / "prepare_split.py"), f"data.source={source}"]
    command += [f"paths.data={folder}", f"hydra.run.dir={folder / 'run'}", *overrides]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder)


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_a_users_own_archive_prepares_without_any_md5_setting(
    png_folder, image_files, tmp_path, suffix
):
    archive = tmp_path / f"my_images{suffix}"
    (image_files.pack_tar if suffix == ".tar.gz" else image_files.pack_zip)(
        png_folder.root, archive
    )
    result = prepare(archive, tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "prepared" / "manifest.json").read_text())
    assert manifest["classes"] == ["cat", "dog", "frog"] and sum(manifest["counts"].values()) == 30


def test_an_md5_the_user_gives_is_checked(png_folder, image_files, tmp_path):
    archive = image_files.pack_tar(png_folder.root, tmp_path / "mine.tar.gz")
    wrong = prepare(archive, tmp_path, "data.source_md5=" + "0" * 32)
    assert wrong.returncode == 2
    assert f"checksum mismatch for {archive}: expected md5 {'0' * 32}" in wrong.stderr
    assert not (tmp_path / "prepared").exists()
    right = hashlib.md5(archive.read_bytes()).hexdigest()
    assert prepare(archive, tmp_path, f"data.source_md5={right}").returncode == 0


def test_the_published_md5_applies_to_the_official_url_alone(monkeypatch):
    from prepare_split import effective_source

    monkeypatch.delenv("CIFAR10_SOURCE", raising=False)
    cfg = PipelineConfig()
    assert effective_source(cfg) == (CIFAR10_URL, CIFAR10_MD5)
    cfg.data.source = "my_images.tar.gz"
    assert effective_source(cfg) == ("my_images.tar.gz", None)
    cfg.data.source_md5 = "a" * 32
    assert effective_source(cfg) == ("my_images.tar.gz", "a" * 32)
    # CIFAR10_SOURCE replaces the official URL (a local copy, another archive): no check.
    monkeypatch.setenv("CIFAR10_SOURCE", "/data/cifar.tar.gz")
    assert effective_source(PipelineConfig()) == ("/data/cifar.tar.gz", None)


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
