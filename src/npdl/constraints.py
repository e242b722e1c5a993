"""Declared constraints on configuration values, and the one wording of a refusal.

A config dataclass lists what its fields may be in a class-level table, as
scikit-learn's estimators do (``_parameter_constraints``)::

    constraints: ClassVar[Constraints] = {
        "dropout": Interval(0, 1, closed="left", what="a probability"),
        "sampler": OneOf(SAMPLERS),
        "patience": Nullable(Positive()),
    }

:func:`check_constraints` checks a dataclass instance against its table, in the
table's order, and raises :class:`ConfigError` saying
``{key}={value!r} is not allowed: expected {what would be right}``. Standard library
only, like the schema (:mod:`npdl.config`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Collection
from typing import Any


class ConfigError(ValueError):
    """An impossible configuration value; the message names the key."""


def refuse(key: str, value, expected: str) -> ConfigError:
    """The error for ``key=value``, saying what would be right (one wording for all)."""
    return ConfigError(f"{key}={value!r} is not allowed: expected {expected}")


def require(condition: bool, key: str, value, expected: str) -> None:
    """Raise :func:`refuse`'s error unless ``condition`` holds."""
    if not condition:
        raise refuse(key, value, expected)


class Constraint:
    """What one field's value may be, and the words for what would be right.

    ``expected`` replaces the generated words: a string, or a function of the refused
    value (for words that quote it).
    """

    def __init__(self, *, expected: str | Callable[[Any], str] | None = None):
        self._expected = expected

    def accepts(self, value) -> bool:
        """Whether ``value`` is allowed."""
        raise NotImplementedError

    def describe(self) -> str:
        """The generated words for an allowed value (``> 0``, ``one of a, b``)."""
        raise NotImplementedError

    def expected(self, value) -> str:
        """What would be right instead of ``value``, as the error message says it."""
        if callable(self._expected):
            return self._expected(value)
        return self._expected if self._expected is not None else self.describe()

    def check(self, key: str, value, owner=None) -> None:
        """Raise :class:`ConfigError` naming ``key`` unless ``value`` is allowed.

        ``owner`` is the dataclass the field belongs to (only :class:`Rule` reads it).
        """
        if not self.accepts(value):
            raise refuse(key, value, self.expected(value))


_BRACKETS = {"both": "[]", "left": "[)", "right": "(]", "neither": "()"}


class Interval(Constraint):
    """A number between ``low`` and ``high`` (None: unbounded on that side).

    ``closed`` says which bounds are allowed: ``"both"``, ``"left"``, ``"right"`` or
    ``"neither"``. ``what`` names the number in the words: ``Interval(0, 1,
    closed="left", what="a probability")`` expects "a probability in [0, 1)",
    ``Interval(2, None, closed="left", what="a reduction factor")`` "a reduction
    factor >= 2".
    """

    def __init__(self, low, high, *, closed: str = "both", what: str = "", expected=None):
        if closed not in _BRACKETS:
            raise ValueError(f"closed={closed!r}: expected one of {', '.join(_BRACKETS)}")
        if low is None and high is None:
            raise ValueError("an Interval needs at least one bound")
        super().__init__(expected=expected)
        self.low, self.high, self.closed, self.what = low, high, closed, what

    def accepts(self, value) -> bool:
        left, right = _BRACKETS[self.closed]
        if self.low is not None and not (value >= self.low if left == "[" else value > self.low):
            return False
        return self.high is None or (value <= self.high if right == "]" else value < self.high)

    def describe(self) -> str:
        left, right = _BRACKETS[self.closed]
        if self.low is not None and self.high is not None:
            return f"{self.what or 'a value'} in {left}{self.low}, {self.high}{right}"
        if self.high is None:
            bound = f"{'>=' if left == '[' else '>'} {self.low}"
        else:
            bound = f"{'<=' if right == ']' else '<'} {self.high}"
        return f"{self.what} {bound}".lstrip()


class Positive(Interval):
    """A number > 0: ``Positive()`` expects "> 0", ``Positive("a size")`` "a size > 0"."""

    def __init__(self, what: str = "", *, expected=None):
        super().__init__(0, None, closed="neither", what=what, expected=expected)


