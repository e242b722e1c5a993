"""Searches replayed on the tabular benchmark (``results/search_table.csv``).

Ours are the Hydra sweeper itself (``hydra_plugins.npdl_sweepers``): the same
proposers, schedulers, promotions and ranking the ``tune`` stage runs, with only
``run_batch`` served from the table instead of a launcher. The table stands in for
the run store too: a trial already trained to ``b`` epochs costs nothing at ``b``, a
longer request resumes from the lineage's checkpoint (its last epoch) and pays only
the new epochs, a shorter one starts afresh, exactly as ``npdl.run.training`` does.

Optuna's are its own ask/tell loop: a report per epoch, ``should_prune`` after each,
every epoch a trial runs counted (a pruned trial's too; a repeated configuration is
trained again, as Optuna does).

Both report the same number per epoch: the best val accuracy so far, which is what our
trainer returns for a budget (it keeps the best epoch's weights). The recommendation
of a search at a budget is the best val accuracy among its trials trained to the full
``R`` epochs within that budget; regret is the table's best at ``R`` minus that.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna

from hydra_plugins.npdl_sweepers.sweepers import NpdlSweeper
from npdl.registry import NAMED_SEARCHES, is_multi_fidelity, search_name
from npdl.search import Choice
from npdl.tune_config import TuneConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Table:
    """Per-epoch val accuracy and loss of every point of a finite space.

    ``acc[key]`` and ``loss[key]`` are float arrays of shape (R,), epoch 1 first; a key
    is the tuple of the point's override texts in the order of :attr:`keys`.

    The space the searches get is the product of every column's values. A table need
    not hold the whole product:

    - a column whose values are ranged per value of another column (say, learning
      rates per optimizer: four for Adam, four others for SGD) is searched by its rank
      within that column's value (``lr=rank1`` .. ``rank4``), when that makes the
      table a product (:attr:`ranked` names such columns);
    - any other point missing from the table is a trial that fails at once, costing
      no epochs (:meth:`holds`), as an invalid configuration would.
    """

    def __init__(self, path: Path):
        path = Path(path)
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        fixed = {"epoch", "val_acc", "val_loss", "seconds"}
        if not rows or not {"epoch", "val_acc"} <= set(rows[0]) or not set(rows[0]) - fixed:
            raise ValueError(
                f"{path}: a search table needs a header with the columns epoch and val_acc "
                "(val_loss and seconds optional) and one per searched key, and a row per "
                "point and epoch"
            )
        self.keys = [column for column in rows[0] if column not in fixed]
        curves: dict[tuple, dict[int, tuple[float, float, float]]] = {}
        for line, row in enumerate(rows, start=2):
            key = tuple(row[k] for k in self.keys)
            try:
                curves.setdefault(key, {})[int(row["epoch"])] = (
                    _accuracy(row["val_acc"]),
                    float(row.get("val_loss") or "nan"),
                    float(row.get("seconds") or "nan"),
                )
            except ValueError as error:
                raise ValueError(f"{path}, line {line}: {error}") from None
        #: R: the longest curve; a shorter one (a run that diverged and stopped) is at
        #: chance after its last epoch, as the recorder writes it.
        self.max_epochs = max(len(curve) for curve in curves.values())
        self.acc, self.loss, self.seconds = {}, {}, {}
        for key, curve in curves.items():
            if sorted(curve) != list(range(1, len(curve) + 1)):
                point = dict(zip(self.keys, key, strict=True))
                raise ValueError(
                    f"{path}: point {point} has epochs {sorted(curve)}; expected 1, 2, ... "
                    "without a gap"
                )
            padded = [
                curve.get(e, (0.1, math.nan, math.nan)) for e in range(1, self.max_epochs + 1)
            ]
            self.acc[key] = np.array([acc for acc, _, _ in padded])
            self.loss[key] = np.array([loss for _, loss, _ in padded])
            seconds = [s for _, _, s in padded if math.isfinite(s)]
            self.seconds[key] = float(np.mean(seconds)) if seconds else 0.0
        #: column -> (the column it is ranked within, {(that value, rank label): value}).
        self.ranked: dict[str, tuple[str, dict[tuple[str, str], str]]] = {}
        self._rank_columns(list(curves))
        values = {k: [] for k in self.keys}
        for key in map(self._searched, curves):
            for name, value in zip(self.keys, key, strict=True):
                if value not in values[name]:
                    values[name].append(value)
        #: The space as the sweepers get it from Hydra: choices of override texts.
        self.space = {name: Choice(tuple(v)) for name, v in values.items()}
        #: Images the val scores were measured on (the recorder's val split).
        self.val_images = 5000

    def _rank_columns(self, points: list[tuple]) -> None:
        """Search a column by its rank within another column's value where that turns
        the table into a product (see the class docstring)."""
        for column in self.keys:
            for within in self.keys:
                if within == column or within in self.ranked or column in self.ranked:
                    continue
                aliases = _ranks(points, self.keys.index(column), self.keys.index(within))
                if aliases is None:
                    continue
                self.ranked[column] = (within, aliases)
                if _is_product([self._searched(p) for p in points]):
                    break
                del self.ranked[column]

    def _searched(self, key: tuple) -> tuple:
        """A table key as the searches see it (ranked columns by their rank)."""
        point = dict(zip(self.keys, key, strict=True))
        for column, (within, aliases) in self.ranked.items():
            label = next(
                rank for (w, rank), v in aliases.items() if (w, v) == (point[within], point[column])
            )
            point[column] = label
        return tuple(point[k] for k in self.keys)

    def key(self, point: dict) -> tuple:
        """The table key of a searched point (ranks turned back into values)."""
        values = {k: str(point[k]) for k in self.keys}
        for column, (within, aliases) in self.ranked.items():
            values[column] = aliases.get((values[within], values[column]), values[column])
        return tuple(values[k] for k in self.keys)

    def holds(self, key: tuple) -> bool:
        """Whether the table recorded this point (a missing one fails at no cost)."""
        return key in self.acc

    def result(self, key: tuple, epochs: int) -> tuple[float, float]:
        """(val_acc, val_loss) of the best epoch within the first ``epochs``: what a
        run trained to that budget reports (ties: the earlier epoch)."""
        best = int(np.argmax(self.acc[key][:epochs]))
        return float(self.acc[key][best]), float(self.loss[key][best])

    @property
    def best(self) -> float:
        """The best val accuracy any point reaches in ``R`` epochs."""
        return max(self.result(key, self.max_epochs)[0] for key in self.acc)

    def grid_epochs(self) -> int:
        return len(self.acc) * self.max_epochs


def _accuracy(text: str) -> float:
    """A recorded val accuracy; empty or not finite (a diverged epoch): chance, 0.1."""
    value = float(text) if text.strip() else math.nan
    return value if math.isfinite(value) else 0.1


def _sort_key(text: str):
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _ranks(points: list[tuple], column: int, within: int) -> dict | None:
    """{(value of ``within``, rank label): value of ``column``} when every value of
    ``within`` has the same number of ``column`` values and not all the same ones;
    None otherwise."""
    per: dict[str, set[str]] = {}
    for point in points:
        per.setdefault(point[within], set()).add(point[column])
    sizes = {len(values) for values in per.values()}
    if len(per) < 2 or len(sizes) != 1 or len({frozenset(v) for v in per.values()}) == 1:
        return None
    return {
        (value_of_within, f"rank{rank}"): value
        for value_of_within, values in per.items()
        for rank, value in enumerate(sorted(values, key=_sort_key), start=1)
    }


def _is_product(points: list[tuple]) -> bool:
    columns = [set(values) for values in zip(*points, strict=True)]
    return len(set(points)) == math.prod(len(values) for values in columns)


class StoreCost:
    """Epochs a request costs under the run store's rules (see the module docstring)."""

    def __init__(self):
        self.results: set[tuple[tuple, int]] = set()
        self.checkpoint: dict[tuple, int] = {}

    def request(self, key: tuple, epochs: int) -> tuple[int, int | None]:
        """(epochs trained, resumed_from) for ``key`` trained to ``epochs``."""
        if (key, epochs) in self.results:
            return 0, None
        start = self.checkpoint.get(key, 0)
        if start > epochs:
            start = 0
        self.checkpoint[key] = epochs
        self.results.add((key, epochs))
        return epochs - start, start or None


