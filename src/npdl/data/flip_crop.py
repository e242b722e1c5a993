"""Random flips and padded crops: :class:`RandomHorizontalFlip`, :class:`RandomCrop`,
and both in two copies of the batch, :class:`RandomFlipCrop`.

The CIFAR augmentation (mirror half the images, shift each by up to ``padding``
pixels with zeros shifted in) is done here as:

1. one copy of the batch into the inside of a padded work array whose border holds
   the fill value (written once, kept across batches), mirroring the images drawn for
   flipping on the way;
2. one gather of the crop windows: every output row of an image is a contiguous run
   of ``size_w * C`` values of the padded array at that image's offset, so the whole
   crop is a single fancy index over a sliding-window view of the flat padded array.

:class:`RandomFlipCrop` is :class:`RandomHorizontalFlip` followed by
:class:`RandomCrop` on one generator, with the same draws in the same order (so the
same images), in one transform; ``RandomCrop`` uses :func:`crop_batch` too. All three
keep the transform contract of :mod:`npdl.data.transforms` (which exports them too).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .transform_base import Transform, check_batch

__all__ = ["RandomCrop", "RandomFlipCrop", "RandomHorizontalFlip", "crop_batch"]


class _PaddedBuffer:
    """A padded (N, H + 2p, W + 2p, C) work array reused while shape, dtype and fill
    stay the same; only its inside is ever written, so its border keeps the fill."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None
        self.fill = None

    def get(self, shape: tuple[int, ...], dtype, fill) -> np.ndarray:
        array = self.array
        if array is None or array.shape != shape or array.dtype != dtype or self.fill != fill:
            self.array = array = np.full(shape, fill, dtype=dtype)
            self.fill = fill
        return array


def crop_batch(
    images: np.ndarray,
    top: np.ndarray,
    left: np.ndarray,
    size: tuple[int, int],
    padding: int,
    fill=0,
    flip: np.ndarray | None = None,
    work: _PaddedBuffer | None = None,
) -> np.ndarray:
    """Pad, optionally mirror, and crop every image at its own offset.

    Parameters
    ----------
    images : ndarray, shape (N, H, W, C), any dtype
    top, left : int arrays, shape (N,)
        Offset of each window in the padded image, ``0 <= top <= H + 2p - size_h``.
    size : (size_h, size_w)
    padding : int
    fill : scalar
        Value of the padding pixels.
    flip : int array of image indices to mirror left-right first, optional
    work : reusable padded buffer, optional

    Returns
    -------
    ndarray, shape (N, size_h, size_w, C), dtype of ``images``: image ``i`` is
    ``padded_i[top[i]:top[i] + size_h, left[i]:left[i] + size_w]``.
    """
    count, height, width, channels = images.shape
    size_h, size_w = size
    padded_shape = (count, height + 2 * padding, width + 2 * padding, channels)
    padded = (work or _PaddedBuffer()).get(padded_shape, images.dtype, fill)
    inside = padded[:, padding : padding + height, padding : padding + width]
    np.copyto(inside, images)
    if flip is not None and len(flip):
        # Each pixel's C values as one opaque item: reversing rows then moves whole
        # pixels instead of C separate values, about twice as fast.
        pixel = np.dtype((np.void, channels * images.itemsize))
        source = np.ascontiguousarray(images).view(pixel)[..., 0]  # (N, H, W)
        target = padded.view(pixel)[..., 0]  # (N, H + 2p, W + 2p)
        target[:, padding : padding + height, padding : padding + width][flip] = source[
            flip, :, ::-1
        ]
    # Start of every output row in the flat padded array; each row is a run of
    # size_w * C values there.
    padded_rows, padded_columns = padded_shape[1], padded_shape[2]
    rows = np.arange(count)[:, None] * padded_rows + top[:, None] + np.arange(size_h)
    starts = (rows * padded_columns + left[:, None]) * channels
    runs = sliding_window_view(padded.reshape(-1), size_w * channels)
    return runs[starts.reshape(-1)].reshape(count, size_h, size_w, channels)


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
        images = np.ascontiguousarray(check_batch(images, self))
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
    windows are gathered in one fancy index (:func:`crop_batch`).
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
            (:class:`RandomFlipCrop`).

        Returns
        -------
        numpy.ndarray
            Shape ``(N, size_h, size_w, C)``, same dtype:
            ``padded[i, top[i]:top[i] + size_h, left[i]:left[i] + size_w]``.
        """
        images = check_batch(images, self)
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


class RandomFlipCrop(Transform):
    """Mirror each image with probability ``p``, then pad it and cut a ``size`` window
    at a random position: ``RandomHorizontalFlip(p)`` then ``RandomCrop(size,
    padding)`` sharing one generator, in two copies of the batch (module docstring).

    Parameters
    ----------
    p : float, default 0.5
        Flip probability in [0, 1].
    size : int or (int, int), default 32
    padding : int, default 4
    rng : int or numpy.random.Generator, optional
        Source of the flips, then the crop offsets (drawn in that order per batch).
    fill : scalar, default 0
    """

    def __init__(
        self,
        p: float = 0.5,
        size: int | Sequence[int] = 32,
        padding: int = 4,
        rng: int | np.random.Generator | None = None,
        fill: float = 0,
    ) -> None:
        self.rng = np.random.default_rng(rng)
        # The two transforms validate the arguments and hold the shared generator.
        self.flip = RandomHorizontalFlip(p, rng=self.rng)
        self.crop = RandomCrop(size, padding, rng=self.rng, fill=fill)

    def apply_batch(self, images: np.ndarray) -> np.ndarray:
        """``images`` (N, H, W, C), any dtype -> new (N, size_h, size_w, C), same dtype."""
        flip = self.flip.draw(len(images))
        return self.crop.apply_batch(images, flip=flip)

    def __repr__(self) -> str:
        return f"RandomFlipCrop(p={self.flip.p}, {self.crop!r})"
