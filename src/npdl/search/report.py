"""Plot data of a finished search, from its ``leaderboard.csv``.

Two tables, both written as CSV for ``dvc plots`` and drawn as PNG by
:mod:`npdl.plots`:

* one row per finished configuration: ``rank``, ``val_acc``, ``epochs`` and one column per
  searched hyperparameter (named by the key's last part: ``optimizer.lr`` -> ``lr``);
* the same in long form for a parallel-coordinates view: one row per trial and
  hyperparameter, with the value scaled to [0, 1] along its axis (log10 first for
  keys searched on a log scale, categories in order of appearance).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import plots
from ..io import save_csv
from ..trial import RESULT_FIELDS, field_from_text
from .console import short_names


def parse_overrides(text: str) -> dict[str, Any]:
    """``key=value key=value`` (as :func:`~npdl.search.leaderboard.format_overrides`
    writes it) -> ``{key: value}``; values read as JSON where they are JSON."""
    parsed: dict[str, Any] = {}
    for item in text.split():
        key, _, value = item.partition("=")
        try:
            parsed[key] = json.loads(value)
        except ValueError:
            parsed[key] = value
    return parsed


def parse_leaderboard_row(cells: Mapping[str, str]) -> dict[str, Any]:
    """One row of a ``leaderboard.csv`` (its cells' text, as ``csv.DictReader`` reads
    them) as values: ``overrides`` parsed (:func:`parse_overrides`), ``rank`` an int,
    the result columns of their :class:`~npdl.trial.TrialResult` field's type (an
    empty cell: None); other columns stay text.

    Raises
    ------
    ValueError
        If a cell is not a value of its column's type (``epochs='three'``).
    """
    row: dict[str, Any] = {}
    for column, text in cells.items():
        if column == "overrides":
            row[column] = parse_overrides(text)
        elif column == "rank":
            row[column] = int(text)
        elif column in RESULT_FIELDS:
            row[column] = field_from_text(column, text)
        else:
            row[column] = text
    return row


def read_leaderboard(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``leaderboard.csv``, best first, as values (:func:`parse_leaderboard_row`)."""
    with open(path, newline="") as handle:
        return [parse_leaderboard_row(cells) for cells in csv.DictReader(handle)]


def trial_table(rows: Sequence[Mapping[str, Any]]) -> tuple[list[dict], list[str]]:
    """One row per finished (``ok``) configuration: rank, val_acc, epochs and each
    searched value; a configuration that successive halving trained at several budgets
    is shown at its largest. Returns the rows (in rank order) and the hyperparameter
    column names (in key order)."""
    largest: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        if row["status"] != "ok" or row["val_acc"] is None:
            continue
        point = json.dumps(row["overrides"], sort_keys=True)
        if point not in largest or row["epochs"] > largest[point]["epochs"]:
            largest[point] = row
    finished = sorted(largest.values(), key=lambda row: row["rank"])
    keys = sorted({key for row in finished for key in row["overrides"]})
    names = short_names(keys)
    table = [
        {
            "rank": int(row["rank"]),
            "val_acc": row["val_acc"],
            "epochs": int(row["epochs"]),
            **{names[key]: _cell(row["overrides"].get(key)) for key in keys},
        }
        for row in finished
    ]
    return table, [names[key] for key in keys]


def parallel_table(
    table: Sequence[Mapping[str, Any]], columns: Sequence[str], log_columns: Iterable[str] = ()
) -> list[dict]:
    """Long form of :func:`trial_table` for parallel coordinates: per trial and column,
    ``position`` in [0, 1] along the column's axis (log10 for ``log_columns``;
    categories in order of first appearance; a column with one value sits at 0.5)."""
    log_columns = set(log_columns)
    positions = {column: _axis(table, column, column in log_columns) for column in columns}
    return [
        {
            "rank": row["rank"],
            "val_acc": row["val_acc"],
            "hyperparameter": column,
            "value": row[column],
            "position": positions[column](row[column]),
        }
        for row in table
        for column in columns
    ]


def log_scaled(space: Mapping[str, str]) -> list[str]:
    """Column names of the keys a search space samples on a log scale."""
    names = short_names(sorted(space))
    return [names[key] for key, text in space.items() if "log" in str(text)]


def _cell(value: Any) -> Any:
    return value if isinstance(value, int | float | str) or value is None else json.dumps(value)


def _axis(table: Sequence[Mapping[str, Any]], column: str, log: bool):
    values = [row[column] for row in table]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if not numeric:
        order = list(dict.fromkeys(str(v) for v in values))
        span = max(len(order) - 1, 1)
        return lambda v: order.index(str(v)) / span if len(order) > 1 else 0.5
    transform = (lambda v: math.log10(v)) if log and all(v > 0 for v in values) else float
    scaled = [transform(v) for v in values]
    low, high = min(scaled, default=0.0), max(scaled, default=0.0)
    if high == low:
        return lambda v: 0.5
    return lambda v: (transform(v) - low) / (high - low)


