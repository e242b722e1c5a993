"""Resolving a data source to a local path: http(s) downloads with a checksum.

A download streams into a temporary file beside its destination (hashing as it goes)
and is renamed into place only when complete and verified, so an interrupted or
corrupted download never leaves a file that looks finished.
:func:`download_and_unpack` is the course's ``download_url``: fetch an archive and
unpack it into a dataset's ``root`` (:mod:`npdl.data.unpacking`).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..io import atomic_write
from .unpacking import unpack_archive

__all__ = [
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "KNOWN_MD5",
    "download",
    "download_and_unpack",
    "file_md5",
    "is_url",
    "resolve_source",
]

CHUNK = 1 << 20

#: The official CIFAR-10 python archive and its published md5.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"

#: Published checksums of the archives npdl knows, by URL.
KNOWN_MD5 = {CIFAR10_URL: CIFAR10_MD5}


def is_url(source: str) -> bool:
    """Whether ``source`` is an http(s) URL (as opposed to a local path)."""
    return urllib.parse.urlparse(str(source)).scheme in ("http", "https")


def file_md5(path: str | os.PathLike) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _progress_bar(total: int | None, name: str, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional for the library
        return None
    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc=name,
        disable=not enabled,
        file=sys.stderr,
        mininterval=1.0,
    )


def download(
    url: str,
    folder: str | os.PathLike,
    md5: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` into ``folder`` (once; a verified earlier copy is reused).

    Parameters
    ----------
    url : str
    folder : path
        Destination folder; the file keeps the URL's base name.
    md5 : str, optional
        Expected hex digest; a mismatch raises and keeps nothing.
    timeout : float
        Seconds to wait for the server on connecting and on each read; never hangs.
    progress : bool
        Show a progress bar (tqdm, when installed).

    Raises
    ------
    ConnectionError
        The server cannot be reached or stops answering within ``timeout``.
    ValueError
        The downloaded file's md5 differs from ``md5``.
    """
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    destination = Path(folder) / name
    if destination.is_file() and (md5 is None or file_md5(destination) == md5):
        return destination
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            bar = _progress_bar(int(length) if length else None, name, progress)
            try:
                with atomic_write(destination) as handle:
                    while chunk := response.read(CHUNK):
                        handle.write(chunk)
                        digest.update(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                    if md5 is not None and digest.hexdigest() != md5:
                        raise ValueError(
                            f"checksum mismatch for {url}: expected md5 {md5}, got "
                            f"{digest.hexdigest()}; nothing was kept"
                        )
            finally:
                if bar is not None:
                    bar.close()
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise ConnectionError(
            f"could not download {url} (timeout {timeout:g} s): {reason}. Offline? Point "
            f"the source at a local archive or folder (e.g. CIFAR10_SOURCE=path)"
        ) from error
    return destination


def resolve_source(
    source: str | os.PathLike,
    cache_folder: str | os.PathLike,
    md5: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """A local path for ``source``: URLs are downloaded into ``cache_folder``.

    Raises
    ------
    FileNotFoundError
        A local ``source`` that does not exist (the message names it).
    """
    if is_url(str(source)):
        return download(str(source), cache_folder, md5=md5, timeout=timeout, progress=progress)
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"data source {str(source)!r} does not exist; expected an http(s) URL, an "
            f"archive (.tar.gz, .tgz, .tar, .zip) or a folder of class sub-folders"
        )
    if md5 is not None and path.is_file() and file_md5(path) != md5:
        raise ValueError(f"checksum mismatch for {path}: expected md5 {md5}, got {file_md5(path)}")
    return path


def download_and_unpack(
    url: str,
    root: str | os.PathLike,
    md5: str | None = None,
    force: bool = False,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download the archive at ``url`` and unpack it into ``root``, unless ``root`` holds
    data already (the course's ``download_url``).

    Parameters
    ----------
    url : str
        An archive (``.zip``, ``.tar.gz``, ...); any URL ``urllib`` opens (http(s),
        ``file://``).
    root : path-like
        Folder to fill; nothing is fetched when it exists and is not empty.
    md5 : str, optional
        Expected hex digest of the archive; default: :data:`KNOWN_MD5` for known URLs.
    force : bool
        Download and unpack even if ``root`` holds data (files of the same name are
        overwritten, others kept).
    timeout, progress
        As for :func:`download`.

    Returns
    -------
    pathlib.Path
        ``root``.

    Raises
    ------
    ConnectionError, ValueError
        As for :func:`download` and :func:`~npdl.data.unpacking.unpack_archive`; the
        archive itself is never kept.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        if force:
            raise ValueError(f"cannot unpack {url} into {root}: it is a file, not a folder")
        return root
    if not force and root.is_dir() and any(root.iterdir()):
        return root
    md5 = md5 if md5 is not None else KNOWN_MD5.get(url)
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{root.name}.download-", dir=root.parent) as tmp:
        archive = download(url, tmp, md5=md5, timeout=timeout, progress=progress)
        unpack_archive(archive, root)
    return root
