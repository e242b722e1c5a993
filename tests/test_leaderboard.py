import csv

import pytest

from npdl.search import (
    LEADERBOARD_COLUMNS,
    format_overrides,
    format_table,
    leaderboard_row,
    rank_trials,
    write_leaderboard_csv,
    write_leaderboard_md,
    write_trial_log,
)
from npdl.search.leaderboard import REQUIRED_KEYS, TRIAL_LOG_COLUMNS
from npdl.search.objective import Objective
from npdl.trial import TrialResult


def trial(overrides, val_acc, val_loss, status="ok", epochs=5, seconds=1.5, cache_hit=False):
    return {
        "overrides": overrides,
        "val_acc": val_acc,
        "val_loss": val_loss,
        "epochs": epochs,
        "seconds": seconds,
        "status": status,
        "cache_hit": cache_hit,
    }


def sample_rows():
    return [
        trial({"lr": 0.1}, None, None, status="failed", epochs=0, seconds=0.2),
        trial({"lr": 0.01}, 0.40, 1.30),
        trial({"lr": 1.0}, float("nan"), float("nan"), status="diverged", epochs=2),
        trial({"lr": 0.001, "model.hidden_size": [512, 256]}, 0.55, 1.10, cache_hit=True),
        trial({"lr": 0.003}, 0.55, 1.05),  # same accuracy, lower loss: ranks higher
        trial({"lr": 0.0001}, 0.30, 1.60, epochs=3),
    ]


def test_ok_rows_by_accuracy_then_loss_failed_and_diverged_last():
    ranked = rank_trials(sample_rows())
    assert [row["overrides"]["lr"] for row in ranked] == [0.003, 0.001, 0.01, 0.0001, 1.0, 0.1]
    assert [row["rank"] for row in ranked] == [1, 2, 3, 4, 5, 6]
    assert [row["status"] for row in ranked[-2:]] == ["diverged", "failed"]
    assert next(iter(ranked[0])) == "rank"


def test_ranking_by_a_loss_minimises_it():
    ranked = rank_trials(sample_rows(), Objective("val_loss"))
    assert [row["overrides"]["lr"] for row in ranked[:4]] == [0.003, 0.001, 0.01, 0.0001]


def test_exact_ties_keep_input_order_and_input_is_not_modified():
    rows = [trial({"lr": 1}, 0.5, 1.0), trial({"lr": 2}, 0.5, 1.0)]
    ranked = rank_trials(rows)
    assert [row["overrides"]["lr"] for row in ranked] == [1, 2]
    assert "rank" not in rows[0]


def test_failed_rows_after_ok_rows_even_if_they_come_first():
    rows = [trial({"a": i}, None, None, status="failed") for i in range(3)]
    rows.append(trial({"a": 9}, 0.01, 9.0))
    ranked = rank_trials(rows)
    assert ranked[0]["overrides"] == {"a": 9}
    assert ranked[0]["rank"] == 1
    assert [row["overrides"]["a"] for row in ranked[1:]] == [0, 1, 2]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"overrides": {}, "val_acc": 0.5}, r"lacks \['val_loss'"),
        (trial({"lr": 1}, 0.5, 1.0, status="crashed"), r"lr=1.*status 'crashed'.*ok, diverged"),
        (trial({"lr": 1}, None, 1.0), r"lr=1.*val_acc=None"),
        (trial({"lr": 1}, float("nan"), 1.0), r"val_acc=nan"),
    ],
)
def test_bad_rows_are_reported(row, message):
    with pytest.raises(ValueError, match=message):
        rank_trials([row])


def test_format_overrides_is_sorted_and_hydra_like():
    overrides = {
        "model.hidden_size": [512, 256],
        "lr": 0.001,
        "activation": "relu",
        "flag": True,
        "nothing": None,
        "tricky": "1e-3",
        "spaced": "a b",
    }
    assert format_overrides(overrides) == (
        "activation=relu flag=true lr=0.001 model.hidden_size=[512,256] nothing=null "
        'spaced="a b" tricky="1e-3"'
    )
    assert format_overrides({}) == ""


