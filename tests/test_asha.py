"""Asynchronous successive halving and Hyperband's brackets (drivers, no training)."""

import pytest

from npdl.search import asha, asha_budgets, hyperband, hyperband_brackets


def score_of(request):
    _, point, epochs = request
    return point["quality"] + 0.001 * epochs


def points(qualities):
    return [{"quality": q} for q in qualities]


def test_asha_budgets_grow_by_eta_up_to_the_maximum():
    assert asha_budgets(1, 27, 3) == [1, 3, 9, 27]
    assert asha_budgets(2, 10, 3) == [2, 6, 10]
    with pytest.raises(ValueError, match="eta must be an int >= 2"):
        asha_budgets(1, 9, 1)


def test_asha_promotes_as_soon_as_a_trial_is_in_the_top_third_so_far():
    batches = []

    def run_batch(requests):
        batches.append([(i, e) for i, _, e in requests])
        return [score_of(r) for r in requests]

    result = asha(points([0.1, 0.9, 0.5, 0.2, 0.3, 0.4]), 1, 9, 3, run_batch, workers=1)
    # Three first-rung results: the best so far (index 1) goes on at once, before the
    # fourth configuration starts; no rung barrier.
    assert batches[:4] == [[(0, 1)], [(1, 1)], [(2, 1)], [(1, 3)]]
    assert result.best.point_index == 1 and result.best.epochs == 9
    assert {(r.point_index, r.epochs) for r in result.records} >= {(1, 9)}


def test_asha_with_the_same_workers_repeats_its_schedule_and_batches_fill_the_workers():
    def run(workers):
        batches = []

        def run_batch(requests):
            batches.append(len(requests))
            return [score_of(r) for r in requests]

        result = asha(
            points([0.3, 0.8, 0.1, 0.6, 0.7, 0.2, 0.5, 0.4, 0.9]), 1, 9, 3, run_batch, workers
        )
        return result, batches

    one, two = run(2), run(2)
    assert one[0] == two[0]  # deterministic for a given number of workers
    assert one[1][:5] == [2] * 5  # both workers busy while configurations remain
    assert one[0].best.point_index == 8  # the best configuration reaches the top


def test_asha_never_promotes_failures_and_keeps_the_kept_index():
    def run_batch(requests):
        return [None if r[0] == 1 else score_of(r) for r in requests]

    result = asha(points([0.5, 0.9, 0.1, 0.2, 0.3, 0.4]), 1, 9, 3, run_batch, always_promote=[2])
    reached = {}
    for r in result.records:
        reached[r.point_index] = max(reached.get(r.point_index, 0), r.epochs)
    assert reached[1] == 1  # failed: never promoted
    assert reached[2] == 9  # kept: promoted at every rung despite its score


def test_hyperband_brackets_follow_li_et_al():
    assert hyperband_brackets(1, 27, 3) == [(27, 1), (12, 3), (6, 9), (4, 27)]
    assert hyperband_brackets(1, 3, 3) == [(3, 1), (2, 3)]


def test_hyperband_proposes_each_bracket_and_picks_the_best_at_the_top():
    asked = []

    def propose(bracket, n):
        asked.append((bracket, n))
        return points([0.1 * (bracket + 1) + 0.01 * i for i in range(n)])

    result = hyperband(propose, 1, 9, 3, lambda reqs: [score_of(r) for r in reqs])
    assert asked == [(0, 9), (1, 5), (2, 3)]
    assert len(result.points) == 17
    assert result.points[result.best.point_index]["quality"] == pytest.approx(0.32)
    # Every bracket's trials end at the full budget; shorter rungs are prefixes.
    assert all(b.records[-1].epochs == 9 for b in result.brackets)
