"""Rank agreement between the budgets of a multi-fidelity search."""

import numpy as np
import pytest

from npdl.search.fidelity import describe, rung_correlations, spearman
from npdl.search.objective import Objective


def test_spearman_of_monotone_reversed_and_tied_data():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Ties get their average rank: ranks (0.5, 0.5, 2, 3) against (0, 1, 2, 3).
    expected = np.corrcoef([0.5, 0.5, 2, 3], [0, 1, 2, 3])[0, 1]
    assert spearman([1, 1, 2, 3], [5, 6, 7, 8]) == pytest.approx(expected)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


def row(overrides, epochs, val_acc, status="ok"):
    return {"overrides": overrides, "epochs": epochs, "val_acc": val_acc, "status": status}


def test_rung_correlations_pair_configurations_that_ran_both_budgets():
    rows = [row(f"x={i}", 1, v) for i, v in enumerate([0.1, 0.2, 0.3, 0.4])]
    rows += [row(f"x={i}", 3, v) for i, v in enumerate([0.5, 0.6, 0.7])]  # x=3 eliminated
    rows += [row("x=9", 3, None, status="failed")]
    (pair,) = rung_correlations(rows, Objective("val_acc"))
    assert pair == {"from_epochs": 1, "to_epochs": 3, "n": 3, "spearman": pytest.approx(1.0)}
    assert describe([pair]) == "1 -> 3 epochs: Spearman 1.00 over 3 configurations"
    # On a loss the correlation is of the losses themselves (direction does not matter).
    loss_rows = [{**r, "val_loss": -r["val_acc"] if r["val_acc"] else None} for r in rows]
    assert rung_correlations(loss_rows, Objective("val_loss"))[0]["spearman"] == pytest.approx(1.0)
