import math
from functools import partial

import numpy as np
import pytest

from npdl import ClassificationNet, Relu, Sigmoid, Solver
from npdl.hyperparameter_tuning import (
    DEFAULT_GRID_SEARCH_SPACES,
    DEFAULT_RANDOM_SEARCH_SPACES,
    findBestConfig,
    grid_search,
    grid_search_space,
    random_search,
    random_search_space,
    random_search_spaces_to_config,
)
from npdl.search import Choice, Interval, sample_points


def blobs(n, seed, dim=20, classes=3, noise=1.5):
    """Gaussian clusters around fixed centres: learnable, not trivially separable."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((classes, dim))
    labels = rng.integers(0, classes, n)
    images = centres[labels] + noise * rng.standard_normal((n, dim))
    return images.astype(np.float32), labels


def batches(images, labels, batch_size):
    """The minimal course-style loader: a list of {'image', 'label'} batches."""
    return [
        {"image": images[i : i + batch_size], "label": labels[i : i + batch_size]}
        for i in range(0, len(images), batch_size)
    ]


@pytest.fixture(scope="module")
def loaders():
    return batches(*blobs(120, seed=0), 30), batches(*blobs(60, seed=1), 60)


class RecordingModel:
    """A model_class that records the config it was built with."""

    def __init__(self):
        self.configs = []

    def __call__(self, **config):
        self.configs.append(config)
        return ClassificationNet(input_size=20, num_classes=3, **config)


def fixed(**values):
    """Grid entries with a single value: keys every config shares."""
    return {key: [value] for key, value in values.items()}


def val_loss_of(model, loaders):
    train_loader, val_loader = loaders
    return Solver(model, train_loader, val_loader, verbose=False).evaluate(val_loader)[0]


def test_grid_search_trains_every_combination_and_returns_the_lowest_val_loss(loaders, capsys):
    spaces = {
        "learning_rate": [1e-3, 3e-2],
        "hidden_size": [4, 16],
        **fixed(reg=1e-4, activation=Relu(), verbose=False, rng=0),
    }
    model_class = RecordingModel()
    best_model, results = grid_search(*loaders, spaces, model_class, epochs=6, patience=3)

    assert [(c["learning_rate"], c["hidden_size"]) for c, _ in results] == [
        (1e-3, 4),
        (1e-3, 16),
        (3e-2, 4),
        (3e-2, 16),
    ]
    # The course's config keys reach the model (and the Solver) unchanged.
    assert model_class.configs == [config for config, _ in results]
    val_losses = [stats["val_loss"] for _, stats in results]
    assert len(set(val_losses)) == 4
    best_index = int(np.argmin(val_losses))
    best_config = results[best_index][0]
    assert best_model.hidden_size == best_config["hidden_size"]
    # The best model holds the weights of its best epoch.
    assert val_loss_of(best_model, loaders) == pytest.approx(min(val_losses), rel=1e-6)
    for _, stats in results:
        assert set(stats) >= {"val_loss", "val_acc", "train_loss", "epoch", "status"}
        assert stats["status"] in ("completed", "early_stopped")

    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("Config #") for line in lines) == 4
    assert "Config #3 [of 4]" in lines[2]
    assert lines[-1] == f"Best Config: {best_config}"


def test_diverged_config_is_recorded_and_never_best(loaders):
    spaces = {
        "learning_rate": [1e30, 1e-2],
        **fixed(hidden_size=8, activation=Relu(), verbose=False, rng=0),
    }
    model_class = partial(ClassificationNet, input_size=20, num_classes=3)
    best_model, results = grid_search(*loaders, spaces, model_class, epochs=3, patience=2)
    diverged = results[0][1]
    assert diverged["status"] == "diverged"
    assert diverged["val_loss"] == math.inf
    assert math.isfinite(results[1][1]["val_loss"])
    assert val_loss_of(best_model, loaders) == pytest.approx(results[1][1]["val_loss"], rel=1e-6)


def test_all_diverged_gives_no_best_model(loaders):
    configs = [{"learning_rate": 1e30, "activation": Relu(), "verbose": False, "rng": 0}]
    model_class = partial(ClassificationNet, input_size=20, num_classes=3)
    best_model, results = findBestConfig(*loaders, configs, 2, 1, model_class)
    assert best_model is None
    assert results[0][0] is configs[0]
    assert results[0][1]["status"] == "diverged"


COURSE_SPACE = {
    "learning_rate": ([1e-5, 1e-2], "log"),
    "hidden_size": ([4, 12], "int"),
    "reg": ([0.0, 1e-3], "float"),
    "activation": ([Sigmoid(), Relu()], "item"),
    "verbose": ([False], "item"),
    "rng": ([0], "item"),
}


def test_random_search_is_seeded_and_uses_the_shared_sampler(loaders):
    model_class = partial(ClassificationNet, input_size=20, num_classes=3)
    best_model, results = random_search(
        *loaders, COURSE_SPACE, model_class, num_search=3, epochs=2, patience=1, rng=5
    )
    configs = [config for config, _ in results]
    assert configs == sample_points(random_search_space(COURSE_SPACE), 3, rng=5)
    assert len({c["learning_rate"] for c in configs}) == 3
    val_losses = [stats["val_loss"] for _, stats in results]
    assert val_loss_of(best_model, loaders) == pytest.approx(min(val_losses), rel=1e-6)


def test_random_configs_respect_the_course_modes():
    configs = [random_search_spaces_to_config(COURSE_SPACE, rng) for rng in range(200)]
    assert all(1e-5 <= c["learning_rate"] <= 1e-2 for c in configs)
    assert np.median([c["learning_rate"] for c in configs]) < 1e-3  # log-uniform, not uniform
    assert {c["hidden_size"] for c in configs} == set(range(4, 13))  # inclusive ints
    assert all(isinstance(c["hidden_size"], int) for c in configs)
    assert all(0.0 <= c["reg"] <= 1e-3 for c in configs)
    assert {type(c["activation"]) for c in configs} == {Sigmoid, Relu}
    assert random_search_spaces_to_config(COURSE_SPACE, 11) == random_search_spaces_to_config(
        COURSE_SPACE, 11
    )


def test_course_spaces_convert_to_choices_and_intervals():
    assert random_search_space(COURSE_SPACE)["learning_rate"] == Interval(1e-5, 1e-2, log=True)
    assert random_search_space(COURSE_SPACE)["hidden_size"] == Interval(4, 12, integer=True)
    assert random_search_space(COURSE_SPACE)["reg"] == Interval(0.0, 1e-3)
    assert random_search_space(COURSE_SPACE)["verbose"] == Choice((False,))
    assert set(random_search_space(DEFAULT_RANDOM_SEARCH_SPACES)) == {
        "learning_rate",
        "hidden_size",
        "activation",
    }
    assert grid_search_space(DEFAULT_GRID_SEARCH_SPACES) == {
        "learning_rate": Choice((1e-4, 1e-3)),
        "reg": Choice((1e-4, 1e-5)),
    }


@pytest.mark.parametrize(
    ("spaces", "message"),
    [
        ({"lr": ([1e-5, 1e-2], "loguniform")}, r"'lr'.*unknown sampling mode 'loguniform'.*log"),
        ({"lr": [1e-5, 1e-2]}, r"'lr': expected \(values, mode\)"),
        ({"lr": ([0.0, 1e-2], "log")}, r"'lr' \(mode 'log'\).*low > 0"),
        ({"hidden_size": ([4.5, 4.7], "int")}, r"'hidden_size' .*integer between"),
        ({"lr": (["a", "b"], "float")}, r"'lr' \(mode 'float'\).*must be numbers"),
        ({"activation": ([], "item")}, r"'activation'.*non-empty list"),
    ],
)
def test_malformed_random_spaces_name_the_key(spaces, message):
    with pytest.raises(ValueError, match=message):
        random_search_space(spaces)


def test_malformed_grid_names_the_key(loaders):
    with pytest.raises(ValueError, match=r"'reg': expected a list of values, got 0.001"):
        grid_search(*loaders, {"reg": 1e-3})
    with pytest.raises(ValueError, match=r"'reg': expected at least one value"):
        grid_search(*loaders, {"reg": []})


@pytest.mark.parametrize("num_search", [0, 2.0])
def test_num_search_must_be_a_positive_int(loaders, num_search):
    with pytest.raises(ValueError, match=f"num_search={num_search!r}"):
        random_search(*loaders, COURSE_SPACE, num_search=num_search)
