"""PNG pictures of a run: learning curves, confusion matrix, and a search's
hyperparameters (scatter per hyperparameter, parallel coordinates, importance).

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
from .overrides import shown_number

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
    figure, axes = _pyplot().subplots(figsize=(6.4, 1.8))
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
    table: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    path: str | os.PathLike,
    log_columns: Sequence[str] = (),
    metric: str = "val_acc",
) -> None:
    """Write :func:`parallel_figure` as a PNG (a note when there is no trial)."""
    if not table or not columns:
        _empty(path, "no finished trials (tuning off?)")
        return
    _save(parallel_figure(table, columns, log_columns, metric), path)


def parallel_figure(
    table: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    log_columns: Sequence[str] = (),
    metric: str = "val_acc",
):
    """One line per configuration across an axis per hyperparameter, each axis in its
    own real values (log-scaled for ``log_columns``, categories by name), then the
    ``epochs`` where they differ and ``metric``; lines coloured by ``metric``, the
    winner (the lowest ``rank``) drawn wide in red with its values written beside the
    axes.

    ``table``: rows with ``rank``, ``epochs``, ``metric`` and each column, as
    :func:`npdl.search.report.trial_table` gives them. Returns the matplotlib Figure;
    each axis is an Axes labelled (``Axes.get_label()``) with its column's name.
    """
    plt = _pyplot()
    epochs = {row["epochs"] for row in table}
    names = [*columns, *(["epochs"] if len(epochs) > 1 else []), metric]
    scales = {n: _AxisScale([row[n] for row in table], n in log_columns) for n in names}
    figure, host = plt.subplots(figsize=(2.1 * max(len(names), 2) + 1.8, 4.8))
    host.set_xlim(-0.15, len(names) - 0.5)
    host.set_ylim(-_PAD, 1 + _PAD)
    host.set_xticks(range(len(names)), [scales[n].title(n) for n in names])
    host.set_yticks([])
    for spine in host.spines.values():
        spine.set_visible(False)
    for position, name in enumerate(names):
        scales[name].draw(host.twinx(), position, name)
    colormap = plt.get_cmap("viridis")
    scores = [float(row[metric]) for row in table]
    low, span = min(scores), (max(scores) - min(scores)) or 1.0
    winner = min(table, key=lambda row: row["rank"])
    for row in sorted(table, key=lambda row: -row["rank"]):  # the best drawn last
        if row is not winner:
            heights = [scales[n].position(row[n]) for n in names]
            color = colormap((float(row[metric]) - low) / span)
            host.plot(range(len(names)), heights, color=color, linewidth=1.2, alpha=0.85)
    _draw_winner(host, winner, [scales[n].position(winner[n]) for n in names], names, metric)
    mappable = plt.cm.ScalarMappable(cmap=colormap, norm=plt.Normalize(low, low + span))
    figure.colorbar(mappable, ax=host, pad=0.02, fraction=0.03, label=f"{metric} (line colour)")
    host.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), frameon=False)
    budgets = ", each at its largest budget" if len(epochs) > 1 else ""
    host.set_title(f"{len(table)} configurations{budgets}", pad=12)
    return figure


#: Room above and below the lines, in the axes' [0, 1] positions.
_PAD = 0.06


def _draw_winner(host, winner: Mapping[str, Any], heights, names, metric: str) -> None:
    """The winner's line, wide and red, in the legend, with its value beside each axis."""
    from .search.console import shown_metric

    label = f"winner (rank {winner['rank']}): {shown_metric(metric, winner[metric])}"
    host.plot(range(len(names)), heights, color="crimson", linewidth=3.2, zorder=5, label=label)
    for position, name in enumerate(names):
        host.annotate(
            _shown(winner[name]),
            (position, heights[position]),
            xytext=(6, -3 if heights[position] > 0.5 else 3),
            textcoords="offset points",
            va="top" if heights[position] > 0.5 else "bottom",
            color="crimson",
            fontsize=8,
            zorder=6,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
        )


