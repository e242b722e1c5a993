"""The diagnosis of a training (:mod:`npdl.diagnosis`): each verdict on synthetic
histories and their edges; the verdict on real histories (the default model's 140 epochs
on train alone, its first 3 epochs, a diverged run on real images); and where it shows:
the Solver, the train stage's ``metrics/train.json`` and console, the learning curves."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_ARCHIVE, write_real_subset
from npdl import Adam, ClassificationNet, Relu, Solver, plots
from npdl.diagnosis import ADVICE, FLAT_UNDERFITTING_ADVICE, VERDICTS, Diagnosis, diagnose
from npdl.trial import TrialResult

ROOT = Path(__file__).resolve().parents[1]
HISTORIES = Path(__file__).parent / "data" / "histories"


def history(train_acc, val_acc=None, train_loss=None, val_loss=None):
    """Rows as ``Solver.history`` has them: losses falling as accuracies rise where not
    given, val columns NaN without ``val_acc``."""
    epochs = len(train_acc)
    train_loss = train_loss or [2.0 - 1.5 * a for a in train_acc]
    val_loss = val_loss or (val_acc and [2.0 - 1.5 * a for a in val_acc])
    nan = [math.nan] * epochs
    return [
        {
            "epoch": e + 1,
            "train_loss": train_loss[e],
            "train_acc": train_acc[e],
            "val_loss": (val_loss or nan)[e],
            "val_acc": (val_acc or nan)[e],
        }
        for e in range(epochs)
    ]


def ramp(start, stop, epochs):
    return list(np.linspace(start, stop, epochs))


def read_history(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


# -- synthetic histories: one per verdict ------------------------------------------


def test_a_wide_gap_and_a_rising_val_loss_are_overfitting_since_the_lowest_val_loss():
    val_loss = [1.5 - 0.02 * e for e in range(30)] + [0.92 + 0.01 * e for e in range(1, 31)]
    rows = history(ramp(0.3, 0.9, 60), val_acc=ramp(0.3, 0.7, 60), val_loss=val_loss)
    diagnosis = diagnose(rows)
    assert diagnosis.verdict == "overfitting"
    assert diagnosis.since_epoch == 30  # the lowest val loss, 0.92
    assert "train 90.0% vs val 70.0% (gap 20.0 points)" in diagnosis.evidence
    assert "val loss rising since epoch 30 (min 0.92 -> 1.22, +33%)" in diagnosis.evidence
    assert diagnosis.advice == ADVICE["overfitting"]
    assert "regularisation" in diagnosis.advice and "capacity" in diagnosis.advice


def test_a_wide_gap_alone_is_overfitting_since_the_gap_crossed_the_threshold():
    # val loss still falling; the gap grows 2.27 points an epoch: 11.4 at epoch 6.
    rows = history(
        ramp(0.40, 0.95, 12),
        val_acc=ramp(0.40, 0.70, 12),
        val_loss=ramp(1.6, 0.9, 12),
    )
    diagnosis = diagnose(rows)
    assert diagnosis.verdict == "overfitting"
    assert "rising" not in diagnosis.evidence
    assert diagnosis.since_epoch == 6
    assert diagnosis.evidence == (
        "train 95.0% vs val 70.0% (gap 25.0 points); val loss lowest in epoch 12 of 12 "
        "(0.9, last 0.9)"
    )


def test_a_rising_val_loss_alone_is_overfitting_but_not_a_short_rise():
    accuracy = ramp(0.6, 0.75, 20)
    val_loss = [1.0 - 0.02 * e for e in range(15)] + [0.78, 0.8, 0.85, 0.9, 0.95]
    rows = history(accuracy, val_acc=[a - 0.02 for a in accuracy], val_loss=val_loss)
    diagnosis = diagnose(rows)
    assert diagnosis.verdict == "overfitting" and diagnosis.since_epoch == 15
    assert "gap 2.0 points" in diagnosis.evidence
    # Risen for 2 epochs only (rise_epochs=3): no trend yet.
    assert diagnose(rows[:17]).verdict == "ok"
    # Up 32%: a rise, unless the threshold is higher.
    assert diagnose(rows, loss_rise=0.5).verdict == "ok"


def test_low_train_accuracy_still_rising_is_underfitting_advised_to_train_longer():
    rows = history([0.30, 0.34, 0.37, 0.40, 0.421], val_acc=[0.35, 0.39, 0.42, 0.44, 0.45])
    diagnosis = diagnose(rows)
    assert diagnosis.verdict == "underfitting" and diagnosis.since_epoch is None
    assert diagnosis.evidence.startswith(
        "train accuracy 42.1%, below 60%, and still rising (+8.1 points over the last 3 epochs)"
    )
    assert "val 45.0%" in diagnosis.evidence
    assert diagnosis.advice == ADVICE["underfitting"]
    assert diagnosis.advice.startswith("train longer")


def test_low_flat_train_accuracy_is_underfitting_advised_to_change_the_model():
    rows = history([0.30, 0.40, 0.45, 0.452, 0.451, 0.453], val_acc=[0.3, 0.4, 0.44] + [0.45] * 3)
    diagnosis = diagnose(rows)
    assert diagnosis.verdict == "underfitting"
    assert "and flat (+0.3 points over the last 3 epochs)" in diagnosis.evidence
    assert diagnosis.advice == FLAT_UNDERFITTING_ADVICE
    assert "capacity" in diagnosis.advice and "learning rate" in diagnosis.advice
    # The level is a parameter: at 40% this model is no longer underfitting.
    assert diagnose(rows, low_accuracy=0.4).verdict == "ok"


def test_underfitting_comes_before_overfitting_and_mentions_the_gap():
    rows = history(ramp(0.3, 0.5, 5), val_acc=ramp(0.25, 0.3, 5))
    diagnosis = diagnose(rows)
    assert diagnosis.verdict == "underfitting"
    assert "also train 50.0% vs val 30.0% (gap 20.0 points)" in diagnosis.evidence


def test_a_non_finite_loss_is_divergence_at_its_epoch():
    rows = history([0.3, 0.35, math.nan], val_acc=[0.3, 0.3, math.nan])
    rows[2]["train_loss"] = math.inf
    diagnosis = diagnose(rows)
    assert diagnosis.verdict == "diverged" and diagnosis.since_epoch == 3
    assert diagnosis.evidence == "loss became NaN/inf in epoch 3 (train loss 1.48 in epoch 2)"
    assert "lower the learning rate" in diagnosis.advice and "sanity" in diagnosis.advice


def test_the_solver_s_diverged_status_is_divergence_in_the_epoch_after_the_history():
    rows = history([0.3, 0.4], val_acc=[0.3, 0.4])
    diagnosis = diagnose(rows, status="diverged")
    assert diagnosis.verdict == "diverged" and diagnosis.since_epoch == 3
    assert diagnosis.evidence.startswith("loss became NaN/inf in epoch 3")
    # Diverged in its first epoch: no row at all.
    first = diagnose([], status="diverged")
    assert first.verdict == "diverged" and first.since_epoch == 1
    assert first.evidence == "loss became NaN/inf in epoch 1"


def test_a_loss_far_above_its_start_is_divergence():
    rows = history([0.3, 0.35, 0.3, 0.2], train_loss=[2.0, 1.8, 2.5, 4.5])
    diagnosis = diagnose(rows)
    assert diagnosis.verdict == "diverged" and diagnosis.since_epoch == 4
    assert diagnosis.evidence == "train loss 4.5 in epoch 4, 2.25x the first epoch's 2"
    assert diagnose(rows, divergence_ratio=3.0).verdict == "underfitting"
    # A first epoch that already exploded (a huge learning rate under Adam stays finite).
    huge = diagnose(history([0.15], train_loss=[4.5e11]))
    assert huge.verdict == "diverged" and huge.since_epoch == 1
    assert huge.evidence == "train loss 4.5e+11 in epoch 1, above 23 (10x a uniform guess's 2.3)"


def test_a_good_fit_is_ok():
    rows = history(ramp(0.5, 0.80, 20), val_acc=ramp(0.5, 0.75, 20), val_loss=ramp(1.4, 0.75, 20))
    diagnosis = diagnose(rows)
    assert diagnosis.verdict == "ok" and diagnosis.since_epoch is None
    assert diagnosis.evidence == (
        "train 80.0% vs val 75.0% (gap 5.0 points); val loss lowest in epoch 20 of 20 "
        "(0.75, last 0.75)"
    )
    assert diagnosis.advice == ADVICE["ok"]
    # The gap's threshold is a parameter.
    assert diagnose(rows, gap_points=5.0).verdict == "overfitting"


# -- edges ----------------------------------------------------------------------------


def test_one_epoch_is_judged_against_chance_before_it():
    diagnosis = diagnose(history([0.284], val_acc=[0.39], val_loss=[1.8]))
    assert diagnosis.verdict == "underfitting"
    assert diagnosis.evidence.startswith(
        "train accuracy 28.4%, below 60%, and still rising "
        "(+18.4 points over the last epoch, from chance 10%)"
    )
    assert "from chance 20%" in diagnose(history([0.5]), num_classes=5).evidence


def test_without_val_overfitting_cannot_be_judged_and_the_evidence_says_so():
    rows = history(ramp(0.3, 0.95, 10))  # NaN val columns: a refit
    diagnosis = diagnose(rows)
    assert diagnosis.verdict == "ok"
    assert "overfitting cannot be judged" in diagnosis.evidence
    # None and '' (a CSV's empty cells) are missing values too.
    for missing in (None, ""):
        cells = [{**row, "val_loss": missing, "val_acc": missing} for row in rows]
        assert diagnose(cells) == diagnosis
    # Underfitting and divergence are judged without val.
    assert diagnose(history([0.2, 0.25, 0.3])).verdict == "underfitting"
    assert diagnose(history([0.2, 0.25]), status="diverged").verdict == "diverged"


def test_a_nan_loss_in_the_first_epoch_is_divergence():
    rows = history([math.nan], train_loss=[math.nan])
    diagnosis = diagnose(rows)
    assert diagnosis.verdict == "diverged" and diagnosis.since_epoch == 1
    assert diagnosis.evidence == "loss became NaN/inf in epoch 1"


def test_an_empty_history_that_did_not_diverge_has_nothing_to_diagnose():
    with pytest.raises(ValueError, match="no epoch"):
        diagnose([])


def test_a_diagnosis_is_plain_json_and_one_line():
    diagnosis = diagnose(history(ramp(0.3, 0.5, 4), val_acc=ramp(0.3, 0.45, 4)))
    written = json.loads(json.dumps(diagnosis.to_json()))
    assert written == {
        "verdict": diagnosis.verdict,
        "evidence": diagnosis.evidence,
        "advice": diagnosis.advice,
        "since_epoch": None,
    }
    assert Diagnosis(**written) == diagnosis
    line = str(diagnosis)
    assert "\n" not in line
    assert line == f"underfitting: {diagnosis.evidence}; advice: {diagnosis.advice}"
    with pytest.raises(ValueError, match="verdict 'fine'"):
        Diagnosis("fine", "", "")
    assert set(ADVICE) == set(VERDICTS)


def test_a_result_with_a_diagnosis_beside_it_reads_back_as_the_result():
    result = TrialResult("ok", 0.5, 1.2, 3, 3, None, 1.0, 1, False, "ab" * 12, 3, 100)
    written = {**result.to_json(), "diagnosis": {"verdict": "underfitting"}}
    assert TrialResult.from_json(written) == result
    with pytest.raises(ValueError, match="unknown keys"):
        TrialResult.from_json({**written, "verdict": "ok"})


def test_the_learning_curves_show_the_verdict_and_its_epoch(tmp_path, monkeypatch):
    val_loss = [1.5 - 0.02 * e for e in range(30)] + [0.92 + 0.01 * e for e in range(1, 31)]
    rows = history(ramp(0.3, 0.9, 60), val_acc=ramp(0.3, 0.7, 60), val_loss=val_loss)
    diagnosis = diagnose(rows)
    figures = []
    save = plots._save
    monkeypatch.setattr(
        plots, "_save", lambda figure, path: (figures.append(figure), save(figure, path))
    )
    plots.learning_curves(rows, tmp_path / "curves.png", diagnosis)
    plots.learning_curves(rows, tmp_path / "plain.png")  # the old call still works
    assert (tmp_path / "curves.png").stat().st_size > 0
    drawn, plain = figures
    assert drawn.get_suptitle().replace("\n", " ").startswith("overfitting: train 90.0% vs val")
    for axes in drawn.axes:
        marks = [line for line in axes.get_lines() if list(line.get_xdata()) == [30, 30]]
        assert [line.get_label() for line in marks] == ["overfitting from epoch 30"]
    assert plain.get_suptitle() == ""
    assert all(len(axes.get_lines()) == 2 for axes in plain.axes)


# -- real histories ---------------------------------------------------------------------


def test_the_default_model_on_train_alone_overfits():
    """The default pipeline's model (tune's winner) for its 140 epochs with
    ``solver.refit=false`` on the 40,000 training images (how: tests/data/histories/)."""
    path = HISTORIES / "default_140_epochs.csv"
    assert path.is_file(), f"{path} is missing: the 140-epoch history, as its README says"
    rows = read_history(path)
    assert len(rows) == 140
    diagnosis = diagnose(rows)
    assert diagnosis.verdict == "overfitting", diagnosis
    assert diagnosis.since_epoch is not None and diagnosis.since_epoch < 140
    # Its evidence: the gap at the end, and where the val loss was lowest.
    assert diagnosis.evidence.startswith("train 90.8% vs val 71.5% (gap 19.2 points)")
    assert "val loss lowest in epoch 66 of 140" in diagnosis.evidence


def test_the_default_model_after_3_epochs_underfits():
    """The same configuration trained for 3 epochs (how: tests/data/histories/)."""
    rows = read_history(HISTORIES / "default_3_epochs.csv")
    assert len(rows) == 3
    diagnosis = diagnose(rows)
    assert diagnosis.verdict == "underfitting", diagnosis
    assert "still rising" in diagnosis.evidence
    assert diagnosis.advice.startswith("train longer")


def test_the_default_refit_cannot_be_judged_for_overfitting():
    """The default recipe's refit on train + val (140 epochs, no val column)."""
    rows = read_history(HISTORIES / "default_refit_140_epochs.csv")
    diagnosis = diagnose(rows)
    assert diagnosis.verdict == "ok"
    assert "overfitting cannot be judged" in diagnosis.evidence


