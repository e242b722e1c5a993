"""Search spaces: what a hyperparameter search may vary, and how to draw points from it.

A *space* is a plain dict ``{dotted config key: dimension}``, for example::

    space = {
        "learning_rate": Interval(1e-5, 1e-2, log=True),
        "model.hidden_size": Choice(([512, 256], [256])),
        "reg": Choice((1e-4, 1e-5)),
    }

A *point* is a dict with the same keys and one value per key, ready to become the
overrides of one trial. Values of a :class:`Choice` are opaque: a list such as
``[512, 256]`` is one value, never expanded.

:func:`grid_points` enumerates every point of a space of choices; :func:`sample_points`
draws seeded random points from any space (independent draws, as the course's random
search), and :func:`distinct_points` draws points that never repeat (what the sweepers
use: a finite space is drawn without replacement). Both are prefix-stable: asking for
more points only adds points (the first ``k`` of ``n`` are the points of a run with
``n = k``), so growing ``n_trials`` reuses every trial already run.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..overrides import point_text


@dataclass(frozen=True)
class Choice:
    """A dimension taking one of a fixed list of values.

    Parameters
    ----------
    values : sequence
        The values, in order (the grid order). Any JSON-like value is allowed and
        treated as opaque, including lists such as ``[512, 256]``. Stored as a tuple.

    Raises
    ------
    ValueError
        If ``values`` is empty or holds the same value twice (a grid would run the
        same trial twice).
    TypeError
        If ``values`` is a string or not a sequence (``Choice("adam")`` would otherwise
        become the letters ``a, d, a, m``).
    """

    values: tuple

    def __post_init__(self) -> None:
        if isinstance(self.values, str | bytes) or not isinstance(self.values, Sequence):
            raise TypeError(
                f"Choice takes a sequence of values, got {self.values!r}; "
                f"wrap a single value in a tuple: Choice(({self.values!r},))"
            )
        values = tuple(self.values)
        if not values:
            raise ValueError("Choice needs at least one value, got an empty sequence")
        for position, value in enumerate(values):
            if value in values[:position]:
                raise ValueError(f"Choice values must be distinct; {value!r} is listed twice")
        object.__setattr__(self, "values", values)

    def describe(self) -> str:
        """``one of {a, b, c}``."""
        return "one of {" + ", ".join(repr(value) for value in self.values) + "}"


@dataclass(frozen=True)
class Interval:
    """A dimension taking any value between two bounds.

    Parameters
    ----------
    low, high : float
        Bounds, ``low < high``, both finite. Samples fall in ``[low, high]``.
    log : bool
        Sample log-uniformly (uniform in ``log(value)``); needs ``low > 0``. The
        natural choice for learning rates and regularisation strengths.
    integer : bool
        Sample integers: uniformly among the integers in ``[low, high]`` (both ends
        included), or with ``log=True`` by rounding a log-uniform draw.

    Raises
    ------
    ValueError
        If the bounds are not finite numbers, ``low >= high``, ``log`` with
        ``low <= 0``, or ``integer`` with no integer between the bounds.
    """

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __post_init__(self) -> None:
        for name, bound in (("low", self.low), ("high", self.high)):
            if (
                isinstance(bound, bool)
                or not isinstance(bound, numbers.Real)
                or not math.isfinite(bound)
            ):
                raise ValueError(f"Interval {name} must be a finite number, got {name}={bound!r}")
        if not self.low < self.high:
            raise ValueError(f"Interval needs low < high, got low={self.low!r}, high={self.high!r}")
        if self.log and self.low <= 0:
            raise ValueError(
                f"a log Interval needs low > 0, got low={self.low!r} (high={self.high!r}); "
                "use log=False for ranges that include 0 or negative values"
            )
        if self.integer and math.ceil(self.low) > math.floor(self.high):
            raise ValueError(
                f"an integer Interval needs an integer between its bounds, "
                f"got low={self.low!r}, high={self.high!r}"
            )

    def describe(self) -> str:
        """``log-uniform [1e-05, 0.01]``, ``integer uniform [100, 400]``, ..."""
        kind = ("integer " if self.integer else "") + ("log-uniform" if self.log else "uniform")
        return f"{kind} [{self.low!r}, {self.high!r}]"

    def sample(self, rng: np.random.Generator) -> float | int:
        """Draw one value (a Python ``int`` for integer intervals, else ``float``)."""
        if self.integer:
            smallest, largest = math.ceil(self.low), math.floor(self.high)
            if not self.log:
                return int(rng.integers(smallest, largest, endpoint=True))
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
            return min(max(round(value), smallest), largest)
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
            # exp(log(x)) may land one ulp outside the bounds.
            return min(max(value, float(self.low)), float(self.high))
        return float(rng.uniform(self.low, self.high))


Dimension = Choice | Interval
#: ``{dotted config key: dimension}``; the keys' insertion order is the draw order.
Space = Mapping[str, Dimension]


def checked_space(space: Space) -> Space:
    """Return ``space`` unchanged if it is a non-empty ``{dotted key (str): Choice |
    Interval}``; otherwise raise TypeError or ValueError naming the key or value."""
    if not isinstance(space, Mapping):
        raise TypeError(f"a search space is a dict {{key: Choice | Interval}}, got {space!r}")
    if not space:
        raise ValueError("the search space is empty: give at least one key to search over")
    for key, dimension in space.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"search space keys are dotted config keys (str), got {key!r}")
        if not isinstance(dimension, Choice | Interval):
            raise TypeError(
                f"search space key {key!r} maps to {dimension!r}; "
                "expected a Choice(values) or an Interval(low, high)"
            )
    return space


def grid_points(space: Space) -> list[dict[str, Any]]:
    """Every combination of the values of a space of choices.

    Parameters
    ----------
    space : dict of str -> Choice

    Returns
    -------
    list of dict
        ``prod(len(choice.values))`` points. The order is deterministic: keys in the
        space's insertion order, each key's values in their listed order, the *last*
        key varying fastest (``itertools.product`` order, as the course's grid search).

    Raises
    ------
    ValueError
        If the space is empty, or a key maps to an :class:`Interval` (a grid needs a
        finite list of values), naming that key.
    """
    checked_space(space)
    for key, dimension in space.items():
        if isinstance(dimension, Interval):
            raise ValueError(
                f"grid search cannot enumerate the interval {key}: {dimension.describe()}; "
                f"list its values with choice(...)/range(...), or use the random sampler"
            )
    keys = list(space)
    value_lists = [space[key].values for key in keys]
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*value_lists)]


def sample_points(space: Space, n: int, rng: np.random.Generator | int) -> list[dict[str, Any]]:
    """Draw ``n`` random points from a space.

    Parameters
    ----------
    space : dict of str -> Choice or Interval
    n : int
        Number of points, ``n >= 1``.
    rng : numpy.random.Generator or int
        The source of randomness, or a seed for :func:`numpy.random.default_rng`. A
        generator is advanced by the draws.

    Returns
    -------
    list of dict
        ``n`` points. A :class:`Choice` is drawn uniformly among its values, an
        :class:`Interval` as documented there. Points are drawn one after the other,
        each key in the space's insertion order, from the one generator: the same seed
        gives the same points, and the first ``k`` points of ``n`` are exactly the
        points of a run with ``n = k``. Points may repeat (with few choices).

    Raises
    ------
    ValueError
        If ``n < 1`` or the space is empty.
    TypeError
        If ``rng`` is None: pass a seed so the search is reproducible.
    """
    checked_space(space)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"the number of points to sample must be an int >= 1, got n={n!r}")
    if rng is None:
        raise TypeError("sample_points needs a seed or a numpy.random.Generator, got rng=None")
    rng = np.random.default_rng(rng)
    points = []
    for _ in range(int(n)):
        point = {}
        for key, dimension in space.items():
            if isinstance(dimension, Choice):
                point[key] = dimension.values[int(rng.integers(len(dimension.values)))]
            else:
                point[key] = dimension.sample(rng)
        points.append(point)
    return points


def space_size(space: Space) -> int | None:
    """The number of points of a space of choices; None if it has an interval."""
    checked_space(space)
    if not all(isinstance(dimension, Choice) for dimension in space.values()):
        return None
    return math.prod(len(dimension.values) for dimension in space.values())


def distinct_points(space: Space, n: int, rng: np.random.Generator | int) -> list[dict[str, Any]]:
    """Draw up to ``n`` random points, no point twice.

    A finite space (choices only) is drawn without replacement, in a seeded random
    order of its grid: asking for ``n >= space_size(space)`` points gives every point
    once (fewer than ``n``). A space with an interval is drawn as by
    :func:`sample_points`, a repeated point skipped. Either way the same seed gives the
    same points and the first ``k`` of ``n`` are the points of a run with ``n = k``
    (they are the first ``n`` of :func:`iter_distinct_points`).

    Raises
    ------
    ValueError, TypeError
        As :func:`sample_points`.
    """
    checked_space(space)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"the number of points to sample must be an int >= 1, got n={n!r}")
    if rng is None:
        raise TypeError("distinct_points needs a seed or a numpy.random.Generator, got rng=None")
    return list(itertools.islice(iter_distinct_points(space, rng), int(n)))


def iter_distinct_points(space: Space, rng: np.random.Generator | int) -> Iterator[dict[str, Any]]:
    """The seeded sequence of distinct points :func:`distinct_points` takes its
    prefixes from: a finite space's grid in a random order (then it ends), or draws of
    :func:`sample_points` with repeats skipped (endless)."""
    checked_space(space)
    if rng is None:
        raise TypeError("distinct_points needs a seed or a numpy.random.Generator, got rng=None")
    rng = np.random.default_rng(rng)
    size = space_size(space)
    if size is not None:
        keys = list(space)
        radices = [len(space[key].values) for key in keys]
        for index in rng.permutation(size).tolist():
            # Mixed-radix digits of the grid index, the last key varying fastest.
            digits = []
            for radix in reversed(radices):
                index, digit = divmod(index, radix)
                digits.append(digit)
            values = [space[key].values[d] for key, d in zip(keys, reversed(digits), strict=True)]
            yield dict(zip(keys, values, strict=True))
        return
    seen = set()
    while True:
        (point,) = sample_points(space, 1, rng)
        identity = repr(sorted(point.items()))
        if identity not in seen:
            seen.add(identity)
            yield point


def point_identity(point: Mapping[str, Any]) -> str:
    """A point (key -> value or override text) as one JSON string: each value as
    :func:`npdl.overrides.point_text` writes it, keys sorted, so the key order does not matter."""
    return json.dumps({k: point_text(v) for k, v in sorted(point.items())})


def same_point(one: Mapping[str, Any], two: Mapping[str, Any]) -> bool:
    """Whether two points set the same values (:func:`point_identity`)."""
    return point_identity(one) == point_identity(two)


def inside_space(space: Space, point: Mapping[str, Any]) -> bool:
    """Whether ``point`` (key -> value or override text, every key of ``space``) lies in
    ``space``: each value one of the choice's values, or a number within the
    interval's bounds. The configured values may not."""
    for key, dimension in space.items():
        value = point[key]
        if isinstance(dimension, Choice):
            if value not in dimension.values:
                return False
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                return False
            if not dimension.low <= number <= dimension.high:
                return False
    return True


def describe_space(space: Space) -> str:
    """A one-line description of a space, for logs.

    Example: ``learning_rate: log-uniform [1e-05, 0.01]; reg: one of {0.0001, 1e-05}``
    (with ``; grid of N points`` appended when every dimension is a Choice).
    """
    checked_space(space)
    parts = [f"{key}: {dimension.describe()}" for key, dimension in space.items()]
    if all(isinstance(dimension, Choice) for dimension in space.values()):
        size = math.prod(len(dimension.values) for dimension in space.values())
        parts.append(f"grid of {size} point{'s' if size != 1 else ''}")
    return "; ".join(parts)
