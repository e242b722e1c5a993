import pytest

from npdl.search import BestTrial, halving_rungs, successive_halving, total_epochs


class RecordingRunner:
    """A ``run_batch`` scoring each point by a function, remembering every call."""

    def __init__(self, score):
        self.score = score
        self.calls = []

    def __call__(self, requests):
        self.calls.append(list(requests))
        return [self.score(index, point, epochs) for index, point, epochs in requests]

    @property
    def requests(self):
        return [(index, epochs) for call in self.calls for index, _, epochs in call]


def quality_points(qualities):
    return [{"quality": quality} for quality in qualities]


def by_quality(index, point, epochs):
    """Higher quality scores higher; more epochs help every point equally."""
    return point["quality"] + 0.001 * epochs


# -- schedule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ((27, 1, 27, 3), [(27, 1), (9, 3), (3, 9), (1, 27)]),
        ((81, 1, 9, 3), [(81, 1), (27, 3), (9, 9)]),  # stops at max_epochs, 9 left
        ((10, 1, 27, 3), [(10, 1), (3, 3), (1, 27)]),  # the last one goes to max_epochs
        ((4, 1, 27, 3), [(4, 1), (1, 27)]),
        ((16, 2, 20, 2), [(16, 2), (8, 4), (4, 8), (2, 16), (1, 20)]),  # capped at max
        ((5, 3, 3, 2), [(5, 3)]),  # min == max: one rung
        ((1, 1, 27, 3), [(1, 27)]),  # a single config is just trained
    ],
)
def test_halving_schedule(arguments, expected):
    assert halving_rungs(*arguments) == expected


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((27, 1, 27, 1), r"eta must be an int >= 2, got eta=1"),
        ((27, 0, 27, 3), r"min_epochs must be an int >= 1, got min_epochs=0"),
        ((27, 5, 4, 3), r"min_epochs must be <= max_epochs, got min_epochs=5, max_epochs=4"),
        ((0, 1, 27, 3), r"n_configs must be an int >= 1, got n_configs=0"),
        ((27, 1, 27, 2.5), r"eta=2.5"),
    ],
)
def test_halving_schedule_validation_names_the_argument(arguments, message):
    with pytest.raises(ValueError, match=message):
        halving_rungs(*arguments)


def test_total_epochs_with_and_without_resume():
    # 27*1 + 9*(3-1) + 3*(9-3) + 1*(27-9)
    assert total_epochs(27, 1, 27, 3) == 81
    assert total_epochs(27, 1, 27, 3, resume=False) == 27 + 27 + 27 + 27
    assert total_epochs(10, 1, 27, 3) == 10 + 3 * 2 + 1 * 24


# -- driver --------------------------------------------------------------------------------


def test_each_rung_is_one_batch_following_the_schedule():
    runner = RecordingRunner(by_quality)
    result = successive_halving(quality_points(range(27)), 1, 27, 3, runner)
    assert [(len(call), call[0][2]) for call in runner.calls] == [(27, 1), (9, 3), (3, 9), (1, 27)]
    assert result.schedule == [(27, 1), (9, 3), (3, 9), (1, 27)]
    assert result.rungs_run == 4
    assert all(len({epochs for _, _, epochs in call}) == 1 for call in runner.calls)


def test_promotes_the_top_third_by_score():
    # Qualities scrambled so the best points are not simply the last indices.
    qualities = [(7 * i) % 27 for i in range(27)]
    runner = RecordingRunner(by_quality)
    result = successive_halving(quality_points(qualities), 1, 27, 3, runner)
    ranked = sorted(range(27), key=lambda i: -qualities[i])
    rung1 = [index for index, _, _ in runner.calls[1]]
    assert rung1 == sorted(ranked[:9])
    assert [index for index, _, _ in runner.calls[2]] == sorted(ranked[:3])
    assert [index for index, _, _ in runner.calls[3]] == [ranked[0]]
    assert result.best == BestTrial(ranked[0], 27, 26 + 0.027)
    promoted = {r.point_index for r in result.records if r.rung == 0 and r.promoted}
    assert promoted == set(ranked[:9])
    assert not any(r.promoted for r in result.records if r.rung == 3)


def test_requests_carry_the_point_itself():
    points = quality_points([3, 1, 2])
    runner = RecordingRunner(by_quality)
    successive_halving(points, 1, 4, 2, runner)
    for call in runner.calls:
        for index, point, _ in call:
            assert point is points[index]