class BudgetSpent(Exception):
    """The replay's epoch budget is used up."""


class Replayed:
    """Mixin: a sweeper whose ``run_batch`` is served by a :class:`Table`."""

    def __init__(self, table: Table, budget: int, **kwargs):
        super().__init__(include_defaults=False, **kwargs)
        self.table, self.budget = table, budget
        self.store = StoreCost()
        self.spent = 0
        #: (epochs spent so far, val acc) of every trial that reached R epochs.
        self.trace: list[tuple[int, float]] = []

    def run_batch(self, points: list[dict], extra: list[str] = ()) -> list[dict]:
        options = dict(item.split("=", 1) for item in extra)
        epochs = int(options.get(getattr(self, "epochs_key", ""), self.table.max_epochs))
        rows = []
        for point in points:
            if self.spent >= self.budget:
                raise BudgetSpent
            row = {"overrides": dict(point), "epochs": epochs}
            row |= self.trained(self.table.key(point), epochs)
            row["val_images"] = self.table.val_images
            self.rows.append(row)
            rows.append(row)
        return rows

    def trained(self, key: tuple, epochs: int) -> dict:
        """A row's result fields for ``key`` trained to ``epochs`` (a point the table
        lacks fails at once, at no cost)."""
        if not self.table.holds(key):
            return {
                "status": "failed",
                "val_acc": None,
                "val_loss": None,
                "resumed_from": None,
                "seconds": 0.0,
                "cache_hit": False,
            }
        cost, resumed_from = self.store.request(key, epochs)
        self.spent += cost
        acc, loss = self.table.result(key, epochs)
        if epochs == self.table.max_epochs:
            self.trace.append((self.spent, acc))
        return {
            "status": "ok",
            "val_acc": acc,
            "val_loss": loss,
            "resumed_from": resumed_from,
            "seconds": self.table.seconds[key] * cost,
            "cache_hit": cost == 0,
        }


