"""TrialResult: the one shape of a trial's result, read back strictly; TuneOutputs."""

import json
from pathlib import Path

import pytest

from npdl.trial import (
    RESULT_FIELDS,
    SWEEP_REPORTS,
    TrialResult,
    TuneOutputs,
    field_from_text,
    result_columns,
)

#: ``metrics/train.json`` of an ok run as the train stage wrote it before TrialResult.
TRAIN_JSON = {
    "status": "ok",
    "val_acc": 0.4213,
    "val_loss": 1.625,
    "best_epoch": 7,
    "epochs": 8,
    "resumed_from": 4,
    "seconds": 12.5,
    "threads": 2,
    "cache_hit": False,
    "lineage": "0123456789abcdef01234567",
    "budget": 8,
}


def test_an_ok_result_round_trips_through_json_with_the_keys_train_json_has():
    result = TrialResult.from_json(TRAIN_JSON)
    assert result.val_acc == 0.4213 and result.resumed_from == 4 and result.error is None
    # An older train.json has no val_images: read as None, written back with it and
    # nothing else changed.
    assert result.val_images is None
    written = result.to_json()
    assert written == {**TRAIN_JSON, "val_images": None} and "error" not in written
    assert list(written)[:-1] == list(TRAIN_JSON)  # the same keys, in the same order
    assert json.loads(json.dumps(written)) == written  # plain JSON types
    assert TrialResult.from_json(json.loads(json.dumps(written))) == result
    measured = TrialResult.from_json({**TRAIN_JSON, "val_images": 5000})
    assert measured.val_images == 5000 and measured.to_json()["val_images"] == 5000


def test_a_failed_result_keeps_its_error():
    failed = TrialResult(**{**TRAIN_JSON, "status": "failed", "error": "OSError: disk"})
    assert failed.to_json()["error"] == "OSError: disk"
    assert TrialResult.from_json(failed.to_json()) == failed


def test_from_json_names_a_missing_key():
    renamed = {key: value for key, value in TRAIN_JSON.items() if key != "val_acc"}
    with pytest.raises(ValueError, match=r"missing keys \['val_acc'\]"):
        TrialResult.from_json(renamed)


def test_from_json_names_an_unknown_key():
    with pytest.raises(ValueError, match=r"unknown keys \['accuracy'\]"):
        TrialResult.from_json({**TRAIN_JSON, "accuracy": 0.5})
    with pytest.raises(ValueError, match=r"missing keys \['val_acc'\] and unknown keys"):
        renamed = {("accuracy" if k == "val_acc" else k): v for k, v in TRAIN_JSON.items()}
        TrialResult.from_json(renamed)


def test_an_unknown_status_is_refused():
    with pytest.raises(ValueError, match="'finished' is not one of 'ok', 'diverged', 'failed'"):
        TrialResult.from_json({**TRAIN_JSON, "status": "finished"})


def test_failed_is_a_failure_with_nothing_measured():
    failed = TrialResult.failed("RuntimeError: out of memory")
    assert failed.status == "failed" and failed.error == "RuntimeError: out of memory"
    assert not failed.cache_hit
    unmeasured = [name for name in RESULT_FIELDS if name not in ("status", "cache_hit", "error")]
    assert all(getattr(failed, name) is None for name in unmeasured)
    assert TrialResult.from_json(failed.to_json()) == failed


def test_results_are_frozen():
    result = TrialResult.from_json(TRAIN_JSON)
    with pytest.raises(AttributeError):
        result.val_acc = 0.9


def test_csv_cells_read_back_as_the_field_types():
    result = TrialResult.from_json(TRAIN_JSON)
    cells = {name: "" if value is None else str(value) for name, value in TRAIN_JSON.items()}
    assert TrialResult.from_json({k: field_from_text(k, v) for k, v in cells.items()}) == result
    assert field_from_text("val_acc", "") is None
    assert field_from_text("cache_hit", "True") is True
    with pytest.raises(ValueError, match="epochs='three' is not of type int"):
        field_from_text("epochs", "three")
    with pytest.raises(ValueError, match="'rank' is not a field"):
        field_from_text("rank", "1")


def test_result_columns_are_fields():
    assert result_columns("val_acc", "budget") == ("val_acc", "budget")
    with pytest.raises(ValueError, match=r"\['accuracy'\] are not fields"):
        result_columns("val_acc", "accuracy")


def test_tune_outputs_live_in_the_models_folder():
    outputs = TuneOutputs.of("models")
    assert outputs.folder == Path("models/tune")
    assert outputs.leaderboard_csv == Path("models/tune/leaderboard.csv")
    assert outputs.leaderboard_md == Path("models/tune/leaderboard.md")
    assert outputs.best_overrides == Path("models/tune/best_overrides.json")
    assert outputs.sweep_json == Path("models/tune/sweep.json")
    assert [path.name for path in outputs.reports] == list(SWEEP_REPORTS[:3])
    assert SWEEP_REPORTS == (
        "leaderboard.csv",
        "leaderboard.md",
        "best_overrides.json",
        "trials.csv",
    )
