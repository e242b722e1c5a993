"""Which hyperparameters mattered: PED-ANOVA importance over a search's finished trials.

Optuna (>= 5) is used as a library, as :mod:`.tpe` uses it: an in-memory study is built
from the trial rows (``create_trial`` with the distributions of the searched space:
log-uniform where the space is log-scaled, categorical for choices) and
``optuna.importance.get_param_importances`` rates each key. Nothing is stored.

**The method: PED-ANOVA** (Watanabe et al., IJCAI 2023; Optuna 5's default evaluator),
with ``target_quantile`` :data:`TARGET_QUANTILE`: for each key, how far the values of
the best quarter of the configurations lie from the values the search tried (a Pearson
divergence of two Parzen densities, normalised to shares that sum to 1). It answers
"which settings did the good configurations have in common", needs no extra package
(fANOVA needs scikit-learn and fits a random forest, a poor model of 6-30 points) and
has no randomness: the same trials give the same numbers. It rates each key on its own
(one-dimensional densities), so the trials it needs do not grow with the number of keys.

**Which trials.** A multi-fidelity search trains configurations at several budgets, and
scores at different budgets are not comparable (an 8-epoch accuracy beats any 2-epoch
one). The importance is computed over the configurations at one budget: the budget that
the most configurations reached, the larger one on a tie. Most trials make the estimate
steadiest, and the lowest rung of successive halving is the one where no selection has
yet narrowed the values (a later rung holds only survivors). ``diverged`` trials count,
as worse than any finished one (a learning rate that diverges says that it matters);
``failed`` ones are not results. Only configurations inside the searched space count:
the configured values, a trial of every search, may lie outside it, and a lone value
far from all others would weigh in PED-ANOVA's densities as much as a real difference.

**When it is rough.** Optuna advises at least 5 trials in the target quantile
(:data:`STABLE_TOP`): with fewer, the ranking can change with one more trial, and a
``note`` says so. Below 2 in the top quarter (fewer than 5 configurations) a density of
"the best" is one point: no importance is given.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..overrides import point_text
from .objective import Objective
from .spaces import Choice, Interval, Space, inside_space

#: The share of configurations PED-ANOVA calls "the best": the top quarter.
TARGET_QUANTILE = 0.25
#: Configurations in the top quantile for a stable ranking (Optuna's advice).
STABLE_TOP = 5
#: Configurations in the top quantile below which no importance is given.
LEAST_TOP = 2
METHOD = (
    f"PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator, target_quantile="
    f"{TARGET_QUANTILE}): how far the best quarter's values lie from the values tried"
)
RULE = (
    "the configurations at the budget the most of them reached (the larger on a tie); "
    "scores at different budgets are not comparable"
)


@dataclass(frozen=True)
class Importance:
    """What :func:`param_importance` found.

    Attributes
    ----------
    values : dict of str -> float
        Each searched key's share of the importance (they sum to 1), largest first,
        ties in key order; empty when none could be computed (see ``note``). (JSON
        files keep keys sorted: readers order by the shares, :func:`ranked`.)
    trials : int
        Configurations the importance is computed over.
    epochs : int or None
        Their budget (None: no trial to compute over).
    note : str or None
        Why the numbers are rough, or absent; None when they are neither.
    """

    values: dict[str, float]
    trials: int
    epochs: int | None
    note: str | None
    method: str = field(default=METHOD)
    rule: str = field(default=RULE)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``best_overrides.json``'s ``importance``); shares to 4
        decimals, more than the estimate carries."""
        return {
            "values": {key: round(value, 4) for key, value in self.values.items()},
            "trials": self.trials,
            "epochs": self.epochs,
            "method": self.method,
            "rule": self.rule,
            "note": self.note,
        }


def ranked(values: Mapping[str, float]) -> list[tuple[str, float]]:
    """``(key, share)`` largest first, ties in key order: the order to show them in."""
    return sorted(values.items(), key=lambda item: (-item[1], item[0]))


