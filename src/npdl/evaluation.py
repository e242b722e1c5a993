"""Scoring a trained model on labelled uint8 images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .data.transforms import eval_transform
from .losses import CrossEntropyFromLogits
from .network import ClassificationNet


def predict_logits(
    model: ClassificationNet, images: np.ndarray, batch_size: int = 1000, tta_flip: bool = False
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

    Returns
    -------
    float32 (N, num_classes)
    """
    if not model.preprocessing:
        raise ValueError(
            "the model carries no preprocessing statistics; was it saved by npdl's train stage?"
        )
    transform = eval_transform(model.preprocessing, dtype=model.dtype)
    was_training = model.training
    model.eval()
    parts = []
    try:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            logits = model.forward(transform(batch))
            if tta_flip:
                logits += model.forward(transform(batch[:, :, ::-1]))
                logits *= 0.5
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
