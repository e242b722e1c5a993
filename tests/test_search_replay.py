"""The search replay harness (benchmarks/search_replay.py) on tables written here: the
default search is the tune stage's, a table need not be a product of its columns, and
a malformed table is refused naming the file and line."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from npdl.tune_config import TuneConfig
from search_replay import OURS, Table, regret_at, replay, single_search

R = 9


def curve(final: float, speed: float) -> list[float]:
    """A learning curve rising to ``final`` at a rate ``speed`` (short runs may mislead)."""
    return [round(0.1 + (final - 0.1) * (1 - math.exp(-speed * e)), 4) for e in range(1, R + 1)]


def write_table(path: Path, points: list[dict]) -> Path:
    keys = [k for k in points[0] if k not in ("final", "speed")]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=[*keys, "epoch", "val_acc", "val_loss", "seconds"]
        )
        writer.writeheader()
        for point in points:
            for epoch, acc in enumerate(curve(point["final"], point["speed"]), start=1):
                writer.writerow(
                    {
                        **{k: point[k] for k in keys},
                        "epoch": epoch,
                        "val_acc": acc,
                        "val_loss": 1.0,
                        "seconds": 1.0,
                    }
                )
    return path


def product_points() -> list[dict]:
    points = []
    for i, lr in enumerate(["1e-4", "1e-3", "1e-2"]):
        for j, dropout in enumerate(["0.0", "0.5"]):
            for k, width in enumerate(["[64]", "[128]"]):
                # Slow starters end best: the ranking after 1 epoch is reversed.
                final = 0.3 + 0.05 * i + 0.04 * j + 0.02 * k
                points.append(
                    {
                        "optimizer.lr": lr,
                        "model.dropout": dropout,
                        "model.hidden_size": width,
                        "final": final,
                        "speed": 1.5 / (1 + 2 * i + j),
                    }
                )
    return points


def test_the_default_search_is_the_tune_stages_and_finds_the_best_point(tmp_path):
    table = Table(write_table(tmp_path / "table.csv", product_points()))
    tune = TuneConfig()
    (proposer, scheduler), options = OURS["default"]
    assert (proposer, scheduler) == (tune.proposer, tune.scheduler)
    assert options.get("eta", tune.eta) == tune.eta
    traces = [replay("default", table, seed, 30 * R) for seed in range(2)]
    assert all(regret_at(trace, table.best, 30 * R) == pytest.approx(0.0) for trace in traces)
    # Seeded and repeatable.
    assert replay("default", table, 0, 30 * R) == traces[0]


def test_a_column_ranged_per_value_of_another_is_searched_by_its_rank(tmp_path):
    points = product_points()
    # Learning rates per dropout value: other values for dropout 0.5.
    for point in points:
        if point["model.dropout"] == "0.5":
            point["optimizer.lr"] = {"1e-4": "3e-4", "1e-3": "3e-3", "1e-2": "3e-2"}[
                point["optimizer.lr"]
            ]
    table = Table(write_table(tmp_path / "ranged.csv", points))
    assert list(table.ranked) == ["optimizer.lr"]
    assert table.space["optimizer.lr"].values == ("rank1", "rank2", "rank3")
    assert table.key(
        {"optimizer.lr": "rank3", "model.dropout": "0.5", "model.hidden_size": "[64]"}
    ) == ("3e-2", "0.5", "[64]")
    search = single_search("random", table, seed=0)
    assert {row["status"] for row in search.rows} == {"ok"} and len(search.rows) == 12
    for name in ("default", "optuna tpe+hyperband"):
        assert regret_at(replay(name, table, 0, 30 * R), table.best, 30 * R) == pytest.approx(0.0)


def test_a_point_missing_from_the_table_fails_at_no_cost(tmp_path):
    points = product_points()[1:]  # not a product, and not ranked: a hole
    table = Table(write_table(tmp_path / "holes.csv", points))
    assert table.ranked == {} and len(table.acc) == 11
    search = single_search("grid+none", table, seed=0)  # every point of the product
    failed = [row for row in search.rows if row["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["seconds"] == 0.0
    assert search.spent == 11 * R  # the hole cost nothing
    assert regret_at(
        replay("optuna random", table, 0, 30 * R), table.best, 30 * R
    ) == pytest.approx(0.0)


def test_a_malformed_table_is_refused_naming_the_file_and_line(tmp_path):
    path = write_table(tmp_path / "bad.csv", product_points())
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(",1.0,1.0", ",one,1.0", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bad\.csv, line 4: could not convert"):
        Table(path)
    (tmp_path / "empty.csv").write_text("lr,accuracy\n1e-3,0.5\n")
    with pytest.raises(ValueError, match=r"empty\.csv: a search table needs .*epoch and val_acc"):
        Table(tmp_path / "empty.csv")
