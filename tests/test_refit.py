"""The train stage's refit: train + val, the configured epochs, the last epoch kept, the
test split never read; and the val-selected model on train alone when switched off."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_ARCHIVE, write_real_subset
from npdl.network import ClassificationNet

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_without_test(tmp_path_factory):
    """prepared/ and normalized/ for 600 real images, with the test split's files
    removed: any read of them would fail the stage."""
    if not SHARED_ARCHIVE.exists():
        pytest.skip(f"needs {SHARED_ARCHIVE}")
    folder = write_real_subset(tmp_path_factory.mktemp("data"), 600)
    removed = [path for path in folder.rglob("test_*") if path.is_file()]
    assert removed, "the prepared data has no test split files to remove"
    for path in removed:
        path.unlink()
    return folder


def train(data: Path, tmp_path: Path, *overrides: str) -> dict:
    run = tmp_path / "run"
    subprocess.run(
        [
            sys.executable,
            "stages/train.py",
            f"paths.data={data}",
            f"paths.run_store={tmp_path / 'store'}",
            f"hydra.run.dir={run}",
            "hydra.output_subdir=null",
            "tune.enabled=false",
            "normalize.method=standardize",
            "model.input_pca=null",  # principal components come with zca
            "model.hidden_size=[32]",
            "solver.epochs=3",
            *overrides,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    with open(run / "metrics" / "train_history.csv", newline="") as file:
        history = list(csv.DictReader(file))
    metrics = json.loads((run / "metrics" / "train.json").read_text())
    return {"metrics": metrics, "history": history, "model": run / "models" / "model.npz"}


def split_size(data: Path, split: str) -> int:
    return len(np.load(data / "prepared" / f"{split}_labels.npy"))


def test_refit_trains_on_train_and_val_for_the_configured_epochs(data_without_test, tmp_path):
    out = train(data_without_test, tmp_path, "solver.refit=true")
    metrics = out["metrics"]
    both = split_size(data_without_test, "train") + split_size(data_without_test, "val")
    assert metrics["refit"] is True and metrics["trained_on"] == "train+val"
    assert metrics["train_images"] == both
    assert metrics["epochs"] == 3 and metrics["kept_epoch"] == 3
    assert metrics["val_acc"] is None and metrics["best_epoch"] is None  # no val selection
    assert [row["epoch"] for row in out["history"]] == ["1", "2", "3"]
    assert {row["val_acc"] for row in out["history"]} == {""}  # nothing validated
    model = ClassificationNet.load(out["model"])
    assert model.metadata["config"]["solver"]["refit"] is True
    assert model.metadata["train_images"] == both


def test_without_refit_the_train_split_alone_trains_and_val_selects(data_without_test, tmp_path):
    out = train(data_without_test, tmp_path, "solver.refit=false")
    metrics = out["metrics"]
    assert metrics["refit"] is False and metrics["trained_on"] == "train"
    assert metrics["train_images"] == split_size(data_without_test, "train")
    assert metrics["val_acc"] is not None and 1 <= metrics["kept_epoch"] <= 3
    assert all(row["val_acc"] != "" for row in out["history"])
