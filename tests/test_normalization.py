"""Normalisation (npdl.data.normalization): image statistics, standardisation, ZCA,
the transforms built from them, and the normalize stage's folder on disk."""

import sys
from pathlib import Path

import numpy as np
import pytest

from npdl.config import PipelineConfig
from npdl.data.normalization import (
    Normalization,
    compute_image_mean_and_std,
    fit_standardization,
    fit_zca,
    load_normalization,
    read_normalization,
    whiten,
    write_normalization,
)
from npdl.data.prepared import PreparedData, write_prepared
from npdl.data.transforms import eval_transform, prepared_transform, train_transform
from npdl.io import load_json, save_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))

import normalize  # noqa: E402  (the normalize stage's run())

# --------------------------------------------------------------------- statistics


def test_mean_and_std_of_uint8_images_are_in_their_scale_unless_scaled(image_files):
    images = image_files.random_images(9, 11)
    mean, std = compute_image_mean_and_std(images, chunk_size=4)
    assert mean.shape == std.shape == (3,)
    assert mean.dtype == std.dtype == np.float64
    np.testing.assert_allclose(mean, images.mean(axis=(0, 1, 2)), rtol=1e-12)  # as the course
    np.testing.assert_allclose(std, images.std(axis=(0, 1, 2)), rtol=1e-12)
    mean, std = compute_image_mean_and_std(images, chunk_size=4, scale=1 / 255)
    scaled = images / 255.0
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, scaled.std(axis=(0, 1, 2)), rtol=1e-12)
    # The pipeline's statistics stay on the [0, 1] scale.
    stats = fit_standardization(images)
    np.testing.assert_allclose(stats["mean"], scaled.mean(axis=(0, 1, 2)), rtol=1e-6)


def test_mean_and_std_of_float_images_are_taken_as_they_are():
    images = np.random.default_rng(0).normal(5.0, 2.0, (6, 4, 4, 3)).astype(np.float32)
    mean, std = compute_image_mean_and_std(images)
    np.testing.assert_allclose(mean, images.astype(np.float64).mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, images.astype(np.float64).std(axis=(0, 1, 2)), rtol=1e-12)
    with pytest.raises(ValueError, match="N >= 1"):
        compute_image_mean_and_std(images[:0])


# -------------------------------------------------------------------------- ZCA


