import numpy as np
import pytest

from npdl.search import (
    Choice,
    Interval,
    describe_space,
    distinct_points,
    grid_points,
    sample_points,
    space_size,
)


def mixed_space():
    return {
        "learning_rate": Interval(1e-5, 1e-1, log=True),
        "model.hidden_size": Choice(([512, 256], [256], [128, 128, 64])),
        "reg": Interval(0.0, 0.5),
        "batch_size": Interval(16, 64, integer=True),
        "width": Interval(32, 1024, log=True, integer=True),
    }


# -- dimensions ------------------------------------------------------------------------


def test_choice_stores_a_tuple_and_refuses_empty_duplicate_and_string_values():
    assert Choice([1, 2]).values == (1, 2)
    with pytest.raises(ValueError, match="at least one value"):
        Choice(())
    with pytest.raises(ValueError, match=r"\[1, 2\] is listed twice"):
        Choice(([1, 2], [3], [1, 2]))
    with pytest.raises(TypeError, match="sequence"):
        Choice("adam")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"low": 1.0, "high": 1.0}, r"low < high, got low=1.0, high=1.0"),
        ({"low": 2.0, "high": 1.0}, r"low < high, got low=2.0, high=1.0"),
        ({"low": 0.0, "high": 1.0, "log": True}, r"log Interval needs low > 0, got low=0.0"),
        ({"low": 0.2, "high": 0.8, "integer": True}, r"integer .* low=0.2, high=0.8"),
        ({"low": float("nan"), "high": 1.0}, r"low must be a finite number"),
        ({"low": 0, "high": "1"}, r"high must be a finite number"),
    ],
)
def test_interval_validation_names_the_bounds(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Interval(**kwargs)


def test_space_must_map_keys_to_dimensions():
    with pytest.raises(TypeError, match="'lr' maps to"):
        sample_points({"lr": [1e-3, 1e-2]}, 1, rng=0)


# -- grid ------------------------------------------------------------------------------


def test_grid_is_the_cartesian_product_in_key_then_value_order():
    space = {
        "lr": Choice((0.1, 0.01)),
        "model.hidden_size": Choice(([512, 256], [64])),
        "activation": Choice(("relu", "tanh", "sigmoid")),
    }
    points = grid_points(space)
    assert len(points) == 2 * 2 * 3
    assert points[0] == {"lr": 0.1, "model.hidden_size": [512, 256], "activation": "relu"}
    assert points[1] == {"lr": 0.1, "model.hidden_size": [512, 256], "activation": "tanh"}
    assert points[3] == {"lr": 0.1, "model.hidden_size": [64], "activation": "relu"}
    assert points[-1] == {"lr": 0.01, "model.hidden_size": [64], "activation": "sigmoid"}
    assert [list(point) for point in points] == [list(space)] * len(points)
    # Every combination exactly once.
    assert len({repr(sorted(point.items())) for point in points}) == len(points)


def test_grid_refuses_an_interval_naming_the_key():
    space = {"reg": Choice((0.0, 1e-4)), "learning_rate": Interval(1e-4, 1e-2, log=True)}
    with pytest.raises(ValueError, match=r"learning_rate.*choice.*range.*random sampler"):
        grid_points(space)


@pytest.mark.parametrize("function", [grid_points, lambda space: sample_points(space, 3, 0)])
def test_empty_space_is_refused(function):
    with pytest.raises(ValueError, match="empty"):
        function({})


# -- random sampling -------------------------------------------------------------------


def test_same_seed_same_points_and_different_seed_different_points():
    first = sample_points(mixed_space(), 20, rng=7)
    assert first == sample_points(mixed_space(), 20, rng=np.random.default_rng(7))
    assert first != sample_points(mixed_space(), 20, rng=8)


@pytest.mark.parametrize("k", [1, 5, 19])
def test_growing_n_only_adds_points(k):
    assert sample_points(mixed_space(), 20, rng=3)[:k] == sample_points(mixed_space(), k, rng=3)


def test_samples_stay_in_bounds_with_the_right_types():
    space = mixed_space()
    points = sample_points(space, 500, rng=0)
    for point in points:
        assert list(point) == list(space)
        assert 1e-5 <= point["learning_rate"] <= 1e-1
        assert isinstance(point["learning_rate"], float)
        assert 0.0 <= point["reg"] <= 0.5
        assert isinstance(point["batch_size"], int)
        assert 16 <= point["batch_size"] <= 64
        assert isinstance(point["width"], int)
        assert 32 <= point["width"] <= 1024
        assert point["model.hidden_size"] in space["model.hidden_size"].values
    # Both ends of an integer interval are reachable, and nothing else but integers.
    batch_sizes = {point["batch_size"] for point in points}
    assert {16, 64} <= batch_sizes
    assert len({tuple(point["model.hidden_size"]) for point in points}) == 3


def test_integer_interval_is_uniform_over_its_integers_including_both_ends():
    points = sample_points({"n": Interval(1, 4, integer=True)}, 4000, rng=1)
    counts = np.bincount([point["n"] for point in points], minlength=5)[1:]
    # Rounding a uniform float would give the ends half the share of the middle.
    np.testing.assert_allclose(counts / 4000, 0.25, atol=0.03)


def test_log_interval_is_log_uniform():
    points = sample_points({"lr": Interval(1e-6, 1.0, log=True)}, 4000, rng=2)
    values = np.array([point["lr"] for point in points])
    # Log-uniform: the median is near the geometric mean 1e-3; a uniform draw would
    # put it near 0.5 and almost no sample below 1e-3.
    assert 10**-3.2 < np.median(values) < 10**-2.8
    decade_counts = np.histogram(np.log10(values), bins=6, range=(-6, 0))[0]
    np.testing.assert_allclose(decade_counts / 4000, 1 / 6, atol=0.03)


def test_uniform_interval_is_uniform():
    values = np.array([p["x"] for p in sample_points({"x": Interval(-1.0, 3.0)}, 4000, rng=4)])
    assert abs(np.median(values) - 1.0) < 0.15
    assert values.min() < -0.9 and values.max() > 2.9


def test_choice_sampling_covers_values_uniformly_and_keeps_them_opaque():
    choices = ([512, 256], [256], "relu")
    points = sample_points({"x": Choice(choices)}, 3000, rng=5)
    drawn = [point["x"] for point in points]
    for value in choices:
        assert abs(drawn.count(value) / 3000 - 1 / 3) < 0.04
    assert all(any(value is choice for choice in choices) for value in drawn)


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_sample_count_must_be_positive_int(n):
    with pytest.raises(ValueError, match=f"n={n!r}"):
        sample_points(mixed_space(), n, rng=0)


def test_sampling_requires_an_explicit_seed():
    with pytest.raises(TypeError, match="rng=None"):
        sample_points(mixed_space(), 2, rng=None)


# -- description ---------------------------------------------------------------------------


def test_describe_space_is_one_line_naming_every_key():
    text = describe_space(mixed_space())
    assert "\n" not in text
    assert "learning_rate: log-uniform [1e-05, 0.1]" in text
    assert "model.hidden_size: one of {[512, 256], [256], [128, 128, 64]}" in text
    assert "batch_size: integer uniform [16, 64]" in text
    assert "width: integer log-uniform [32, 1024]" in text
    assert "grid" not in text


def test_describe_grid_space_gives_its_size():
    text = describe_space({"a": Choice((1, 2, 3)), "b": Choice(("x", "y"))})
    assert text.endswith("grid of 6 points")


def test_distinct_points_draw_a_finite_space_without_replacement():
    space = {"lr": Choice(("1e-5", "3e-4", "1e-3", "3e-1")), "reg": Choice(("0", "1e-4"))}
    assert space_size(space) == 8
    four = distinct_points(space, 4, rng=0)
    assert len({tuple(p.items()) for p in four}) == 4  # no point twice
    assert distinct_points(space, 4, rng=0) == four  # seeded
    assert distinct_points(space, 6, rng=0)[:4] == four  # growing only adds points
    every = distinct_points(space, 20, rng=0)  # more than there are: each once
    assert len(every) == 8 and sorted(map(str, every)) == sorted(map(str, grid_points(space)))
    # The example: 4 draws from 4 learning rates try each of them.
    lrs = distinct_points({"lr": Choice(("1e-5", "3e-4", "1e-3", "3e-1"))}, 4, rng=0)
    assert sorted(p["lr"] for p in lrs) == ["1e-3", "1e-5", "3e-1", "3e-4"]


def test_distinct_points_skip_repeats_in_a_space_with_an_interval():
    space = {"x": Interval(0.0, 1.0), "act": Choice(("relu", "elu"))}
    assert space_size(space) is None
    points = distinct_points(space, 50, rng=1)
    assert len({tuple(sorted(p.items())) for p in points}) == 50
    assert distinct_points(space, 10, rng=1) == points[:10]
