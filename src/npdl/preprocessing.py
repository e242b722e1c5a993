"""Normalisation fitted on the train split, and the transforms built from it.

Two methods:

- ``standardize``: per-channel mean/std. Images stay uint8 on disk and in memory;
  each batch is augmented in uint8, then rescaled, standardised and flattened to
  float32 once.
- ``zca``: standardisation followed by ZCA whitening (a 3072 x 3072 linear map fitted
  on the train split). Applying it costs as much as a wide first layer, so the
  normalize stage whitens the train and val splits once and stores them as float16;
  training batches are then only augmented and converted to float32.

The statistics travel with the model (``model.preprocessing``), so evaluating any
raw uint8 images applies exactly the transform training used (:func:`eval_transform`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .data import compute_image_mean_and_std
from .io import load_json, load_npz
from .transforms import (
    ComposeTransform,
    FlattenTransform,
    NormalizeTransform,
    RandomCrop,
    RandomHorizontalFlip,
    RescaleTransform,
)

METHODS = ("standardize", "zca")
CHUNK = 4096


def fit_standardization(train_images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel mean and std (on the [0, 1] scale) of the training images.

    Parameters
    ----------
    train_images : uint8 (N, H, W, 3)

    Returns
    -------
    dict with ``mean`` and ``std``: float32 (3,)
    """
    mean, std = compute_image_mean_and_std(train_images)
    if np.any(std <= 0):
        raise ValueError(
            f"a channel of the training images is constant (std {std}); cannot standardise"
        )
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}


def standardize_images(images: np.ndarray, stats: dict[str, np.ndarray]) -> np.ndarray:
    """uint8 (N, H, W, 3) -> standardised float32 (N, H*W*3)."""
    scaled = images.astype(np.float32) * np.float32(1 / 255)
    scaled -= stats["mean"]
    scaled /= stats["std"]
    return scaled.reshape(len(images), -1)


def fit_zca(
    train_images: np.ndarray, stats: dict[str, np.ndarray], eps: float = 0.1
) -> dict[str, np.ndarray]:
    """ZCA whitening of standardised training images.

    ``W = U diag(1 / sqrt(lambda + eps)) U^T`` from the eigendecomposition of the
    covariance ``U diag(lambda) U^T`` of the standardised, flattened images; ``eps``
    damps the directions of small variance (noise) instead of amplifying them.

    Parameters
    ----------
    train_images : uint8 (N, H, W, 3)
    stats : per-channel ``mean`` and ``std`` from :func:`fit_standardization`
    eps : float > 0

    Returns
    -------
    dict with ``zca_mean`` float32 (D,) and ``zca_matrix`` float32 (D, D), D = H*W*3
    """
    if eps <= 0:
        raise ValueError(f"ZCA eps must be > 0, got {eps!r}")
    count = len(train_images)
    features = int(np.prod(train_images.shape[1:]))
    total = np.zeros(features)
    for start in range(0, count, CHUNK):
        total += standardize_images(train_images[start : start + CHUNK], stats).sum(axis=0)
    mean = total / count
    covariance = np.zeros((features, features))
    for start in range(0, count, CHUNK):
        centred = standardize_images(train_images[start : start + CHUNK], stats) - mean
        covariance += centred.T.astype(np.float64) @ centred.astype(np.float64)
    covariance /= count
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    scale = 1.0 / np.sqrt(np.maximum(eigenvalues, 0.0) + eps)
    matrix = (eigenvectors * scale) @ eigenvectors.T
    return {"zca_mean": mean.astype(np.float32), "zca_matrix": matrix.astype(np.float32)}


def whiten(images: np.ndarray, preprocessing: dict[str, np.ndarray]) -> np.ndarray:
    """Standardise and ZCA-whiten uint8 images, in chunks.

    Parameters
    ----------
    images : uint8 (N, H, W, 3)
    preprocessing : ``mean``, ``std``, ``zca_mean``, ``zca_matrix``

    Returns
    -------
    float16 (N, H, W, 3): half the memory of float32, ample precision for inputs
    """
    out = np.empty(images.shape, dtype=np.float16)
    for start in range(0, len(images), CHUNK):
        batch = standardize_images(images[start : start + CHUNK], preprocessing)
        batch -= preprocessing["zca_mean"]
        out[start : start + CHUNK] = (batch @ preprocessing["zca_matrix"]).reshape(
            -1, *images.shape[1:]
        )
    return out


class ZCATransform:
    """Flattened standardised batch (N, D) -> ``(x - zca_mean) @ zca_matrix`` (N, D)."""

    def __init__(self, mean: np.ndarray, matrix: np.ndarray, dtype=np.float32):
        self.mean = np.asarray(mean, dtype=dtype)
        self.matrix = np.asarray(matrix, dtype=dtype)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return (batch - self.mean) @ self.matrix


class AsFloat:
    """Any-dtype batch -> the same values as ``dtype`` (float32 by default)."""

    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return batch.astype(self.dtype)


def eval_transform(preprocessing: dict[str, np.ndarray], dtype=np.float32) -> ComposeTransform:
    """Raw uint8 (N, H, W, 3) -> the model's input, ``dtype`` (N, H*W*3)."""
    steps = [
        RescaleTransform(dtype=dtype),
        NormalizeTransform(preprocessing["mean"], preprocessing["std"], dtype=dtype),
        FlattenTransform(),
    ]
    if "zca_matrix" in preprocessing:
        steps.append(ZCATransform(preprocessing["zca_mean"], preprocessing["zca_matrix"], dtype))
    return ComposeTransform(steps)


def prepared_transform(
    preprocessing: dict[str, np.ndarray], whitened: bool, dtype=np.float32
) -> ComposeTransform:
    """Images as the normalize stage left them -> the model's input.

    ``whitened``: the images are already whitened float16 (N, H, W, 3), which only
    need converting and flattening; otherwise they are raw uint8 (:func:`eval_transform`).
    """
    if not whitened:
        return eval_transform(preprocessing, dtype)
    return ComposeTransform([AsFloat(dtype), FlattenTransform()])


def train_transform(
    preprocessing: dict[str, np.ndarray],
    rng: np.random.Generator,
    hflip: bool = False,
    crop_padding: int = 0,
    image_size: int = 32,
    whitened: bool = False,
    dtype=np.float32,
) -> ComposeTransform:
    """Augmentation (random flips, random crops with padding) on the stored images
    (uint8, or whitened float16 where padding 0 is the mean), then as
    :func:`prepared_transform`."""
    steps = []
    if hflip:
        steps.append(RandomHorizontalFlip(rng=rng))
    if crop_padding:
        steps.append(RandomCrop(size=image_size, padding=crop_padding, rng=rng))
    return ComposeTransform(
        [*steps, *prepared_transform(preprocessing, whitened, dtype).transforms]
    )


def load_normalization(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """The statistics the normalize stage wrote into ``folder``: float32 ``mean`` and
    ``std`` (3,), plus ``zca_mean`` and ``zca_matrix`` for the zca method."""
    folder = Path(folder)
    try:
        record = load_json(folder / "stats.json")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no normalization statistics in {folder}; run the normalize stage first"
        ) from None
    stats = {key: np.asarray(record[key], dtype=np.float32) for key in ("mean", "std")}
    if record.get("method") == "zca":
        stats.update(load_npz(folder / "zca.npz"))
    return stats