needs_archive = pytest.mark.skipif(not SHARED_ARCHIVE.exists(), reason=f"needs {SHARED_ARCHIVE}")


@pytest.fixture(scope="module")
def real_data(tmp_path_factory):
    """prepared/ and normalized/ for 600 real images (480 to train, 60 to validate)."""
    return write_real_subset(tmp_path_factory.mktemp("data"), 600)


def real_loaders(data: Path):
    """Course-style loaders of the real subset's train and val splits, standardised."""
    from test_solver import ArrayLoader

    def split(name):
        images = np.load(data / "prepared" / f"{name}_images.npy").astype(np.float32)
        labels = np.load(data / "prepared" / f"{name}_labels.npy")
        return (images.reshape(len(images), -1) / 255 - 0.5), labels

    (x, y), (xv, yv) = split("train"), split("val")
    return ArrayLoader(x, y, 32), ArrayLoader(xv, yv, 60)


@pytest.mark.slow
@needs_archive
def test_a_huge_learning_rate_on_real_images_diverges_and_the_solver_says_so(real_data, capsys):
    train, val = real_loaders(real_data)
    model = ClassificationNet(Relu(), input_size=3072, hidden_size=64, num_classes=10, rng=0)
    solver = Solver(model, train, val, learning_rate=1e4, optimizer=Adam, verbose=True)
    solver.train(epochs=2)
    diagnosis = solver.diagnose()
    assert diagnosis.verdict == "diverged" and diagnosis.since_epoch == 1
    assert (
        diagnosis.evidence.startswith("train loss ")
        and "in epoch 1, above 23" in diagnosis.evidence
    )
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == f"Diagnosis: {diagnosis}"


