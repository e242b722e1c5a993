"""What a search prints (npdl.search.console) and numbers for a reader
(npdl.overrides.shown_number): 3 significant digits, one line per trial."""

import pytest

from npdl.overrides import shown_number, shown_text
from npdl.search import Objective, rank_trials
from npdl.search.console import importance_line, search_summary, trial_line

ACCURACY = Objective("val_acc")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.0025834120354216315, "0.00258"),
        (0.0008215500510444284, "0.000822"),
        (0.057599664037912335, "0.0576"),
        (1e-5, "1e-5"),
        (3e-3, "0.003"),
        (45.28, "45.3"),
        (12345.6, "1.23e4"),
        (140, "140"),  # integers in full
        (0.0, "0"),
        (float("nan"), "nan"),
    ],
)
def test_numbers_for_a_reader_have_3_significant_digits(value, shown):
    assert shown_number(value) == shown


def test_values_for_a_reader_round_numbers_only():
    assert shown_text([0.0012345, "relu", 512]) == "[0.00123,relu,512]"
    assert shown_text("1e-3") == "0.001" and shown_text("relu") == "relu"
    assert shown_text(None) == "null" and shown_text(True) == "true"


def row(status="ok", acc=0.4528, **extra):
    point = {"optimizer.lr": 0.0025834120354216315, "model.dropout": 0.0008215500510444284}
    return {
        "overrides": point,
        "status": status,
        "val_acc": acc if status == "ok" else None,
        "val_loss": 1.69,
        "epochs": 8 if status != "failed" else None,
        "seconds": 12.0,
        "cache_hit": False,
        "resumed_from": None,
        "error": None,
        **extra,
    }


def test_a_trial_line_says_what_ran_and_how_it_scored():
    line = trial_line(7, 16, row(), ACCURACY, best=0.4528)
    assert line == "trial  7/16  lr=0.00258 dropout=0.000822  8 ep  val_acc 45.3%  best 45.3%"
    cached = trial_line(12, None, row(cache_hit=True), ACCURACY, best=0.5)
    assert cached.startswith("trial  12  lr=") and cached.endswith("best 50%  (from the run store)")
    resumed = trial_line(3, 4, row(resumed_from=4), ACCURACY, best=0.5)
    assert resumed.endswith("(resumed from epoch 4)")
    by_loss = trial_line(1, 1, row(), Objective("val_loss"), best=1.69)
    assert "val_loss 1.69  best 1.69" in by_loss


def test_a_trial_that_did_not_finish_says_why_and_where_its_log_is():
    failed = row("failed", error="TypeError: Relu() takes no arguments\nmore")
    line = trial_line(2, 4, failed, ACCURACY, best=None, log="/s/1/train.log")
    assert line.endswith("FAILED: TypeError: Relu() takes no arguments  log: /s/1/train.log")
    diverged = trial_line(3, 4, row("diverged", epochs=0), ACCURACY, None, "/s/2/train.log")
    assert "diverged in its first epoch  log: /s/2/train.log" in diverged
    assert "log:" not in trial_line(1, 4, row(), ACCURACY, 0.4, "/s/0/train.log")


def test_the_summary_shows_the_winner_and_the_importance_in_3_digits():
    ranked = rank_trials([row(), row(acc=0.3)])
    importance = {
        "values": {"model.dropout": 0.1856, "optimizer.lr": 0.6511},  # as JSON: sorted keys
        "trials": 6,
        "epochs": 8,
        "note": "a rough guide",
    }
    best = {"optimizer.lr": "0.0025834120354216315", "model.dropout": "0.0008215500510444284"}
    facts = {"trials": 2, "cache_hits": 0, "epochs_trained": 16, "importance": importance}
    facts |= {"audit": None, "agreement": "", "reports": "/s/leaderboard.md"}
    text = search_summary(ranked, best, ACCURACY, facts).splitlines()
    assert "model.dropout=0.000822 optimizer.lr=0.00258" in text[2]
    assert "2 trials, 0 from the cache, 16 epochs trained" in text
    assert "importance (PED-ANOVA over 6 configurations at 8 epochs): lr 0.65, dropout 0.19" in text
    assert "  a rough guide" in text
    assert "best: model.dropout=0.000822 optimizer.lr=0.00258 (val_acc 45.3% at 8 epochs)" in text
    none = {"values": {}, "trials": 3, "epochs": 2, "note": "no importance: 3 configurations"}
    assert importance_line(none) == "importance: no importance: 3 configurations"
