"""Scoring a trained model on labelled uint8 images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .data.transforms import eval_transform
from .losses import CrossEntropyFromLogits
from .network import ClassificationNet


def shift_images(images: np.ndarray, down: int, right: int) -> np.ndarray:
    """(N, H, W, C) images moved ``down`` rows and ``right`` columns (negative: up,
    left), zeros shifted in: the view a crop of the zero-padded image at that offset
    gives (training's :class:`~npdl.data.flip_crop.RandomCrop`)."""
    out = np.zeros_like(images)
    height, width = images.shape[1:3]
    rows = slice(max(down, 0), height + min(down, 0)), slice(max(-down, 0), height - max(down, 0))
    cols = slice(max(right, 0), width + min(right, 0)), slice(max(-right, 0), width - max(right, 0))
    out[:, rows[0], cols[0]] = images[:, rows[1], cols[1]]
    return out


def tta_offsets(shift: int) -> list[tuple[int, int]]:
    """The unshifted view, plus with ``shift`` > 0 the four moved by ``shift`` pixels."""
    if shift < 0:
        raise ValueError(f"the test-time shift must be >= 0 pixels, got {shift!r}")
    moves = [(shift, 0), (-shift, 0), (0, shift), (0, -shift)] if shift else []
    return [(0, 0), *moves]


def predict_logits(
    model: ClassificationNet,
    images: np.ndarray,
    batch_size: int = 1000,
    tta_flip: bool = False,
    tta_shift: int = 0,
) -> np.ndarray:
    """Logits for uint8 images, preprocessed as the model was trained.

    Parameters
    ----------
    model : ClassificationNet with ``preprocessing`` (``mean``, ``std``, plus
        ``zca_mean`` and ``zca_matrix`` for a zca-normalised model)
    images : uint8 (N, H, W, 3)
    batch_size : int
    tta_flip : bool
        Test-time augmentation: average the logits of each image and its mirror image.
    tta_shift : int
        Test-time augmentation: also average over each view moved by this many pixels
        up, down, left and right, zeros shifted in as training's padded crops do (after
        whitening for a zca model, whose padding is the mean). 0 = off; with
        ``tta_flip``, 10 views per image.

    Returns
    -------
    float32 (N, num_classes)
    """
    if not model.preprocessing:
        raise ValueError(
            "the model carries no preprocessing statistics; was it saved by npdl's train stage?"
        )
    offsets = tta_offsets(tta_shift)
    transform = eval_transform(model.preprocessing, dtype=model.dtype)
    whitened = "zca_matrix" in model.preprocessing
    was_training = model.training
    model.eval()
    parts = []
    try:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            logits = np.zeros((len(batch), model.num_classes), model.dtype)
            for view in (batch, batch[:, :, ::-1]) if tta_flip else (batch,):
                inputs = transform(view).reshape(view.shape) if whitened else view
                for down, right in offsets:
                    moved = shift_images(inputs, down, right) if down or right else inputs
                    logits += model.forward(moved if whitened else transform(moved))
            logits *= 1.0 / (len(offsets) * (2 if tta_flip else 1))
            parts.append(logits)
    finally:
        model.train(was_training)
    return np.concatenate(parts) if parts else np.zeros((0, model.num_classes), model.dtype)


def relabel(
    labels: np.ndarray, source_classes: Sequence[str], model_classes: Sequence[str]
) -> np.ndarray:
    """Map labels indexing ``source_classes`` to indices into ``model_classes``.

    Raises
    ------
    ValueError
        A class of the data the model does not know, naming it and the known ones.
    """
    unknown = sorted(set(source_classes) - set(model_classes))
    if unknown:
        raise ValueError(
            f"classes {unknown} are not among the model's classes {list(model_classes)}; "
            "class sub-folders must be named as in training"
        )
    mapping = np.array([list(model_classes).index(name) for name in source_classes], dtype=np.int64)
    return mapping[np.asarray(labels, dtype=np.int64)]


def confusion_counts(labels: np.ndarray, predictions: np.ndarray, count: int) -> np.ndarray:
    """int64 (count, count): row = actual class, column = predicted class."""
    flat = np.asarray(labels, dtype=np.int64) * count + np.asarray(predictions, dtype=np.int64)
    return np.bincount(flat, minlength=count * count).reshape(count, count)


def classification_metrics(
    logits: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> dict:
    """Accuracy, loss and per-class accuracy.

    Parameters
    ----------
    logits : float (N, C)
    labels : int (N,)
    class_names : C names

    Returns
    -------
    dict with ``accuracy`` (fraction), ``loss``, ``n``, ``per_class_accuracy``
    """
    labels = np.asarray(labels, dtype=np.int64)
    predictions = logits.argmax(axis=1)
    confusion = confusion_counts(labels, predictions, len(class_names))
    per_class = {
        name: float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None
        for i, name in enumerate(class_names)
    }
    return {
        "accuracy": float(np.mean(predictions == labels)) if len(labels) else 0.0,
        "loss": CrossEntropyFromLogits().forward(logits.astype(np.float64), labels)
        if len(labels)
        else 0.0,
        "n": len(labels),
        "per_class_accuracy": per_class,
    }
