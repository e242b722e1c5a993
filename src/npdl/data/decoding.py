"""Image decoding: encoded files -> fixed-size ``uint8`` RGB arrays, and its process pool.

:func:`decode_image` decodes one file (PNG, JPEG, BMP, GIF, WebP or anything Pillow
reads) to ``uint8 (height, width, 3)``; 8-bit colour JPEGs already at the target size
take a fast path straight into Pillow's JPEG decoder. Sources (:mod:`npdl.data.sources`)
decode many images into one preallocated array, in this process or in a pool of
worker processes (:func:`decoding_pool`, and how many workers ``workers`` resolves to).
"""

from __future__ import annotations

import io
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "IMAGE_EXTENSIONS",
    "as_image_size",
    "decode_image",
    "decode_into",
    "decoding_pool",
    "resize_array",
]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
"""File name suffixes (compared case-insensitively) that count as images."""

DEFAULT_IMAGE_SIZE = (32, 32)

# Below this many images a process pool costs more to start (each worker imports
# numpy and Pillow, ~0.2 s) than it saves.
_PARALLEL_MIN_IMAGES = 4096
_CHUNK_IMAGES = 1024

# Pillow reports undecodable data through several exception types depending on the
# format plugin and on whether the failure happens while opening or while decoding.
_DECODE_ERRORS = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    OSError,
    SyntaxError,
    EOFError,
    ValueError,
    IndexError,
)


def as_image_size(size: int | Sequence[int]) -> tuple[int, int]:
    """Return ``size`` (an int, or ``(height, width)``) as ``(height, width)``; an int
    means a square. ValueError, naming the size, if a side is not positive."""
    if isinstance(size, int | np.integer):
        size = (int(size), int(size))
    height, width = (int(side) for side in size)
    if height <= 0 or width <= 0:
        raise ValueError(f"image size {tuple(size)} must be two positive ints (height, width)")
    return height, width


# JPEG start-of-frame markers Pillow's JPEG plugin decodes with a plain "jpeg" tile:
# baseline, extended sequential and progressive Huffman coding.
_JPEG_PLAIN_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2})
# Other SOFn markers (lossless, arithmetic, hierarchical) are left to Pillow's full path.
_JPEG_ALL_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_frame(data: bytes) -> tuple[int, int, int, int, int] | None:
    """Read a JPEG's frame header: ``(marker, precision, height, width, components)``.

    Returns None if ``data`` is not a JPEG or the header cannot be found before the
    scan data; the caller then uses Pillow's general path, which reports errors.
    """
    if not data.startswith(b"\xff\xd8"):
        return None
    position, length = 2, len(data)
    while position + 4 <= length:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        if marker in _JPEG_ALL_SOF_MARKERS:
            if position + 10 > length:
                return None
            return (
                marker,
                data[position + 4],
                int.from_bytes(data[position + 5 : position + 7], "big"),
                int.from_bytes(data[position + 7 : position + 9], "big"),
                data[position + 9],
            )
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame
            return None
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return None


def _decode_rgb_bytes(data: bytes, name: str, size: tuple[int, int]) -> bytes:
    """Decode to ``height * width * 3`` bytes of row-major RGB; see :func:`decode_image`."""
    height, width = size
    try:
        frame = _jpeg_frame(data)
        plain_colour_jpeg_of_target_size = (
            frame is not None
            and frame[0] in _JPEG_PLAIN_SOF_MARKERS
            and frame[1:] == (8, height, width, 3)  # 8-bit, 3 components
        )
        if plain_colour_jpeg_of_target_size:
            # Fast path for the common case, an 8-bit colour JPEG already at the target
            # size: hand the file straight to Pillow's JPEG decoder with the tile
            # arguments Pillow's JPEG plugin itself uses for 3-layer images
            # (rawmode "RGB", libjpeg guessing the colour space). Same pixels as
            # Image.open, at a third of the cost: Image.open parses the JPEG markers in
            # Python, which dominates for 32x32 images.
            image = Image.frombytes("RGB", (width, height), data, "jpeg", "RGB", "")
            return image.tobytes("raw", "RGB")
        return _decode_general(data, size)
    except _DECODE_ERRORS as error:
        raise ValueError(
            f"cannot decode image {name}: {error}. Expected a complete image file in one "
            f"of the formats {', '.join(sorted(IMAGE_EXTENSIONS))}; the file is corrupt, "
            "truncated or not an image"
        ) from error


