"""The report part of npdl's sweeper: what a finished search writes into its sweep
folder and prints (``leaderboard.csv``, ``leaderboard.md``, ``best_overrides.json``,
the trial log ``trials.csv``, the rank agreement between budgets, each
hyperparameter's importance), and where Hydra's own log lines go (``sweep.log``)."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.utils import configure_log
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from npdl.config import debugging
from npdl.io import save_json
from npdl.trial import BEST_OVERRIDES, LEADERBOARD_CSV, LEADERBOARD_MD, TRIAL_LOG

log = logging.getLogger(__name__)

#: The sweep folder's log of Hydra's own lines: the launcher's, the sweeper's details.
SWEEP_LOG = "sweep.log"


def log_to_file(config: DictConfig, path: Path) -> None:
    """Send Hydra's own logging (``hydra.hydra_logging``: the launcher's ``Launching N
    jobs`` and ``#N : overrides`` lines, this sweeper's details) to ``path``, and keep
    only warnings and errors on the console. The launchers apply ``hydra_logging``
    before each batch; it is applied here too, for the lines before the first."""
    logging_config = config.hydra.hydra_logging
    handlers = OmegaConf.select(logging_config, "handlers", default=None)
    root = OmegaConf.select(logging_config, "root", default=None)
    if not handlers or root is None or "handlers" not in root:
        return  # hydra/hydra_logging=disabled, or a configuration of one's own
    formatter = next((h.get("formatter") for h in handlers.values() if "formatter" in h), None)
    with read_write(config), open_dict(config):
        for handler in handlers.values():
            if handler.get("class") == "logging.StreamHandler":
                handler["level"] = "WARNING"
        handlers["sweep_log"] = {"class": "logging.FileHandler", "filename": str(path)}
        handlers["sweep_log"]["delay"] = True
        if formatter is not None:
            handlers["sweep_log"]["formatter"] = formatter
        if "sweep_log" not in root.handlers:
            root.handlers.append("sweep_log")
    configure_log(logging_config, config.hydra.verbose)


def search_importance(rows: list[dict], space: dict, value_of, objective) -> dict:
    """Each searched key's importance over the search's trials
    (:func:`npdl.search.importance.param_importance`), JSON-ready. A choice's override
    texts are compared as the values they set (``value_of``), as the rows hold them.
    An error is a note, not a failed search (``NPDL_DEBUG=1`` raises it)."""
    import npdl.search as search
    from npdl.search.importance import Importance, param_importance

    typed = {}
    for key, dimension in space.items():
        if isinstance(dimension, search.Choice):
            values = []
            for text in dimension.values:
                value = value_of(key, text)
                values += [] if value in values else [value]
            dimension = search.Choice(tuple(values))
        typed[key] = dimension
    try:
        return param_importance(rows, typed, objective).to_json()
    except Exception as error:  # an auxiliary report: the search's results stand
        if debugging():
            raise
        log.warning("no importance: %s: %s", type(error).__name__, error)
        return Importance({}, 0, None, f"no importance: {type(error).__name__}: {error}").to_json()


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
    ``sampler`` (its name), ``proposer``, ``scheduler``, ``audit`` (or None),
    ``controller`` (the fidelity controller's decisions; None when it was off),
    ``warm_start`` and ``importance`` (:func:`search_importance`).
    """
    import npdl.search as search
    from npdl.search.console import importance_line, search_summary

    ranked = search.rank_trials(rows, objective)
    correlations, footer = rank_agreement(search, rows, objective)
    importance = about.get("importance")
    if importance:
        note = f"\n\nNote: {importance['note']}" if importance.get("note") else ""
        shares = importance_line({**importance, "note": None})
        footer += ("\n\n" if footer else "") + f"Hyperparameter {shares}.{note}"
    search.write_leaderboard_csv(sweep_dir / LEADERBOARD_CSV, ranked)
    search.write_trial_log(sweep_dir / TRIAL_LOG, rows)
    search.write_leaderboard_md(
        sweep_dir / LEADERBOARD_MD,
        ranked,
        title=f"{about['sampler']} search: {len(ranked)} trials",
        footer=footer,
    )
    hits = sum(row["cache_hit"] for row in rows)
    # A resumed trial trained only the epochs after its checkpoint.
    trained = sum(
        (row["epochs"] or 0) - (row["resumed_from"] or 0) for row in rows if not row["cache_hit"]
    )
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
            "epochs_trained": trained,
            "fidelity": correlations,
            # The fidelity controller's decisions (None: it was off).
            "controller": about.get("controller"),
            # Trials of earlier searches told to the proposer (None: warm start off).
            "warm_start": about.get("warm_start"),
            "audit": about["audit"],
            # Each searched key's share of the importance (npdl.search.importance).
            "importance": importance,
        },
    )
    facts = {"trials": len(rows), "cache_hits": hits, "importance": importance}
    facts |= {"epochs_trained": trained, "audit": about["audit"]}
    facts |= {"agreement": search.fidelity.describe(correlations) if correlations else ""}
    facts["reports"] = f"{sweep_dir / LEADERBOARD_MD} (and .csv, {BEST_OVERRIDES}, {TRIAL_LOG})"
    print(search_summary(ranked, best, objective, facts), flush=True)
