"""What a search optimises: a trial metric and its direction, decided once.

Every place that compares trials (the sweepers' progress, successive halving's
promotions, the leaderboard's ranks, ``best_overrides.json``) asks one
:class:`Objective`, so a loss is never maximised by one and minimised by another.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Metrics a trial reports, and whether a search maximises them.
MAXIMISED = {"val_acc": True, "val_loss": False}


@dataclass(frozen=True)
class Objective:
    """A trial metric (``val_acc`` or ``val_loss``) and its direction.

    Raises
    ------
    ValueError
        For a metric other than those of ``MAXIMISED``, naming the allowed ones.
    """

    metric: str = "val_acc"

    def __post_init__(self):
        if self.metric not in MAXIMISED:
            raise ValueError(
                f"metric={self.metric!r} is not a trial metric: expected one of "
                f"{', '.join(sorted(MAXIMISED))}"
            )

    @property
    def maximise(self) -> bool:
        return MAXIMISED[self.metric]

    def value(self, row: Mapping[str, Any]) -> float | None:
        """The row's metric, or None (a trial that is not ``ok``, or no finite value)."""
        value = row.get(self.metric)
        if row.get("status") != "ok" or not _is_number(value):
            return None
        return float(value)

    def score(self, row: Mapping[str, Any]) -> float | None:
        """The row's metric oriented so that higher is better (a loss negated)."""
        value = self.value(row)
        return None if value is None else (value if self.maximise else -value)

    def best_value(self, rows: Iterable[Mapping[str, Any]]) -> float | None:
        """The best metric value among ``rows`` (None if none is ``ok``)."""
        values = [v for v in map(self.value, rows) if v is not None]
        if not values:
            return None
        return max(values) if self.maximise else min(values)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
