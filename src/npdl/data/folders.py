"""Listing an ImageFolder directory ``root/<class>/<image>`` without decoding anything.

The name rules here (which files are images, which entries are hidden) are shared
with archive listing (:mod:`npdl.data.archives`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .decoding import IMAGE_EXTENSIONS

__all__ = ["is_hidden", "is_image_name", "labels_from_counts", "list_image_folder"]


def is_image_name(name: str) -> bool:
    """Whether a file or member name ends in an image suffix (:data:`IMAGE_EXTENSIONS`,
    any case); ``name`` may be a path with ``/`` separators."""
    _stem, dot, suffix = name.rpartition(".")
    return bool(dot) and "/" not in suffix and f".{suffix.lower()}" in IMAGE_EXTENSIONS


def is_hidden(part: str) -> bool:
    """Whether one path part (a file or folder name, no ``/``) is hidden: starts with ``.``."""
    return part.startswith(".")


def labels_from_counts(counts: Sequence[int]) -> np.ndarray:
    """``int64`` labels of shape ``(sum(counts),)``: ``counts[0]`` zeros, then
    ``counts[1]`` ones, ... (samples grouped by class in class order)."""
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
            entry.name for entry in entries if entry.is_dir() and not is_hidden(entry.name)
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
                if is_hidden(entry.name):
                    continue
                if entry.is_dir():
                    raise ValueError(
                        f"class folder {class_folder} contains the sub-folder {entry.name!r}; "
                        "an ImageFolder keeps images directly in <root>/<class>/"
                    )
                if entry.is_file() and is_image_name(entry.name):
                    files.append(entry.name)
        if not files:
            raise ValueError(
                f"class folder {class_folder} holds no images (looked for "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}); remove it or add images"
            )
        files.sort()
        names.extend(f"{class_name}/{file_name}" for file_name in files)
        counts.append(len(files))
    return classes, names, labels_from_counts(counts)