def test_csv_columns_and_content(tmp_path):
    path = tmp_path / "out" / "leaderboard.csv"
    rows = sample_rows()
    rows[0] |= {"lineage": "0a1b2c", "budget": 5}  # the run store entry of a trial
    ranked = rank_trials(rows)
    write_leaderboard_csv(path, ranked)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        # What the search found: no wall time or cache state, which change between runs.
        assert reader.fieldnames == [
            "rank",
            "overrides",
            "val_acc",
            "val_loss",
            "epochs",
            "status",
            "lineage",
            "budget",
        ]
        lines = list(reader)
    assert len(lines) == 6
    assert lines[1] == {
        "rank": "2",
        "overrides": "lr=0.001 model.hidden_size=[512,256]",
        "val_acc": "0.55",
        "val_loss": "1.1",
        "epochs": "5",
        "status": "ok",
        "lineage": "",
        "budget": "",
    }
    assert {line["lineage"]: line["budget"] for line in lines}["0a1b2c"] == "5"
    assert lines[-1]["status"] == "failed"
    assert lines[-1]["val_acc"] == ""
    assert [p.name for p in path.parent.iterdir()] == ["leaderboard.csv"]  # no temp file left


def test_markdown_table(tmp_path):
    path = tmp_path / "leaderboard.md"
    ranked = rank_trials(sample_rows())
    write_leaderboard_md(path, ranked, top=3, title="Search 1")
    lines = path.read_text().splitlines()
    assert lines[0] == "# Search 1"
    assert "top 3 of 6 trials" in lines[2]
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == ("| rank | overrides | val_acc | val_loss | epochs | status |")
    assert set(table[1]) <= set("|-:")
    assert len(table) == 2 + 3
    assert table[2] == "| 1 | `lr=0.003` | 0.55 | 1.05 | 5 | ok |"
    assert table[3].startswith("| 2 | `lr=0.001 model.hidden_size=[512,256]` |")
    assert all(line.count("|") == 7 for line in table)


def test_markdown_escapes_pipes_and_handles_no_trials(tmp_path):
    path = tmp_path / "leaderboard.md"
    write_leaderboard_md(path, rank_trials([trial({"name": "a|b"}, 0.5, 1.0)]))
    row = next(line for line in path.read_text().splitlines() if line.startswith("| 1 "))
    assert "\\|" in row and row.count("|") - row.count("\\|") == 7
    write_leaderboard_md(path, [])
    assert "No trials." in path.read_text()


def test_text_table_is_aligned_and_limited_to_top():
    ranked = rank_trials(sample_rows())
    text = format_table(ranked, top=4)
    lines = text.splitlines()
    assert lines[0].split() == list(LEADERBOARD_COLUMNS)
    assert len(lines) == 2 + 4 + 1
    assert lines[-1] == "(top 4 of 6 trials)"
    # Right-aligned numbers: the val_acc column ends at the same character on every row.
    end = lines[0].index("val_acc") + len("val_acc")
    assert [line[end - 6 : end] for line in lines[2:6]] == ["  0.55", "  0.55", "   0.4", "   0.3"]
    full = format_table(ranked, top=None).splitlines()
    assert len(full) == 2 + 6
    assert "-" in full[-1].split()  # missing numbers of the failed trial
    assert format_table([]) == "(no trials)"


def test_tables_for_reading_show_3_significant_digits_and_the_csv_keeps_every_one(tmp_path):
    point = {"model.dropout": 0.0008215500510444284, "optimizer.lr": 0.0025834120354216315}
    ranked = rank_trials([trial(point, 0.4528, 1.6934444091796874, seconds=221.37)])
    shown = "model.dropout=0.000822 optimizer.lr=0.00258"
    row = format_table(ranked).splitlines()[2].split()
    assert row[1:6] == [*shown.split(), "0.453", "1.69", "5"] and row[6] == "221"
    write_leaderboard_md(tmp_path / "leaderboard.md", ranked)
    assert f"| 1 | `{shown}` | 0.453 | 1.69 | 5 | ok |" in (tmp_path / "leaderboard.md").read_text()
    write_leaderboard_csv(tmp_path / "leaderboard.csv", ranked)
    text = (tmp_path / "leaderboard.csv").read_text()
    assert format_overrides(point) in text and "0.4528,1.6934444091796874" in text