def correlated_images(n=2000, side=4, seed=0):
    """uint8 images whose pixels are strongly correlated (a smooth random field)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(128, 40, (n, 1, 1, 3))
    texture = rng.normal(0, 12, (n, side, side, 3))
    return np.clip(base + texture, 0, 255).astype(np.uint8)


def test_zca_whitens_the_training_data():
    images = correlated_images()
    stats = fit_standardization(images)
    zca = fit_zca(images, stats, eps=1e-6)
    white = whiten(images, {**stats, **zca}).reshape(len(images), -1).astype(np.float64)
    covariance = np.cov(white, rowvar=False, bias=True)
    np.testing.assert_allclose(covariance, np.eye(covariance.shape[0]), atol=0.02)
    # ZCA is symmetric: the whitened image stays close to the original, unlike PCA.
    np.testing.assert_allclose(zca["zca_matrix"], zca["zca_matrix"].T, atol=1e-5)


def test_eps_damps_low_variance_directions():
    images = correlated_images()
    stats = fit_standardization(images)
    strong = whiten(images, {**stats, **fit_zca(images, stats, eps=10.0)})
    weak = whiten(images, {**stats, **fit_zca(images, stats, eps=1e-6)})
    assert strong.astype(np.float32).std() < 0.5 * weak.astype(np.float32).std()
    with pytest.raises(ValueError, match="eps must be > 0"):
        fit_zca(images, stats, eps=0)


def test_zca_fit_is_the_same_to_the_bit_on_one_and_two_blas_threads():
    """The basis model.input_pca trains on must not depend on the machine's core count.
    Random images have small eigen-gaps: a last-bit change of the covariance there turns
    eigenvectors by up to 0.15 (as a gemm of a transposed copy and a threaded eigensolver
    did), so this sees any thread-dependent sum."""
    from threadpoolctl import threadpool_limits

    images = np.random.default_rng(0).integers(0, 256, (700, 16, 16, 3), dtype=np.uint8)
    stats = fit_standardization(images)
    fits = []
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="blas"):
            fits.append(fit_zca(images, stats, eps=0.1))
    for key in fits[0]:
        assert fits[0][key].tobytes() == fits[1][key].tobytes(), key
    # The sign rule: each component's largest entry is positive.
    components = fits[0]["pca_components"]
    largest = np.abs(components).argmax(axis=0)
    assert (components[largest, np.arange(components.shape[1])] > 0).all()


def test_stored_whitened_split_matches_the_models_raw_transform():
    images = correlated_images(300)
    stats = fit_standardization(images)
    preprocessing = {**stats, **fit_zca(images, stats, eps=0.1)}
    stored = whiten(images, preprocessing)
    assert stored.dtype == np.float16 and stored.shape == images.shape
    from_stored = prepared_transform(preprocessing, whitened=True)(stored)
    from_raw = eval_transform(preprocessing)(images)
    assert from_stored.dtype == from_raw.dtype == np.float32
    np.testing.assert_allclose(from_stored, from_raw, rtol=2e-3, atol=2e-3)


def test_train_transform_augments_whitened_float16():
    images = correlated_images(8)
    stats = fit_standardization(images)
    preprocessing = {**stats, **fit_zca(images, stats, eps=0.1)}
    stored = whiten(images, preprocessing)
    transform = train_transform(
        preprocessing,
        np.random.default_rng(0),
        hflip=True,
        crop_padding=1,
        image_size=4,
        whitened=True,
    )
    out = transform(stored)
    assert out.shape == (8, 48) and out.dtype == np.float32
    plain = prepared_transform(preprocessing, whitened=True)(stored)
    assert not np.allclose(out, plain)  # flips/crops changed something


# ---------------------------------------------------------------------- on disk


def test_standardize_is_written_and_read_back(tmp_path):
    images = correlated_images(50)
    stats = fit_standardization(images)
    record = write_normalization(tmp_path / "normalized", "standardize", stats, data_hash="abc")

    assert sorted(path.name for path in (tmp_path / "normalized").iterdir()) == ["stats.json"]
    assert record == load_json(tmp_path / "normalized" / "stats.json")
    assert record == {
        "method": "standardize",
        "data_hash": "abc",
        "mean": stats["mean"].tolist(),
        "std": stats["std"].tolist(),
    }
    read = read_normalization(tmp_path / "normalized")
    assert isinstance(read, Normalization)
    assert read.method == "standardize" and not read.whitened
    assert read.record == record and read.folder == tmp_path / "normalized"
    assert sorted(read.preprocessing) == ["mean", "std"]
    for key in ("mean", "std"):
        assert read.preprocessing[key].dtype == np.float32
        np.testing.assert_array_equal(read.preprocessing[key], stats[key])
    loaded = load_normalization(tmp_path / "normalized")
    assert sorted(loaded) == ["mean", "std"]
    np.testing.assert_array_equal(loaded["std"], stats["std"])


def test_zca_is_written_with_its_whitened_splits_and_read_back(tmp_path):
    images = correlated_images(300)
    stats = fit_standardization(images)
    preprocessing = {**stats, **fit_zca(images, stats, eps=0.1)}
    whitened = {
        "train": whiten(images[:200], preprocessing),
        "val": whiten(images[200:], preprocessing),
    }
    folder = tmp_path / "normalized"
    record = write_normalization(folder, "zca", preprocessing, whitened, zca_eps=0.1)

    assert sorted(path.name for path in folder.iterdir()) == [
        "pca_components.npy",
        "stats.json",
        "train_images.npy",
        "val_images.npy",
        "zca.npz",
    ]
    assert record == {
        "method": "zca",
        "mean": stats["mean"].tolist(),
        "std": stats["std"].tolist(),
        "zca_eps": 0.1,
        "arrays_sha256": record["arrays_sha256"],
    }
    # The digest covers every array training reads: another bit is another record.
    changed = {**whitened, "val": whitened["val"].copy()}
    changed["val"].flat[0] = np.nextafter(changed["val"].flat[0], np.float16(np.inf))
    other = write_normalization(tmp_path / "other", "zca", preprocessing, changed, zca_eps=0.1)
    assert len(record["arrays_sha256"]) == 64 and other["arrays_sha256"] != record["arrays_sha256"]
    for mode, expected in whitened.items():
        stored = np.load(folder / f"{mode}_images.npy", allow_pickle=False)
        assert stored.dtype == np.float16
        np.testing.assert_array_equal(stored, expected)
    read = read_normalization(folder)
    assert read.method == "zca" and read.whitened and read.record == record
    assert sorted(read.preprocessing) == ["mean", "std", "zca_matrix", "zca_mean"]
    for key in ("zca_mean", "zca_matrix"):
        np.testing.assert_array_equal(read.preprocessing[key], preprocessing[key])
    assert sorted(load_normalization(folder)) == sorted(read.preprocessing)


def test_stats_without_a_method_are_refused(tmp_path):
    stats = fit_standardization(correlated_images(20))
    folder = tmp_path / "normalized"
    save_json(folder / "stats.json", {key: value.tolist() for key, value in stats.items()})
    for read in (read_normalization, load_normalization):
        with pytest.raises(
            ValueError, match=r"stats\.json records no normalisation method.*normalize stage again"
        ):
            read(folder)
    save_json(folder / "stats.json", {"method": "pca", **{k: v.tolist() for k, v in stats.items()}})
    with pytest.raises(ValueError, match=r"unknown normalisation method 'pca'"):
        read_normalization(folder)


def test_a_missing_normalization_says_to_run_the_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the normalize stage first"):
        read_normalization(tmp_path / "nowhere")


def test_inconsistent_normalizations_are_not_written(tmp_path):
    images = correlated_images(50)
    stats = fit_standardization(images)
    preprocessing = {**stats, **fit_zca(images, stats, eps=0.1)}
    folder = tmp_path / "normalized"
    with pytest.raises(ValueError, match="'pca' is not one of"):
        write_normalization(folder, "pca", stats)
    with pytest.raises(ValueError, match=r"zca normalisation needs \['zca_mean', 'zca_matrix'\]"):
        write_normalization(folder, "zca", stats)
    with pytest.raises(ValueError, match="belong to the zca normalisation"):
        write_normalization(folder, "standardize", stats, {"train": whiten(images, preprocessing)})
    with pytest.raises(ValueError, match="belong to the zca normalisation"):
        write_normalization(folder, "standardize", stats, zca_eps=0.1)
    with pytest.raises(ValueError, match="must be float16"):
        write_normalization(folder, "zca", preprocessing, {"train": images.astype(np.float32)})
    assert not folder.exists()


@pytest.mark.parametrize("method", ["standardize", "zca"])
def test_the_normalize_stage_writes_the_format_read_normalization_reads(tmp_path, method):
    images = correlated_images(120)
    labels = np.arange(len(images)) % 3
    data = PreparedData(
        {"train": images[:80], "val": images[80:100], "test": images[100:]},
        {"train": labels[:80], "val": labels[80:100], "test": labels[100:]},
        ["a", "b", "c"],
    )
    manifest = write_prepared(tmp_path / "prepared", data, {})
    cfg = PipelineConfig()
    cfg.paths.data, cfg.normalize.method = str(tmp_path), method
    returned = normalize.run(cfg)

    read = read_normalization(tmp_path / "normalized")
    assert read.record == returned
    assert read.method == method and read.whitened == (method == "zca")
    expected_keys = {"method", "data_hash", "mean", "std"} | (
        {"zca_eps", "arrays_sha256"} if method == "zca" else set()
    )
    assert set(read.record) == expected_keys
    assert read.record["data_hash"] == manifest["content_hash"]
    stats = fit_standardization(data.images["train"])
    np.testing.assert_array_equal(read.preprocessing["mean"], stats["mean"])
    files = sorted(path.name for path in (tmp_path / "normalized").iterdir())
    if method == "zca":
        assert files == [
            "pca_components.npy",
            "stats.json",
            "train_images.npy",
            "val_images.npy",
            "zca.npz",
        ]
        stored = np.load(tmp_path / "normalized" / "val_images.npy")
        np.testing.assert_array_equal(stored, whiten(data.images["val"], read.preprocessing))
    else:
        assert files == ["stats.json"]
