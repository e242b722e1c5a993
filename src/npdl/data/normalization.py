"""Normalisation fitted on the train split, and the normalize stage's folder on disk.

Two methods:

- ``standardize``: per-channel mean/std. Images stay uint8 on disk and in memory;
  each batch is augmented in uint8, then rescaled, standardised and flattened to
  float32 once.
- ``zca``: standardisation followed by ZCA whitening (a 3072 x 3072 linear map fitted
  on the train split). Applying it costs as much as a wide first layer, so the
  normalize stage whitens the train and val splits once and stores them as float16;
  training batches are then only augmented and converted to float32.

The statistics travel with the model (``model.preprocessing``), so evaluating any
raw uint8 images applies exactly the transform training used
(:func:`npdl.data.transforms.eval_transform`).

This module owns the normalize stage's folder (``data/normalized/``); write it with
:func:`write_normalization`, read it with :func:`read_normalization`::

    stats.json        method, mean, std (float32 values), data_hash, zca_eps (zca),
                      arrays_sha256 (zca: of every array below, part of the runs' identity)
    zca.npz           zca_mean float32 (D,), zca_matrix float32 (D, D)      (zca only)
    pca_components.npy  float32 (D, D): the covariance's eigenvectors as columns, by
                      decreasing variance; the basis ZCA whitens in (zca only)
    train_images.npy  whitened float16 (N_train, H, W, 3)                   (zca only)
    val_images.npy    whitened float16 (N_val, H, W, 3)                     (zca only)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from ..io import arrays_digest, atomic_folder, load_json, load_npz, save_json, save_npz

__all__ = [
    "METHODS",
    "Normalization",
    "compute_image_mean_and_std",
    "fit_standardization",
    "fit_zca",
    "load_normalization",
    "read_normalization",
    "standardize_images",
    "whiten",
    "write_normalization",
]

METHODS = ("standardize", "zca")
CHUNK = 4096

#: Modes whose whitened images the normalize stage may store.
WHITENED_MODES = ("train", "val", "test")
_STATS_KEYS = ("mean", "std")
_ZCA_KEYS = ("zca_mean", "zca_matrix")


# --------------------------------------------------------------------------- fitting


def compute_image_mean_and_std(
    images: np.ndarray, chunk_size: int = 4096, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of a set of images.

    As in the course, the statistics are in the scale of the array given (``uint8``
    images give values in [0, 255]); ``scale`` measures ``images * scale`` instead
    without a float copy of the whole array, e.g. ``scale=1 / 255`` for what
    :class:`~npdl.data.transforms.NormalizeTransform` sees after ``RescaleTransform()``.
    Computed in float64, two passes over chunks of images (mean, then squared
    deviations), so memory stays at one chunk and no precision is lost to
    ``E[x^2] - E[x]^2`` cancellation.

    Parameters
    ----------
    images : numpy.ndarray
        Shape ``(N, H, W, C)``, integer or floating point, N >= 1.
    chunk_size : int, default 4096
        Images per chunk.
    scale : float, default 1.0
        Factor applied to the pixels before measuring them.

    Returns
    -------
    mean, std : numpy.ndarray
        ``float64`` arrays of shape ``(C,)``; ``std`` is the population standard
        deviation (``ddof=0``).
    """
    images = np.asarray(images)
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must have shape (N, H, W, C) with N >= 1, got {images.shape}")
    if images.dtype == np.bool_ or not np.issubdtype(images.dtype, np.number):
        raise ValueError(f"images must be integer or floating point pixels, got {images.dtype}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale={scale!r} must be a finite number > 0")
    pixels_per_channel = images.shape[0] * images.shape[1] * images.shape[2]

    def chunks() -> Iterator[np.ndarray]:
        for start in range(0, images.shape[0], chunk_size):
            chunk = images[start : start + chunk_size].astype(np.float64)
            yield chunk * scale if scale != 1.0 else chunk

    mean = sum(chunk.sum(axis=(0, 1, 2)) for chunk in chunks()) / pixels_per_channel
    variance = sum(((chunk - mean) ** 2).sum(axis=(0, 1, 2)) for chunk in chunks())
    return mean, np.sqrt(variance / pixels_per_channel)