@pytest.mark.parametrize("top", [0, -3, 2.0])
def test_top_must_be_positive(top):
    with pytest.raises(ValueError, match=f"top={top!r}"):
        format_table(rank_trials(sample_rows()), top=top)


def test_the_same_results_write_the_same_files_whatever_the_time_or_the_cache(tmp_path):
    rows = sample_rows()
    rerun = [{**row, "seconds": 99.0, "cache_hit": not row["cache_hit"]} for row in rows]
    for name, these in (("first", rows), ("rerun", rerun)):
        write_leaderboard_csv(tmp_path / name / "leaderboard.csv", rank_trials(these))
        write_leaderboard_md(tmp_path / name / "leaderboard.md", rank_trials(these))
    for file in ("leaderboard.csv", "leaderboard.md"):
        assert (tmp_path / "first" / file).read_bytes() == (tmp_path / "rerun" / file).read_bytes()


def test_ties_go_to_the_lower_loss_then_the_earlier_trial():
    rows = [
        trial({"lr": 1}, 0.5, 1.2),
        trial({"lr": 2}, 0.5, 1.1),  # same accuracy, lower loss: first
        trial({"lr": 3}, 0.5, 1.2),  # a full tie with lr=1, which ran earlier
        trial({"lr": 4}, 0.4, 0.1),
    ]
    order = [row["overrides"]["lr"] for row in rank_trials(rows)]
    assert order == [2, 1, 3, 4]
    # The rule, not the input's order, decides: reversed input, same ranks but the full tie.
    assert [row["overrides"]["lr"] for row in rank_trials(rows[::-1])] == [2, 3, 1, 4]


def test_the_trial_log_keeps_every_trial_in_the_order_it_ran(tmp_path):
    rows = sample_rows()
    rows[1] |= {"resumed_from": 2, "lineage": "0a1b2c", "budget": 5}
    write_trial_log(tmp_path / "trials.csv", rows)
    with open(tmp_path / "trials.csv", newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert [line["trial"] for line in lines] == [str(i) for i in range(1, len(rows) + 1)]
    assert [line["overrides"] for line in lines] == [format_overrides(r["overrides"]) for r in rows]
    assert lines[1]["seconds"] == "1.5" and lines[1]["resumed_from"] == "2"
    assert [line["cache_hit"] for line in lines] == [str(r["cache_hit"]) for r in rows]


def test_rows_built_from_trial_results_write_the_same_files(tmp_path):
    """A row from ``leaderboard_row`` (every result field) and a row of the keys the
    tables use write the same bytes: the extra fields are ignored by the writers."""
    results = [
        TrialResult("ok", 0.55, 1.05, 4, 5, 2, 1.5, 2, True, "a" * 24, 5),
        TrialResult("diverged", None, None, None, 2, None, 0.5, 2, False, "b" * 24, 5),
        TrialResult.failed("RuntimeError: out of memory"),
    ]
    points = [{"lr": 0.003}, {"lr": 1.0}, {"lr": 0.1, "model.hidden_size": [512, 256]}]
    full = [leaderboard_row(point, result) for point, result in zip(points, results, strict=True)]
    assert full[0] == {"overrides": {"lr": 0.003}, **results[0].to_json()}
    assert full[2]["error"] == "RuntimeError: out of memory"
    used = set(REQUIRED_KEYS) | {"resumed_from", "lineage", "budget"}
    hand_built = [{key: row[key] for key in row if key in used} for row in full]
    for name, rows in (("full", full), ("hand", hand_built)):
        (tmp_path / name).mkdir()
        write_leaderboard_csv(tmp_path / name / "leaderboard.csv", rank_trials(rows))
        write_leaderboard_md(tmp_path / name / "leaderboard.md", rank_trials(rows))
        write_trial_log(tmp_path / name / "trials.csv", rows)
    for file in ("leaderboard.csv", "leaderboard.md", "trials.csv"):
        assert (tmp_path / "full" / file).read_bytes() == (tmp_path / "hand" / file).read_bytes()
    header = (tmp_path / "full" / "trials.csv").read_text().splitlines()[0]
    assert header.split(",") == list(TRIAL_LOG_COLUMNS)