class ReplayedSweeper(Replayed, NpdlSweeper):
    """npdl's sweeper served by a :class:`Table`."""


#: Our searches: (proposer, scheduler) and their options (the sweeper's defaults where
#: not given). Any pair of npdl.registry runs; these are the named ones.
OURS: dict[str, tuple[tuple[str, str], dict]] = {
    "random": (NAMED_SEARCHES["random"], {"n_trials": 10_000}),
    "halving": (NAMED_SEARCHES["halving"], {"n_trials": 27, "min_epochs": 1, "eta": 3}),
    "asha": (NAMED_SEARCHES["asha"], {"n_trials": 27, "min_epochs": 1, "eta": 3}),
    "hyperband": (NAMED_SEARCHES["hyperband"], {"min_epochs": 1, "eta": 3}),
    "tpe": (NAMED_SEARCHES["tpe"], {"n_trials": 10_000}),
    "bohb": (NAMED_SEARCHES["bohb"], {"min_epochs": 1, "eta": 3}),
}


def default_search() -> tuple[tuple[str, str], dict]:
    """The tune stage's default search (:class:`~npdl.tune_config.TuneConfig`) as the
    replay runs it: its proposer, scheduler, ``eta`` and fidelity controller, from one
    epoch to the table's R (the table's budgets stand in for the stage's ``min_epochs``
    and ``epochs``), and the named search's trial count where it has one.

    A table holds curves on one schedule, so ``rung_schedule=own`` is not replayed.
    """
    tune = TuneConfig()
    pair = (tune.proposer, tune.scheduler)
    named = OURS.get(search_name(*pair), (pair, {}))[1]
    options = dict(named)
    if is_multi_fidelity(tune.scheduler):
        options.update(
            min_epochs=1,
            eta=tune.eta,
            fidelity_control=tune.fidelity_control,
            tie_sd=tune.tie_sd,
            min_agreement=tune.min_agreement,
        )
    return pair, options


#: ``default``: the tune stage's default search, whichever pair that is.
OURS["default"] = default_search()


