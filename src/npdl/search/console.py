"""What a search prints: a header, one line per finished trial, and a summary.

The detail of each trial (its configuration, its epochs, the launcher's lines) goes to
the sweep's log files; the console holds what a reader follows a search by, as Optuna
logs one line per trial (``trial 7/16  lr=0.00258 ...  8 ep  val_acc 45.3%  best
45.3%``). Numbers are shown to 3 significant digits (:func:`npdl.overrides.shown_number`);
the leaderboard's CSV and ``best_overrides.json`` keep every digit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..overrides import shown_number, shown_text
from .leaderboard import format_table, shown_overrides
from .objective import Objective


def short_names(keys: Iterable[str]) -> dict[str, str]:
    """Name per key: its last dotted part, or the whole key where two keys share a
    last part (``optimizer.lr`` -> ``lr``; ``model.reg`` and ``solver.reg`` stay)."""
    keys = list(keys)
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {
        key: (short if last.count(short) == 1 else key)
        for key, short in zip(keys, last, strict=True)
    }


def shown_metric(metric: str, value: float | None) -> str:
    """``val_acc 45.3%`` or ``val_loss 1.69`` (:func:`shown_score`)."""
    return f"{metric} {shown_score(metric, value)}"


def shown_score(metric: str, value: float | None) -> str:
    """An accuracy in percent (``45.3%``), a loss as it is (``1.69``); ``-`` for none."""
    if value is None:
        return "-"
    return f"{shown_number(100 * value)}%" if metric.endswith("acc") else shown_number(value)


def trial_line(
    number: int,
    planned: int | None,
    row: Mapping[str, Any],
    objective: Objective,
    best: float | None,
    log: str | None = None,
) -> str:
    """One finished trial: its number (of ``planned``, where known), its values (short
    key names), epochs, score and the best so far; a trial that did not finish says so,
    with the path of its ``log``.

    ``row``: a leaderboard row (``overrides``, ``status``, ``epochs``, the metric,
    ``cache_hit``, ``resumed_from``, ``error``).
    """
    width = len(str(planned)) if planned else 3
    head = f"trial {number:>{width}}" + (f"/{planned}" if planned else "")
    names = short_names(row["overrides"])
    values = " ".join(
        f"{names[key]}={shown_text(value)}" for key, value in row["overrides"].items()
    )
    parts = [head, values or "(configured values)"]
    status, epochs = row["status"], row.get("epochs")
    if status == "failed":
        error = str(row.get("error") or "").splitlines()
        parts.append(f"FAILED: {error[0][:160] if error else 'no error recorded'}")
    elif status == "diverged":
        parts.append(f"diverged after {epochs} ep" if epochs else "diverged in its first epoch")
    else:
        parts += [f"{epochs} ep", shown_metric(objective.metric, objective.value(row))]
        parts.append(f"best {shown_score(objective.metric, best)}")
    if row.get("cache_hit"):
        parts.append("(from the run store)")
    elif row.get("resumed_from"):
        parts.append(f"(resumed from epoch {row['resumed_from']})")
    if status != "ok" and log:
        parts.append(f"log: {log}")
    return "  ".join(parts)


def search_header(
    sampler: str, keys: Sequence[str], planned: int | None, budgets: str, logs: str
) -> str:
    """Two lines: what is searched (``bohb search over optimizer.lr, model.dropout: 2 to
    8 epochs``, with the trials planned where known) and where the detail goes."""
    count = f"{planned} trials, " if planned else ""
    return f"{sampler} search over {', '.join(keys)}: {count}{budgets}\nlogs: {logs}"


def search_summary(
    ranked: Sequence[Mapping[str, Any]],
    best: Mapping[str, str] | None,
    objective: Objective,
    facts: Mapping[str, Any],
) -> str:
    """The end of a search on the console: the top of the leaderboard, then one line
    each for the trials, the rank agreement, the importance, the audit and the winner.

    ``facts``: ``trials``, ``cache_hits``, ``epochs_trained``, ``agreement`` (text of
    :func:`npdl.search.fidelity.describe`, or empty), ``importance``
    (:meth:`~npdl.search.importance.Importance.to_json`, or None), ``audit`` (the
    sweeper's, or None) and ``reports`` (where the files are).
    """
    lines = [
        format_table(ranked, top=10),
        f"{facts['trials']} trials, {facts['cache_hits']} from the cache, "
        f"{facts['epochs_trained']} epochs trained",
    ]
    if facts.get("agreement"):
        pairs = "; ".join(facts["agreement"].splitlines())
        lines.append(f"rank agreement between budgets: {pairs}")
    importance = facts.get("importance")
    if importance:
        lines.append(importance_line(importance))
    audit = facts.get("audit")
    if audit:
        lines.append(
            f"audit: {audit['beat_winner']} of {audit['trained']} eliminated configurations "
            "beat the winner at the top budget"
        )
    winner = next((row for row in ranked if row["status"] == "ok"), None)
    if best and winner is not None:
        lines.append(
            f"best: {shown_overrides(best)} "
            f"({shown_metric(objective.metric, objective.value(winner))} "
            f"at {shown_epochs(winner['epochs'])})"
        )
    else:
        lines.append("best: none (no trial finished)")
    lines.append(f"reports: {facts['reports']}")
    return "\n".join(lines)


def importance_line(importance: Mapping[str, Any]) -> str:
    """``importance (PED-ANOVA over 6 configurations at 8 epochs): lr 0.65, ...`` and,
    on a second line, its note; ``importance: <why there is none>`` without shares."""
    if not importance["values"]:
        return f"importance: {importance.get('note') or 'none'}"
    from .importance import ranked

    names = short_names(importance["values"])
    shares = ", ".join(f"{names[k]} {v:.2f}" for k, v in ranked(importance["values"]))
    where = f"over {importance['trials']} configurations at {shown_epochs(importance['epochs'])}"
    line = f"importance (PED-ANOVA {where}): {shares}"
    return line + (f"\n  {importance['note']}" if importance.get("note") else "")


def shown_epochs(count: int | None) -> str:
    """``1 epoch``, ``8 epochs``."""
    return f"{count} epoch" + ("" if count == 1 else "s")
