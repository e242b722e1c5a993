"""Sizes and ages as people write them: ``500M``, ``2G``, ``30d``, ``12h``
(``npdl cache gc --max-size 2G --older-than 30d``), and back."""

from __future__ import annotations

import re

_SIZE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_size(text: str) -> int:
    """Bytes of ``500MB``, ``2GB``, ``1.5G``, ``10GiB``, ``1024`` (decimal units; ``iB``
    binary)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([kmgt]?)(i?)b?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"size {text!r} is not understood: expected e.g. 500MB, 2GB, 10GiB")
    number, unit, binary = match.groups()
    scale = 1024 ** "_kmgt".index(unit.lower()) if binary and unit else _SIZE_UNITS[unit.lower()]
    return int(float(number) * scale)


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """Seconds of ``30d``, ``12h``, ``45m``, ``2w``, ``90s``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([smhdw])\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"age {text!r} is not understood: expected e.g. 30d, 12h, 2w")
    return float(match.group(1)) * _AGE_UNITS[match.group(2).lower()]


def format_size(size: int) -> str:
    """``1.2 MB`` (decimal units)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def format_age(seconds: float) -> str:
    """``45s``, ``12m``, ``3h``, ``5d``."""
    for unit, scale in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= scale:
            return f"{seconds / scale:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"