def _decode_general(data: bytes, size: tuple[int, int]) -> bytes:
    """Decode any format Pillow reads, converting to RGB and resizing to ``size``."""
    height, width = size
    with Image.open(io.BytesIO(data)) as opened:
        # Decode now: a truncated file only fails here.
        opened.load()
        image = opened
        if image.mode == "P" and "transparency" in image.info:
            # Going through RGBA avoids Pillow's warning about palette transparency;
            # the alpha channel is then dropped like any other.
            image = image.convert("RGBA")
        if image.mode != "RGB":
            image = image.convert("RGB")
        if image.size != (width, height):
            image = image.resize((width, height), resample=Image.Resampling.BILINEAR)
        return image.tobytes("raw", "RGB")


def decode_image(
    data: bytes, name: str, size: int | Sequence[int] = DEFAULT_IMAGE_SIZE
) -> np.ndarray:
    """Decode one encoded image file into an RGB array of a fixed size.

    Parameters
    ----------
    data : bytes
        The encoded file (PNG, JPEG, BMP, GIF, WebP, or anything Pillow reads).
    name : str
        Where ``data`` came from (file path or ``archive:member``); used only in
        error messages.
    size : int or (int, int), default (32, 32)
        Output ``(height, width)``; an int means a square.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(height, width, 3)``.

    Raises
    ------
    ValueError
        If ``data`` is not a readable image (unknown format, corrupt or truncated),
        naming ``name``.

    Notes
    -----
    * Grayscale, palette, CMYK, YCbCr and 16-bit images are converted to RGB by
      Pillow's conversion rules. An alpha channel is **dropped**, not composited onto
      a background: the colour under a transparent pixel is kept as stored.
    * Animated GIF/WebP files give their first frame. EXIF orientation is ignored.
    * Images of another size are resized with **bilinear** interpolation. Pillow's
      bilinear filter widens its support when shrinking, so downscaling is
      anti-aliased, and it is smooth rather than ringing when enlarging. The aspect
      ratio is not preserved: CIFAR-style inputs are expected to be square already.
    """
    size = as_image_size(size)
    rgb = bytearray(_decode_rgb_bytes(data, name, size))
    return np.frombuffer(rgb, dtype=np.uint8).reshape(*size, 3)


def _decode_chunk(
    names: Sequence[str], blobs: Sequence[bytes], size: tuple[int, int]
) -> np.ndarray:
    """Decode a chunk of images (runs in a worker process).

    Returns a ``uint8`` array of shape ``(len(blobs), height, width, 3)``.
    """
    decoded = np.empty((len(blobs), *size, 3), dtype=np.uint8)
    _decode_rows_into(decoded, zip(range(len(blobs)), names, blobs, strict=True))
    return decoded


def _decode_rows_into(images: np.ndarray, items: Iterable[tuple[int, str, bytes]]) -> None:
    """Decode ``(row, name, data)`` items into rows of the C-contiguous ``images``."""
    size = images.shape[1:3]
    row_bytes = size[0] * size[1] * 3
    # Writing the decoded bytes through a flat memoryview skips building a numpy
    # array per image (numpy's conversion of a Pillow image costs as much as the
    # decoding of a 32x32 JPEG).
    flat = memoryview(images.reshape(-1))
    for row, name, data in items:
        flat[row * row_bytes : (row + 1) * row_bytes] = _decode_rgb_bytes(data, name, size)


def _available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _resolve_workers(workers: int | str | None, image_count: int) -> int:
    if workers is None:
        # In-process by default: worker processes are spawned, which re-imports the
        # caller's main module, and a course script or notebook has no
        # `if __name__ == "__main__":` guard. Entry points that have one opt in.
        return 1
    if workers == "auto":
        return _available_cpus() if image_count >= _PARALLEL_MIN_IMAGES else 1
    if workers < 0:
        raise ValueError(f"workers={workers!r} must be None, 'auto' or an int >= 0")
    return max(1, workers)


