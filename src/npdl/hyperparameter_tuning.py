"""The course's notebook API for hyperparameter search: grid and random search.

Same names, arguments and return values as the course exercise's
``hyperparameter_tuning.py``, so notebook code keeps working with only its import
changed::

    from npdl.hyperparameter_tuning import grid_search, random_search

    best_model, results = random_search(train_loader, val_loader, num_search=20, rng=0)

Every config is a dict passed whole to both ``model_class(**config)`` and
``Solver(model, train_loader, val_loader, **config)`` (each ignores the keys meant for
the other); each model trains for ``epochs`` with early stopping after ``patience``
epochs without improvement, and the best is the one with the lowest validation loss.

``results`` is, as in the course, ``list(zip(configs, stats))``: one
``(config, stats)`` pair per config in the order they were trained, ``stats`` being
the solver's ``best_model_stats`` (``val_loss``, ``val_acc``, ``train_loss``,
``epoch`` of the best epoch) plus ``status`` (how training ended, see
:data:`npdl.solver.STATUSES`). A run that diverged before finishing one epoch has
``val_loss = inf``; it can never be the best.

As in the course: a range's bounds may come in either order (``([1e-2, 1e-6],
'log')``); a single-value range (``([x], 'log' | 'int' | 'float')``) means that value;
a grid may list a value twice (the product is taken as given); classes may stand for
instances (``'loss_func': ([CrossEntropyFromLogits], 'item')``,
``'activation': ([Relu, Sigmoid], 'item')``); and without ``rng`` random configs are
drawn from Python's global :mod:`random` module exactly as the course draws them, so
``random.seed(0)`` before the call gives the course's configs again.

Differences from the course, all on purpose:

* With a seed or generator (``rng=``) random points come from
  :func:`npdl.search.sample_points`, the sampler the pipeline's sweeps share.
* An unknown sampling mode or a malformed space raises ``ValueError`` naming the key;
  the course printed a message and silently dropped the key.
* Model weights are seeded only if the config says so: add ``"rng": [0]`` to a grid
  (or ``"rng": ([0], "item")`` to a random space) for repeatable trainings.
"""

from __future__ import annotations

import itertools
import math
import numbers
import random
from collections.abc import Iterable, Mapping

import numpy as np

from .activations import Relu, Sigmoid
from .network import ClassificationNet
from .search.spaces import Choice, Interval, sample_points
from .solver import Solver

#: Sampling modes of a random search space, as in the course.
ALLOWED_RANDOM_SEARCH_PARAMS = ["log", "int", "float", "item"]

#: Default grid of :func:`grid_search` (never modified).
DEFAULT_GRID_SEARCH_SPACES = {"learning_rate": [1e-4, 1e-3], "reg": [1e-4, 1e-5]}

#: Default space of :func:`random_search` (never modified).
DEFAULT_RANDOM_SEARCH_SPACES = {
    "learning_rate": ([1e-5, 1e-2], "log"),
    "hidden_size": ([100, 400], "int"),
    "activation": ([Sigmoid(), Relu()], "item"),
}


def grid_search_space(grid_search_spaces: Mapping[str, Iterable]) -> dict[str, Choice]:
    """Turn a course grid ``{key: [values]}`` into a search space of :class:`Choice`.

    Raises
    ------
    ValueError
        If a key's values are not a non-empty list of distinct values, naming the key.
    """
    space = {}
    for key, values in grid_search_spaces.items():
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise ValueError(f"grid search key {key!r}: expected a list of values, got {values!r}")
        try:
            space[key] = Choice(tuple(values))
        except ValueError as error:
            raise ValueError(f"grid search key {key!r}: {error}") from None
    return space


def _grid_configs(grid_search_spaces: Mapping[str, Iterable]) -> list[dict]:
    """Every combination of a course grid, as given (``itertools.product`` order)."""
    value_lists = {}
    for key, values in grid_search_spaces.items():
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise ValueError(f"grid search key {key!r}: expected a list of values, got {values!r}")
        value_lists[key] = list(values)
        if not value_lists[key]:
            raise ValueError(f"grid search key {key!r}: expected at least one value, got none")
    if not value_lists:
        raise ValueError("the grid is empty: give at least one key with a list of values")
    keys = list(value_lists)
    return [
        dict(zip(keys, combination, strict=True))
        for combination in itertools.product(*value_lists.values())
    ]


def _single_value(values: list, mode: str) -> float | int | None:
    """The one value of a range whose bounds are equal (``([x], mode)``), else None."""
    low, high = _bounds(values)
    if low != high:
        return None
    value = values[0]
    if not math.isfinite(value):
        raise ValueError(f"a range's value must be finite, got {value!r}")
    if mode == "log" and not value > 0:
        raise ValueError(f"a log range needs a value > 0, got {value!r}")
    if mode == "int":
        if int(value) != value:
            raise ValueError(f"an int range needs an integer value, got {value!r}")
        return int(value)
    return value


