"""A search is a proposer under a scheduler: any proposer of the registry runs under any
scheduler, through the Hydra sweeper itself with only its trials served by a function
(the same seam as benchmarks/search_replay.py)."""

import itertools
import math

import pytest

from hydra_plugins.npdl_sweepers.sweepers import NpdlSweeper
from npdl import registry
from npdl.search import Choice, Proposals, Proposer, SuccessiveHalving
from npdl.search.spaces import same_point

SPACE = {"lr": Choice(("0.1", "0.01", "0.001")), "width": Choice(("8", "16", "32", "64"))}


def accuracy(point: dict, epochs: int) -> float:
    """A made-up learning curve: width helps, lr 0.01 is best, longer is better."""
    lr, width = float(point["lr"]), int(point["width"])
    return round(0.5 - abs(math.log10(lr) + 2) / 10 + width / 1000 + epochs / 100, 6)


class FixedList(Proposer):
    """A proposer defined here, not in npdl: the grid in reverse order."""

    def __init__(self, space, seed, **kwargs):
        super().__init__(space, seed, **kwargs)
        keys = list(space)
        self.left = [
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*(space[key].values for key in keys))
        ][::-1]

    def ask(self, n):
        taken, self.left = self.left[:n], self.left[n:]
        return taken


class FunctionSweeper(NpdlSweeper):
    """npdl's sweeper with each trial's row computed by :func:`accuracy`."""

    def run_batch(self, points, extra=()):
        options = dict(item.split("=", 1) for item in extra)
        epochs = int(options["solver.epochs"])
        rows = []
        for point in points:
            acc = accuracy(point, epochs)
            rows.append(
                {
                    "overrides": dict(point),
                    "status": "ok",
                    "val_acc": acc,
                    "val_loss": 1 - acc,
                    "epochs": epochs,
                    "resumed_from": None,
                    "seconds": 0.0,
                    "cache_hit": False,
                    "lineage": None,
                    "budget": epochs,
                }
            )
        self.rows.extend(rows)
        return rows


def search(proposer, scheduler, **options):
    sweeper = FunctionSweeper(
        proposer=proposer,
        scheduler=scheduler,
        include_defaults=False,
        **{"n_trials": 9, "epochs": 9, "min_epochs": 1, "eta": 3, **options},
    )
    return sweeper, sweeper.search(SPACE)


@pytest.fixture
def fixed_list(monkeypatch):
    monkeypatch.setitem(registry.PROPOSERS, "fixed", FixedList)


@pytest.mark.usefixtures("fixed_list")
@pytest.mark.parametrize(("scheduler", "n_jobs"), [("halving", 1), ("asha", 1), ("asha", 2)])
def test_a_proposer_defined_in_a_test_runs_under_halving_and_asha_through_the_registry(
    scheduler, n_jobs
):
    sweeper, best = search("fixed", scheduler, n_jobs=n_jobs)
    first_rung = [row["overrides"] for row in sweeper.rows if row["epochs"] == 1]
    # Its points, in its order: the last nine of the grid, reversed.
    assert first_rung == FixedList(SPACE, 0).ask(9)
    at_top = [row for row in sweeper.rows if row["epochs"] == 9]
    assert at_top and best == max(at_top, key=lambda r: r["val_acc"])["overrides"]
    assert {row["epochs"] for row in sweeper.rows} == {1, 3, 9}
    second_rung = [row for row in sweeper.rows if row["epochs"] == 3]
    # Halving promotes the top third at once; ASHA whoever ranks in the top third so far.
    assert len(second_rung) == 3 if scheduler == "halving" else len(second_rung) >= 3
    assert sweeper.sampler == f"fixed+{scheduler}"


def test_tpe_under_asha_asks_for_each_new_configuration_after_the_results_so_far():
    space_keys = len(SPACE)
    tpe, _ = search("tpe", "asha", n_trials=12)
    random, _ = search("random", "asha", n_trials=12)
    started = [row["overrides"] for row in tpe.rows if row["epochs"] == 1]
    drawn = [row["overrides"] for row in random.rows if row["epochs"] == 1]
    assert len(started) == 12
    # Random draws until a budget has more results than the space has keys (BOHB's
    # rule), the same draws as the random proposer's; the model's proposals after.
    assert started[: space_keys + 2] == drawn[: space_keys + 2]
    assert started != drawn
    assert all(SPACE[k].values.count(p[k]) == 1 for p in started for k in SPACE)


def test_a_scheduler_takes_a_proposer_without_hydra():
    requests_seen = []

    def evaluate(requests):
        requests_seen.extend(requests)
        return [accuracy(point, epochs) for _, point, epochs in requests]

    scheduler = SuccessiveHalving(n_trials=12, epochs=9, min_epochs=1, eta=3)
    result = scheduler.run(Proposals(FixedList(SPACE, 0)), evaluate)
    assert [point for _, point, e in requests_seen if e == 1] == FixedList(SPACE, 0).ask(12)
    winner = result.points[result.best.point_index]
    assert same_point(winner, {"lr": "0.01", "width": "64"})
    assert result.best.epochs == 9


def test_the_configured_values_come_first_and_are_never_eliminated():
    proposer = registry.proposer_class("random")(SPACE, 0, exclude=[{"lr": "0.1", "width": "8"}])
    proposals = Proposals(proposer, configured={"lr": "0.1", "width": "8"})
    scheduler = registry.scheduler_class("halving")(n_trials=6, epochs=4, min_epochs=1, eta=2)
    result = scheduler.run(proposals, lambda rs: [accuracy(p, e) for _, p, e in rs])
    assert result.points[0] == {"lr": "0.1", "width": "8"}
    assert not any(same_point(p, result.points[0]) for p in result.points[1:])
    assert {r.epochs for r in result.records if r.point_index == 0} == {1, 2, 4}


def test_every_named_search_is_a_registered_pair_and_unknown_names_are_refused():
    for proposer, scheduler in registry.NAMED_SEARCHES.values():
        assert registry.proposer_class(proposer) and registry.scheduler_class(scheduler)
    assert registry.search_name("tpe", "hyperband") == "bohb"
    assert registry.search_pair(None, "tpe", "asha") == ("tpe", "asha")
    with pytest.raises(ValueError, match=r"proposer='cmaes' is not allowed: expected one of"):
        registry.proposer_class("cmaes")
    with pytest.raises(ValueError, match=r"sampler='pbt' is not allowed"):
        registry.search_pair("pbt", "random", "none")
    with pytest.raises(ValueError, match=r"Hyperband needs epochs"):
        registry.scheduler_class("hyperband")(n_trials=1, epochs=None)