def make_sweeper(name: str, table: Table, seed: int, budget: int, options=None) -> Replayed:
    """Our search ``name`` on the table (a key of :data:`OURS`, or any
    ``proposer+scheduler`` of :mod:`npdl.registry`): its options of :data:`OURS`, then
    ``options``; a search with one budget asks for at most the whole space."""
    if name in OURS:
        (proposer, scheduler), defaults = OURS[name]
    else:
        (proposer, scheduler), defaults = name.split("+"), {"min_epochs": 1, "eta": 3}
    options = {**defaults, **(options or {})}
    if is_multi_fidelity(scheduler):
        options.setdefault("epochs", table.max_epochs)
    else:
        options["n_trials"] = min(options.get("n_trials", len(table.acc)), len(table.acc))
    return ReplayedSweeper(
        table, budget, proposer=proposer, scheduler=scheduler, seed=seed, **options
    )


def single_search(name: str, table: Table, seed: int, options=None) -> Replayed:
    """One search, as ``train.py -m hydra/sweeper=npdl_<name>`` runs it; the winner
    (override texts) in ``.winner``, epochs trained in ``.spent``."""
    sweeper = make_sweeper(name, table, seed, budget=2**62, options=options)
    sweeper.winner = sweeper.search(table.space)
    return sweeper


def replay_ours(name: str, table: Table, seed: int, budget: int) -> list[tuple[int, float]]:
    """Run our ``name`` search until ``budget`` epochs are spent: one sweeper, its
    search repeated with new seeds (Hyperband's outer loop; a finished random or TPE
    search has tried the whole space) over one store, so repeats cost nothing."""
    sweeper = make_sweeper(name, table, seed, budget)
    for iteration in range(10_000):
        sweeper.seed = seed * 10_000 + iteration
        before = sweeper.spent
        try:
            sweeper.search(table.space)
        except BudgetSpent:
            break
        if sweeper.spent == before:
            break  # everything it proposes is trained already
    return sweeper.trace


def _optuna_pruner(name: str, max_epochs: int):
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max_epochs, reduction_factor=3
        )
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


OPTUNA: dict[str, tuple[Callable[[int], optuna.samplers.BaseSampler], str]] = {
    "optuna random": (lambda seed: optuna.samplers.RandomSampler(seed=seed), "nop"),
    "optuna tpe+hyperband": (lambda seed: optuna.samplers.TPESampler(seed=seed), "hyperband"),
    "optuna tpe+halving": (lambda seed: optuna.samplers.TPESampler(seed=seed), "halving"),
}


def replay_optuna(name: str, table: Table, seed: int, budget: int) -> list[tuple[int, float]]:
    """Optuna's ask/tell loop over the table until ``budget`` epochs are spent."""
    make_sampler, pruner = OPTUNA[name]
    study = optuna.create_study(
        # HyperbandPruner puts trials into brackets by a hash of the study's name: a
        # fixed name makes the replay repeatable.
        study_name=f"{name} seed {seed}",
        direction="maximize",
        sampler=make_sampler(seed),
        pruner=_optuna_pruner(pruner, table.max_epochs),
    )
    distributions = {
        key: optuna.distributions.CategoricalDistribution(list(choice.values))
        for key, choice in table.space.items()
    }
    spent, trace, missing = 0, [], 0
    while spent < budget and missing < 10_000:
        trial = study.ask(distributions)
        key = table.key(trial.params)
        if not table.holds(key):  # a point the table lacks fails at once, at no cost
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            missing += 1
            continue
        for epoch in range(1, table.max_epochs + 1):
            value = table.result(key, epoch)[0]
            trial.report(value, epoch)
            spent += 1
            if epoch < table.max_epochs and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, value)
            trace.append((spent, value))
    return trace


def replay(name: str, table: Table, seed: int, budget: int) -> list[tuple[int, float]]:
    """(epochs spent, val acc) of each trial of search ``name`` that reached R epochs."""
    if name in OPTUNA:
        return replay_optuna(name, table, seed, budget)
    return replay_ours(name, table, seed, budget)


def regret_at(trace: list[tuple[int, float]], best: float, budget: int) -> float:
    """Table best minus the best trial trained to R within ``budget`` epochs (nan if
    none finished yet)."""
    found = [acc for spent, acc in trace if spent <= budget]
    return best - max(found) if found else math.nan
