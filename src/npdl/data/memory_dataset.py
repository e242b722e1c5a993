"""MemoryImageFolderDataset: the course's in-memory dataset, and its memory file.

The course's ``MemoryImageFolderDataset`` reads ``<root>memory/cifar10.pckl``, a pickled
dict (``images`` ``(N, 32, 32, 3)``, ``labels``, ``classes``, ``class_to_idx``) from
``cifar10memory.zip``, instead of decoding image files. npdl's
:class:`~npdl.data.dataset.ImageFolderDataset` holds every image in memory already, so
here the class differs only in where it finds its data:

1. ``root`` itself if it names a memory folder (``.../cifar10memory``), else
   ``<root>memory`` as in the course, unpacked from ``download_url`` when missing or
   empty;
2. its ``cifar10.pckl``, read with the restricted unpickler
   (:func:`~npdl.data.cifar.restricted_unpickle`: numpy arrays and plain values only);
3. failing that, ``root`` (else the memory folder) as any :class:`ImageFolderDataset`
   reads it (an ImageFolder or an archive), so course code that picked the memory
   variant runs on the image folder too.

Modes, splits, ``limit_files`` and transforms are exactly those of
:class:`ImageFolderDataset`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .cifar import restricted_unpickle
from .dataset import ImageFolderDataset
from .download import download_and_unpack
from .source_base import ArrayImageSource, ImageSource
from .sources import open_image_source

__all__ = ["MEMORY_FILE", "MemoryImageFolderDataset", "read_memory_file"]

#: The course's memory file, inside the memory folder.
MEMORY_FILE = "cifar10.pckl"
_MEMORY_SUFFIX = "memory"


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _entry(saved: dict, key: str, path: Path) -> object:
    for candidate in (key, key.encode("ascii")):
        if candidate in saved:
            return saved[candidate]
    raise ValueError(f"{path} has no {key!r} entry (keys: {sorted(map(_text, saved))})")


def read_memory_file(path: str | os.PathLike) -> ArrayImageSource:
    """Read the course's ``cifar10.pckl`` as an image source, without plain unpickling.

    Parameters
    ----------
    path : path-like
        The pickled dict: ``images`` (``(N, H, W, 3)``, uint8 or integral floats in
        [0, 255]), ``labels`` (N ints), ``classes`` (names) and optionally
        ``class_to_idx`` (name -> label).

    Returns
    -------
    ArrayImageSource
        Names ``"cifar10.pckl/<row>"``; classes in label order.

    Raises
    ------
    ValueError
        If an entry is missing or malformed, naming the file and entry.
    pickle.UnpicklingError
        If the pickle references anything but numpy arrays (e.g. ``os.system``).
    """
    path = Path(path)
    saved = restricted_unpickle(path.read_bytes(), str(path))
    if not isinstance(saved, dict):
        raise ValueError(f"{path} holds a {type(saved).__name__}, expected the course's dict")
    images = np.asarray(_entry(saved, "images", path))
    if images.dtype != np.uint8:
        if not (np.issubdtype(images.dtype, np.number) and images.size):
            raise ValueError(f"{path}: 'images' must be numeric pixels, got {images.dtype}")
        if images.min() < 0 or images.max() > 255 or not np.array_equal(images, np.rint(images)):
            raise ValueError(f"{path}: 'images' must be integer pixels in [0, 255]")
        images = images.astype(np.uint8)
    labels = np.asarray(_entry(saved, "labels", path))
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(
            f"{path}: 'labels' must be a list of ints, got {labels.dtype} {labels.shape}"
        )
    classes = [_text(name) for name in _entry(saved, "classes", path)]
    class_to_idx = {_text(k): int(v) for k, v in dict(saved.get("class_to_idx") or {}).items()}
    if class_to_idx and sorted(class_to_idx.values()) != list(range(len(class_to_idx))):
        raise ValueError(f"{path}: 'class_to_idx' must map names to 0..K-1, got {class_to_idx}")
    if class_to_idx:
        classes = sorted(class_to_idx, key=class_to_idx.__getitem__)
    names = [f"{MEMORY_FILE}/{row:05d}" for row in range(len(labels))]
    return ArrayImageSource(path, images, labels, classes, names)


def _memory_folder(root: str | os.PathLike) -> Path:
    # The course appends "memory" to the root it is given unless it is there already.
    text = os.fspath(root).rstrip("/\\")
    return Path(text if text.endswith(_MEMORY_SUFFIX) else text + _MEMORY_SUFFIX)


class MemoryImageFolderDataset(ImageFolderDataset):
    """The course's in-memory variant of :class:`ImageFolderDataset`.

    Same arguments as :class:`ImageFolderDataset` (``root``, ``transform``, ``mode``,
    ``limit_files``, ``split``, ``seed``, ``image_size``, ``workers``,
    ``download_url``, ``force_download``). ``root`` follows the course: the data is
    looked for in ``<root>memory/cifar10.pckl`` (``download_url``, e.g. the course's
    ``cifar10memory.zip``, is unpacked there when that folder is missing or empty),
    then in ``root`` itself as an ImageFolder or archive. See the module docstring.

    Attributes
    ----------
    memory_root : pathlib.Path or None
        The memory folder looked in (None when ``root`` was an ImageSource).
    """

    def _open_source(
        self,
        root: str | os.PathLike | ImageSource,
        download_url: str | None,
        force_download: bool,
    ) -> ImageSource:
        if isinstance(root, ImageSource):
            self.memory_root = None
            return root
        self.memory_root = _memory_folder(root)
        if download_url is not None:
            download_and_unpack(download_url, self.memory_root, force=force_download)
        for folder in (self.memory_root, Path(root)):
            if (folder / MEMORY_FILE).is_file():
                return read_memory_file(folder / MEMORY_FILE)
        for candidate in (Path(root), self.memory_root):
            if candidate.is_file() or (candidate.is_dir() and any(candidate.iterdir())):
                return open_image_source(candidate)
        raise FileNotFoundError(
            f"MemoryImageFolderDataset found neither {self.memory_root / MEMORY_FILE} nor "
            f"an ImageFolder or archive at {root}; pass download_url (the course's "
            "cifar10memory.zip or cifar10.zip) or the path of your data as root"
        )