class _AxisScale:
    """One axis of :func:`parallel_figure`: where a value sits in [0, 1] and the ticks
    that label it with real values."""

    def __init__(self, values: Sequence[Any], log: bool):
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        self.categories = None if numeric else list(dict.fromkeys(str(v) for v in values))
        if self.categories is not None:
            return
        self.values = sorted(set(values))
        self.log = log and all(v > 0 for v in values)
        low, high = min(values), max(values)
        if low == high:  # one value: an axis around it
            low, high = (low / 2, high * 2) if self.log else (low - 0.5, high + 0.5)
        self.low, self.high = float(low), float(high)

    def _t(self, value: float) -> float:
        return float(np.log10(value)) if self.log else float(value)

    def title(self, name: str) -> str:
        """The axis's name, saying where it is log-scaled."""
        return f"{name}\n(log scale)" if self.categories is None and self.log else name

    def position(self, value: Any) -> float:
        if self.categories is not None:
            span = max(len(self.categories) - 1, 1)
            return self.categories.index(str(value)) / span if len(self.categories) > 1 else 0.5
        low, high = self._t(self.low), self._t(self.high)
        return (self._t(value) - low) / (high - low)

    def limits(self) -> tuple[float, float]:
        """The values at the host's ``-_PAD`` and ``1 + _PAD``."""
        low, high = self._t(self.low), self._t(self.high)
        ends = (low - _PAD * (high - low), high + _PAD * (high - low))
        return tuple(10.0**end if self.log else end for end in ends)

    def ticks(self) -> list[float]:
        """The values themselves where there are a few integers (epoch budgets); else
        round values inside the axis (1, 2, 5 per decade on a log axis), at least two:
        the ends where no round value falls inside."""
        from matplotlib.ticker import MaxNLocator

        if len(self.values) <= 5 and all(isinstance(v, int) for v in self.values):
            return [float(v) for v in self.values]
        low, high = self.low, self.high
        if self.log:
            decades = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
            every = [m * 10.0**d for d in decades for m in (1, 2, 5)]
            if len([v for v in every if low <= v <= high]) > 6:
                every = [10.0**d for d in decades]
        else:
            every = list(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high))
        slack = (high - low) * 1e-9
        inside = [float(v) for v in every if low - slack <= v <= high + slack]
        return inside if len(inside) >= 2 else [low, high]

    def draw(self, axes, x: float, name: str) -> None:
        """Make ``axes`` (a twin of the plot's) this axis: its spine at ``x``, its ticks."""
        axes.set_label(name)
        for side in ("top", "bottom", "right"):
            axes.spines[side].set_visible(False)
        axes.spines["left"].set_position(("data", x))
        axes.yaxis.set_ticks_position("left")
        if self.categories is not None:
            axes.set_ylim(-_PAD, 1 + _PAD)
            axes.set_yticks([self.position(c) for c in self.categories], self.categories)
            return
        if self.log:
            axes.set_yscale("log")
        axes.set_ylim(*self.limits())
        ticks = self.ticks()
        axes.set_yticks(ticks, [shown_number(v) for v in ticks])
        axes.yaxis.set_minor_locator(_pyplot().NullLocator())


def _shown(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return shown_number(value)
    return str(value)


def importance_bars(
    importance: Mapping[str, float], path: str | os.PathLike, title: str, note: str | None
) -> None:
    """Write :func:`importance_figure` as a PNG (the ``note`` alone when there is no
    importance)."""
    if not importance:
        _empty(path, _wrapped(note or "no importance", 60))
        return
    _save(importance_figure(importance, title, note), path)


def importance_figure(importance: Mapping[str, float], title: str, note: str | None = None):
    """Horizontal bars of each hyperparameter's importance, the largest on top, with its
    share written beside it and ``note`` (why it is rough) under the chart. Returns the
    matplotlib Figure."""
    plt = _pyplot()
    names = list(importance)[::-1]
    shares = [importance[name] for name in names]
    figure, axes = plt.subplots(figsize=(6.4, 1.8 + 0.45 * len(names) + (0.5 if note else 0)))
    bars = axes.barh(names, shares, color="steelblue")
    axes.bar_label(bars, [f"{share:.2f}" for share in shares], padding=3)
    axes.set_xlim(0, max(1.0, max(shares) * 1.15))
    label = "share of the importance (the shares sum to 1)"
    axes.set_xlabel(label + (f"\n\n{_wrapped(f'Note: {note}', 80)}" if note else ""), fontsize=9)
    axes.set_title(_wrapped(title, 70), fontsize=10)
    axes.grid(axis="x", alpha=0.3)
    return figure


def _wrapped(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))
