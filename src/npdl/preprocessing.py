"""Normalisation fitted on the train split, and the transforms built from it.

The statistics travel with the model (``model.preprocessing``), so evaluation of any
data applies exactly the transform training used. Images stay uint8 on disk and in
memory; each batch is augmented in uint8, then rescaled, standardised and flattened
to float32 once.
"""

from __future__ import annotations

import numpy as np

from .data import compute_image_mean_and_std
from .transforms import (
    ComposeTransform,
    FlattenTransform,
    NormalizeTransform,
    RandomCrop,
    RandomHorizontalFlip,
    RescaleTransform,
)


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


def eval_transform(preprocessing: dict[str, np.ndarray], dtype=np.float32) -> ComposeTransform:
    """uint8 (N, H, W, 3) -> standardised, flattened ``dtype`` (N, H*W*3)."""
    return ComposeTransform(
        [
            RescaleTransform(dtype=dtype),
            NormalizeTransform(preprocessing["mean"], preprocessing["std"], dtype=dtype),
            FlattenTransform(),
        ]
    )


def train_transform(
    preprocessing: dict[str, np.ndarray],
    rng: np.random.Generator,
    hflip: bool = False,
    crop_padding: int = 0,
    image_size: int = 32,
    dtype=np.float32,
) -> ComposeTransform:
    """Augmentation in uint8 (random flips, random crops with padding), then as
    :func:`eval_transform`."""
    steps = []
    if hflip:
        steps.append(RandomHorizontalFlip(rng=rng))
    if crop_padding:
        steps.append(RandomCrop(size=image_size, padding=crop_padding, rng=rng))
    return ComposeTransform([*steps, *eval_transform(preprocessing, dtype).transforms])


def load_normalization(path) -> dict[str, np.ndarray]:
    """The statistics the normalize stage wrote (``stats.json``): float32 mean, std (3,)."""
    from .io import load_json

    try:
        record = load_json(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no normalization statistics at {path}; run the normalize stage first"
        ) from None
    return {key: np.asarray(record[key], dtype=np.float32) for key in ("mean", "std")}
