"""Plot data of a search (npdl.search.report) and its PNG pictures (npdl.plots)."""

import math

import numpy as np
import pytest
from PIL import Image

from npdl import plots
from npdl.search import report
from npdl.search.leaderboard import format_overrides


def test_overrides_round_trip_through_the_leaderboard_text():
    point = {"optimizer.lr": 0.00123, "model.hidden_size": [512, 256], "model.activation": "relu"}
    assert report.parse_overrides(format_overrides(point)) == point


def test_short_names_keep_keys_apart():
    names = report.short_names(["optimizer.lr", "model.reg", "solver.reg"])
    assert names == {"optimizer.lr": "lr", "model.reg": "model.reg", "solver.reg": "solver.reg"}


def rows():
    def row(rank, lr, width, acc, epochs, status="ok"):
        overrides = {"optimizer.lr": lr, "model.hidden_size": width}
        return {
            "rank": rank,
            "overrides": overrides,
            "val_acc": acc,
            "epochs": epochs,
            "status": status,
        }

    return [
        row(1, 1e-3, [64], 0.5, 4),
        row(2, 1e-2, [32], 0.4, 2),
        row(3, 1e-3, [64], 0.3, 2),  # the same point at a smaller budget
        row(4, 1e-4, [32], None, 1, status="diverged"),
    ]


def test_trial_table_keeps_finished_points_once_at_their_largest_budget():
    table, columns = report.trial_table(rows())
    assert columns == ["hidden_size", "lr"]
    assert [(r["rank"], r["epochs"], r["lr"], r["hidden_size"]) for r in table] == [
        (1, 4, 1e-3, "[64]"),
        (2, 2, 1e-2, "[32]"),
    ]


def test_parallel_positions_use_log_scale_and_category_order():
    table = [
        {"rank": 1, "val_acc": 0.5, "lr": 1e-4, "act": "relu"},
        {"rank": 2, "val_acc": 0.4, "lr": 1e-3, "act": "tanh"},
        {"rank": 3, "val_acc": 0.3, "lr": 1e-2, "act": "relu"},
    ]
    long_rows = report.parallel_table(table, ["lr", "act"], log_columns=["lr"])
    lr = [r["position"] for r in long_rows if r["hyperparameter"] == "lr"]
    act = [r["position"] for r in long_rows if r["hyperparameter"] == "act"]
    assert lr == pytest.approx([0.0, 0.5, 1.0])  # evenly spaced on the log scale
    assert act == [0.0, 1.0, 0.0]
    linear = report.parallel_table(table, ["lr"])
    assert [r["position"] for r in linear][1] == pytest.approx((1e-3 - 1e-4) / (1e-2 - 1e-4))


def test_log_scaled_columns_come_from_the_space():
    space = {"optimizer.lr": "tag(log, interval(1e-4, 1e-2))", "model.dropout": "interval(0, 0.3)"}
    assert report.log_scaled(space) == ["lr"]


def _assert_png(path, least):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size >= least
        assert np.asarray(image.convert("L")).std() > 5  # not blank


@pytest.mark.skipif(not plots.available(), reason="needs matplotlib")
def test_pictures_are_png_images_and_reproducible(tmp_path):
    history = [
        {
            "epoch": e,
            "train_loss": 2 / e,
            "val_loss": 2.2 / e,
            "train_acc": 1 - 1 / e,
            "val_acc": 0.9 - 1 / e,
        }
        for e in range(1, 6)
    ]
    plots.learning_curves(history, tmp_path / "curves.png")
    plots.learning_curves(history, tmp_path / "again.png")
    assert (tmp_path / "curves.png").read_bytes() == (tmp_path / "again.png").read_bytes()
    plots.confusion_matrix(np.eye(3, dtype=int) * 5 + 1, ["a", "b", "c"], tmp_path / "cm.png", "t")
    table, columns = report.trial_table(rows())
    plots.hyperparameter_scatter(table, columns, tmp_path / "scatter.png", ["lr"])
    plots.parallel_coordinates(table, columns, tmp_path / "pc.png", ["lr"])
    plots.parallel_coordinates(table, columns, tmp_path / "pc2.png", ["lr"])
    assert (tmp_path / "pc.png").read_bytes() == (tmp_path / "pc2.png").read_bytes()
    plots.importance_bars({"lr": 0.7, "hidden_size": 0.3}, tmp_path / "imp.png", "title", "a note")
    for name in ("curves", "cm", "scatter", "pc", "imp"):
        _assert_png(tmp_path / f"{name}.png", (300, 200))
    plots.parallel_coordinates([], [], tmp_path / "empty.png")  # tuning off: a note
    plots.importance_bars({}, tmp_path / "none.png", "", "no importance: tuning is off")
    _assert_png(tmp_path / "empty.png", (300, 100))
    _assert_png(tmp_path / "none.png", (300, 100))
    assert not math.isnan(table[0]["val_acc"])


