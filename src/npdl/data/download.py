"""Resolving a data source to a local path: http(s) downloads with a checksum.

A download streams into a temporary file beside its destination (hashing as it goes)
and is renamed into place only when complete and verified, so an interrupted or
corrupted download never leaves a file that looks finished.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..io import atomic_write

__all__ = ["download", "file_md5", "is_url", "resolve_source"]

CHUNK = 1 << 20


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
