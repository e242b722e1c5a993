"""Values as text of Hydra's override grammar: the one formatter of npdl.

A search's trials, its leaderboards and the tune stage's launcher settings all write
values as ``key=value`` overrides; :func:`override_text` is how every value is
written, so that the text a leaderboard shows is the text that sets the value again.
"""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Mapping
from typing import Any

#: A string Hydra reads back as that string when it is written bare.
BARE_STRING = re.compile(r"[A-Za-z_][\w.\-/:@]*")
#: Bare words Hydra reads as something else than a string.
RESERVED_WORDS = frozenset({"true", "false", "null", "none", "inf", "nan"})


def override_text(value: Any) -> str:
    """``value`` as override text that Hydra parses back to ``value``.

    ``None`` is ``null``, booleans ``true``/``false``, integers their digits, other
    real numbers Python's shortest round-trip text (``0.001``, ``1e-05``); a string is
    bare when it reads back as that string (``relu``, ``head:6379``), else
    double-quoted (``"cpu long"``, ``"true"``, ``"1g"``); lists as ``[a,b]`` and
    mappings as ``{key:value}`` (keys sorted), without spaces, items written the same way.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    if isinstance(value, str):
        bare = BARE_STRING.fullmatch(value) and value.lower() not in RESERVED_WORDS
        return value if bare else json.dumps(value)
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda item: str(item[0]))
        return "{" + ",".join(f"{override_text(k)}:{override_text(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(override_text(item) for item in value) + "]"
    if hasattr(value, "item"):  # a NumPy scalar
        return override_text(value.item())
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as override text")


def point_text(value: Any) -> str:
    """A search point's value as override text: a choice's value is that text already
    (the sweep's own text, e.g. ``[512,256]``), anything else (a number drawn from an
    interval, a configured value) is written by :func:`override_text`."""
    return value if isinstance(value, str) else override_text(value)


#: Significant digits of a number shown to a reader (consoles, Markdown tables, plot
#: labels): a search's figures carry no more (a val accuracy on 5,000 images has a
#: standard error near 0.7 points). Data files keep every digit.
SHOWN_DIGITS = 3


def shown_number(value: float, digits: int = SHOWN_DIGITS) -> str:
    """A number for a reader, to ``digits`` significant digits: ``0.00258``,
    ``0.000822``, ``1e-5``, ``45.3``, ``1.23e4``; integers in full (``140``), and
    ``nan``/``inf`` as such. The exponent has no padding zero (``1e-5``, not ``1e-05``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    text = f"{float(value):.{digits}g}"
    mantissa, e, exponent = text.partition("e")
    if not e:
        return text
    return f"{mantissa}e{int(exponent)}"


def shown_text(value: Any, digits: int = SHOWN_DIGITS) -> str:
    """``value`` as :func:`point_text` writes it, with every real number (also inside
    lists) to ``digits`` significant digits (:func:`shown_number`): for reading, not for
    setting the value again (the leaderboard's CSV and ``best_overrides.json`` keep that
    text)."""
    if isinstance(value, str):
        parsed = _number_in(value)
        return value if parsed is None else shown_number(parsed, digits)
    if isinstance(value, numbers.Real) and not isinstance(value, bool | numbers.Integral):
        return shown_number(value, digits)
    if isinstance(value, list | tuple):
        return "[" + ",".join(shown_text(item, digits) for item in value) + "]"
    return point_text(value)


def _number_in(text: str) -> float | None:
    """The real number a choice's override text writes (``1e-3``), or None."""
    try:
        number = float(text)
    except ValueError:
        return None
    return number if "." in text or "e" in text.lower() else None
