"""Does a short run predict a long one? Rank agreement between the rungs of a search.

A multi-fidelity search (halving, hyperband, bohb) keeps the configurations that rank
best after few epochs. That is only sound if the ranking after few epochs agrees with
the ranking after more (short-horizon bias: Wu et al., ICLR 2018). For each pair of
consecutive budgets, :func:`rung_correlations` gives the Spearman rank correlation of
the metric over the configurations that ran both.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .objective import Objective

#: Below this, the log warns that the first rungs may be eliminating the wrong trials.
WARN_BELOW = 0.5


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties get their average rank); None for fewer than
    3 pairs or a constant side."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs pairs, got {len(x)} and {len(y)} values")
    if len(x) < 3:
        return None
    rx, ry = _ranks(np.asarray(x, float)), _ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):  # ties share their average rank
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def rung_correlations(
    rows: Sequence[Mapping[str, Any]], objective: Objective
) -> list[dict[str, Any]]:
    """Spearman correlation of ``objective`` between consecutive budgets.

    Parameters
    ----------
    rows : trial rows with ``overrides`` (dict or text), ``epochs`` and the metric
    objective : Objective

    Returns
    -------
    list of dict
        ``{"from_epochs", "to_epochs", "n", "spearman"}`` per pair of consecutive
        budgets that share at least one ``ok`` configuration; ``spearman`` is None
        below 3 shared configurations.
    """
    by_budget: dict[int, dict[str, float]] = {}
    for row in rows:
        value = objective.value(row)
        if value is None:
            continue
        key = str(
            sorted(row["overrides"].items())
            if isinstance(row["overrides"], Mapping)
            else row["overrides"]
        )
        by_budget.setdefault(int(row["epochs"]), {})[key] = value
    budgets = sorted(by_budget)
    out = []
    for low, high in itertools.pairwise(budgets):
        shared = sorted(set(by_budget[low]) & set(by_budget[high]))
        if not shared:
            continue
        rho = spearman([by_budget[low][k] for k in shared], [by_budget[high][k] for k in shared])
        out.append({"from_epochs": low, "to_epochs": high, "n": len(shared), "spearman": rho})
    return out


def describe(correlations: Sequence[Mapping[str, Any]]) -> str:
    """One line per pair, e.g. ``2 -> 4 epochs: Spearman 0.71 over 6 configurations``."""
    lines = []
    for c in correlations:
        rho = "n/a (fewer than 3)" if c["spearman"] is None else f"{c['spearman']:.2f}"
        lines.append(
            f"{c['from_epochs']} -> {c['to_epochs']} epochs: Spearman {rho} over {c['n']} configurations"
        )
    return "\n".join(lines)