def _bounds(values: list) -> tuple[float, float]:
    """The range's ``(low, high)``, in either order as given (as the course takes them)."""
    for bound in (values[0], values[-1]):
        if isinstance(bound, bool) or not isinstance(bound, numbers.Real):
            raise ValueError(f"range bounds must be numbers, got {bound!r}")
    return min(values[0], values[-1]), max(values[0], values[-1])


def _checked_entries(random_search_spaces: Mapping[str, tuple]) -> list[tuple[str, list, str]]:
    """``(key, values, mode)`` per key of a course random-search space, validated.

    Raises
    ------
    ValueError
        Naming the key whose entry is malformed, whose mode is unknown or whose bounds
        are invalid.
    """
    entries = []
    for key, entry in random_search_spaces.items():
        if not (isinstance(entry, tuple | list) and len(entry) == 2 and isinstance(entry[1], str)):
            raise ValueError(
                f"random search key {key!r}: expected (values, mode), e.g. "
                f"([1e-5, 1e-2], 'log'), got {entry!r}"
            )
        values, mode = entry
        if mode not in ALLOWED_RANDOM_SEARCH_PARAMS:
            raise ValueError(
                f"random search key {key!r}: unknown sampling mode {mode!r}; "
                f"allowed: {', '.join(ALLOWED_RANDOM_SEARCH_PARAMS)}"
            )
        if isinstance(values, str | bytes) or not isinstance(values, list | tuple) or not values:
            raise ValueError(
                f"random search key {key!r}: expected a non-empty list of values, got {values!r}"
            )
        try:
            if mode != "item" and _single_value(list(values), mode) is None:
                low, high = _bounds(list(values))
                Interval(low, high, log=mode == "log", integer=mode == "int")
        except ValueError as error:
            raise ValueError(f"random search key {key!r} (mode {mode!r}): {error}") from None
        entries.append((key, list(values), mode))
    return entries


def random_search_space(random_search_spaces: Mapping[str, tuple]) -> dict[str, Choice | Interval]:
    """Turn a course random-search space into a search space.

    Parameters
    ----------
    random_search_spaces : dict
        ``{key: (values, mode)}`` with ``mode`` one of
        :data:`ALLOWED_RANDOM_SEARCH_PARAMS`: ``'log'`` (log-uniform float between
        ``values[0]`` and ``values[-1]``, in either order), ``'int'`` (uniform integer,
        both ends included), ``'float'`` (uniform float) or ``'item'`` (one of
        ``values``). Equal bounds (``[x]``) give ``Choice((x,))``.

    Returns
    -------
    dict of str -> Choice or Interval

    Raises
    ------
    ValueError
        Naming the key whose entry is malformed, whose mode is unknown or whose bounds
        are invalid (or, for ``'item'``, whose values repeat).
    """
    space: dict[str, Choice | Interval] = {}
    for key, values, mode in _checked_entries(random_search_spaces):
        try:
            single = None if mode == "item" else _single_value(values, mode)
            if mode == "item":
                space[key] = Choice(tuple(values))
            elif single is not None:
                space[key] = Choice((single,))
            else:
                low, high = _bounds(values)
                space[key] = Interval(low, high, log=mode == "log", integer=mode == "int")
        except ValueError as error:
            raise ValueError(f"random search key {key!r} (mode {mode!r}): {error}") from None
    return space


def _course_draw(values: list, mode: str) -> object:
    """One value drawn from Python's global :mod:`random` as the course's code draws it."""
    if mode == "item":
        return random.choice(values)
    single = _single_value(values, mode)
    if mode == "log":
        value = 10 ** random.uniform(math.log10(values[0]), math.log10(values[-1]))
    elif mode == "int":
        low, high = _bounds(values)
        value = random.randint(math.ceil(low), math.floor(high))
    else:
        value = random.uniform(values[0], values[-1])
    # A single value is drawn all the same, so the draws after it stay the course's.
    return value if single is None else single


def random_search_spaces_to_config(
    random_search_spaces: Mapping[str, tuple], rng: np.random.Generator | int | None = None
) -> dict:
    """Sample one config from a course random-search space (course helper).

    ``rng``: a generator or seed (:func:`npdl.search.sample_points`); None draws from
    Python's global :mod:`random`, as the course does (``random.seed`` repeats it).
    """
    if rng is None:
        return {
            key: _course_draw(values, mode)
            for key, values, mode in _checked_entries(random_search_spaces)
        }
    space = random_search_space(random_search_spaces)
    return sample_points(space, 1, np.random.default_rng(rng))[0]


