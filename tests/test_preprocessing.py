import numpy as np
import pytest

from npdl.preprocessing import (
    eval_transform,
    fit_standardization,
    fit_zca,
    prepared_transform,
    train_transform,
    whiten,
)


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
