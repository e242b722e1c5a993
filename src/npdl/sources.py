"""Reading labelled images from folders and archives.

Three on-disk layouts are understood, all opened through :func:`open_image_source`:

* an **ImageFolder** directory ``root/<class>/<image>``;
* an **archive** (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``, ``.zip``)
  holding an ImageFolder tree, either at its top level or under one top-level folder
  (``cifar10-train/<class>/<image>``);
* the **official CIFAR-10 python archive** ``cifar-10-python.tar.gz`` (pickled batches),
  recognised by its member names.

Each is presented as an :class:`ImageSource`: a listing (``classes``, ``names``,
``labels``) that costs no decoding, and :meth:`ImageSource.read_images`, which decodes
only the requested samples into one preallocated ``uint8`` array.

Archives are read in memory and never extracted, so a member called ``../../x`` could
not write anywhere; such names are still refused, because an archive carrying them is
either broken or hostile. Pickles are loaded with a restricted unpickler that can
rebuild numpy arrays and nothing else.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import multiprocessing
import os
import pickle
import re
import tarfile
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ArchiveImageSource",
    "Cifar10PythonSource",
    "FolderImageSource",
    "ImageSource",
    "decode_image",
    "list_image_archive",
    "list_image_folder",
    "open_image_source",
    "read_cifar10_python_archive",
    "restricted_unpickle",
]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
"""File name suffixes (compared case-insensitively) that count as images."""

DEFAULT_IMAGE_SIZE = (32, 32)

# Below this many images a process pool costs more to start (each worker imports
# numpy and Pillow, ~0.2 s) than it saves.
_PARALLEL_MIN_IMAGES = 4096
_CHUNK_IMAGES = 1024

_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{number}" for number in range(1, 6))
_CIFAR_TEST_BATCH = "test_batch"
_CIFAR_META = "batches.meta"
_CIFAR_MEMBERS = frozenset({*_CIFAR_TRAIN_BATCHES, _CIFAR_TEST_BATCH, _CIFAR_META})
_CIFAR_SIDE = 32

# Archive-level failures surface as many exception types; they are reported as one
# ValueError naming the archive.
_ARCHIVE_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zlib.error,
    gzip.BadGzipFile,
    lzma.LZMAError,
    EOFError,
)
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


# --------------------------------------------------------------------------- decoding


def _as_image_size(size: int | Sequence[int]) -> tuple[int, int]:
    """Return ``size`` as ``(height, width)``; an int means a square."""
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
    size = _as_image_size(size)
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


def _decode_into(
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


def _resize_array(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a ``uint8 (H, W, 3)`` array to ``size`` with the same filter as decoding."""
    height, width = size
    resized = Image.fromarray(image).resize((width, height), resample=Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


# ---------------------------------------------------------------------------- listing


def _is_image_name(name: str) -> bool:
    _stem, dot, suffix = name.rpartition(".")
    return bool(dot) and "/" not in suffix and f".{suffix.lower()}" in IMAGE_EXTENSIONS


def _is_hidden(part: str) -> bool:
    return part.startswith(".")


def _labels_from_counts(counts: Sequence[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def list_image_folder(root: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """List an ImageFolder tree ``root/<class>/<image>`` without decoding anything.

    Classes are the sorted names of the non-hidden sub-folders of ``root``; a class's
    label is its position in that list. Within a class, image files (suffixes in
    :data:`IMAGE_EXTENSIONS`, any case) are sorted by name. Hidden entries (name starts
    with ``.``) and non-image files are ignored.

    Parameters
    ----------
    root : path-like
        The folder holding one sub-folder per class.

    Returns
    -------
    classes : list of str
        Sorted class names.
    names : list of str
        Image paths relative to ``root``, ``"<class>/<file>"`` (POSIX separators),
        grouped by class in class order.
    labels : numpy.ndarray
        ``int64`` array of shape ``(len(names),)``; ``labels[i]`` indexes ``classes``.

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist.
    NotADirectoryError
        If ``root`` is not a folder.
    ValueError
        If ``root`` has no class folders, a class folder holds no images, or a class
        folder holds a sub-folder (nested trees are not an ImageFolder).
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder; expected <root>/<class>/<image>")
    with os.scandir(root) as entries:
        classes = sorted(
            entry.name for entry in entries if entry.is_dir() and not _is_hidden(entry.name)
        )
    if not classes:
        raise ValueError(
            f"image folder {root} has no class sub-folders; expected <root>/<class>/<image>"
        )
    names: list[str] = []
    counts: list[int] = []
    for class_name in classes:
        class_folder = root / class_name
        files = []
        with os.scandir(class_folder) as entries:
            for entry in entries:
                if _is_hidden(entry.name):
                    continue
                if entry.is_dir():
                    raise ValueError(
                        f"class folder {class_folder} contains the sub-folder {entry.name!r}; "
                        "an ImageFolder keeps images directly in <root>/<class>/"
                    )
                if entry.is_file() and _is_image_name(entry.name):
                    files.append(entry.name)
        if not files:
            raise ValueError(
                f"class folder {class_folder} holds no images (looked for "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}); remove it or add images"
            )
        files.sort()
        names.extend(f"{class_name}/{file_name}" for file_name in files)
        counts.append(len(files))
    return classes, names, _labels_from_counts(counts)


_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_member_name(archive: Path, member_name: str) -> None:
    """Refuse an archive member name that is absolute or climbs out with ``..``.

    Called on every member where an archive is listed, so later code can trust names.
    """
    normalised = member_name.replace("\\", "/")
    if (
        normalised.startswith("/")
        or _WINDOWS_DRIVE.match(normalised)
        or ".." in normalised.split("/")
    ):
        raise ValueError(
            f"archive {archive} contains the member {member_name!r}, an absolute path or a "
            "path with '..'; refusing it (members must be relative paths inside the archive)"
        )


def _member_parts(member_name: str) -> tuple[str, ...]:
    """Split a (checked) member name into path parts, dropping empty and ``.`` parts."""
    return tuple(
        part for part in member_name.replace("\\", "/").split("/") if part not in ("", ".")
    )


@dataclass(frozen=True)
class _ImageFolderListing:
    classes: list[str]
    names: list[str]
    labels: np.ndarray
    members: list[str]  # archive member name of each entry of ``names``


def _list_image_members(
    archive: Path, files: Iterable[str], folders: Iterable[str]
) -> _ImageFolderListing:
    """Find the ImageFolder tree among archive member names.

    ``files`` are regular-file members, ``folders`` directory members (archives may
    omit the latter; they only matter to detect empty class folders).
    """
    images: dict[tuple[str, ...], str] = {}
    for member in files:
        parts = _member_parts(member)
        if parts and not any(_is_hidden(part) for part in parts) and _is_image_name(parts[-1]):
            # Appending to a tar can store a name twice; the last copy is current.
            images[parts] = member
    if not images:
        raise ValueError(
            f"archive {archive} holds no images (looked for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))} in <class>/<image> or <top>/<class>/<image>)"
        )
    depths = {len(parts) for parts in images}
    tops = {parts[0] for parts in images}
    if depths == {2}:
        prefix: tuple[str, ...] = ()
    elif depths == {3} and len(tops) == 1:
        prefix = (next(iter(tops)),)
    else:
        example = min(images.values(), key=lambda member: (-len(member), member))
        raise ValueError(
            f"archive {archive} is not an ImageFolder tree: images must all be "
            f"<class>/<image> or all <top>/<class>/<image> under one top folder, but found "
            f"depths {sorted(depths)} and top-level entries {sorted(tops)[:5]} "
            f"(e.g. member {example!r})"
        )

    by_class: dict[str, list[str]] = {}
    for parts in images:
        by_class.setdefault(parts[len(prefix)], []).append(parts[-1])
    for member in folders:
        parts = _member_parts(member)
        is_class_folder = len(parts) == len(prefix) + 1 and parts[: len(prefix)] == prefix
        if is_class_folder and not _is_hidden(parts[-1]) and parts[-1] not in by_class:
            raise ValueError(
                f"class folder {member!r} in archive {archive} holds no images; "
                "remove it or add images"
            )

    classes = sorted(by_class)
    names: list[str] = []
    members: list[str] = []
    counts: list[int] = []
    for class_name in classes:
        files_of_class = sorted(by_class[class_name])
        names.extend(f"{class_name}/{file_name}" for file_name in files_of_class)
        members.extend(images[(*prefix, class_name, file_name)] for file_name in files_of_class)
        counts.append(len(files_of_class))
    return _ImageFolderListing(classes, names, _labels_from_counts(counts), members)


class _TarEntry(NamedTuple):
    offset: int  # position of the data in the decompressed tar stream
    size: int


@dataclass
class _TarScan:
    files: dict[str, _TarEntry]
    folders: list[str]
    captured: dict[str, bytes]


#: Largest archive member read into memory. Every member is read whole (nothing is
#: extracted to disk); an official CIFAR batch is 30 MB, an image a few KB, so anything
#: larger is a corrupt or malicious archive (a decompression bomb), refused up front.
MAX_MEMBER_BYTES = 256 * 2**20


def _check_member_size(archive: Path, name: str, size: int) -> None:
    if size > MAX_MEMBER_BYTES:
        raise ValueError(
            f"archive {archive} member {name!r} claims {size:,} bytes uncompressed, over the "
            f"{MAX_MEMBER_BYTES:,}-byte limit for one member; refusing to read it"
        )


def _scan_tar(archive: Path, capture: Callable[[str], bool] = lambda name: False) -> _TarScan:
    """List a tar archive in one streaming pass; read the members ``capture`` selects."""
    files: dict[str, _TarEntry] = {}
    folders: list[str] = []
    captured: dict[str, bytes] = {}
    try:
        # tarfile's random-access reader over the decompressed bytes lists about twice
        # as fast as its stream reader; archives too large to hold are streamed ("r|*").
        in_memory = _tar_in_memory(archive)
        how = (
            {"fileobj": in_memory, "mode": "r:"}
            if in_memory is not None
            else {"name": archive, "mode": "r|*"}
        )
        with tarfile.open(**how) as tar:
            for member in tar:
                _check_member_name(archive, member.name)
                if member.isdir():
                    folders.append(member.name)
                elif member.isfile() and not member.issparse():
                    _check_member_size(archive, member.name, member.size)
                    files[member.name] = _TarEntry(member.offset_data, member.size)
                    if capture(member.name):
                        extracted = tar.extractfile(member)
                        assert extracted is not None  # regular files always extract
                        captured[member.name] = extracted.read()
                elif _is_image_name(member.name):
                    raise ValueError(
                        f"archive {archive} member {member.name!r} is a link or special "
                        "file; image members must be regular files"
                    )
    except _ARCHIVE_ERRORS as error:
        raise ValueError(f"cannot read tar archive {archive}: {error}") from error
    return _TarScan(files, folders, captured)


#: A tar archive whose decompressed size is at most this is listed from memory.
IN_MEMORY_TAR_BYTES = 256 * 2**20


def _tar_in_memory(archive: Path) -> io.BytesIO | None:
    """The decompressed tar stream of ``archive`` as an in-memory file, or None when it
    is larger than :data:`IN_MEMORY_TAR_BYTES`."""
    with _open_decompressed(archive) as stream:
        data = stream.read(IN_MEMORY_TAR_BYTES + 1)
    return io.BytesIO(data) if len(data) <= IN_MEMORY_TAR_BYTES else None


def _open_decompressed(archive: Path) -> io.BufferedIOBase:
    """Open a tar archive as its decompressed byte stream (seekable, forward cheaply)."""
    with open(archive, "rb") as raw:
        magic = raw.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(archive, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(archive, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(archive, "rb")
    return open(archive, "rb")


def _list_zip(archive: Path) -> tuple[list[str], list[str]]:
    try:
        with zipfile.ZipFile(archive) as zipped:
            infos = zipped.infolist()
    except _ARCHIVE_ERRORS as error:
        raise ValueError(f"cannot read zip archive {archive}: {error}") from error
    for info in infos:
        _check_member_name(archive, info.filename)
        _check_member_size(archive, info.filename, info.file_size)
    files = [info.filename for info in infos if not info.is_dir()]
    folders = [info.filename for info in infos if info.is_dir()]
    return files, folders


def _archive_kind(path: Path) -> str:
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise ValueError(
        f"{path} is neither a folder nor a readable archive; expected an ImageFolder "
        "directory, a .tar/.tar.gz/.tgz/.tar.bz2/.tar.xz or .zip archive of one, or the "
        "official cifar-10-python.tar.gz"
    )


def list_image_archive(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """List the ImageFolder tree inside an archive without decoding or extracting.

    Same rules and return values as :func:`list_image_folder`; the tree may sit at
    the archive's top level or under a single top-level folder, which is not part of
    the returned names.

    Parameters
    ----------
    path : path-like
        A ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz`` or ``.zip`` file.

    Returns
    -------
    classes : list of str
    names : list of str
        ``"<class>/<file>"`` for every image, grouped by class in class order.
    labels : numpy.ndarray
        ``int64`` array of shape ``(len(names),)``.
    """
    source = ArchiveImageSource(path)
    return source.classes, source.names, source.labels


# ----------------------------------------------------------------------------- sources


class ImageSource(ABC):
    """Labelled images on disk: a cheap listing plus on-demand decoding.

    Attributes
    ----------
    path : pathlib.Path
        The folder or archive.
    classes : list of str
        Class names; ``labels`` index into this list.
    names : list of str
        One name per sample, unique within the source (``"<class>/<file>"`` for
        ImageFolders).
    labels : numpy.ndarray
        ``int64`` array of shape ``(len(self),)``.
    subsets : numpy.ndarray or None
        For sources that carry an official partition (the CIFAR-10 python archive),
        a ``str`` array of shape ``(len(self),)`` holding ``"train"`` or ``"test"``;
        ``None`` for ImageFolders, which have to be split by the caller.
    """

    path: Path
    classes: list[str]
    names: list[str]
    labels: np.ndarray
    subsets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, {len(self)} images, "
            f"{len(self.classes)} classes)"
        )

    @property
    def official_train_indices(self) -> np.ndarray | None:
        """``int64`` indices of the official training samples, or None (no partition)."""
        if self.subsets is None:
            return None
        return np.flatnonzero(self.subsets == "train").astype(np.int64)

    @property
    def official_test_indices(self) -> np.ndarray | None:
        """``int64`` indices of the official test samples, or None (no partition)."""
        if self.subsets is None:
            return None
        return np.flatnonzero(self.subsets == "test").astype(np.int64)

    def _checked_indices(self, indices: Sequence[int] | np.ndarray | None) -> np.ndarray:
        if indices is None:
            return np.arange(len(self), dtype=np.int64)
        indices = np.asarray(indices)
        if indices.ndim != 1 or not (indices.size == 0 or np.issubdtype(indices.dtype, np.integer)):
            raise ValueError(
                f"indices must be a 1-D array of ints, got shape {indices.shape} "
                f"and dtype {indices.dtype}"
            )
        indices = indices.astype(np.int64, copy=False)
        if indices.size and (indices.min() < -len(self) or indices.max() >= len(self)):
            raise IndexError(
                f"indices must lie in [{-len(self)}, {len(self)}) for {self!r}; "
                f"got min {indices.min()}, max {indices.max()}"
            )
        return indices % max(len(self), 1)

    def read_images(
        self,
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        size: int | Sequence[int] = DEFAULT_IMAGE_SIZE,
        workers: int | str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Decode the selected images into one array.

        Parameters
        ----------
        indices : array-like of int, shape (M,), optional
            Which samples, in the order wanted (repeats allowed). Default: all.
        size : int or (int, int), default (32, 32)
            Output ``(height, width)``; other sizes are resized (see
            :func:`decode_image`).
        workers : int, 'auto' or a pool from :func:`decoding_pool`, optional
            Decoding processes. Default (None), ``0`` or ``1``: decode in this
            process. ``'auto'``: one per available CPU when at least 4096 images are
            decoded. More than one spawns processes, which re-import the caller's
            main module: use it only under an ``if __name__ == "__main__":`` guard.
        progress : callable ``(decoded, total)``, optional
            Called as chunks of images are decoded (for a progress bar).

        Returns
        -------
        numpy.ndarray
            ``uint8`` array of shape ``(M, height, width, 3)``; row ``k`` is sample
            ``indices[k]``.
        """
        indices = self._checked_indices(indices)
        size = _as_image_size(size)
        images = np.empty((len(indices), *size, 3), dtype=np.uint8)
        # Each distinct sample is read and decoded once, into the first row that asks
        # for it; repeats are copied afterwards.
        unique, first_row, inverse = np.unique(indices, return_index=True, return_inverse=True)
        items = self._iter_encoded(unique, first_row)
        _decode_into(images, items, count=len(unique), workers=workers, progress=progress)
        source_row = first_row[inverse.reshape(-1)]
        repeated = np.flatnonzero(source_row != np.arange(len(indices)))
        if repeated.size:
            images[repeated] = images[source_row[repeated]]
        return images

    @abstractmethod
    def _iter_encoded(
        self, unique: np.ndarray, rows: np.ndarray
    ) -> Iterator[tuple[int, str, bytes]]:
        """Yield ``(rows[k], display name, encoded bytes)`` for sample ``unique[k]``.

        Items may come in any order; sources yield them in whatever order is cheapest
        to read.
        """


class FolderImageSource(ImageSource):
    """An ImageFolder directory ``root/<class>/<image>`` (see :func:`list_image_folder`)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.path = Path(root)
        self.classes, self.names, self.labels = list_image_folder(self.path)

    def _iter_encoded(
        self, unique: np.ndarray, rows: np.ndarray
    ) -> Iterator[tuple[int, str, bytes]]:
        for sample, row in zip(unique.tolist(), rows.tolist(), strict=True):
            file_path = self.path / self.names[sample]
            yield row, str(file_path), file_path.read_bytes()


class ArchiveImageSource(ImageSource):
    """An ImageFolder tree inside a tar or zip archive, read without extraction.

    Opening lists the archive once. :meth:`read_images` on a compressed tar streams
    the archive once more, front to back, copying out only the requested members
    (a ``.tar.gz`` has no random access, so one sequential pass is the cheapest way
    to any subset); zip members are read directly.
    """

    def __init__(self, path: str | os.PathLike, *, _tar_scan: _TarScan | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"archive {self.path} does not exist")
        # open_image_source hands over the scan it made to detect CIFAR-10 batches.
        self._kind = "tar" if _tar_scan is not None else _archive_kind(self.path)
        if self._kind == "tar":
            scan = _tar_scan if _tar_scan is not None else _scan_tar(self.path)
            self._tar_entries = scan.files
            listing = _list_image_members(self.path, scan.files, scan.folders)
        else:
            files, folders = _list_zip(self.path)
            listing = _list_image_members(self.path, files, folders)
        self.classes, self.names, self.labels = listing.classes, listing.names, listing.labels
        self._members = listing.members

    def _iter_encoded(
        self, unique: np.ndarray, rows: np.ndarray
    ) -> Iterator[tuple[int, str, bytes]]:
        if self._kind == "zip":
            yield from self._iter_zip(unique, rows)
        else:
            yield from self._iter_tar(unique, rows)

    def _iter_zip(self, unique: np.ndarray, rows: np.ndarray) -> Iterator[tuple[int, str, bytes]]:
        with zipfile.ZipFile(self.path) as zipped:
            for sample, row in zip(unique.tolist(), rows.tolist(), strict=True):
                member = self._members[sample]
                try:
                    data = zipped.read(member)
                except _ARCHIVE_ERRORS as error:
                    raise ValueError(
                        f"cannot read member {member!r} of zip archive {self.path}: {error}"
                    ) from error
                yield row, f"{self.path}:{member}", data

    def _iter_tar(self, unique: np.ndarray, rows: np.ndarray) -> Iterator[tuple[int, str, bytes]]:
        members = [self._members[sample] for sample in unique.tolist()]
        entries = [self._tar_entries[member] for member in members]
        # Visiting members in stream order turns every seek into a short skip forward.
        order = sorted(range(len(members)), key=lambda position: entries[position].offset)
        row_list = rows.tolist()
        try:
            with _open_decompressed(self.path) as stream:
                for position in order:
                    entry = entries[position]
                    stream.seek(entry.offset)
                    data = stream.read(entry.size)
                    if len(data) != entry.size:
                        raise EOFError(
                            f"member {members[position]!r} ends after {len(data)} of "
                            f"{entry.size} bytes"
                        )
                    yield row_list[position], f"{self.path}:{members[position]}", data
        except _ARCHIVE_ERRORS as error:
            raise ValueError(f"cannot read tar archive {self.path}: {error}") from error


# ------------------------------------------------------------------ CIFAR-10 pickles


def _encode_latin1(text: str, encoding: str) -> bytes:
    # Protocol-2 pickles store bytes as ``_codecs.encode(text, "latin1")``; no other
    # codec is needed, so no other codec lookup is allowed.
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(
            f"pickle calls _codecs.encode with encoding {encoding!r}; only 'latin1' is allowed"
        )
    return codecs.encode(text, "latin1")


# ndarray.__reduce__ hands out numpy's reconstruction function without importing the
# private module path, which differs between numpy 1 (numpy.core) and 2 (numpy._core).
_NDARRAY_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
_ALLOWED_PICKLE_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _NDARRAY_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _NDARRAY_RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _encode_latin1,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed to rebuild numpy arrays."""

    def __init__(self, file: io.BytesIO, source_name: str) -> None:
        super().__init__(file, encoding="bytes")
        self._source_name = source_name

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{mod}.{obj}" for mod, obj in _ALLOWED_PICKLE_GLOBALS)
            raise pickle.UnpicklingError(
                f"{self._source_name}: pickle references the forbidden global "
                f"{module}.{name}; only numpy array reconstruction ({allowed}) is allowed"
            ) from None


def restricted_unpickle(data: bytes, source_name: str) -> object:
    """Load a pickle that may contain only plain Python values and numpy arrays.

    Loading a pickle can call any importable function; this unpickler resolves only
    numpy's array reconstruction (``numpy[._]core.multiarray._reconstruct``,
    ``numpy.ndarray``, ``numpy.dtype``) and ``_codecs.encode`` with ``latin1`` (how
    protocol 2 stores bytes). Strings load as ``bytes`` (``encoding="bytes"``), as the
    CIFAR-10 batches, written by Python 2, require. Arrays pickled with protocol 5
    (``numpy._core.numeric._frombuffer``) are refused: no CIFAR file needs them.

    Parameters
    ----------
    data : bytes
        The pickle.
    source_name : str
        Where ``data`` came from, for error messages.

    Raises
    ------
    pickle.UnpicklingError
        If the pickle references any other global (e.g. ``os.system``), naming it.
    """
    return _NumpyOnlyUnpickler(io.BytesIO(data), source_name).load()


def _is_cifar_member(name: str) -> bool:
    # Called on every member of every tar opened; the cheap test goes first.
    return name.rpartition("/")[2] in _CIFAR_MEMBERS and _cifar_member_name(name) is not None


def _cifar_member_name(name: str) -> str | None:
    """Return the CIFAR batch file name of a member at most one folder deep, else None."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if len(parts) <= 2 and parts and parts[-1] in _CIFAR_MEMBERS:
        return parts[-1]
    return None


def _dict_value(mapping: dict, key: str, source_name: str) -> object:
    # Python 2 wrote the keys as byte strings; pickles re-written from Python 3 may
    # use str keys instead.
    for candidate in (key.encode("ascii"), key):
        if candidate in mapping:
            return mapping[candidate]
    raise ValueError(f"{source_name} has no key {key!r} (keys: {sorted(map(str, mapping))})")


def _parse_cifar_batch(
    data: bytes, source_name: str, class_count: int
) -> tuple[np.ndarray, np.ndarray]:
    batch = restricted_unpickle(data, source_name)
    if not isinstance(batch, dict):
        raise ValueError(f"{source_name} holds a {type(batch).__name__}, expected a dict")
    pixels = np.asarray(_dict_value(batch, "data", source_name))
    labels = np.asarray(_dict_value(batch, "labels", source_name))
    row_length = 3 * _CIFAR_SIDE * _CIFAR_SIDE
    if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != row_length:
        raise ValueError(
            f"{source_name}: b'data' must be uint8 of shape (N, {row_length}), got "
            f"{pixels.dtype} {pixels.shape}"
        )
    if labels.shape != (pixels.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{source_name}: b'labels' must be {pixels.shape[0]} ints, got "
            f"{labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= class_count):
        raise ValueError(
            f"{source_name}: labels must lie in [0, {class_count}), got "
            f"[{labels.min()}, {labels.max()}]"
        )
    # Rows are channel-planar (1024 red, 1024 green, 1024 blue, each row-major).
    images = pixels.reshape(-1, 3, _CIFAR_SIDE, _CIFAR_SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def _parse_cifar_archive(archive: Path, captured: dict[str, bytes]) -> dict[str, object]:
    by_batch = {}
    for member, data in captured.items():
        batch_name = _cifar_member_name(member)
        if batch_name is not None:
            by_batch[batch_name] = (member, data)
    missing = sorted(_CIFAR_MEMBERS - set(by_batch))
    if missing:
        raise ValueError(
            f"{archive} is not a complete CIFAR-10 python archive: missing members {missing} "
            "(expected cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta})"
        )

    def source_name(batch_name: str) -> str:
        return f"{archive}:{by_batch[batch_name][0]}"

    meta = restricted_unpickle(by_batch[_CIFAR_META][1], source_name(_CIFAR_META))
    if not isinstance(meta, dict):
        raise ValueError(f"{source_name(_CIFAR_META)} holds a {type(meta).__name__}, not a dict")
    classes = [
        name.decode("utf-8") if isinstance(name, bytes) else str(name)
        for name in _dict_value(meta, "label_names", source_name(_CIFAR_META))
    ]
    parsed = {
        batch_name: _parse_cifar_batch(
            by_batch[batch_name][1], source_name(batch_name), len(classes)
        )
        for batch_name in (*_CIFAR_TRAIN_BATCHES, _CIFAR_TEST_BATCH)
    }
    train = [parsed[batch_name] for batch_name in _CIFAR_TRAIN_BATCHES]
    return {
        "train_images": np.concatenate([images for images, _ in train]),
        "train_labels": np.concatenate([labels for _, labels in train]),
        "test_images": parsed[_CIFAR_TEST_BATCH][0],
        "test_labels": parsed[_CIFAR_TEST_BATCH][1],
        "classes": classes,
        "train_batch_sizes": [len(labels) for _, labels in train],
    }


def read_cifar10_python_archive(path: str | os.PathLike) -> dict[str, object]:
    """Read the official CIFAR-10 python release (``cifar-10-python.tar.gz``).

    The archive holds ``cifar-10-batches-py/data_batch_1`` … ``data_batch_5``,
    ``test_batch`` and ``batches.meta``; each batch is a pickled dict with ``b'data'``
    (``uint8 (10000, 3072)``, channel-planar rows) and ``b'labels'``. The pickles are
    loaded with :func:`restricted_unpickle`, never plain :func:`pickle.load`.

    Parameters
    ----------
    path : path-like
        The archive (gzip/bz2/xz-compressed or plain tar); read in memory.

    Returns
    -------
    dict
        ``train_images``: ``uint8 (50000, 32, 32, 3)``, batches 1..5 in order;
        ``train_labels``: ``int64 (50000,)``; ``test_images``: ``uint8 (10000, 32, 32,
        3)``; ``test_labels``: ``int64 (10000,)``; ``classes``: list of str from
        ``batches.meta``. (Counts are those of the official release; smaller batches
        are read as they are.)

    Raises
    ------
    ValueError
        If a member is missing or malformed, naming the archive and member.
    pickle.UnpicklingError
        If a pickle references anything but numpy array reconstruction.
    """
    archive = Path(path)
    if not archive.exists():
        raise FileNotFoundError(f"CIFAR-10 archive {archive} does not exist")
    scan = _scan_tar(archive, capture=_is_cifar_member)
    result = _parse_cifar_archive(archive, scan.captured)
    del result["train_batch_sizes"]
    return result


class Cifar10PythonSource(ImageSource):
    """The official CIFAR-10 python archive as an :class:`ImageSource`.

    Samples are the 50,000 training images (``data_batch_1`` … ``data_batch_5`` in
    order) followed by the 10,000 test images; ``subsets`` marks them ``"train"`` and
    ``"test"``. Names are ``"<batch>/<row>"`` (e.g. ``"test_batch/00042"``). The
    pixels are already decoded, so the arrays are held in memory (~184 MB for the full
    release) and :meth:`read_images` just indexes them.
    """

    def __init__(self, path: str | os.PathLike, *, _parsed: dict | None = None) -> None:
        self.path = Path(path)
        if _parsed is None:
            scan = _scan_tar(self.path, capture=_is_cifar_member)
            _parsed = _parse_cifar_archive(self.path, scan.captured)
        self.classes = list(_parsed["classes"])
        self._images = np.concatenate([_parsed["train_images"], _parsed["test_images"]])
        self.labels = np.concatenate([_parsed["train_labels"], _parsed["test_labels"]])
        train_count = len(_parsed["train_labels"])
        test_count = len(_parsed["test_labels"])
        self.subsets = np.array(["train"] * train_count + ["test"] * test_count, dtype="<U5")
        self.names = [
            f"{batch_name}/{row:05d}"
            for batch_name, batch_size in zip(
                _CIFAR_TRAIN_BATCHES, _parsed["train_batch_sizes"], strict=True
            )
            for row in range(batch_size)
        ] + [f"{_CIFAR_TEST_BATCH}/{row:05d}" for row in range(test_count)]

    def read_images(
        self,
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        size: int | Sequence[int] = DEFAULT_IMAGE_SIZE,
        workers: int | str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Return the selected images; see :meth:`ImageSource.read_images`.

        ``workers`` and ``progress`` are accepted for interface compatibility and
        unused (the batches hold decoded pixels).
        """
        indices = self._checked_indices(indices)
        size = _as_image_size(size)
        images = self._images[indices]
        if size == (_CIFAR_SIDE, _CIFAR_SIDE):
            return images
        resized = np.empty((len(images), *size, 3), dtype=np.uint8)
        for row, image in enumerate(images):
            resized[row] = _resize_array(image, size)
        return resized

    def _iter_encoded(
        self, unique: np.ndarray, rows: np.ndarray
    ) -> Iterator[tuple[int, str, bytes]]:  # pragma: no cover - read_images overrides
        raise NotImplementedError("CIFAR-10 python batches hold decoded pixels")


# ------------------------------------------------------------------------ entry point


def open_image_source(path: str | os.PathLike | ImageSource) -> ImageSource:
    """Open a folder or archive of labelled images as an :class:`ImageSource`.

    * a directory -> :class:`FolderImageSource` (ImageFolder layout);
    * a tar archive whose members are the official CIFAR-10 python batches
      (``data_batch_1`` … ``batches.meta``) and no images ->
      :class:`Cifar10PythonSource`, with an official train/test partition;
    * any other tar or zip archive -> :class:`ArchiveImageSource` (ImageFolder tree).

    The archive type is detected from its content, not its file name. An
    :class:`ImageSource` passed in is returned unchanged.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist, naming it.
    ValueError
        If ``path`` is neither a folder nor a readable archive, or its layout is not
        one of the above.
    """
    if isinstance(path, ImageSource):
        return path
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"image source {path} does not exist; expected an ImageFolder directory or an "
            "archive of one"
        )
    if path.is_dir():
        return FolderImageSource(path)
    if _archive_kind(path) == "zip":
        return ArchiveImageSource(path)

    scan = _scan_tar(path, capture=_is_cifar_member)
    has_images = any(
        _is_image_name(name) and not _is_hidden(name.rpartition("/")[2]) for name in scan.files
    )
    cifar_members = {_cifar_member_name(name) for name in scan.captured}
    if not has_images and _CIFAR_TRAIN_BATCHES[0] in cifar_members and _CIFAR_META in cifar_members:
        return Cifar10PythonSource(path, _parsed=_parse_cifar_archive(path, scan.captured))
    # The scan already listed the tar; a second pass would cost as much again.
    return ArchiveImageSource(path, _tar_scan=scan)
