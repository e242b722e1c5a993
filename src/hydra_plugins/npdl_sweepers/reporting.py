"""The report part of npdl's sweeper: what a finished search writes into its sweep
folder and prints (``leaderboard.csv``, ``leaderboard.md``, ``best_overrides.json``,
the trial log ``trials.csv``, the rank agreement between budgets)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from npdl.io import save_json
from npdl.trial import BEST_OVERRIDES, LEADERBOARD_CSV, LEADERBOARD_MD, TRIAL_LOG

log = logging.getLogger(__name__)


def rank_agreement(search, rows: list[dict], objective) -> tuple[list[dict], str]:
    """Spearman correlations between consecutive budgets, logged (with a warning where
    a short budget predicts the next poorly), and the leaderboard's footer."""
    fidelity = search.fidelity
    correlations = fidelity.rung_correlations(rows, objective)
    if not correlations:
        return correlations, ""
    text = fidelity.describe(correlations)
    log.info("rank agreement between budgets:\n%s", text)
    for c in correlations:
        if c["spearman"] is not None and c["spearman"] < fidelity.WARN_BELOW:
            log.warning(
                "the %d-epoch ranking predicts the %d-epoch one poorly (Spearman %.2f "
                "< %.1f): the first rungs may eliminate the best trials; consider a "
                "larger min_epochs",
                c["from_epochs"],
                c["to_epochs"],
                c["spearman"],
                fidelity.WARN_BELOW,
            )
    footer = "Rank agreement between budgets (Spearman):\n\n" + "\n".join(
        f"- {line}" for line in text.splitlines()
    )
    return correlations, footer


def write_reports(
    sweep_dir: Path, rows: list[dict], objective, best: dict | None, about: dict
) -> None:
    """Write the search's reports into ``sweep_dir`` and print the top of its leaderboard.

    ``about`` holds what ``best_overrides.json`` says of the search besides its results:
    ``sampler`` (its name), ``proposer``, ``scheduler``, ``audit`` (or None) and
    ``controller`` (the fidelity controller's decisions; None when it was off).
    """
    import npdl.search as search

    ranked = search.rank_trials(rows, objective)
    correlations, footer = rank_agreement(search, rows, objective)
    search.write_leaderboard_csv(sweep_dir / LEADERBOARD_CSV, ranked)
    search.write_trial_log(sweep_dir / TRIAL_LOG, rows)
    search.write_leaderboard_md(
        sweep_dir / LEADERBOARD_MD,
        ranked,
        title=f"{about['sampler']} search: {len(ranked)} trials",
        footer=footer,
    )
    hits = sum(row["cache_hit"] for row in rows)
    save_json(
        sweep_dir / BEST_OVERRIDES,
        {
            "sampler": about["sampler"],
            "proposer": about["proposer"],
            "scheduler": about["scheduler"],
            "metric": objective.metric,
            "overrides": best,
            "trials": len(rows),
            "cache_hits": hits,
            # A resumed trial trained only the epochs after its checkpoint.
            "epochs_trained": sum(
                (row["epochs"] or 0) - (row["resumed_from"] or 0)
                for row in rows
                if not row["cache_hit"]
            ),
            "fidelity": correlations,
            # The fidelity controller's decisions (None: it was off).
            "controller": about.get("controller"),
            # Trials of earlier searches told to the proposer (None: warm start off).
            "warm_start": about.get("warm_start"),
            "audit": about["audit"],
        },
    )
    print(search.format_table(ranked, top=10), flush=True)
    print(f"{len(rows)} trials, {hits} from the cache; best: {json.dumps(best)}", flush=True)
