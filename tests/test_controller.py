"""The fidelity controller: ties within the noise are kept, disagreeing rungs keep more."""

import math

import pytest

from npdl.search import successive_halving
from npdl.search.asha import asha
from npdl.search.controller import FidelityControl, accuracy_standard_error


def points(n):
    return [{"x": i} for i in range(n)]


def by_table(table):
    """run_batch serving ``table[epochs][index]``; records every request."""
    seen = []

    def run_batch(requests):
        seen.extend(requests)
        return [table[epochs][index] for index, _, epochs in requests]

    return run_batch, seen


def test_the_standard_error_of_an_accuracy_is_binomial():
    se = accuracy_standard_error(5000)
    assert se(0.5) == pytest.approx(math.sqrt(0.25 / 5000))
    assert se(0.0) == 0.0 and se(1.2) == 0.0  # clipped to [0, 1]


def test_scores_that_tie_within_the_noise_are_all_promoted():
    # 9 points, eta 3: the schedule promotes 3. Points 3 and 4 score within one standard
    # error (0.007 on 5,000 images at ~0.5) of point 2, the last promoted; 5 does not.
    first = {0: 0.60, 1: 0.58, 2: 0.50, 3: 0.497, 4: 0.494, 5: 0.48, 6: 0.3, 7: 0.2, 8: 0.1}
    table = {1: first, 3: {i: 0.6 - i / 100 for i in range(9)}, 9: {i: 0.7 for i in range(9)}}
    run_batch, seen = by_table(table)
    control = FidelityControl(accuracy_standard_error(5000), tie_sd=1.0, min_agreement=None)
    result = successive_halving(points(9), 1, 9, 3, run_batch, control=control)
    promoted = sorted(index for index, _, epochs in seen if epochs == 3)
    assert promoted == [0, 1, 2, 3, 4]
    (decision,) = result.decisions
    assert decision["rung"] == 0 and decision["kept"] == 2 and "standard error" in decision["why"]
    # Without the controller the noise decides: exactly the top three.
    run_batch, seen = by_table(table)
    plain = successive_halving(points(9), 1, 9, 3, run_batch)
    assert sorted(i for i, _, e in seen if e == 3) == [0, 1, 2] and plain.decisions == []


def test_a_rung_that_disagrees_with_the_one_before_keeps_twice_as_many():
    # 27 points at 1 epoch promote 9 to 3 epochs, whose ranking is the reverse of the
    # first rung's (Spearman -1): the next promotion keeps 6 instead of 3.
    first = {i: 0.9 - i / 100 for i in range(27)}
    second = {i: 0.3 + i / 100 for i in range(27)}
    table = {1: first, 3: second, 9: first, 27: first}
    run_batch, seen = by_table(table)
    control = FidelityControl(None, min_agreement=0.5)
    result = successive_halving(points(27), 1, 27, 3, run_batch, control=control)
    at_9 = sorted(index for index, _, epochs in seen if epochs == 9)
    assert at_9 == [3, 4, 5, 6, 7, 8]  # the 6 best of rung 1, not the 3 best
    assert any(
        d["rung"] == 1 and d["kept"] == 3 and "agreement" in d["why"] for d in result.decisions
    )


def test_asha_counts_a_tie_within_the_noise_as_in_the_top_third():
    scores = {0: 0.50, 1: 0.498, 2: 0.3}
    table = {1: scores, 3: {i: 0.6 for i in range(3)}}
    control = FidelityControl(accuracy_standard_error(5000))
    run_batch, seen = by_table(table)
    asha(points(3), 1, 3, 3, run_batch, workers=1, control=control)
    assert sorted(i for i, _, e in seen if e == 3) == [0, 1]
    run_batch, seen = by_table(table)
    asha(points(3), 1, 3, 3, run_batch, workers=1)
    assert sorted(i for i, _, e in seen if e == 3) == [0]