TRIALS_CSV = "tune_trials.csv"
PARALLEL_CSV = "tune_parallel.csv"


def write_search_report(
    leaderboard: str | os.PathLike | None,
    space: Mapping[str, str],
    metrics_dir: str | os.PathLike,
    plots_dir: str | os.PathLike,
    best_overrides: Mapping[str, Any] | None = None,
) -> None:
    """A search's plot data (``metrics_dir/tune_*.csv``, for ``dvc plots``) and its
    pictures (``plots_dir/tune_*.png``): accuracy against each hyperparameter, parallel
    coordinates and the importance of each hyperparameter (from ``best_overrides``,
    :func:`importance_figures`); empty ones, saying why, without a ``leaderboard``."""
    metrics_dir, plots_dir = Path(metrics_dir), Path(plots_dir)
    rows = read_leaderboard(leaderboard) if leaderboard else []
    table, columns = trial_table(rows)
    log_columns = log_scaled(space)
    long_rows = parallel_table(table, columns, log_columns)
    save_csv(metrics_dir / TRIALS_CSV, table, ["rank", "val_acc", "epochs", *columns])
    save_csv(
        metrics_dir / PARALLEL_CSV,
        long_rows,
        ["rank", "val_acc", "hyperparameter", "value", "position"],
    )
    plots.hyperparameter_scatter(
        table, columns, plots_dir / "tune_hyperparameters.png", log_columns
    )
    plots.parallel_coordinates(table, columns, plots_dir / "tune_parallel.png", log_columns)
    values, title, note = importance_figures(best_overrides or {})
    plots.importance_bars(values, plots_dir / "tune_importance.png", title, note)


def importance_figures(best_overrides: Mapping[str, Any]) -> tuple[dict, str, str | None]:
    """The importance of each hyperparameter as ``best_overrides.json`` holds it (the
    sweeper's :func:`npdl.search.importance.param_importance`): ``(short name -> share,
    largest first; a title saying what it is computed over; a note or None)``; no
    shares, and a note saying why, where the search was off or did not compute one."""
    if best_overrides.get("sampler", "disabled") == "disabled":
        return {}, "", "no importance: tuning is disabled (tune.enabled=false), no search ran"
    importance = best_overrides.get("importance")
    if importance is None:
        return {}, "", "no importance: the search's best_overrides.json holds none"
    from .importance import ranked

    names = short_names(importance["values"])
    values = {names[key]: share for key, share in ranked(importance["values"])}
    title = (
        f"Hyperparameter importance: PED-ANOVA over the {importance['trials']} "
        f"configurations at {importance['epochs']} epochs"
    )
    return values, title, importance["note"]


def tune_metrics(best_overrides: Mapping[str, Any], leaderboard_rows: Sequence[Mapping]) -> dict:
    """The search's figures for ``metrics/tune.json`` (a DVC metric): sampler, trials,
    epochs trained, the best metric, the rank agreement between consecutive budgets
    (``spearman_<a>_to_<b>``), the audit's count and each hyperparameter's importance
    (``importance``: short name -> share; ``importance_trials``, ``_epochs``,
    ``_method``, ``_rule`` and, where it is rough or absent, ``importance_note``)."""
    metric = best_overrides.get("metric", "val_acc")
    out: dict[str, Any] = {
        "sampler": best_overrides.get("sampler"),
        "trials": best_overrides.get("trials", 0),
        "epochs_trained": best_overrides.get("epochs_trained", 0),
    }
    ok = [row for row in leaderboard_rows if row.get("status") == "ok"]
    if ok:
        out[f"best_{metric}"] = float(ok[0][metric])
    for c in best_overrides.get("fidelity") or []:
        out[f"spearman_{c['from_epochs']}_to_{c['to_epochs']}"] = c["spearman"]
    if best_overrides.get("warm_start"):
        out["warm_start_trials"] = best_overrides["warm_start"]["trials"]
    if best_overrides.get("controller") is not None:
        out["controller_kept"] = sum(d["kept"] for d in best_overrides["controller"])
    audit = best_overrides.get("audit")
    if audit:
        out["audit_trained"], out["audit_beat_winner"] = audit["trained"], audit["beat_winner"]
    values, _, note = importance_figures(best_overrides)
    out["importance"] = values
    importance = best_overrides.get("importance") or {}
    for key in ("trials", "epochs", "method", "rule"):
        if key in importance:
            out[f"importance_{key}"] = importance[key]
    if note:
        out["importance_note"] = note
    return out
