"""PNG pictures of a run: learning curves, confusion matrix, and a search's
hyperparameters (scatter per hyperparameter, parallel coordinates).

Drawn with matplotlib (part of the ``[pipeline]`` extra, headless "Agg" backend) from
the same rows the stages write as CSV for ``dvc plots``. The stages always draw them
(they need the ``[pipeline]`` extra anyway); :func:`available` tells whether
matplotlib is installed, for code that runs without it. Files are written atomically
and without a timestamp, so the same data gives the same bytes.
"""

from __future__ import annotations

import importlib.util
import os
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .diagnosis import Diagnosis
from .io import atomic_write

#: The colour of each verdict on the learning curves (none of the curves' own).
VERDICT_COLOURS = {
    "overfitting": "tab:purple",
    "underfitting": "tab:brown",
    "diverged": "tab:red",
    "ok": "tab:green",
}


def available() -> bool:
    """Whether matplotlib is installed (``pip install 'npdl[pipeline]'``)."""
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str | os.PathLike) -> None:
    figure.tight_layout()
    with atomic_write(path) as handle:
        figure.savefig(handle, format="png", dpi=110, metadata={"Software": None})
    _pyplot().close(figure)


def _empty(path: str | os.PathLike, message: str) -> None:
    figure, axes = _pyplot().subplots(figsize=(4, 1.5))
    axes.axis("off")
    axes.text(0.5, 0.5, message, ha="center", va="center")
    _save(figure, path)


def learning_curves(
    history: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    diagnosis: Diagnosis | None = None,
) -> None:
    """Loss and accuracy per epoch, train and val.

    ``history``: rows with ``epoch``, ``train_loss``, ``val_loss``, ``train_acc``,
    ``val_acc`` (as in ``metrics/train_history.csv``). ``diagnosis``
    (:func:`npdl.diagnosis.diagnose`), where given, is the title (verdict and evidence)
    and, with a ``since_epoch``, a vertical line at that epoch (where the val loss was
    lowest before rising, or where the loss diverged).
    """
    plt = _pyplot()
    epochs = [int(row["epoch"]) for row in history]
    height = 3.8 if diagnosis is None else 4.4
    figure, (loss, accuracy) = plt.subplots(1, 2, figsize=(10, height))
    for axes, metric, title in ((loss, "loss", "Loss"), (accuracy, "acc", "Accuracy")):
        for split, style in (("train", "-"), ("val", "--")):
            values = [_value(row[f"{split}_{metric}"]) for row in history]
            if not all(np.isnan(values)):  # a refit has no val curve
                axes.plot(epochs, values, style, label=split)
        axes.set_xlabel("epoch")
        axes.xaxis.get_major_locator().set_params(integer=True)  # no epoch 1.25
        axes.set_title(title)
        axes.grid(alpha=0.3)
        if diagnosis is not None and diagnosis.since_epoch is not None:
            axes.axvline(
                diagnosis.since_epoch,
                color=VERDICT_COLOURS[diagnosis.verdict],
                linestyle=":",
                label=f"{diagnosis.verdict} from epoch {diagnosis.since_epoch}",
            )
        axes.legend()
    if diagnosis is not None:
        title = textwrap.fill(f"{diagnosis.verdict}: {diagnosis.evidence}", width=120)
        figure.suptitle(title, color=VERDICT_COLOURS[diagnosis.verdict], fontsize=10)
    _save(figure, path)


def _value(cell) -> float:
    """A history cell as a float: NaN for a missing value (None or empty)."""
    return float("nan") if cell is None or cell == "" else float(cell)


def confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: str | os.PathLike, title: str
) -> None:
    """Counts ``matrix[actual, predicted]`` (C, C) as a heat map, rows normalised."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=np.float64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure, axes = plt.subplots(figsize=(6.4, 5.6))
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(title)
    for i in ticks:
        for j in ticks:
            color = "white" if shares[i, j] > 0.5 else "black"
            axes.text(
                j, i, f"{shares[i, j]:.2f}", ha="center", va="center", fontsize=7, color=color
            )
    figure.colorbar(image, ax=axes, fraction=0.046)
    _save(figure, path)


def hyperparameter_scatter(
    table: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    path: str | os.PathLike,
    log_columns: Sequence[str] = (),
) -> None:
    """Validation accuracy against each hyperparameter, one panel per column."""
    plt = _pyplot()
    if not table or not columns:
        _empty(path, "no finished trials (tuning off?)")
        return
    count = max(len(columns), 1)
    figure, axes_row = plt.subplots(1, count, figsize=(3.6 * count, 3.4), squeeze=False)
    accuracy = [row["val_acc"] for row in table]
    for axes, column in zip(axes_row[0], columns, strict=False):
        values = [row[column] for row in table]
        if all(isinstance(v, int | float) for v in values):
            axes.scatter(values, accuracy, c=accuracy, cmap="viridis", edgecolors="k")
            if column in log_columns:
                axes.set_xscale("log")
                axes.xaxis.set_minor_formatter(_pyplot().NullFormatter())
        else:
            labels = list(dict.fromkeys(str(v) for v in values))
            axes.scatter([labels.index(str(v)) for v in values], accuracy, edgecolors="k")
            axes.set_xticks(range(len(labels)), labels, rotation=30)
        axes.set_xlabel(column)
        axes.set_ylabel("val accuracy")
        axes.grid(alpha=0.3)
    _save(figure, path)


def parallel_coordinates(
    long_rows: Sequence[Mapping[str, Any]], columns: Sequence[str], path: str | os.PathLike
) -> None:
    """One line per trial across the hyperparameter axes (positions in [0, 1] from
    :func:`npdl.search.report.parallel_table`), coloured by validation accuracy."""
    plt = _pyplot()
    if not long_rows or not columns:
        _empty(path, "no finished trials (tuning off?)")
        return
    trials: dict[int, dict[str, float]] = {}
    accuracy: dict[int, float] = {}
    for row in long_rows:
        trials.setdefault(row["rank"], {})[row["hyperparameter"]] = row["position"]
        accuracy[row["rank"]] = row["val_acc"]
    figure, axes = plt.subplots(figsize=(2.2 * max(len(columns), 2) + 1.5, 4))
    colormap = plt.get_cmap("viridis")
    low, high = min(accuracy.values(), default=0), max(accuracy.values(), default=1)
    span = (high - low) or 1.0
    for rank in sorted(trials, reverse=True):  # the best drawn last, on top
        points = [trials[rank][column] for column in columns]
        axes.plot(range(len(columns)), points, color=colormap((accuracy[rank] - low) / span))
    axes.set_xticks(range(len(columns)), columns)
    axes.set_yticks([0, 1], ["min", "max"])
    axes.set_title("trials (colour: val accuracy, yellow = best)")
    axes.grid(axis="x", alpha=0.5)
    _save(figure, path)