def comparable_trials(
    rows: Sequence[Mapping[str, Any]], objective: Objective
) -> tuple[int | None, list[tuple[dict, float]]]:
    """The budget the importance is computed at (:data:`RULE`) and its configurations
    as ``(point, score)`` (score: higher is better; a ``diverged`` trial below every
    finished one), each point once (its first row).

    ``rows``: trial rows with ``overrides``, ``status``, ``budget`` (else ``epochs``)
    and the objective's metric, as the leaderboard holds them.
    """
    by_budget: dict[int, dict[str, tuple[dict, float | None]]] = {}
    for row in rows:
        budget = row.get("budget") if row.get("budget") is not None else row.get("epochs")
        if row["status"] == "failed" or budget is None:
            continue
        score = objective.score(row) if row["status"] == "ok" else None
        if row["status"] == "ok" and score is None:
            continue
        point = dict(row["overrides"])
        identity = repr(sorted((key, point_text(value)) for key, value in point.items()))
        by_budget.setdefault(int(budget), {}).setdefault(identity, (point, score))
    if not by_budget:
        return None, []
    budget = max(by_budget, key=lambda b: (len(by_budget[b]), b))
    trials = list(by_budget[budget].values())
    finished = [score for _, score in trials if score is not None]
    worst = min(finished) - 1.0 if finished else 0.0
    return budget, [(point, worst if score is None else score) for point, score in trials]


def param_importance(
    rows: Sequence[Mapping[str, Any]], space: Space, objective: Objective
) -> Importance:
    """Each searched key's PED-ANOVA importance over the comparable trials of ``rows``.

    Parameters
    ----------
    rows : sequence of dict
        Trial rows (:func:`comparable_trials`); their ``overrides`` hold the values
        (numbers for an :class:`~.spaces.Interval`, a choice's value for a
        :class:`~.spaces.Choice`).
    space : Space
        The searched space: keys and distributions. A :class:`~.spaces.Choice`'s
        values are compared as override text (:func:`npdl.overrides.point_text`).
    objective : Objective

    Returns
    -------
    Importance
    """
    epochs, trials = comparable_trials(rows, objective)
    trials = [(point, score) for point, score in trials if _inside(space, point)]
    keys = list(space)
    top = math.ceil(TARGET_QUANTILE * len(trials))
    where = f"{len(trials)} configurations at {epochs} epochs" if trials else "no trial"
    where = where.replace("at 1 epochs", "at 1 epoch")
    if top < LEAST_TOP:
        note = (
            f"no importance: {where}; the best quarter needs {LEAST_TOP} or more (at least "
            f"{math.ceil((LEAST_TOP - 1) / TARGET_QUANTILE) + 1} configurations at one budget)"
        )
        return Importance({}, len(trials), epochs, note)
    if len({score for _, score in trials}) == 1:
        note = f"no importance: every one of the {where} scored the same"
        return Importance({}, len(trials), epochs, note)
    values = _ped_anova(trials, space)
    note = None
    if top < STABLE_TOP:
        note = (
            f"a rough guide: the best quarter of the {where} is {top} configurations, and "
            f"PED-ANOVA needs about {STABLE_TOP} there for a stable ranking (about "
            f"{math.ceil((STABLE_TOP - 1) / TARGET_QUANTILE) + 1} configurations at one budget)"
        )
    elif len(keys) == 1:
        note = "one key searched: its share is 1 whatever it did"
    return Importance(values, len(trials), epochs, note)


def _ped_anova(trials: list[tuple[dict, float]], space: Space) -> dict[str, float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    values = [{key: _param(space[key], point[key]) for key in space} for point, _ in trials]
    distributions = {key: _distribution(space[key]) for key in space}
    study = optuna.create_study(direction="maximize")
    for params, (_, score) in zip(values, trials, strict=True):
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=distributions, value=score)
        )
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=TARGET_QUANTILE)
    with warnings.catch_warnings():  # small-sample warnings: the note says it
        warnings.simplefilter("ignore")
        shares = optuna.importance.get_param_importances(
            study, evaluator=evaluator, params=list(space)
        )
    return dict(ranked(shares))


def _inside(space: Space, point: Mapping[str, Any]) -> bool:
    """Whether ``point`` has a value of every key, inside the space (the configured
    values may lie outside it: one value far from all the others would weigh as much as
    a real difference in PED-ANOVA's densities)."""
    if any(key not in point for key in space):
        return False
    for key, dimension in space.items():
        value = point[key]
        if isinstance(dimension, Interval) and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            return False
    return inside_space(space, point)


def _param(dimension, value) -> Any:
    if isinstance(dimension, Choice):
        return point_text(value)
    return int(value) if dimension.integer else float(value)


def _distribution(dimension):
    """The Optuna distribution of a dimension: log-scaled where it is, categorical over
    a choice's values (as override text)."""
    import optuna

    if isinstance(dimension, Choice):
        texts = [point_text(value) for value in dimension.values]
        return optuna.distributions.CategoricalDistribution(texts)
    if dimension.integer:
        low, high = int(dimension.low), int(dimension.high)
        return optuna.distributions.IntDistribution(low, high, log=dimension.log)
    low, high = float(dimension.low), float(dimension.high)
    return optuna.distributions.FloatDistribution(low, high, log=dimension.log)