def test_the_epoch_bar_follows_the_solver_and_shows_its_figures(capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))
    from progress import EpochBar

    class FakeSolver:
        epoch = 0

    bar, solver = EpochBar(5), FakeSolver()
    bar.bar.disable = False  # as on a terminal
    for epoch, acc in [(3, 0.41), (4, 0.45)]:  # resumed after epoch 2
        solver.epoch = epoch
        assert bar.callback(solver, {"train_loss": 1.5, "val_loss": 1.6, "val_acc": acc}) is False
    assert (
        bar.bar.n == 4 and bar.bar.postfix == "train_loss=1.5000, val_loss=1.6000, val_acc=0.4500"
    )
    bar.close()


def test_leaderboard_csv_reads_back_as_the_rows_it_was_written_from(tmp_path):
    """One parser turns the CSV's text into values: the result columns of the types of
    their TrialResult fields, empty cells None."""
    from npdl.search.leaderboard import CSV_COLUMNS, rank_trials, write_leaderboard_csv

    def row(lr, acc, loss, epochs, status="ok", lineage="a" * 24, budget=4):
        return {
            "overrides": {"optimizer.lr": lr, "model.hidden_size": [64, 32]},
            "val_acc": acc,
            "val_loss": loss,
            "epochs": epochs,
            "seconds": 1.5,
            "status": status,
            "cache_hit": False,
            "lineage": lineage,
            "budget": budget,
        }

    ranked = rank_trials(
        [
            row(1e-3, 0.4213, 1.625, 4),
            row(1e-2, 0.5, 1.25, 2, budget=2),
            row(1.0, None, None, 0, status="failed", lineage=None, budget=None),
        ]
    )
    write_leaderboard_csv(tmp_path / "leaderboard.csv", ranked)
    read = report.read_leaderboard(tmp_path / "leaderboard.csv")
    assert read == [{column: row[column] for column in CSV_COLUMNS} for row in ranked]
    assert isinstance(read[0]["rank"], int) and isinstance(read[0]["budget"], int)
    with pytest.raises(ValueError, match="epochs='three' is not of type int"):
        report.parse_leaderboard_row({"rank": "1", "overrides": "", "epochs": "three"})


def search_table():
    """A search's trial table: lr (log) over 1e-4..3e-2, dropout (linear), an activation
    (a choice) and two budgets; rank 1 is lr=0.00258, dropout=0.000822."""
    values = [
        (1, 0.00258, 0.000822, "relu", 8, 0.4528),
        (2, 0.002, 0.0636, "tanh", 8, 0.441),
        (3, 0.0003, 0.27, "relu", 8, 0.39),
        (4, 0.0001, 0.15, "tanh", 2, 0.26),
        (5, 0.03, 0.2, "relu", 2, 0.21),
    ]
    return [
        {"rank": r, "val_acc": acc, "epochs": e, "lr": lr, "dropout": d, "activation": a}
        for r, lr, d, a, e, acc in values
    ]


