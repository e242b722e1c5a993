"""Which hyperparameters mattered (npdl.search.importance): the trials it is computed
over, when it is rough or absent, and a small real search whose table makes one
parameter matter."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_ARCHIVE, write_real_subset
from npdl.io import load_json
from npdl.search import Choice, Interval, Objective
from npdl.search.importance import (
    STABLE_TOP,
    TARGET_QUANTILE,
    comparable_trials,
    param_importance,
)

ROOT = Path(__file__).resolve().parents[1]
ACCURACY = Objective("val_acc")
SPACE = {"optimizer.lr": Interval(1e-6, 1e-1, log=True), "model.dropout": Interval(0.0, 0.3)}


def row(lr, dropout, acc, budget=4, status="ok"):
    return {
        "overrides": {"optimizer.lr": lr, "model.dropout": dropout},
        "status": status,
        "val_acc": acc if status == "ok" else None,
        "val_loss": 1.0,
        "epochs": budget,
        "budget": budget,
    }


def lr_matters(n, seed=0, driver="lr"):
    """``n`` trials drawn as a random search would; the accuracy peaks at lr 3e-3 and
    dropout changes it by a little noise (``driver="dropout"``: the other way round,
    the accuracy peaks at dropout 0.05)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        lr, dropout = 10 ** rng.uniform(-6, -1), rng.uniform(0, 0.3)
        if driver == "lr":
            acc = 0.5 - 0.08 * abs(np.log10(lr) - np.log10(3e-3))
        else:
            acc = 0.5 - 0.8 * abs(dropout - 0.05)
        rows.append(row(lr, dropout, float(acc + rng.normal(0, 0.005))))
    return rows


def test_the_parameter_that_moves_the_score_comes_first_and_steadily():
    importance = param_importance(lr_matters(24), SPACE, ACCURACY)
    assert list(importance.values) == ["optimizer.lr", "model.dropout"]
    assert importance.values["optimizer.lr"] > 0.8
    assert sum(importance.values.values()) == pytest.approx(1.0)
    assert importance.trials == 24 and importance.epochs == 4 and importance.note is None
    # The same trials in another order give the same numbers (no randomness, no order).
    shuffled = lr_matters(24)[::-1]
    assert param_importance(shuffled, SPACE, ACCURACY).values == importance.values
    # The roles swapped: dropout drives the score, lr is noise.
    swapped = param_importance(lr_matters(24, driver="dropout"), SPACE, ACCURACY)
    assert list(swapped.values) == ["model.dropout", "optimizer.lr"]


def test_a_loss_is_minimised():
    rows = lr_matters(24)
    for r in rows:  # the loss falls where the accuracy rises: the same ranking
        r["val_loss"] = 2.0 - r["val_acc"]
    by_loss = param_importance(rows, SPACE, Objective("val_loss"))
    assert by_loss.values == param_importance(rows, SPACE, ACCURACY).values


def test_the_budget_most_configurations_reached_the_larger_on_a_tie():
    rows = [row(1e-3, 0.1, 0.3, budget=2), row(1e-2, 0.1, 0.2, budget=2)]
    rows += [row(1e-3, 0.1, 0.4, budget=4), row(1e-4, 0.2, 0.35, budget=4)]
    rows += [row(1e-3, 0.1, 0.5, budget=8)]
    budget, trials = comparable_trials(rows, ACCURACY)
    assert budget == 4 and [score for _, score in trials] == [0.4, 0.35]
    rows.append(row(1e-5, 0.2, 0.1, budget=2))
    assert comparable_trials(rows, ACCURACY)[0] == 2  # now the most at 2 epochs
    # A trial stopped early or diverged counts at the budget asked for; a failed one not.
    rows.append({**row(1e-1, 0.2, None, budget=4, status="diverged"), "epochs": 1})
    rows.append(row(1e-1, 0.3, None, budget=4, status="failed"))
    rows.append(row(1e-4, 0.3, None, budget=4, status="failed"))
    budget, trials = comparable_trials(rows, ACCURACY)
    assert budget == 4 and len(trials) == 3
    assert trials[-1] == ({"optimizer.lr": 1e-1, "model.dropout": 0.2}, 0.35 - 1.0)  # worst


