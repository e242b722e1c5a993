"""The transform contract: npdl's transforms take a batch or one image; plain callables
take one image.

npdl's transforms (subclasses of :class:`Transform`) are vectorised: a dataset hands
them whole batches ``(N, H, W, C)`` and they never loop over samples. Called directly
on one image ``(H, W, C)`` they return what the course's per-image transforms return
(e.g. ``FlattenTransform`` of one image is ``(H * W * C,)``).

A **plain callable** (any function or object that is not a :class:`Transform`) is
taken to be written for one image, as in the course, and is handed one image at a
time: :func:`apply_to_batch` loops over the batch for it and stacks the results.
It receives a writable float image (integer pixels are converted to ``float64``, as
the course's loader made them), so in-place arithmetic such as ``image /= 255`` works.
A function written for whole batches says so by being wrapped in
:class:`BatchTransform`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["BatchTransform", "Transform", "apply_to_batch", "apply_to_one", "check_batch"]


class Transform:
    """Base class of npdl's transforms: vectorised over a batch, usable on one image.

    A subclass implements :meth:`apply_batch`; :meth:`apply_one` defaults to the batch
    of one, unwrapped. Calling the transform dispatches on the input's dimensions:
    ``image_ndim`` dimensions (3, ``(H, W, C)``) is one image, anything else a batch.
    """

    #: Dimensions of one image as this transform expects it.
    image_ndim = 3

    def apply_batch(self, images: np.ndarray) -> np.ndarray:
        """Transform a batch ``(N, ...)``; returns a new ``(N, ...)`` array."""
        raise NotImplementedError

    def apply_one(self, image: np.ndarray) -> np.ndarray:
        """Transform one image (shape ``(H, W, C)``, or what an earlier step made of it)."""
        return self.apply_batch(np.asarray(image)[np.newaxis])[0]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """One image ``(H, W, C)`` -> :meth:`apply_one`; a batch ``(N, H, W, C)`` ->
        :meth:`apply_batch`."""
        images = np.asarray(images)
        if images.ndim == self.image_ndim:
            return self.apply_one(images)
        return self.apply_batch(images)


class BatchTransform(Transform):
    """Mark a function written for whole batches, so datasets hand it batches.

    Parameters
    ----------
    function : callable
        ``(N, ...) array -> (N, ...) array``; on one image it gets a batch of one.

    Examples
    --------
    >>> to_float = BatchTransform(lambda batch: batch.astype(np.float32) / 255)
    """

    def __init__(self, function: Callable[[np.ndarray], np.ndarray]) -> None:
        if not callable(function):
            raise TypeError(f"BatchTransform wraps a callable, got {function!r}")
        self.function = function

    def apply_batch(self, images: np.ndarray) -> np.ndarray:
        return self.function(images)

    def __repr__(self) -> str:
        return f"BatchTransform({self.function!r})"


def check_batch(images: np.ndarray, transform: object) -> np.ndarray:
    """``images`` as an array of shape ``(N, H, W, C)`` (any dtype), or ValueError naming
    ``transform``'s class and the shape it got (one image goes through
    :meth:`Transform.apply_one`, which makes it a batch of one)."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"{type(transform).__name__} expects a batch of shape (N, H, W, C) or one image "
            f"of shape (H, W, C), got shape {images.shape}"
        )
    return images


def _per_image_input(images: np.ndarray) -> np.ndarray:
    # The course's loader gave transforms fresh float64 images; a plain callable may
    # rely on both (``image /= 255`` fails on uint8 and on a read-only view).
    if not np.issubdtype(images.dtype, np.floating):
        return images.astype(np.float64)
    return images if images.flags.writeable else images.copy()


def apply_to_one(transform: Callable, image: np.ndarray) -> np.ndarray:
    """Apply any transform to one image.

    Parameters
    ----------
    transform : Transform or callable
    image : numpy.ndarray
        Shape ``(H, W, C)``, any dtype (a dataset's stored ``uint8`` image).

    Returns
    -------
    numpy.ndarray
        What the transform makes of one image.
    """
    if isinstance(transform, Transform):
        return transform.apply_one(image)
    return np.asarray(transform(_per_image_input(np.asarray(image))))


def apply_to_batch(transform: Callable, images: np.ndarray) -> np.ndarray:
    """Apply any transform to a batch: npdl's transforms in one call, a plain callable
    image by image.

    Parameters
    ----------
    transform : Transform or callable
    images : numpy.ndarray
        Shape ``(N, ...)``, e.g. ``uint8 (N, H, W, C)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(N, ...)``: the transformed batch, or for a plain callable its results
        on ``images[0]``, ``images[1]``, ... stacked.

    Raises
    ------
    ValueError
        If a plain callable returns arrays of different shapes for different images.
    """
    if isinstance(transform, Transform):
        return transform.apply_batch(images)
    inputs = _per_image_input(np.asarray(images))
    outputs = [np.asarray(transform(image)) for image in inputs]
    if not outputs:
        return inputs
    shapes = {output.shape for output in outputs}
    if len(shapes) > 1:
        raise ValueError(
            f"the per-image transform {transform!r} returned images of different shapes "
            f"{sorted(shapes)}; a batch needs one shape (wrap a function written for "
            "batches in npdl.BatchTransform)"
        )
    return np.stack(outputs)