def grid_search(
    train_loader,
    val_loader,
    grid_search_spaces: Mapping[str, Iterable] = DEFAULT_GRID_SEARCH_SPACES,
    model_class=ClassificationNet,
    epochs: int = 20,
    patience: int = 5,
):
    """Train a model for every combination of values of a grid; return the best.

    Parameters
    ----------
    train_loader, val_loader : iterables of {'image': (N, ...), 'label': (N,)} batches
    grid_search_spaces : dict of str -> list
        Values to try per key; every combination is trained (in
        ``itertools.product`` order: the last key varies fastest; a value listed
        twice is trained twice, as in the course). Keys not given keep the model's
        and the solver's defaults.
    model_class : callable
        Builds a model from a config, ``model_class(**config)``.
    epochs : int
        Maximum epochs per config.
    patience : int
        Early-stopping patience in epochs.

    Returns
    -------
    best_model : model or None
        The model with the lowest validation loss, holding its best epoch's weights;
        None if every config diverged before completing an epoch.
    results : list of (dict, dict)
        ``(config, stats)`` per config, see the module docstring.
    """
    configs = _grid_configs(grid_search_spaces)
    return findBestConfig(train_loader, val_loader, configs, epochs, patience, model_class)


def random_search(
    train_loader,
    val_loader,
    random_search_spaces: Mapping[str, tuple] = DEFAULT_RANDOM_SEARCH_SPACES,
    model_class=ClassificationNet,
    num_search: int = 20,
    epochs: int = 20,
    patience: int = 5,
    rng: np.random.Generator | int | None = None,
):
    """Train models for ``num_search`` random configs; return the best.

    Parameters
    ----------
    train_loader, val_loader, model_class, epochs, patience
        As for :func:`grid_search`.
    random_search_spaces : dict
        ``{key: (values, mode)}``, see :func:`random_search_space`.
    num_search : int
        Number of configs to sample and train, ``>= 1``.
    rng : numpy.random.Generator or int, optional
        Seed or generator for sampling; the same seed gives the same configs, and a
        larger ``num_search`` only appends configs. None: Python's global
        :mod:`random`, drawn as the course draws (``random.seed(...)`` before the call
        repeats the configs).

    Returns
    -------
    best_model, results
        As for :func:`grid_search`.
    """
    if isinstance(num_search, bool) or not isinstance(num_search, numbers.Integral):
        raise ValueError(f"num_search must be an int >= 1, got num_search={num_search!r}")
    if num_search < 1:
        raise ValueError(f"num_search must be an int >= 1, got num_search={num_search!r}")
    if rng is None:
        _checked_entries(random_search_spaces)  # every key checked before any draw
        configs = [
            random_search_spaces_to_config(random_search_spaces) for _ in range(int(num_search))
        ]
    else:
        space = random_search_space(random_search_spaces)
        configs = sample_points(space, int(num_search), np.random.default_rng(rng))
    return findBestConfig(train_loader, val_loader, configs, epochs, patience, model_class)


def _best_stats(solver: Solver) -> dict:
    """The solver's ``best_model_stats`` plus its status; ``val_loss = inf`` if it has none."""
    if solver.best_model_stats is None:
        # Diverged during the first epoch: no epoch was ever evaluated.
        stats = {"val_loss": math.inf, "val_acc": math.nan, "train_loss": math.nan, "epoch": 0}
    else:
        stats = dict(solver.best_model_stats)
    stats["status"] = solver.status
    return stats


# The course's camelCase and capitalised names are kept so notebooks run unchanged.
def findBestConfig(train_loader, val_loader, configs, EPOCHS, PATIENCE, model_class):
    """Train one model per config and return the one with the lowest validation loss.

    Parameters
    ----------
    train_loader, val_loader : iterables of {'image': (N, ...), 'label': (N,)} batches
    configs : iterable of dict
        Each passed to ``model_class(**config)`` and ``Solver(..., **config)``.
    EPOCHS : int
        Maximum epochs per config.
    PATIENCE : int
        Early-stopping patience.
    model_class : callable

    Returns
    -------
    best_model : model or None
        The model of the config with the lowest best-epoch validation loss (the first
        one on ties), with that epoch's weights; None if every config diverged
        before completing an epoch.
    results : list of (dict, dict)
        ``(config, stats)`` per config in training order, see the module docstring.

    Prints one line per config (its result) and the best config at the end.
    """
    configs = list(configs)
    best_val, best_model, best_config = math.inf, None, None
    results = []
    for number, config in enumerate(configs, start=1):
        model = model_class(**config)
        solver = Solver(model, train_loader, val_loader, **config)
        solver.train(epochs=EPOCHS, patience=PATIENCE)
        stats = _best_stats(solver)
        results.append(stats)
        print(
            f"Config #{number} [of {len(configs)}] {config}: best val loss "
            f"{stats['val_loss']:.5f} at epoch {stats['epoch']} ({stats['status']})",
            flush=True,
        )
        if stats["val_loss"] < best_val:
            best_val, best_model, best_config = stats["val_loss"], model, config
    print(f"Search done. Best Val Loss = {best_val}")
    print("Best Config:", best_config)
    return best_model, list(zip(configs, results, strict=True))