def fit_standardization(train_images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel mean and std (on the [0, 1] scale) of the training images.

    Parameters
    ----------
    train_images : uint8 (N, H, W, 3)

    Returns
    -------
    dict with ``mean`` and ``std``: float32 (3,)
    """
    train_images = np.asarray(train_images)
    scale = 1.0 / 255.0 if train_images.dtype == np.uint8 else 1.0  # float: as they are
    mean, std = compute_image_mean_and_std(train_images, scale=scale)
    if np.any(std <= 0):
        raise ValueError(
            f"a channel of the training images is constant (std {std}); cannot standardise"
        )
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}


def standardize_images(images: np.ndarray, stats: dict[str, np.ndarray]) -> np.ndarray:
    """uint8 (N, H, W, 3) -> standardised float32 (N, H*W*3)."""
    scaled = images.astype(np.float32) * np.float32(1 / 255)
    scaled -= stats["mean"]
    scaled /= stats["std"]
    return scaled.reshape(len(images), -1)


def fit_zca(
    train_images: np.ndarray, stats: dict[str, np.ndarray], eps: float = 0.1
) -> dict[str, np.ndarray]:
    """ZCA whitening of standardised training images.

    ``W = U diag(1 / sqrt(lambda + eps)) U^T`` from the eigendecomposition of the
    covariance ``U diag(lambda) U^T`` of the standardised, flattened images; ``eps``
    damps the directions of small variance (noise) instead of amplifying them.

    Parameters
    ----------
    train_images : uint8 (N, H, W, 3)
    stats : per-channel ``mean`` and ``std`` from :func:`fit_standardization`
    eps : float > 0

    Returns
    -------
    dict with ``zca_mean`` float32 (D,), ``zca_matrix`` float32 (D, D), D = H*W*3, and
    ``pca_components`` float32 (D, D): ``U``'s columns by decreasing ``lambda``. A
    whitened image projected onto the first K of them, ``whiten(x) @ U[:, :K]``, is
    ``(x - mean) @ U[:, :K] / sqrt(lambda[:K] + eps)``: its top K principal
    components, PCA-whitened (what ``model.input_pca`` feeds the network).
    """
    if eps <= 0:
        raise ValueError(f"ZCA eps must be > 0, got {eps!r}")
    count = len(train_images)
    features = int(np.prod(train_images.shape[1:]))
    total = np.zeros(features)
    for start in range(0, count, CHUNK):
        total += standardize_images(train_images[start : start + CHUNK], stats).sum(axis=0)
    mean = total / count
    covariance = np.zeros((features, features))
    for start in range(0, count, CHUNK):
        centred = (standardize_images(train_images[start : start + CHUNK], stats) - mean).astype(
            np.float64
        )
        # x.T @ x of one array is BLAS's syrk, whose sums do not depend on the number of
        # threads (a gemm of a transposed copy splits them differently on 1 and 2).
        covariance += centred.T @ centred
    covariance /= count
    # LAPACK's eigensolver gives other bits (and, within a nearly degenerate subspace,
    # other directions) on another number of BLAS threads: one thread, so the basis
    # (what model.input_pca trains on) is the same whatever the machine's core count.
    with threadpool_limits(1, user_api="blas"):
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    # An eigenvector's sign is arbitrary: the one whose largest entry is positive.
    largest = np.abs(eigenvectors).argmax(axis=0)
    eigenvectors *= np.sign(eigenvectors[largest, np.arange(features)])
    scale = 1.0 / np.sqrt(np.maximum(eigenvalues, 0.0) + eps)
    matrix = (eigenvectors * scale) @ eigenvectors.T
    return {
        "zca_mean": mean.astype(np.float32),
        "zca_matrix": matrix.astype(np.float32),
        "pca_components": np.ascontiguousarray(eigenvectors[:, ::-1], dtype=np.float32),
    }


def whiten(images: np.ndarray, preprocessing: dict[str, np.ndarray]) -> np.ndarray:
    """Standardise and ZCA-whiten uint8 images, in chunks.

    Parameters
    ----------
    images : uint8 (N, H, W, 3)
    preprocessing : ``mean``, ``std``, ``zca_mean``, ``zca_matrix``

    Returns
    -------
    float16 (N, H, W, 3): half the memory of float32, ample precision for inputs
    """
    out = np.empty(images.shape, dtype=np.float16)
    for start in range(0, len(images), CHUNK):
        batch = standardize_images(images[start : start + CHUNK], preprocessing)
        batch -= preprocessing["zca_mean"]
        out[start : start + CHUNK] = (batch @ preprocessing["zca_matrix"]).reshape(
            -1, *images.shape[1:]
        )
    return out


# ---------------------------------------------------------------------------- on disk


@dataclass(frozen=True)
class Normalization:
    """The normalize stage's folder, as :func:`read_normalization` read it.

    Attributes
    ----------
    method : {'standardize', 'zca'}
    preprocessing : dict of str to numpy.ndarray
        float32 ``mean`` and ``std`` (3,), plus ``zca_mean`` (D,) and ``zca_matrix``
        (D, D) for the zca method (what :func:`load_normalization` returns).
    record : dict
        The content of ``stats.json``.
    whitened : bool
        The folder holds whitened float16 ``train_images.npy``/``val_images.npy``
        to train on instead of the prepared uint8 splits (the zca method).
    folder : pathlib.Path
    """

    method: str
    preprocessing: dict[str, np.ndarray]
    record: dict
    whitened: bool
    folder: Path

    def pca_components(self) -> np.ndarray:
        """float32 (D, D), memory-mapped: the principal directions of the train split
        as columns, by decreasing variance (see :func:`fit_zca`).

        Raises
        ------
        ValueError
            The folder holds none: not the zca method, or written by an older version.
        """
        path = self.folder / "pca_components.npy"
        if self.method != "zca" or not path.is_file():
            raise ValueError(
                f"{self.folder} holds no principal components ({path.name}): they come "
                "with normalize.method=zca; run the normalize stage again "
                "(`dvc repro normalize`)"
            )
        return np.load(path, mmap_mode="r", allow_pickle=False)


def write_normalization(
    folder: str | os.PathLike,
    method: str,
    preprocessing: Mapping[str, np.ndarray],
    whitened: Mapping[str, np.ndarray] | None = None,
    *,
    data_hash: str | None = None,
    zca_eps: float | None = None,
) -> dict:
    """Write the normalize stage's folder, replacing ``folder`` as a whole (atomically).

    Parameters
    ----------
    folder : path
        Normally ``data/normalized``.
    method : {'standardize', 'zca'}
    preprocessing : mapping of str to numpy.ndarray
        ``mean`` and ``std`` (3,) from :func:`fit_standardization`, plus ``zca_mean``
        (D,) and ``zca_matrix`` (D, D) from :func:`fit_zca` for ``zca``. ``mean`` and
        ``std`` are stored in ``stats.json`` as float32 values, the ZCA arrays in
        ``zca.npz`` as given, and ``pca_components`` (D, D), when given, in
        ``pca_components.npy``.
    whitened : mapping of mode to numpy.ndarray, optional
        zca only: the splits whitened by :func:`whiten`, float16 (N, H, W, 3), each
        written to ``<mode>_images.npy`` (the stage writes ``train`` and ``val``).
    data_hash : str, optional
        The prepared dataset's content hash the statistics were fitted on; recorded.
    zca_eps : float, optional
        zca only: the ``eps`` given to :func:`fit_zca`; recorded.

    Returns
    -------
    dict
        The ``stats.json`` record: ``method``, ``mean``, ``std`` (lists of floats),
        and ``data_hash``/``zca_eps`` when given.

    Raises
    ------
    ValueError
        An unknown method, missing statistics, or whitened images (or ``zca_eps``)
        for a method other than zca, or whitened images that are not float16.
    """
    if method not in METHODS:
        raise ValueError(f"normalisation method {method!r} is not one of {METHODS}")
    needed = (*_STATS_KEYS, *_ZCA_KEYS) if method == "zca" else _STATS_KEYS
    missing = [key for key in needed if key not in preprocessing]
    if missing:
        raise ValueError(
            f"the {method} normalisation needs {missing} in preprocessing, got "
            f"{sorted(preprocessing)}"
        )
    whitened = {mode: np.asarray(images) for mode, images in (whitened or {}).items()}
    if method != "zca" and (whitened or zca_eps is not None):
        raise ValueError(
            f"whitened images and zca_eps belong to the zca normalisation, not {method!r}"
        )
    for mode, images in whitened.items():
        if mode not in WHITENED_MODES or images.dtype != np.float16:
            raise ValueError(
                f"whitened images must be float16 for a mode in {WHITENED_MODES}, got "
                f"{images.dtype} for {mode!r}"
            )
    record = {"method": method}
    if data_hash is not None:
        record["data_hash"] = data_hash
    record.update(
        {key: np.asarray(preprocessing[key], dtype=np.float32).tolist() for key in _STATS_KEYS}
    )
    if zca_eps is not None:
        record["zca_eps"] = zca_eps
    arrays = {}
    if method == "zca":
        arrays = {key: np.asarray(preprocessing[key]) for key in _ZCA_KEYS}
        if "pca_components" in preprocessing:
            arrays["pca_components"] = np.asarray(preprocessing["pca_components"], dtype=np.float32)
        arrays.update({f"{mode}_images": images for mode, images in whitened.items()})
        # What training reads, to the bit: a run trained on other bits is another run
        # (the record is part of the run store's data identity).
        record["arrays_sha256"] = arrays_digest(arrays)
    with atomic_folder(folder) as staging:
        if method == "zca":
            save_npz(staging / "zca.npz", {key: arrays[key] for key in _ZCA_KEYS})
            if "pca_components" in arrays:
                np.save(staging / "pca_components.npy", arrays["pca_components"])
            for mode in whitened:
                np.save(staging / f"{mode}_images.npy", arrays[f"{mode}_images"])
        save_json(staging / "stats.json", record)
    return record


def read_normalization(folder: str | os.PathLike) -> Normalization:
    """Read what :func:`write_normalization` (the normalize stage) wrote into ``folder``.

    Raises
    ------
    FileNotFoundError
        ``folder`` holds no ``stats.json`` (or, for zca, no ``zca.npz``).
    ValueError
        ``stats.json`` records no method, or an unknown one (written by an older
        version): the normalize stage has to run again.
    """
    folder = Path(folder)
    path = folder / "stats.json"
    try:
        record = load_json(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no normalization statistics in {folder}; run the normalize stage first"
        ) from None
    method = record.get("method")
    if method not in METHODS:
        found = (
            "records no normalisation method"
            if method is None
            else f"records the unknown normalisation method {method!r}"
        )
        raise ValueError(
            f"{path} {found} (expected one of {METHODS}); it was written by an older "
            "version: run the normalize stage again (`dvc repro normalize`)"
        )
    stats = {key: np.asarray(record[key], dtype=np.float32) for key in _STATS_KEYS}
    if method == "zca":
        stats.update(load_npz(folder / "zca.npz"))
    return Normalization(method, stats, record, whitened=method == "zca", folder=folder)


def load_normalization(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """The statistics the normalize stage wrote into ``folder``: float32 ``mean`` and
    ``std`` (3,), plus ``zca_mean`` and ``zca_matrix`` for the zca method (see
    :func:`read_normalization`, which also gives the method and the record)."""
    return read_normalization(folder).preprocessing