@pytest.mark.slow
@needs_archive
def test_the_solver_keeps_quiet_and_has_no_diagnosis_before_training(real_data, capsys):
    train, val = real_loaders(real_data)
    model = ClassificationNet(Relu(), input_size=3072, hidden_size=32, num_classes=10, rng=0)
    solver = Solver(model, train, val, learning_rate=1e-3, verbose=False)
    assert solver.diagnose() is None
    solver.train(epochs=1)
    assert solver.diagnose().verdict == "underfitting"  # 1 epoch on 480 images
    assert capsys.readouterr().out == ""


def train_stage(data: Path, tmp_path: Path, *overrides: str, sweep=False) -> tuple[Path, str]:
    """A real train stage run, or a sweep's one job (3 epochs of a small MLP on the real
    subset): its ``metrics/`` folder and its console output."""
    out = tmp_path / "run"
    where = ["-m", f"hydra.sweep.dir={out}"] if sweep else [f"hydra.run.dir={out}"]
    done = subprocess.run(
        [
            sys.executable,
            "stages/train.py",
            *where,
            f"paths.data={data}",
            f"paths.run_store={tmp_path / 'store'}",
            "hydra.output_subdir=null",
            "tune.enabled=false",
            "normalize.method=standardize",
            "model.input_pca=null",
            "model.hidden_size=[32]",
            "solver.epochs=3",
            *overrides,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return (out / "0" if sweep else out) / "metrics", done.stdout


@pytest.mark.slow
@needs_archive
def test_the_train_stage_stores_and_prints_the_diagnosis(real_data, tmp_path):
    metrics, printed = train_stage(real_data, tmp_path, "solver.refit=false")
    written = json.loads((metrics / "train.json").read_text())
    diagnosis = written["diagnosis"]
    assert diagnosis["verdict"] == "underfitting"  # 3 epochs of a 32-unit MLP
    assert diagnosis["evidence"].startswith("train accuracy ")
    assert diagnosis["advice"] in (ADVICE["underfitting"], FLAT_UNDERFITTING_ADVICE)
    assert written["refit"] is False  # beside the single run's summary
    said = [line for line in printed.splitlines() if line.lower().startswith("diagnosis: ")]
    assert said == [f"Diagnosis: {Diagnosis(**diagnosis)}"]  # the verbose Solver's, once
    # Again: a cache hit, no Solver to say it; the stage says it, from the stored history.
    metrics, again = train_stage(real_data, tmp_path, "solver.refit=false")
    assert json.loads((metrics / "train.json").read_text())["cache_hit"] is True
    said = [line for line in again.splitlines() if line.lower().startswith("diagnosis: ")]
    assert said == [f"diagnosis: {Diagnosis(**diagnosis)}"]
    # Its history gives the same verdict.
    assert diagnose(read_history(metrics / "train_history.csv")).to_json() == diagnosis


@pytest.mark.slow
@needs_archive
def test_a_diverged_sweep_job_says_so_in_a_train_json_that_reads_as_its_result(real_data, tmp_path):
    from npdl.run.gc import result_entries

    metrics, printed = train_stage(real_data, tmp_path, "optimizer.lr=1e4", sweep=True)
    written = json.loads((metrics / "train.json").read_text())
    assert written["diagnosis"]["verdict"] == "diverged"
    assert written["diagnosis"]["since_epoch"] == 1
    result = TrialResult.from_json(written)  # what the sweeper and the store's gc read
    assert result.status == "ok"  # finite, if enormous: Adam's steps are bounded by lr
    assert result_entries([metrics / "train.json"]) == {(result.lineage, result.budget)}
    # The verbose Solver of a sweep's job said it, in the job's log (a sweep's console
    # has one line per trial); the stage does not say it again.
    job_log = (metrics.parent / "train.log").read_text()
    assert job_log.count("iagnosis: diverged: ") == 1
    assert "iagnosis: " not in printed


def test_the_diagnosis_is_no_part_of_a_run_s_identity(tmp_path):
    from npdl.run.training import code_hash

    package = tmp_path / "npdl"
    package.mkdir()
    (package / "layers.py").write_text("SCALE = 1.0\n")
    (package / "diagnosis.py").write_text("GAP_POINTS = 10.0\n")
    before = code_hash.__wrapped__(package)
    (package / "diagnosis.py").write_text("GAP_POINTS = 5.0\n")
    assert code_hash.__wrapped__(package) == before  # other thresholds: the same runs
