"""The official CIFAR-10 python archive (``cifar-10-python.tar.gz``): pickled batches.

The archive holds ``cifar-10-batches-py/data_batch_1`` … ``data_batch_5``,
``test_batch`` and ``batches.meta``, each a pickle written by Python 2. Pickles are
loaded with a restricted unpickler (:func:`restricted_unpickle`) that can rebuild
numpy arrays and nothing else. :func:`read_cifar10_python_archive` returns the
arrays; :class:`Cifar10PythonSource` presents them as an image source with the
official train/test partition.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from pathlib import Path

import numpy as np

from .archives import TarScan, scan_tar
from .folders import is_hidden, is_image_name
from .source_base import ArrayImageSource

__all__ = [
    "Cifar10PythonSource",
    "cifar_source_from_scan",
    "is_cifar_member",
    "read_cifar10_python_archive",
    "restricted_unpickle",
]

_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{number}" for number in range(1, 6))
_CIFAR_TEST_BATCH = "test_batch"
_CIFAR_META = "batches.meta"
_CIFAR_MEMBERS = frozenset({*_CIFAR_TRAIN_BATCHES, _CIFAR_TEST_BATCH, _CIFAR_META})
_CIFAR_SIDE = 32


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
# Likewise numpy scalars (``np.int64(3)`` in a list of labels): ``scalar(dtype, bytes)``.
_SCALAR_RECONSTRUCT = np.int64(0).__reduce__()[0]


def _array_from_buffer(buffer: bytes, dtype: np.dtype, shape: tuple, order: str) -> np.ndarray:
    # Protocol 5 stores arrays as (buffer, dtype, shape, order); this rebuilds exactly
    # that, and np.frombuffer refuses object dtypes.
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


_ALLOWED_PICKLE_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _NDARRAY_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _NDARRAY_RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR_RECONSTRUCT,
    ("numpy._core.multiarray", "scalar"): _SCALAR_RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _array_from_buffer,
    ("numpy._core.numeric", "_frombuffer"): _array_from_buffer,
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
    numpy's array and scalar reconstruction (``numpy[._]core.multiarray._reconstruct``
    and ``scalar``, ``numpy.ndarray``, ``numpy.dtype``; protocol 5's
    ``numpy[._]core.numeric._frombuffer`` is rebuilt with :func:`numpy.frombuffer`) and
    ``_codecs.encode`` with ``latin1`` (how protocol 2 stores bytes). Python 2 strings
    load as ``bytes`` (``encoding="bytes"``), as the CIFAR-10 batches require.

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


def is_cifar_member(name: str) -> bool:
    """Whether a tar member name is a CIFAR-10 python batch (``data_batch_1`` …
    ``data_batch_5``, ``test_batch``, ``batches.meta``) at most one folder deep: the
    members a scan reads (``capture``, see :func:`~npdl.data.archives.scan_tar`)."""
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
    scan = scan_tar(archive, capture=is_cifar_member)
    result = _parse_cifar_archive(archive, scan.captured)
    del result["train_batch_sizes"]
    return result


class Cifar10PythonSource(ArrayImageSource):
    """The official CIFAR-10 python archive as an :class:`ImageSource`.

    Samples are the 50,000 training images (``data_batch_1`` … ``data_batch_5`` in
    order) followed by the 10,000 test images; ``subsets`` marks them ``"train"`` and
    ``"test"``. Names are ``"<batch>/<row>"`` (e.g. ``"test_batch/00042"``). The
    pixels are already decoded, so the arrays are held in memory (~184 MB for the full
    release) and :meth:`read_images` just indexes them.
    """

    def __init__(self, path: str | os.PathLike, *, _parsed: dict | None = None) -> None:
        path = Path(path)
        if _parsed is None:
            scan = scan_tar(path, capture=is_cifar_member)
            _parsed = _parse_cifar_archive(path, scan.captured)
        train_count = len(_parsed["train_labels"])
        test_count = len(_parsed["test_labels"])
        self.subsets = np.array(["train"] * train_count + ["test"] * test_count, dtype="<U5")
        names = [
            f"{batch_name}/{row:05d}"
            for batch_name, batch_size in zip(
                _CIFAR_TRAIN_BATCHES, _parsed["train_batch_sizes"], strict=True
            )
            for row in range(batch_size)
        ] + [f"{_CIFAR_TEST_BATCH}/{row:05d}" for row in range(test_count)]
        super().__init__(
            path,
            np.concatenate([_parsed["train_images"], _parsed["test_images"]]),
            np.concatenate([_parsed["train_labels"], _parsed["test_labels"]]),
            _parsed["classes"],
            names,
        )


def cifar_source_from_scan(path: Path, scan: TarScan) -> Cifar10PythonSource | None:
    """The tar archive ``path`` as a :class:`Cifar10PythonSource`, if its scan shows one.

    It is one when the scan (made with ``capture=is_cifar_member``) read
    ``data_batch_1`` and ``batches.meta`` and listed no image file (hidden ones aside):
    an ImageFolder tree that happens to hold such names stays an ImageFolder.

    Parameters
    ----------
    path : pathlib.Path
        The tar archive, for the source and for messages.
    scan : TarScan
        Its scan by :func:`~npdl.data.archives.scan_tar` with
        ``capture=is_cifar_member``; the batches it captured are parsed, not read again.

    Returns
    -------
    Cifar10PythonSource or None
        None when the archive is not the CIFAR-10 python release.

    Raises
    ------
    ValueError
        If it is, but a batch is missing or malformed (naming the archive and member).
    """
    has_images = any(
        is_image_name(name) and not is_hidden(name.rpartition("/")[2]) for name in scan.files
    )
    cifar_members = {_cifar_member_name(name) for name in scan.captured}
    if (
        has_images
        or _CIFAR_TRAIN_BATCHES[0] not in cifar_members
        or _CIFAR_META not in cifar_members
    ):
        return None
    return Cifar10PythonSource(path, _parsed=_parse_cifar_archive(path, scan.captured))
