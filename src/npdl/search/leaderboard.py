"""The leaderboard of a search: trials ranked best-first, as CSV, Markdown and text.

A trial row is a dict: ``overrides`` (the point's ``{dotted key: value}``) and the
fields of its :class:`~npdl.trial.TrialResult` (:func:`leaderboard_row`), of which at
least::

    overrides   dict   the point's {dotted key: value}
    val_acc     float  best validation accuracy (None/NaN if the trial did not finish)
    val_loss    float  validation loss at that epoch
    epochs      int    epochs trained
    seconds     float  wall time of the trial
    status      str    'ok', 'diverged' or 'failed'
    cache_hit   bool   whether the result came from the run store

Extra keys are kept in the ranked rows and ignored by the writers. The columns of the
tables below that hold a result are named through :func:`~npdl.trial.result_columns`:
a renamed field of the result fails here, not as an empty column.

The leaderboard files (CSV and Markdown) hold what a search found, not how long it
took: the same search on the same data and code writes them to the same bytes, rerun,
resumed or taken from the run store. Wall time and cache hits go to the trial log
(:func:`write_trial_log`) and to the terminal's table (:func:`format_table`).

Ties are broken by a fixed rule (:func:`rank_trials`): the metric, then the lower
``val_loss``, then the earlier trial (the configured values first, then the sampler's
order); never by wall time, cache state or a dict's order.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..io import atomic_write, save_csv
from ..overrides import override_text, shown_number, shown_text
from ..trial import RESULT_FIELDS, STATUSES, TrialResult, result_columns
from .objective import Objective

#: Keys a trial row needs: its point and the results the tables show.
REQUIRED_KEYS = (
    "overrides",
    *result_columns("val_acc", "val_loss", "epochs", "seconds", "status", "cache_hit"),
)
#: Columns of the terminal's table, in order: the results, wall time and cache hits.
LEADERBOARD_COLUMNS = ("rank", *REQUIRED_KEYS)
#: Columns of the leaderboard files (Markdown): what the search found, nothing that
#: changes from one run of it to the next.
RESULT_COLUMNS = ("rank", "overrides", *result_columns("val_acc", "val_loss", "epochs", "status"))
#: Columns of the CSV leaderboard: the results and the run store entry of each trial
#: (``lineage`` and epoch ``budget``; empty where unknown).
CSV_COLUMNS = (*RESULT_COLUMNS, *result_columns("lineage", "budget"))
#: Result fields the trial log leaves out: the best epoch and the threads say nothing
#: of how the search went, and a failure's error is in the run store's ``failures/``.
TRIAL_LOG_OMITS = result_columns("best_epoch", "threads", "val_images", "error")
#: Columns of the trial log (``trials.csv`` in a sweep's folder): every trial in the
#: order it ran, with every result field of how it ran (in the result's order) but
#: :data:`TRIAL_LOG_OMITS`.
TRIAL_LOG_COLUMNS = (
    "trial",
    "overrides",
    *(name for name in RESULT_FIELDS if name not in TRIAL_LOG_OMITS),
)
_NUMERIC_COLUMNS = frozenset({"rank", "val_acc", "val_loss", "epochs", "seconds"})


# Strings that read back as themselves in a Hydra override; others are quoted.


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


ACCURACY = Objective("val_acc")


def leaderboard_row(overrides: Mapping[str, Any], result: TrialResult) -> dict:
    """The row of one trial: ``{"overrides": dict(overrides), **result.to_json()}``
    (``error`` only where the trial failed)."""
    return {"overrides": dict(overrides), **result.to_json()}


def rank_trials(rows: Sequence[Mapping[str, Any]], objective: Objective = ACCURACY) -> list[dict]:
    """Sort trials best-first and number them.

    Parameters
    ----------
    rows : sequence of dict
        Trial rows (see the module docstring).
    objective : Objective
        The metric to rank ``ok`` rows by, and its direction.

    Returns
    -------
    list of dict
        Copies of the rows, each with ``rank`` (1-based, unique) as its first key.
        ``ok`` rows come first, by ``metric`` (best first), then by ``val_loss``
        (lowest first); then ``diverged`` rows, then ``failed`` rows. Remaining ties
        keep the input order.

    Raises
    ------
    ValueError
        If a row lacks a required key, has an unknown status, or is ``ok`` without a
        finite ``metric``; the message shows the row's overrides.
    """
    metric = objective.metric
    keyed = []
    for position, row in enumerate(rows):
        missing = [key for key in (*REQUIRED_KEYS, metric) if key not in row]
        if missing:
            raise ValueError(
                f"trial row {position} lacks {missing}; a row needs {list(REQUIRED_KEYS)} "
                f"(row: {dict(row)!r})"
            )
        status = row["status"]
        if status not in STATUSES:
            raise ValueError(
                f"trial {format_overrides(row['overrides'])!r} has status {status!r}; "
                f"allowed: {', '.join(STATUSES)}"
            )
        if status == "ok":
            score = objective.score(row)
            if score is None:
                raise ValueError(
                    f"trial {format_overrides(row['overrides'])!r} has status 'ok' but "
                    f"{metric}={row[metric]!r}; an ok trial needs a finite {metric}"
                )
            primary = -score
            # A missing loss only matters as a tie-breaker: rank it after any real one.
            tie_breaker = row["val_loss"] if _is_number(row["val_loss"]) else math.inf
        else:
            primary, tie_breaker = 0.0, 0.0
        keyed.append(((STATUSES.index(status), primary, tie_breaker, position), row))
    keyed.sort(key=lambda pair: pair[0])
    return [{"rank": rank, **row} for rank, (_, row) in enumerate(keyed, start=1)]


def format_overrides(overrides: Mapping[str, Any]) -> str:
    """``key=value key=value`` with keys sorted, e.g. ``lr=0.001 model.hidden_size=[512,256]``.

    Values are written as JSON without spaces (``[512,256]``, ``null``, ``true``); strings
    bare when they read back as strings (``relu``), else double-quoted. An empty dict
    gives ``""``.
    """
    return " ".join(f"{key}={override_text(overrides[key])}" for key in sorted(overrides))


def shown_overrides(overrides: Mapping[str, Any]) -> str:
    """``key=value key=value`` for a reader: as :func:`format_overrides`, numbers to 3
    significant digits (``optimizer.lr=0.00258``; :func:`npdl.overrides.shown_text`)."""
    return " ".join(f"{key}={shown_text(overrides[key])}" for key in sorted(overrides))


def write_leaderboard_csv(path: str | os.PathLike, ranked_rows: Sequence[Mapping]) -> None:
    """Write ranked rows (from :func:`rank_trials`) as CSV, atomically.

    Columns are :data:`CSV_COLUMNS`; ``overrides`` as :func:`format_overrides`
    text, numbers at full precision, None as an empty cell.
    """
    rows = [
        {
            **{column: row.get(column) for column in CSV_COLUMNS},
            "overrides": format_overrides(row["overrides"]),
        }
        for row in ranked_rows
    ]
    save_csv(path, rows, list(CSV_COLUMNS))


def write_trial_log(path: str | os.PathLike, rows: Sequence[Mapping]) -> None:
    """Write every trial in the order it ran (``trial`` from 1) with its wall time,
    cache hit and resumed epoch as CSV, atomically (:data:`TRIAL_LOG_COLUMNS`)."""
    log = [
        {
            **{column: row.get(column) for column in TRIAL_LOG_COLUMNS},
            "trial": number,
            "overrides": format_overrides(row["overrides"]),
        }
        for number, row in enumerate(rows, start=1)
    ]
    save_csv(path, log, list(TRIAL_LOG_COLUMNS))


def _display_cells(row: Mapping) -> dict[str, str]:
    def number(value) -> str:
        return shown_number(value) if _is_number(value) else "-"

    return {
        "rank": str(row["rank"]),
        "overrides": shown_overrides(row["overrides"]) or "(defaults)",
        "val_acc": number(row["val_acc"]),
        "val_loss": number(row["val_loss"]),
        "epochs": str(row["epochs"]) if _is_number(row["epochs"]) else "-",
        "seconds": number(row["seconds"]),
        "status": str(row["status"]),
        "cache_hit": "yes" if row["cache_hit"] else "no",
    }


def _top_rows(ranked_rows: Sequence[Mapping], top: int | None) -> list[Mapping]:
    if top is None:
        return list(ranked_rows)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be an int >= 1 (or None for all rows), got top={top!r}")
    return list(ranked_rows[:top])


def _shown_note(shown: int, total: int) -> str:
    return f"top {shown} of {total} trials" if shown < total else f"{total} trials"


def format_table(ranked_rows: Sequence[Mapping], top: int | None = 10) -> str:
    """A plain-text table of the ``top`` best rows, columns aligned, for a terminal.

    Numbers are rounded for reading, to 3 significant digits (values in the overrides
    too: ``optimizer.lr=0.00258``); the CSV keeps full precision. ``top=None`` shows
    every row.
    """
    shown = _top_rows(ranked_rows, top)
    if not shown:
        return "(no trials)"
    cells = [_display_cells(row) for row in shown]
    widths = {
        column: max(len(column), *(len(cell[column]) for cell in cells))
        for column in LEADERBOARD_COLUMNS
    }

    def line(values: Mapping[str, str]) -> str:
        return "  ".join(
            values[column].rjust(widths[column])
            if column in _NUMERIC_COLUMNS
            else values[column].ljust(widths[column])
            for column in LEADERBOARD_COLUMNS
        ).rstrip()

    header = line({column: column for column in LEADERBOARD_COLUMNS})
    rule = "  ".join("-" * widths[column] for column in LEADERBOARD_COLUMNS)
    lines = [header, rule, *(line(cell) for cell in cells)]
    if len(shown) < len(ranked_rows):
        lines.append(f"({_shown_note(len(shown), len(ranked_rows))})")
    return "\n".join(lines)


def write_leaderboard_md(
    path: str | os.PathLike,
    ranked_rows: Sequence[Mapping],
    top: int | None = 10,
    title: str = "Hyperparameter search leaderboard",
    footer: str = "",
) -> None:
    """Write the ``top`` best rows as a Markdown (GitHub) table, atomically.

    The file is ``# title``, a line saying how many trials are shown, the table and
    ``footer`` (Markdown) if given; overrides are shown as code, numbers rounded as in
    :func:`format_table`.
    """
    shown = _top_rows(ranked_rows, top)
    lines = [f"# {title}", ""]
    if not shown:
        lines.append("No trials.")
    else:
        lines += [
            f"Showing {_shown_note(len(shown), len(ranked_rows))}, best first.",
            "",
            "| " + " | ".join(RESULT_COLUMNS) + " |",
            "|"
            + "|".join("---:" if column in _NUMERIC_COLUMNS else "---" for column in RESULT_COLUMNS)
            + "|",
        ]
        for row in shown:
            cells = _display_cells(row)
            # A pipe would end the cell, even inside a code span, unless escaped.
            if row["overrides"]:
                cells["overrides"] = "`" + cells["overrides"].replace("|", "\\|") + "`"
            lines.append("| " + " | ".join(cells[column] for column in RESULT_COLUMNS) + " |")
    if footer:
        lines += ["", footer]
    with atomic_write(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