def test_ties_are_broken_by_point_index():
    runner = RecordingRunner(lambda index, point, epochs: 0.5)
    result = successive_halving(quality_points([0] * 9), 1, 9, 3, runner)
    assert [index for index, _, _ in runner.calls[1]] == [0, 1, 2]
    assert result.best == BestTrial(0, 9, 0.5)


def test_failed_scores_are_never_promoted():
    # The best-quality points fail (None) or diverge (NaN) at rung 0.
    failing = {26: None, 25: float("nan"), 24: None}

    def score(index, point, epochs):
        return failing.get(index, by_quality(index, point, epochs))

    runner = RecordingRunner(score)
    result = successive_halving(quality_points(range(27)), 1, 27, 3, runner)
    assert [index for index, _, _ in runner.calls[1]] == list(range(15, 24))
    assert result.best.point_index == 23
    failed_records = [r for r in result.records if r.point_index in failing]
    assert [r.score for r in failed_records] == [None, None, None]
    assert not any(r.promoted for r in failed_records)


def test_fewer_successes_than_slots_promotes_only_the_successes():
    runner = RecordingRunner(lambda index, point, epochs: 1.0 if index == 4 else None)
    result = successive_halving(quality_points(range(27)), 1, 27, 3, runner)
    assert [len(call) for call in runner.calls] == [27, 1, 1, 1]
    assert result.best == BestTrial(4, 27, 1.0)


def test_best_falls_back_to_the_highest_rung_with_a_score():
    # Everything succeeds until the final rung, where the lone survivor diverges.
    def score(index, point, epochs):
        return None if epochs == 27 else by_quality(index, point, epochs)

    result = successive_halving(quality_points(range(27)), 1, 27, 3, RecordingRunner(score))
    assert result.best == BestTrial(26, 9, 26 + 0.009)


def test_all_failed_stops_after_the_first_rung_with_no_best():
    runner = RecordingRunner(lambda index, point, epochs: None)
    result = successive_halving(quality_points(range(9)), 1, 9, 3, runner)
    assert len(runner.calls) == 1
    assert result.best is None
    assert result.rungs_run == 1
    assert result.epochs_spent == 9


@pytest.mark.parametrize("arguments", [(27, 1, 27, 3), (10, 1, 27, 3), (16, 2, 20, 2)])
def test_no_request_is_made_twice(arguments):
    n, min_epochs, max_epochs, eta = arguments
    runner = RecordingRunner(by_quality)
    successive_halving(quality_points(range(n)), min_epochs, max_epochs, eta, runner)
    assert len(runner.requests) == len(set(runner.requests))
    assert len(runner.requests) == sum(count for count, _ in halving_rungs(*arguments))


def test_epochs_spent_counts_resumed_increments():
    result = successive_halving(quality_points(range(10)), 1, 27, 3, RecordingRunner(by_quality))
    # Rungs (10, 1), (3, 3), (1, 27): 10*1 + 3*(3-1) + 1*(27-3).
    assert result.epochs_spent == 40
    assert result.epochs_spent == total_epochs(10, 1, 27, 3)
    assert sum(record.epochs for record in result.records) == 10 + 9 + 27  # without resume


def test_records_list_every_trial_once_per_rung():
    result = successive_halving(quality_points(range(27)), 1, 27, 3, RecordingRunner(by_quality))
    assert [(r.rung, r.epochs) for r in result.records] == (
        [(0, 1)] * 27 + [(1, 3)] * 9 + [(2, 9)] * 3 + [(3, 27)]
    )
    assert sum(r.promoted for r in result.records) == 9 + 3 + 1


def test_wrong_number_of_scores_is_an_error():
    with pytest.raises(ValueError, match="returned 2 scores for 3 requests"):
        successive_halving(quality_points([1, 2, 3]), 1, 4, 2, lambda requests: [0.1, 0.2])


def test_non_numeric_score_is_an_error():
    with pytest.raises(TypeError, match="score 'high' for point 0"):
        successive_halving(quality_points([1, 2]), 1, 4, 2, lambda requests: ["high", 0.2])


def test_empty_points_are_refused():
    with pytest.raises(ValueError, match="at least one point"):
        successive_halving([], 1, 4, 2, RecordingRunner(by_quality))