class OneOf(Constraint):
    """One of ``choices``, which may be a registry filled later (read at each check).

    ``sort`` lists the choices sorted (a dict's keys); ``ignore_case`` compares (and
    reports) the value lower-cased.
    """

    def __init__(self, choices: Collection, *, sort=False, ignore_case=False, expected=None):
        super().__init__(expected=expected)
        self.choices, self.sort, self.ignore_case = choices, sort, ignore_case

    def allowed(self) -> list:
        """The choices, in the order the words list them."""
        return sorted(self.choices) if self.sort else list(self.choices)

    def _folded(self, value):
        return value.lower() if self.ignore_case and isinstance(value, str) else value

    def accepts(self, value) -> bool:
        return self._folded(value) in self.allowed()

    def describe(self) -> str:
        return f"one of {', '.join(map(str, self.allowed()))}"

    def check(self, key: str, value, owner=None) -> None:
        super().check(key, self._folded(value), owner)


class Nullable(Constraint):
    """None (null), or a value ``inner`` accepts: expects "null or " + its words."""

    def __init__(self, inner: Constraint, *, expected=None):
        super().__init__(expected=expected)
        self.inner = inner

    def accepts(self, value) -> bool:
        return value is None or self.inner.accepts(value)

    def describe(self) -> str:
        return f"null or {self.inner.describe()}"


class Matches(Constraint):
    """A string matching the regular expression ``pattern`` in full."""

    def __init__(self, pattern: str, *, expected=None):
        super().__init__(expected=expected)
        self.pattern = pattern

    def accepts(self, value) -> bool:
        return isinstance(value, str) and re.fullmatch(self.pattern, value) is not None

    def describe(self) -> str:
        return f"a string matching {self.pattern}"


class Satisfies(Constraint):
    """A value for which ``predicate(value)`` is true; ``expected`` gives the words."""

    def __init__(self, predicate: Callable[[Any], bool], expected: str | Callable[[Any], str]):
        super().__init__(expected=expected)
        self.predicate = predicate

    def accepts(self, value) -> bool:
        return bool(self.predicate(value))


class Rule(Constraint):
    """A check of a field that reads other values: ``function(owner)`` returns None
    when they agree, else the words for what would be right (it may also raise
    :class:`ConfigError` itself, to name one element of a list). ``owner`` is the
    dataclass whose table holds the rule."""

    def __init__(self, function: Callable[[Any], str | None]):
        super().__init__()
        self.function = function

    def check(self, key: str, value, owner=None) -> None:
        expected = self.function(owner)
        if expected is not None:
            raise refuse(key, value, expected)


#: A dataclass's ``constraints``: field name -> its constraint(s), checked in order.
Constraints = dict[str, Constraint | tuple[Constraint, ...]]


def float_values(node, prefix: str = ""):
    """``(dotted key, value)`` of every float in a config dataclass, its nested
    dataclasses, dicts and lists (``data.split.train``, ``model.activation_kwargs.alpha``)."""
    if dataclasses.is_dataclass(node):
        items = ((f.name, getattr(node, f.name)) for f in dataclasses.fields(node))
    elif isinstance(node, dict):
        items = ((str(key), value) for key, value in node.items())
    elif isinstance(node, list | tuple):
        items = ((str(index), value) for index, value in enumerate(node))
    else:
        return
    for name, value in items:
        if isinstance(value, float):
            yield f"{prefix}{name}", value
        else:
            yield from float_values(value, f"{prefix}{name}.")


def check_constraints(node, prefix: str = "", table: Constraints | None = None) -> None:
    """Check the config dataclass ``node`` against ``table`` (by default its class's
    ``constraints``), in the table's order; the first refusal is raised. A key of the
    table may be dotted (``data.image_size``), reaching into nested dataclasses.

    Raises
    ------
    ConfigError
        Naming ``prefix + key``, the value and what would be right.
    """
    table = getattr(type(node), "constraints", {}) if table is None else table
    for key, constraints in table.items():
        value = functools.reduce(getattr, key.split("."), node)
        for constraint in constraints if isinstance(constraints, tuple) else (constraints,):
            constraint.check(prefix + key, value, node)
