"""The prepared dataset: decoded uint8 splits on disk, written by prepare-split.

:func:`prepare_dataset` decodes a source once and splits it (:class:`PreparedData`);
:func:`write_prepared` writes it, :func:`load_manifest` and :func:`load_split` read it.

Layout of the folder::

    train_images.npy  uint8 (N_train, H, W, 3)     train_labels.npy  int64 (N_train,)
    val_images.npy    ...                           val_labels.npy
    test_images.npy   ...                           test_labels.npy
    manifest.json     classes, counts, split, seed, content hash

The folder is built beside its destination and renamed into place, so a killed run
leaves the previous complete folder (or none), never a partial one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_folder, load_json, save_json
from .decoding import decoding_pool
from .sources import open_image_source
from .splits import split_source_indices, stratified_subset

__all__ = [
    "MODES",
    "PREPARED_FORMAT",
    "PreparedData",
    "load_manifest",
    "load_split",
    "prepare_dataset",
    "write_prepared",
]

MODES = ("train", "val", "test")
PREPARED_FORMAT = 1


@dataclass
class PreparedData:
    """Decoded splits in memory.

    Attributes
    ----------
    images : dict mode -> uint8 (N_mode, H, W, 3)
    labels : dict mode -> int64 (N_mode,)
    classes : list of str
    """

    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    classes: list[str]

    def content_hash(self) -> str:
        """sha256 over class names and every array's bytes, in a fixed order."""
        digest = hashlib.sha256(json.dumps(self.classes).encode())
        for mode in MODES:
            for array in (self.images[mode], self.labels[mode]):
                digest.update(str((array.dtype.str, array.shape)).encode())
                digest.update(np.ascontiguousarray(array).data)
        return digest.hexdigest()


def _limit_per_mode(counts: dict[str, int], limit: int | None) -> dict[str, int]:
    """Share ``limit`` images among modes in proportion to their sizes (largest remainder)."""
    total = sum(counts.values())
    if limit is None or limit >= total:
        return dict(counts)
    exact = {mode: limit * count / total for mode, count in counts.items()}
    shares = {mode: int(value) for mode, value in exact.items()}
    leftovers = sorted(counts, key=lambda mode: exact[mode] - shares[mode], reverse=True)
    for mode in leftovers[: limit - sum(shares.values())]:
        shares[mode] += 1
    return shares


def prepare_dataset(
    source_path: str | os.PathLike,
    split: dict[str, float],
    seed: int,
    limit_files: int | None = None,
    image_size: int = 32,
    workers: int | str | None = None,
    progress=None,
) -> PreparedData:
    """Decode a source once and split it, deterministically and stratified.

    Parameters
    ----------
    source_path : path
        Folder or archive (see :func:`npdl.data.sources.open_image_source`). A source
        with an official test set keeps it as the test split.
    split : dict mode -> fraction
    seed : int
        Seed of the split.
    limit_files : int, optional
        Total images to keep, shared among the modes in proportion and
        class-balanced within each; only those are decoded.
    image_size : int
    workers : int or 'auto', optional
        Decoding processes (see :meth:`npdl.data.source_base.ImageSource.read_images`).
    progress : callable ``(decoded, total)``, optional
        Called as images are decoded (for a progress bar).

    Raises
    ------
    ValueError
        Fewer than 2 classes, an empty train or val split, or an unreadable source
        (naming it).
    """
    # Decoding processes start now, so that their start-up overlaps with the listing.
    parallel = workers == "auto" or (isinstance(workers, int) and workers > 1)
    pool = decoding_pool(None if workers == "auto" else workers) if parallel else None
    with pool or contextlib.nullcontext():
        return _prepare(
            source_path, split, seed, limit_files, image_size, pool or workers, progress
        )


def _prepare(source_path, split, seed, limit_files, image_size, workers, progress) -> PreparedData:
    source = open_image_source(source_path)
    if len(source.classes) < 2:
        raise ValueError(
            f"{source_path} has {len(source.classes)} class {list(source.classes)}; a "
            "classifier needs at least 2 class folders (ImageFolder layout: one folder of "
            "images per class)"
        )
    by_mode = split_source_indices(source, split, rng=np.random.default_rng(seed))
    limits = _limit_per_mode({mode: len(by_mode[mode]) for mode in MODES}, limit_files)
    by_mode = {
        mode: by_mode[mode][stratified_subset(source.labels[by_mode[mode]], limits[mode])]
        for mode in MODES
    }
    every = np.concatenate([by_mode[mode] for mode in MODES])
    decoded = source.read_images(every, size=image_size, workers=workers, progress=progress)
    images, labels, start = {}, {}, 0
    for mode in MODES:
        stop = start + len(by_mode[mode])
        images[mode] = decoded[start:stop]
        labels[mode] = source.labels[by_mode[mode]].astype(np.int64)
        start = stop
    for mode in ("train", "val"):
        if len(labels[mode]) == 0:
            raise ValueError(
                f"the {mode} split of {source_path} is empty (split {split}, limit_files "
                f"{limit_files}); use more images or a larger {mode} fraction"
            )
    return PreparedData(images, labels, list(source.classes))


def write_prepared(folder: str | os.PathLike, data: PreparedData, details: dict) -> dict:
    """Write the splits and a manifest into ``folder``, replacing it as a whole.

    Parameters
    ----------
    folder : path
    data : PreparedData
    details : dict
        Extra JSON-serialisable facts for the manifest (source, split, seed, ...).

    Returns
    -------
    dict
        The manifest.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": PREPARED_FORMAT,
        "classes": data.classes,
        "counts": {mode: len(data.labels[mode]) for mode in MODES},
        "class_counts": {
            mode: np.bincount(data.labels[mode], minlength=len(data.classes)).tolist()
            for mode in MODES
        },
        "image_shape": list(data.images["train"].shape[1:]),
        "content_hash": data.content_hash(),
        **details,
    }
    with atomic_folder(folder) as staging:
        for mode in MODES:
            np.save(staging / f"{mode}_images.npy", data.images[mode])
            np.save(staging / f"{mode}_labels.npy", data.labels[mode])
        save_json(staging / "manifest.json", manifest)
    return manifest


def load_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of a prepared folder, with a clear error if there is none."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} holds no prepared dataset (no manifest.json); run the prepare-split "
            f"stage first (`dvc repro prepare-split`)"
        )
    manifest = load_json(path)
    if manifest.get("format") != PREPARED_FORMAT:
        raise ValueError(
            f"{path} has format {manifest.get('format')!r}, expected {PREPARED_FORMAT}; "
            "rerun prepare-split"
        )
    return manifest


def load_split(folder: str | os.PathLike, mode: str, mmap: bool = True):
    """Images and labels of one split.

    Parameters
    ----------
    folder : path
    mode : {'train', 'val', 'test'}
    mmap : bool
        Memory-map the images (read-only) instead of reading them into memory.

    Returns
    -------
    images : uint8 (N, H, W, 3)
    labels : int64 (N,)
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    folder = Path(folder)
    images = np.load(
        folder / f"{mode}_images.npy", mmap_mode="r" if mmap else None, allow_pickle=False
    )
    labels = np.load(folder / f"{mode}_labels.npy", allow_pickle=False)
    return images, labels
