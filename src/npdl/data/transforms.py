"""Image transforms, vectorised over a batch and usable on one image.

Every transform takes a batch ``images`` of shape ``(N, H, W, C)`` (``FlattenTransform``
also accepts any ``(N, ...)``) and returns a new array; called on one image
``(H, W, C)`` it returns what the course's per-image transform returns (``(H, W, C)``,
or ``(H * W * C,)`` for ``FlattenTransform``). See :mod:`npdl.data.transform_base` for
how datasets apply them, and plain per-image callables, to batches. The course's
keyword names are accepted (``RescaleTransform(range_=..., old_range=...)``,
``RandomHorizontalFlip(prob=...)``). The contract all transforms keep:

* **Never modify the input.** Datasets pass views of their stored images; an in-place
  edit would corrupt every later epoch.
* **Keep the dtype until rescaling.** Flips and crops (:mod:`npdl.data.flip_crop`,
  exported here too) work on ``uint8`` directly (four times less memory traffic than
  float32); ``RescaleTransform`` and ``NormalizeTransform`` produce floating point,
  ``float32`` unless ``dtype`` says otherwise.
* **Vectorised over the batch.** Random choices are drawn for the whole batch at once
  from the transform's own :class:`numpy.random.Generator`; there is no per-sample
  Python loop.

A typical training pipeline::

    ComposeTransform([
        RandomHorizontalFlip(rng=seed),
        RandomCrop(size=32, padding=4, rng=seed + 1),
        RescaleTransform(),
        NormalizeTransform(mean, std),
        FlattenTransform(),
    ])

The **pipeline transforms** at the end build such pipelines from the statistics the
normalize stage fitted (``preprocessing``: float32 ``mean``, ``std`` (3,), plus
``zca_mean`` (D,) and ``zca_matrix`` (D, D) for ZCA; see :mod:`npdl.data.normalization`):
:func:`eval_transform` for raw uint8 images, :func:`prepared_transform` for the images as
the normalize stage stored them, :func:`train_transform` with augmentation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from .flip_crop import RandomCrop, RandomFlipCrop, RandomHorizontalFlip
from .half import half_to_float
from .transform_base import Transform, apply_to_batch, apply_to_one, check_batch

__all__ = [
    "AsFloat",
    "ComposeTransform",
    "FlattenTransform",
    "IdentityTransform",
    "NormalizeTransform",
    "RandomCrop",
    "RandomFlipCrop",
    "RandomHorizontalFlip",
    "RescaleTransform",
    "ZCATransform",
    "eval_transform",
    "prepared_transform",
    "train_transform",
]


class RescaleTransform(Transform):
    """Map pixel values linearly from ``in_range`` to ``out_range``.

    Parameters
    ----------
    out_range : (float, float), default (0, 1)
        Target ``(min, max)``.
    in_range : (float, float), default (0, 255)
        Source ``(min, max)``, the range of ``uint8`` pixels.
    dtype : numpy dtype, default float32
        Output dtype.
    range_, old_range : (float, float), optional
        The course's names for ``out_range`` and ``in_range``.

    Notes
    -----
    Values outside ``in_range`` are mapped by the same line, not clipped.
    """

    def __init__(
        self,
        out_range: Sequence[float] = (0, 1),
        in_range: Sequence[float] = (0, 255),
        dtype: DTypeLike = np.float32,
        *,
        range_: Sequence[float] | None = None,
        old_range: Sequence[float] | None = None,
    ) -> None:
        out_range = out_range if range_ is None else range_
        in_range = in_range if old_range is None else old_range
        self.out_min, self.out_max = (float(value) for value in out_range)
        self.in_min, self.in_max = (float(value) for value in in_range)
        if self.in_max == self.in_min:
            raise ValueError(f"in_range {tuple(in_range)} must have distinct ends")
        self.dtype = np.dtype(dtype)
        self.scale = (self.out_max - self.out_min) / (self.in_max - self.in_min)

    def apply_batch(self, images: np.ndarray) -> np.ndarray:
        """Rescale a batch.

        Parameters
        ----------
        images : numpy.ndarray
            Shape ``(N, H, W, C)``, any real dtype (normally ``uint8``).

        Returns
        -------
        numpy.ndarray
            Same shape, dtype ``self.dtype``.
        """
        images = check_batch(images, self)
        rescaled = images.astype(self.dtype)  # always a copy: the input stays intact
        rescaled -= self.dtype.type(self.in_min)
        rescaled *= self.dtype.type(self.scale)
        rescaled += self.dtype.type(self.out_min)
        return rescaled

    def __repr__(self) -> str:
        return (
            f"RescaleTransform(out_range={(self.out_min, self.out_max)}, "
            f"in_range={(self.in_min, self.in_max)}, dtype={self.dtype.name})"
        )


class NormalizeTransform(Transform):
    """Standardise each channel: ``(image - mean) / std``.

    Parameters
    ----------
    mean : float or array-like of shape (C,)
        Per-channel mean, on the scale of the input (e.g. ``[0, 1]`` after
        ``RescaleTransform()``; see :func:`npdl.data.normalization.compute_image_mean_and_std`).
    std : float or array-like of shape (C,)
        Per-channel standard deviation, all > 0.
    dtype : numpy dtype, default float32
        Output dtype.
    """

    def __init__(self, mean: ArrayLike, std: ArrayLike, dtype: DTypeLike = np.float32) -> None:
        self.dtype = np.dtype(dtype)
        # Kept in float64 as given (readable in messages and reprs); cast to ``dtype``
        # when tiled for a batch.
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        if self.mean.ndim > 1 or self.std.ndim > 1:
            raise ValueError(
                f"mean and std must be scalars or shape (C,), got {self.mean.shape} and "
                f"{self.std.shape}"
            )
        if not np.all(self.std > 0):
            raise ValueError(f"std must be > 0 in every channel, got {self.std.tolist()}")
        self._tiled_cache: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}

    def apply_batch(self, images: np.ndarray) -> np.ndarray:
        """Normalise a batch.

        Parameters
        ----------
        images : numpy.ndarray
            Shape ``(N, H, W, C)``, C matching ``mean``/``std``.

        Returns
        -------
        numpy.ndarray
            Same shape, dtype ``self.dtype``.
        """
        images = check_batch(images, self)
        if self.mean.ndim == 1 and images.shape[-1] != self.mean.shape[0]:
            raise ValueError(
                f"NormalizeTransform has {self.mean.shape[0]} channels of mean/std but the "
                f"images have {images.shape[-1]} (shape {images.shape})"
            )
        mean, std = self._tiled(images.shape[1:])
        normalised = np.subtract(images, mean, dtype=self.dtype)  # new array: input intact
        normalised /= std
        return normalised

    def _tiled(self, image_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        # Broadcasting a (C,) vector makes numpy's innermost loop C = 3 elements long;
        # against full (H, W, C) copies it runs over whole images, ~8x faster.
        if image_shape not in self._tiled_cache:
            self._tiled_cache[image_shape] = (
                np.ascontiguousarray(np.broadcast_to(self.mean, image_shape), self.dtype),
                np.ascontiguousarray(np.broadcast_to(self.std, image_shape), self.dtype),
            )
        return self._tiled_cache[image_shape]

    def __repr__(self) -> str:
        return f"NormalizeTransform(mean={self.mean.tolist()}, std={self.std.tolist()})"


class FlattenTransform(Transform):
    """Flatten each image of a batch: ``(N, H, W, C) -> (N, H * W * C)``; one image
    ``(H, W, C)`` -> ``(H * W * C,)``.

    The order is row-major over ``(H, W, C)``. Returns a view when the input is
    contiguous (no transform modifies its input, so sharing memory is safe).
    """

    def apply_batch(self, images: np.ndarray) -> np.ndarray:
        """Flatten a batch of shape ``(N, ...)`` to ``(N, prod(...))``, same dtype."""
        images = np.asarray(images)
        if images.ndim < 1:
            raise ValueError(f"FlattenTransform expects a batch (N, ...), got a scalar {images}")
        return images.reshape(images.shape[0], -1)

    def __repr__(self) -> str:
        return "FlattenTransform()"


class ComposeTransform(Transform):
    """Apply transforms one after another.

    Parameters
    ----------
    transforms : iterable of callables
        npdl transforms, which run on the whole batch, or plain callables written
        for one image, which get one image at a time (see
        :func:`~npdl.data.transform_base.apply_to_batch`).
    """

    def __init__(self, transforms: Iterable[Callable[[np.ndarray], np.ndarray]]) -> None:
        self.transforms = list(transforms)
        for transform in self.transforms:
            if not callable(transform):
                raise TypeError(f"ComposeTransform takes callables, got {transform!r}")

    def apply_batch(self, images: np.ndarray) -> np.ndarray:
        """Run a batch (shape ``(N, ...)``) through every transform in order."""
        for transform in self.transforms:
            images = apply_to_batch(transform, images)
        return images

    def apply_one(self, image: np.ndarray) -> np.ndarray:
        """Run one image (shape ``(H, W, C)``) through every transform in order."""
        for transform in self.transforms:
            image = apply_to_one(transform, image)
        return image

    def __repr__(self) -> str:
        inner = ", ".join(repr(transform) for transform in self.transforms)
        return f"ComposeTransform([{inner}])"


class IdentityTransform(Transform):
    """Return the images unchanged (the course's default transform)."""

    def apply_batch(self, images: np.ndarray) -> np.ndarray:
        return images

    def apply_one(self, image: np.ndarray) -> np.ndarray:
        return image

    def __repr__(self) -> str:
        return "IdentityTransform()"


# ---------------------------------------------------------------- pipeline transforms


class ZCATransform(Transform):
    """Flattened standardised batch (N, D) -> ``(x - zca_mean) @ zca_matrix`` (N, D);
    one flattened image (D,) -> (D,)."""

    image_ndim = 1

    def __init__(self, mean: np.ndarray, matrix: np.ndarray, dtype=np.float32):
        self.mean = np.asarray(mean, dtype=dtype)
        self.matrix = np.asarray(matrix, dtype=dtype)

    def apply_batch(self, batch: np.ndarray) -> np.ndarray:
        return (batch - self.mean) @ self.matrix


class AsFloat(Transform):
    """Any-dtype batch (or image) -> the same values as ``dtype`` (float32 by default)."""

    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)

    def apply_batch(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.dtype == np.float16 and self.dtype == np.float32:
            return half_to_float(batch)  # the same values, ~3x faster
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
    if hflip and crop_padding:
        # The same draws as the two below in turn, in one transform (fewer copies).
        steps.append(RandomFlipCrop(size=image_size, padding=crop_padding, rng=rng))
    elif hflip:
        steps.append(RandomHorizontalFlip(rng=rng))
    elif crop_padding:
        steps.append(RandomCrop(size=image_size, padding=crop_padding, rng=rng))
    return ComposeTransform(
        [*steps, *prepared_transform(preprocessing, whitened, dtype).transforms]
    )