def decode_into(
    images: np.ndarray,
    items: Iterable[tuple[int, str, bytes]],
    count: int,
    workers: int | str | Executor | None,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Decode ``(row, name, data)`` items into ``images[row]``.

    Items are consumed lazily and sent to worker processes in chunks, so reading an
    archive overlaps with decoding and only a few chunks of encoded bytes are in
    memory at once. Processes rather than threads: a 32x32 JPEG decodes in ~50 us, of
    which Pillow holds the GIL for a third, and a thread pool measured no faster than
    one thread; two worker processes decode about 1.3-1.6x faster on the 2-core
    development machine (workers start in ~0.4 s, hence the size threshold). An
    executor passed as ``workers`` (see :func:`decoding_pool`) is used as it is.

    Parameters
    ----------
    images : numpy.ndarray
        ``uint8 (M, height, width, 3)``, C-contiguous; written in place.
    items : iterable of (int, str, bytes)
        ``(row of images, name for messages, encoded file)``; each row at most once.
    count : int
        How many items there are (for the worker count and ``progress``).
    workers : int, 'auto', an executor, or None
        As in :meth:`npdl.data.source_base.ImageSource.read_images`.
    progress : callable ``(decoded, count)``, optional
        Called as chunks are decoded.
    """
    if isinstance(workers, Executor):
        _decode_with(workers, images, items, count, workers._max_workers, progress)
        return
    worker_count = _resolve_workers(workers, count)
    if worker_count <= 1:
        if progress is None:
            _decode_rows_into(images, items)
            return
        iterator, done = iter(items), 0
        while chunk := [item for _, item in zip(range(_CHUNK_IMAGES), iterator, strict=False)]:
            _decode_rows_into(images, chunk)
            done += len(chunk)
            progress(done, count)
        return
    with decoding_pool(worker_count) as executor:
        try:
            _decode_with(executor, images, items, count, worker_count, progress)
        except BaseException:
            executor.shutdown(wait=True, cancel_futures=True)
            raise


def decoding_pool(workers: int | None = None) -> ProcessPoolExecutor:
    """A pool of image-decoding processes (default: one per available CPU) to pass as
    ``workers`` to :meth:`ImageSource.read_images`; start it early and its start-up
    overlaps with other work, such as listing an archive. Use it as a context manager.

    "spawn" behaves the same on every platform and is safe when the caller has threads
    running (fork is not). Its catch is the usual one: a script that decodes at import
    time needs an ``if __name__ == "__main__":`` guard.
    """
    workers = workers or _available_cpus()
    executor = ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn")
    )
    for _ in range(workers):  # start every worker now, importing the decoder
        executor.submit(_decode_rows_into, np.empty((0, 1, 1, 3), np.uint8), [])
    return executor


def _decode_with(
    executor: Executor,
    images: np.ndarray,
    items: Iterable[tuple[int, str, bytes]],
    count: int,
    worker_count: int,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    size = images.shape[1:3]
    chunk_size = max(1, min(_CHUNK_IMAGES, -(-count // (4 * worker_count))))
    pending: deque[tuple[list[int], Future]] = deque()
    done = 0

    def collect_oldest() -> None:
        nonlocal done
        slots, future = pending.popleft()
        images[slots] = future.result()
        done += len(slots)
        if progress is not None:
            progress(done, count)

    iterator = iter(items)
    while True:
        chunk = [item for _, item in zip(range(chunk_size), iterator, strict=False)]
        if not chunk:
            break
        slots, names, blobs = (list(column) for column in zip(*chunk, strict=True))
        pending.append((slots, executor.submit(_decode_chunk, names, blobs, size)))
        while len(pending) > 2 * worker_count:
            collect_oldest()
    while pending:
        collect_oldest()


def resize_array(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a ``uint8 (H, W, 3)`` array to ``size = (height, width)`` with the same
    filter as decoding; returns a new ``uint8 (height, width, 3)`` array."""
    height, width = size
    resized = Image.fromarray(image).resize((width, height), resample=Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)