def test_too_few_configurations_give_none_and_few_a_note():
    too_few = param_importance(lr_matters(4), SPACE, ACCURACY)
    assert too_few.values == {} and too_few.note.startswith("no importance: 4 configurations")
    rough = param_importance(lr_matters(8), SPACE, ACCURACY)
    assert rough.values and "a rough guide" in rough.note and "2 configurations" in rough.note
    # Steady from the size whose best quarter holds STABLE_TOP configurations.
    steady = int(np.ceil((STABLE_TOP - 1) / TARGET_QUANTILE)) + 1
    assert param_importance(lr_matters(steady - 1), SPACE, ACCURACY).note is not None
    assert param_importance(lr_matters(steady), SPACE, ACCURACY).note is None
    same = [row(1e-3 * (i + 1), 0.1, 0.5) for i in range(8)]
    assert "scored the same" in param_importance(same, SPACE, ACCURACY).note


def test_choices_and_values_outside_the_space():
    space = {**SPACE, "model.activation": Choice(("relu", "tanh"))}
    rows = lr_matters(24)
    for i, r in enumerate(rows):
        r["overrides"]["model.activation"] = ("relu", "tanh")[i % 2]
    importance = param_importance(rows, space, ACCURACY)
    assert set(importance.values) == set(space) and importance.trials == 24
    assert next(iter(importance.values)) == "optimizer.lr"
    # Configured values outside the space (a dropout above it, an lr of 0 on its log
    # scale, an activation not among the choices) leave their trials out.
    rows[0]["overrides"]["model.dropout"] = 0.5
    rows[1]["overrides"]["optimizer.lr"] = 0.0
    rows[2]["overrides"]["model.activation"] = "gelu"
    assert param_importance(rows, space, ACCURACY).trials == 21


# ---------------------------------------------------------------------------------
# A small real search: Hydra multirun of the train stage on real CIFAR-10 images.
# ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_ARCHIVE.exists(), reason=f"needs {SHARED_ARCHIVE}")
def test_a_real_search_ranks_the_learning_rate_first(tmp_path):
    """20 random trials of 2 epochs on 400 real images (the first: the configured
    values): the learning rate spans 1e-6 to 1e-1 (from learning nothing to too much),
    dropout 0 to 0.01 (next to nothing)."""
    data = write_real_subset(tmp_path / "data", 400)
    sweep = tmp_path / "sweep"
    args = [sys.executable, str(ROOT / "stages" / "train.py"), "-m"]
    args += ["hydra/sweeper=npdl_random", "hydra.sweeper.n_trials=20", f"hydra.sweep.dir={sweep}"]
    args += [f"paths.data={data}", f"paths.run_store={tmp_path / 'store'}"]
    args += ["normalize.method=standardize", "model.input_pca=null", "model.batch_norm=false"]
    args += ["solver.hflip=false", "solver.crop_padding=0", "solver.warmup_epochs=0"]
    args += ["model.hidden_size=[32]", "solver.batch_size=64", "solver.epochs=2"]
    args += ["optimizer.weight_decay=0.0", "tune.keep_trial_models=false"]
    args += ["optimizer.lr=tag(log, interval(1e-6, 1e-1))", "model.dropout=interval(0, 0.01)"]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    importance = load_json(sweep / "best_overrides.json")["importance"]
    shares = importance["values"]
    assert max(shares, key=shares.get) == "optimizer.lr", importance
    # The configured values (dropout 0.2) lie outside the space: the 19 others count.
    assert importance["trials"] == 19 and importance["epochs"] == 2
    assert importance["note"] is None  # 19 configurations: 5 in the best quarter
    line = next(x for x in result.stdout.splitlines() if x.startswith("importance ("))
    assert line.startswith("importance (PED-ANOVA over 19 configurations at 2 epochs): lr ")
    assert "Hyperparameter importance" in (sweep / "leaderboard.md").read_text()
    json.dumps(importance)  # JSON-ready as written
