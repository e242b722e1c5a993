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
* **Keep the dtype until rescaling.** Flips and crops work on ``uint8`` directly (four
  times less memory traffic than float32); ``RescaleTransform`` and
  ``NormalizeTransform`` produce floating point, ``float32`` unless ``dtype`` says
  otherwise.
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

from .flip_crop import RandomFlipCrop, _PaddedBuffer, crop_batch
from .half import half_to_float
from .transform_base import Transform, apply_to_batch, apply_to_one

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


def _check_batch(images: np.ndarray, transform: object) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"{type(transform).__name__} expects a batch of shape (N, H, W, C) or one image "
            f"of shape (H, W, C), got shape {images.shape}"
        )
    return images


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
        images = _check_batch(images, self)
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
        images = _check_batch(images, self)
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


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p``.

    Parameters
    ----------
    p : float, default 0.5
        Probability that an image is flipped, in ``[0, 1]``.
    rng : int or numpy.random.Generator, optional
        Seed or generator of the flips; None draws fresh OS entropy.
    prob : float, optional
        The course's name for ``p``.
    """

    def __init__(
        self,
        p: float = 0.5,
        rng: int | np.random.Generator | None = None,
        *,
        prob: float | None = None,
    ) -> None:
        p = p if prob is None else prob
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability p={p} must lie in [0, 1]")
        self.p = float(p)
        self.rng = np.random.default_rng(rng)

    @property
    def prob(self) -> float:
        """The flip probability (the course's name)."""
        return self.p

    def apply_batch(self, images: np.ndarray) -> np.ndarray:
        """Flip a random subset of the batch.

        Parameters
        ----------
        images : numpy.ndarray
            Shape ``(N, H, W, C)``, any dtype.

        Returns
        -------
        numpy.ndarray
            New array, same shape and dtype; image ``i`` is ``images[i, :, ::-1]`` if
            it was drawn for flipping, else a copy of ``images[i]``.
        """
        images = np.ascontiguousarray(_check_batch(images, self))
        flip = self.draw(images.shape[0])
        # Viewing each pixel's C values as one opaque item lets numpy move whole
        # pixels when reversing rows, instead of C separate values: ~2x faster.
        pixel_item = np.dtype((np.void, images.shape[-1] * images.itemsize))
        pixels = images.view(pixel_item)[..., 0]  # (N, H, W)
        flipped = pixels.copy()
        flipped[flip] = pixels[flip, :, ::-1]
        return flipped.view(images.dtype).reshape(images.shape)

    def draw(self, count: int) -> np.ndarray:
        """Indices of the images of a batch of ``count`` to flip (one draw per image)."""
        return np.flatnonzero(self.rng.random(count) < self.p)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop(Transform):
    """Pad each image, then cut a window of ``size`` at a random position.

    The standard CIFAR augmentation (``padding=4``, ``size=32``): the image shifts by
    up to ``padding`` pixels in each direction, with zeros shifted in.

    Parameters
    ----------
    size : int or (int, int), default 32
        Output ``(height, width)``; an int means a square.
    padding : int, default 4
        Pixels of ``fill`` added on every side before cropping.
    rng : int or numpy.random.Generator, optional
        Seed or generator of the crop positions; None draws fresh OS entropy.
    fill : scalar, default 0
        Value of the padding pixels.

    Notes
    -----
    The offsets are drawn uniformly over every position where the window fits inside
    the padded image; the batch is copied into a padded work array once and the
    windows are gathered in one fancy index (:func:`~npdl.data.flip_crop.crop_batch`).
    """

    def __init__(
        self,
        size: int | Sequence[int] = 32,
        padding: int = 4,
        rng: int | np.random.Generator | None = None,
        fill: float = 0,
    ) -> None:
        if isinstance(size, int | np.integer):
            size = (int(size), int(size))
        self.height, self.width = (int(side) for side in size)
        if self.height < 1 or self.width < 1:
            raise ValueError(f"crop size {tuple(size)} must be positive")
        if int(padding) != padding or padding < 0:
            raise ValueError(f"padding={padding!r} must be an int >= 0")
        self.padding = int(padding)
        self.fill = fill
        self.rng = np.random.default_rng(rng)
        self._work = _PaddedBuffer()

    def apply_batch(self, images: np.ndarray, flip: np.ndarray | None = None) -> np.ndarray:
        """Crop every image of the batch at its own random offset.

        Parameters
        ----------
        images : numpy.ndarray
            Shape ``(N, H, W, C)``, any dtype.
        flip : int array, optional
            Indices of images to mirror left-right before cropping
            (:class:`~npdl.data.flip_crop.RandomFlipCrop`).

        Returns
        -------
        numpy.ndarray
            Shape ``(N, size_h, size_w, C)``, same dtype:
            ``padded[i, top[i]:top[i] + size_h, left[i]:left[i] + size_w]``.
        """
        images = _check_batch(images, self)
        count, height, width, _ = images.shape
        padded_height = height + 2 * self.padding
        padded_width = width + 2 * self.padding
        if self.height > padded_height or self.width > padded_width:
            raise ValueError(
                f"crop size {(self.height, self.width)} is larger than the padded images "
                f"{(padded_height, padded_width)} (images {(height, width)}, padding "
                f"{self.padding})"
            )
        top = self.rng.integers(0, padded_height - self.height + 1, size=count)
        left = self.rng.integers(0, padded_width - self.width + 1, size=count)
        size = (self.height, self.width)
        return crop_batch(images, top, left, size, self.padding, self.fill, flip, self._work)

    def __repr__(self) -> str:
        return f"RandomCrop(size={(self.height, self.width)}, padding={self.padding})"


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