@pytest.mark.skipif(not plots.available(), reason="needs matplotlib")
def test_the_parallel_plot_labels_each_axis_with_real_values_and_highlights_the_winner():
    table, columns = search_table(), ["lr", "dropout", "activation"]
    figure = plots.parallel_figure(table, columns, log_columns=["lr"])
    figure.canvas.draw()
    axes = {a.get_label(): a for a in figure.axes if a.get_label() in {*columns, "epochs"}}
    assert set(axes) == {*columns, "epochs"}  # budgets differ: an axis of epochs
    labels = {name: [t.get_text() for t in a.get_yticklabels()] for name, a in axes.items()}
    assert not {"min", "max"} & {text for texts in labels.values() for text in texts}
    for name in ("lr", "dropout"):
        values = [float(text) for text in labels[name]]  # real numbers, as written
        low, high = min(row[name] for row in table), max(row[name] for row in table)
        assert len(values) >= 2 and all(low <= v <= high for v in values), (name, labels[name])
    assert axes["lr"].get_yscale() == "log" and axes["dropout"].get_yscale() == "linear"
    assert {"0.001", "0.01"} <= set(labels["lr"])  # round values of a log axis
    assert set(labels["activation"]) == {"relu", "tanh"}
    assert labels["epochs"] == ["2", "8"]
    # The tick labels sit where the lines put those values: a tick's height on its axis
    # is the height of a line through that value.
    host = figure.axes[0]
    winner = next(line for line in host.get_lines() if line.get_label().startswith("winner"))
    others = [line for line in host.get_lines() if line is not winner]
    assert winner.get_label() == "winner (rank 1): val_acc 45.3%"
    assert winner.get_linewidth() > max(line.get_linewidth() for line in others)
    assert winner.get_color() not in {line.get_color() for line in others}
    assert "winner (rank 1)" in host.get_legend().get_texts()[0].get_text()
    for position, name in enumerate(["lr", "dropout"]):
        height = winner.get_ydata()[position]
        shown = host.transData.transform((position, height))
        value = axes[name].transData.inverted().transform(shown)[1]
        assert value == pytest.approx(table[0][name], rel=1e-6)
    # Lines coloured by the objective: the worst (the largest lr, at the top of its axis)
    # in the colour map's lowest colour, rank 2 in its share of the range of val_acc.
    viridis = plots._pyplot().get_cmap("viridis")
    worst = max(others, key=lambda line: line.get_ydata()[0])
    assert worst.get_color() == pytest.approx(viridis(0.0))
    second = next(line for line in others if list(line.get_ydata()[2:4]) == [1, 1])  # tanh, 8
    assert second.get_color() == pytest.approx(viridis((0.441 - 0.21) / (0.4528 - 0.21)))
    import matplotlib.pyplot as plt

    plt.close(figure)


@pytest.mark.skipif(not plots.available(), reason="needs matplotlib")
def test_the_importance_chart_puts_the_largest_on_top_with_its_share():
    figure = plots.importance_figure({"lr": 0.7, "dropout": 0.2, "reg": 0.1}, "t", "rough")
    figure.canvas.draw()
    (axes,) = figure.axes
    assert [t.get_text() for t in axes.get_yticklabels()] == ["reg", "dropout", "lr"]
    assert sorted(t.get_text() for t in axes.texts) == ["0.10", "0.20", "0.70"]
    assert "Note: rough" in axes.get_xlabel()


def test_tune_metrics_hold_the_importance_by_short_name_with_its_note():
    best = {
        "sampler": "bohb",
        "overrides": {"optimizer.lr": "0.001"},
        "importance": {
            "values": {"optimizer.lr": 0.9, "model.dropout": 0.1},
            "trials": 6,
            "epochs": 8,
            "method": "PED-ANOVA ...",
            "rule": "the budget ...",
            "note": "a rough guide",
        },
    }
    metrics = report.tune_metrics(best, [])
    assert metrics["importance"] == {"lr": 0.9, "dropout": 0.1}
    assert metrics["importance_trials"] == 6 and metrics["importance_epochs"] == 8
    assert metrics["importance_note"] == "a rough guide"
    assert metrics["importance_method"].startswith("PED-ANOVA")
    steady = report.tune_metrics({**best, "importance": {**best["importance"], "note": None}}, [])
    assert "importance_note" not in steady
    off = report.tune_metrics({"sampler": "disabled", "overrides": {}}, [])
    assert off["importance"] == {} and "tune.enabled=false" in off["importance_note"]
