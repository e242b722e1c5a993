"""Grid, random and successive-halving searches as real Hydra multiruns of the train
stage, with the trial cache, on a tiny real subset of the shared CIFAR-10 archive."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SHARED_ARCHIVE, start_killable, write_real_subset
from npdl.io import load_json
from npdl.overrides import shown_number
from npdl.run.store import RunStore
from npdl.search import LEADERBOARD_COLUMNS
from npdl.threads import threads_per_worker

ROOT = Path(__file__).resolve().parents[1]

SPACE = ["optimizer.lr=tag(log, interval(1e-4, 1e-2))", "model.reg=choice(0.0,1e-4)"]
#: The configured values of SPACE's keys, as the leaderboard writes them: always a trial.
CONFIGURED = "model.reg=0.0 optimizer.lr=0.001"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_ARCHIVE.exists(), reason=f"needs {SHARED_ARCHIVE}"),
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """prepared/ and normalized/ for 400 real images (320 train, 40 val, 40 test)."""
    return write_real_subset(tmp_path_factory.mktemp("data"), 400)


def sweep_args(data_dir, cache, sweep_dir, sweeper, *overrides):
    return [
        sys.executable,
        str(ROOT / "stages" / "train.py"),
        "-m",
        f"hydra/sweeper={sweeper}",
        f"hydra.sweep.dir={sweep_dir}",
        f"paths.data={data_dir}",
        f"paths.run_store={cache}",
        "normalize.method=standardize",  # the fixture's data is standardised, not whitened
        "model.input_pca=null",  # principal components come with zca
        # A small plain recipe: these tests are about searching, not accuracy.
        "model.batch_norm=false",
        "model.dropout=0.0",
        "optimizer.weight_decay=0.0",
        "solver.hflip=false",
        "solver.crop_padding=0",
        "solver.warmup_epochs=0",
        "model.hidden_size=[16]",
        "solver.batch_size=64",
        "solver.epochs=2",
        *overrides,
    ]


def run_sweep(*args, env=None):
    result = subprocess.run(
        sweep_args(*args), capture_output=True, text=True, check=False, cwd=ROOT, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def leaderboard(sweep_dir):
    with open(sweep_dir / "leaderboard.csv") as handle:
        return list(csv.DictReader(handle))


#: Successive halving of 9 configurations from 1 to 3 epochs (eta 3).
HALVING_9_TO_3 = (
    "npdl_halving",
    "hydra.sweeper.n_configs=9",
    "hydra.sweeper.eta=3",
    "hydra.sweeper.min_epochs=1",
    "hydra.sweeper.max_epochs=3",
)


def as_numbers(overrides):
    """``{key: float}`` of a best_overrides dict or a leaderboard's override text."""
    if isinstance(overrides, str):
        overrides = dict(item.split("=", 1) for item in overrides.split())
    return {key: float(value) for key, value in overrides.items()}


def rows_by_epochs(rows):
    """Leaderboard rows grouped by their epoch budget (a rung of halving)."""
    grouped = {}
    for row in rows:
        grouped.setdefault(int(row["epochs"]), []).append(row)
    return grouped


def events(cache, kind=None):
    path = cache / "events.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [e for e in lines if kind is None or e["event"] == kind]


def test_random_search_is_seeded_cached_and_grows(data_dir, tmp_path):
    cache = tmp_path / "cache"
    out = run_sweep(
        data_dir, cache, tmp_path / "a", "npdl_random", "hydra.sweeper.n_trials=4", *SPACE
    )
    rows = leaderboard(tmp_path / "a")
    assert len(rows) == 4 and [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    assert all(
        1e-4 <= float(r["overrides"].split("optimizer.lr=")[1].split()[0]) <= 1e-2 for r in rows
    )
    assert len(events(cache, "store")) == 4 and "4 trials, 0 from the cache" in out
    # One line per finished trial, its values to 3 significant digits.
    lines = [line for line in out.splitlines() if line.startswith("trial ")]
    assert [line.split()[1] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]
    with open(tmp_path / "a" / "trials.csv") as handle:
        ran = list(csv.DictReader(handle))
    for line, trial in zip(lines, ran, strict=True):
        values = dict(item.split("=", 1) for item in trial["overrides"].split())
        assert f"lr={shown_number(float(values['optimizer.lr']))} " in line
        assert f"  2 ep  val_acc {shown_number(100 * float(trial['val_acc']))}%  best " in line
        shown = re.findall(r"lr=([0-9.e-]+)", line)[0]
        assert len(shown.split("e")[0].replace(".", "").lstrip("0")) <= 3, line
    assert len(list((tmp_path / "a").glob("*/metrics/train.json"))) == 4

    # The same sweep again: every trial from the cache, nothing trained.
    stored = len(events(cache, "store"))
    run_sweep(data_dir, cache, tmp_path / "b", "npdl_random", "hydra.sweeper.n_trials=4", *SPACE)
    assert len(events(cache, "store")) == stored
    assert len(events(cache, "hit")) == 4
    again = leaderboard(tmp_path / "b")
    assert [r["overrides"] for r in again] == [r["overrides"] for r in rows]
    assert [r["val_acc"] for r in again] == [r["val_acc"] for r in rows]
    with open(tmp_path / "b" / "trials.csv") as handle:  # the trial log says how it ran
        assert {r["cache_hit"] for r in csv.DictReader(handle)} == {"True"}
    # What the search found, to the byte: ranks, overrides, scores, store entries.
    for name in ("leaderboard.csv", "leaderboard.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()

    # Grown to 6 points: only the 2 new ones train.
    run_sweep(data_dir, cache, tmp_path / "c", "npdl_random", "hydra.sweeper.n_trials=6", *SPACE)
    assert len(events(cache, "store")) == stored + 2
    grown = {r["overrides"] for r in leaderboard(tmp_path / "c")}
    assert {r["overrides"] for r in rows} < grown


def test_other_seed_other_points(data_dir, tmp_path):
    run_sweep(
        data_dir,
        tmp_path / "cache",
        tmp_path / "a",
        "npdl_random",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.seed=1",
        *SPACE,
    )
    run_sweep(
        data_dir,
        tmp_path / "cache",
        tmp_path / "b",
        "npdl_random",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.seed=2",
        *SPACE,
    )
    first = {r["overrides"] for r in leaderboard(tmp_path / "a")}
    second = {r["overrides"] for r in leaderboard(tmp_path / "b")}
    # Both start from the configured values (conf/: optimizer.lr 1e-3, model.reg 0);
    # every drawn point differs.
    assert CONFIGURED in first and CONFIGURED in second
    assert (first - {CONFIGURED}).isdisjoint(second - {CONFIGURED})


def test_halving_promotes_the_top_third_and_resumes(data_dir, tmp_path):
    cache = tmp_path / "cache"
    run_sweep(
        data_dir,
        cache,
        tmp_path / "h",
        "npdl_halving",
        "hydra.sweeper.include_defaults=false",  # plain halving: no point kept
        "hydra.sweeper.n_configs=9",
        "hydra.sweeper.eta=3",
        "hydra.sweeper.min_epochs=1",
        "hydra.sweeper.max_epochs=9",
        *SPACE,
    )
    rows = leaderboard(tmp_path / "h")
    by_epochs = rows_by_epochs(rows)
    assert {e: len(r) for e, r in by_epochs.items()} == {1: 9, 3: 3, 9: 1}
    # The promoted three are the three best of rung 0.
    rung0 = sorted(by_epochs[1], key=lambda r: -float(r["val_acc"]))
    assert {r["overrides"] for r in rung0[:3]} == {r["overrides"] for r in by_epochs[3]}
    # Promotions resumed from checkpoints: epochs trained = 9*1 + 3*(3-1) + 1*(9-3).
    resumed = events(cache, "resume")
    assert sorted(e["from_epoch"] for e in resumed) == [1, 1, 1, 3]
    trained = sum(e["epochs"] - (e["resumed_from"] or 0) for e in events(cache, "store"))
    assert trained == 9 + 6 + 6
    best = json.loads((tmp_path / "h" / "best_overrides.json").read_text())
    assert best["epochs_trained"] == 9 + 6 + 6 and best["trials"] == 13
    winner = dict(item.split("=", 1) for item in by_epochs[9][0]["overrides"].split())
    assert {k: float(v) for k, v in best["overrides"].items()} == {
        k: float(v) for k, v in winner.items()
    }


def checkpoints(cache) -> set:
    """Lineages with a checkpoint in the store."""
    return {path.parent.name for path in cache.glob("trials/*/checkpoint.npz")}


def test_halving_drops_eliminated_checkpoints_keeps_results_and_a_grown_search_retrains(
    data_dir, tmp_path
):
    # The plain recipe (no weight average, no label smoothing): with it the grown search
    # below promotes a trial the first one eliminated, the case this test is about.
    plain = ("solver.ema=null", "solver.label_smoothing=0.0")
    cache = tmp_path / "cache"
    run_sweep(data_dir, cache, tmp_path / "h", *HALVING_9_TO_3, *SPACE, *plain)
    rows = leaderboard(tmp_path / "h")
    top = {r["lineage"] for r in rows if r["budget"] == "3"}
    eliminated = {r["lineage"] for r in rows} - top
    assert len(top) == 3 and len(eliminated) == 6
    # Only the top rung's checkpoints are left; every trial's result and model stays.
    assert checkpoints(cache) == top
    store = RunStore(cache)
    for row in rows:
        assert store.load_result(row["lineage"], int(row["budget"]))["status"] == "ok"
        assert store.model_path(row["lineage"], int(row["budget"])).is_file()
    pruned = events(cache, "pruned")
    assert {e["lineage"] for e in pruned} == eliminated
    assert {(e["epochs"], e["from_epoch"]) for e in pruned} == {(1, 1)}

    # Rerun: every trial a hit, nothing left to drop. Grown to 18 configurations: a
    # trial eliminated before and promoted now trains its 3 epochs from scratch; a new
    # one resumes from this search's 1-epoch checkpoint.
    run_sweep(data_dir, cache, tmp_path / "again", *HALVING_9_TO_3, *SPACE, *plain)
    assert len(events(cache, "pruned")) == 6
    before = len(events(cache))
    grow = "hydra.sweeper.n_configs=18"
    run_sweep(data_dir, cache, tmp_path / "grown", *HALVING_9_TO_3, grow, *SPACE, *plain)
    grown = events(cache)[before:]
    promoted = {r["lineage"] for r in leaderboard(tmp_path / "grown") if r["budget"] == "3"}
    assert len(promoted) == 6
    stored = {e["lineage"]: e["resumed_from"] for e in grown if e["event"] == "store"}
    hits = {e["lineage"] for e in grown if e["event"] == "hit" and e["epochs"] == 3}
    assert hits == promoted & top
    assert promoted & eliminated  # (one here: the case this checks)
    assert {lineage: stored[lineage] for lineage in promoted & eliminated} == dict.fromkeys(
        promoted & eliminated
    )
    assert {stored[lineage] for lineage in promoted - top - eliminated} <= {1}
    # Left: the top rung's lineages' checkpoints of their last rung below the top; an
    # eliminee promoted now trained straight to the schedule's end, which writes none.
    assert checkpoints(cache) == promoted - eliminated

    # hydra.sweeper.keep_checkpoints=true keeps them: the same growth resumes instead.
    kept = tmp_path / "kept"
    run_sweep(
        data_dir,
        kept,
        tmp_path / "k",
        *HALVING_9_TO_3,
        "hydra.sweeper.keep_checkpoints=true",
        *SPACE,
    )
    assert len(checkpoints(kept)) == 9 and events(kept, "pruned") == []


def test_resumed_trial_equals_uninterrupted_training(data_dir, tmp_path):
    """A trial resumed from a 1-epoch checkpoint matches one trained straight to 3."""
    point = ["optimizer.lr=3e-3", "model.reg=1e-4", "solver.schedule_epochs=3"]
    run_sweep(data_dir, tmp_path / "c1", tmp_path / "a", "basic", *point, "solver.epochs=1,3")
    run_sweep(data_dir, tmp_path / "c2", tmp_path / "b", "basic", *point, "solver.epochs=3")
    assert [e["from_epoch"] for e in events(tmp_path / "c1", "resume")] == [1]
    resumed = json.loads((tmp_path / "a" / "1" / "metrics" / "train.json").read_text())
    straight = json.loads((tmp_path / "b" / "0" / "metrics" / "train.json").read_text())
    assert resumed["val_loss"] == pytest.approx(straight["val_loss"], rel=1e-6)
    assert resumed["val_acc"] == straight["val_acc"]


def test_a_sweep_prints_one_line_per_trial_and_logs_the_detail(data_dir, tmp_path):
    """The documented `-m lr=... reg=...` (the shortcut keys) runs npdl's grid, the
    default sweeper: a header, one line per trial, the leaderboard and the winner on the
    console; Hydra's per-job lines in the sweep's log, each job's own in its folder's."""
    sweep = tmp_path / "s"
    args = sweep_args(data_dir, tmp_path / "cache", sweep, "npdl_grid", "lr=1e-3,3e-3")
    args.remove("hydra/sweeper=npdl_grid")  # the default
    args.append("reg=0.0,1e-4")
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout.splitlines()
    assert out[0] == "grid search over lr, reg: 4 trials, 2 epochs each"
    assert out[1].startswith(f"logs: {sweep / 'sweep.log'} (the launcher's)")
    trials = [line for line in out if line.startswith("trial ")]
    assert [line.split("  ")[:2] for line in trials] == [
        ["trial 1/4", "lr=0.001 reg=0"],
        ["trial 2/4", "lr=0.001 reg=0.0001"],
        ["trial 3/4", "lr=0.003 reg=0"],
        ["trial 4/4", "lr=0.003 reg=0.0001"],
    ]
    assert out[2:6] == trials  # nothing between them
    assert out[6].split() == list(LEADERBOARD_COLUMNS)  # the leaderboard follows
    assert out[-2].startswith("best: lr=") and out[-1].startswith(f"reports: {sweep}")
    # Not on the console: Hydra's launcher lines, the jobs' logging and prints.
    for text in ("#0 :", "Launching", "(Epoch 1)", "trained:", "cache miss"):
        assert text not in result.stdout + result.stderr, text
    launcher_log = (sweep / "sweep.log").read_text()
    assert "Launching 1 jobs locally" in launcher_log and "#3 : " in launcher_log
    for job in range(4):
        job_log = (sweep / str(job) / "train.log").read_text()
        assert "cache miss" in job_log and "(Epoch 2)" in job_log and "trained: {" in job_log
    assert len(leaderboard(sweep)) == 4


def test_grid_through_basic_and_npdl_grid(data_dir, tmp_path):
    run_sweep(
        data_dir,
        tmp_path / "cache",
        tmp_path / "g",
        "npdl_grid",
        "optimizer.lr=1e-3,3e-3",
        "model.reg=0.0,1e-4",
    )
    assert len(leaderboard(tmp_path / "g")) == 4
    # Hydra's own basic sweeper: same 4 trials, all from the cache now.
    run_sweep(
        data_dir,
        tmp_path / "cache",
        tmp_path / "b",
        "basic",
        "optimizer.lr=1e-3,3e-3",
        "model.reg=0.0,1e-4",
    )
    assert len(events(tmp_path / "cache", "hit")) == 4
    assert len(list((tmp_path / "b").glob("*/metrics/train.json"))) == 4


def test_two_joblib_workers_give_the_same_leaderboard(data_dir, tmp_path):
    args = ("npdl_random", "hydra.sweeper.n_trials=4", *SPACE)
    run_sweep(data_dir, tmp_path / "c1", tmp_path / "one", *args)
    run_sweep(
        data_dir,
        tmp_path / "c2",
        tmp_path / "two",
        *args,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    )
    pids = {e["pid"] for e in events(tmp_path / "c2", "store")}
    assert len(pids) == 2  # really two processes
    # Each worker gets its share of the cores for BLAS and the optimizer's threads.
    threads = {load_json(f)["threads"] for f in (tmp_path / "two").glob("*/metrics/train.json")}
    assert threads == {threads_per_worker(2)}
    keep = ("rank", "overrides", "val_acc", "epochs", "status")
    one, two = leaderboard(tmp_path / "one"), leaderboard(tmp_path / "two")
    assert [{k: r[k] for k in keep} for r in one] == [{k: r[k] for k in keep} for r in two]
    # Workers run BLAS on fewer threads, which sums float32 products in another order:
    # losses agree to float32 precision, not to the last bit.
    assert [float(r["val_loss"]) for r in one] == pytest.approx(
        [float(r["val_loss"]) for r in two], rel=1e-4
    )


def test_diverged_and_failed_trials_are_recorded_and_the_sweep_goes_on(data_dir, tmp_path):
    cache = tmp_path / "cache"
    # lr=1e6 diverges; Relu takes no `slope`, so its trials fail inside training setup.
    out = run_sweep(
        data_dir,
        cache,
        tmp_path / "s",
        "npdl_grid",
        "optimizer=sgd",
        "optimizer.lr=1e-3,1e6",
        "model.activation=leaky_relu,relu",
        "+model.activation_kwargs.slope=0.1",
    )
    # Each trial that did not finish says so on its line, with its log, which says why.
    lines = [line for line in out.splitlines() if line.startswith("trial ")]
    assert "lr=1e6 activation=leaky_relu  diverged in its first epoch  log: " in lines[2]
    for line in (lines[1], lines[3]):
        assert "activation=relu  FAILED: TypeError: Relu() takes no arguments  log: " in line
        assert "Relu() takes no arguments" in Path(line.split("log: ")[1]).read_text()
    rows = {tuple(sorted(r["overrides"].split())): r for r in leaderboard(tmp_path / "s")}
    statuses = {key: row["status"] for key, row in rows.items()}
    assert statuses == {
        ("model.activation=leaky_relu", "optimizer.lr=0.001"): "ok",
        ("model.activation=leaky_relu", "optimizer.lr=1000000.0"): "diverged",
        ("model.activation=relu", "optimizer.lr=0.001"): "failed",
        ("model.activation=relu", "optimizer.lr=1000000.0"): "failed",
    }
    assert [r["rank"] for r in rows.values() if r["status"] == "ok"] == ["1"]
    # Failures are kept for reading in the store's failures/, not stored as results.
    failures = [json.loads(p.read_text()) for p in cache.glob("failures/*/epochs-*.json")]
    tracebacks = [r["traceback"] for r in failures if r["status"] == "failed"]
    assert len(tracebacks) == 2 and all("takes no arguments" in t for t in tracebacks)
    results = [json.loads(p.read_text()) for p in cache.glob("trials/*/epochs-*/result.json")]
    assert sorted(r["status"] for r in results) == ["diverged", "ok"]

    # Rerun: the failed trials are tried again; the ok and the (deterministic)
    # diverged one come from the store.
    before = len(events(cache))
    run_sweep(
        data_dir,
        cache,
        tmp_path / "s2",
        "npdl_grid",
        "optimizer=sgd",
        "optimizer.lr=1e-3,1e6",
        "model.activation=leaky_relu,relu",
        "+model.activation_kwargs.slope=0.1",
    )
    rerun = events(cache)[before:]
    assert sorted(e["event"] for e in rerun) == ["failed", "failed", "hit", "hit", "miss", "miss"]


def test_sigkill_mid_sweep_then_rerun_completes_it(data_dir, tmp_path):
    cache = tmp_path / "cache"
    args = sweep_args(
        data_dir,
        cache,
        tmp_path / "k",
        "npdl_random",
        "hydra.sweeper.n_trials=6",
        "solver.epochs=6",
        "model.hidden_size=[256]",
        *SPACE,
    )
    process = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while len(events(cache, "store")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into the middle of the next trial
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = {e["lineage"] for e in events(cache, "store")}
    assert 2 <= len(finished) < 6
    # Whatever was on disk is complete: every entry readable, no stray temp folders
    # visible as entries.
    for entry in cache.glob("trials/*/epochs-*"):
        assert json.loads((entry / "result.json").read_text())["status"] == "ok"

    run_sweep(
        data_dir,
        cache,
        tmp_path / "k2",
        "npdl_random",
        "hydra.sweeper.n_trials=6",
        "solver.epochs=6",
        "model.hidden_size=[256]",
        *SPACE,
    )
    rows = leaderboard(tmp_path / "k2")
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}
    hits = {e["lineage"] for e in events(cache, "hit")}
    assert finished <= hits  # every trial finished before the kill was reused


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_damaged_model_or_result_in_the_store_is_retrained_not_served(data_dir, tmp_path):
    cache = tmp_path / "cache"
    search = ("npdl_random", "hydra.sweeper.n_trials=4", *SPACE)
    run_sweep(data_dir, cache, tmp_path / "a", *search)
    first = leaderboard(tmp_path / "a")
    entries = sorted((cache / "trials").glob("*/epochs-*"))
    assert len(entries) == 4 and all((e / "manifest.json").is_file() for e in entries)
    damaged_model, damaged_result = entries[0], entries[1]
    original_model = (damaged_model / "model.npz").read_bytes()
    flip_one_byte(damaged_model / "model.npz")
    flip_one_byte(damaged_result / "result.json")
    before = len(events(cache))

    run_sweep(data_dir, cache, tmp_path / "b", *search)
    rerun = events(cache)[before:]
    corrupt = [e for e in rerun if e["event"] == "corrupt"]
    assert sorted(e["path"] for e in corrupt) == sorted(map(str, (damaged_model, damaged_result)))
    assert (
        "model.npz: sha256" in next(e for e in corrupt if e["path"] == str(damaged_model))["reason"]
    )
    damaged = {damaged_model.parent.name, damaged_result.parent.name}
    assert {e["lineage"] for e in rerun if e["event"] == "store"} == damaged
    assert {e["lineage"] for e in rerun if e["event"] == "hit"} == {
        e.parent.name for e in entries
    } - damaged
    # The bad entries were set aside, and rebuilt whole: the same model bytes as before.
    assert len(list((cache / "corrupt").iterdir())) == 2
    assert (damaged_model / "model.npz").read_bytes() == original_model
    again = leaderboard(tmp_path / "b")
    assert [(r["overrides"], r["val_acc"]) for r in again] == [
        (r["overrides"], r["val_acc"]) for r in first
    ]
    # A third run: all four are hits again, nothing is corrupt.
    settled = len(events(cache))
    run_sweep(data_dir, cache, tmp_path / "c", *search)
    assert {e["event"] for e in events(cache)[settled:]} == {"hit"}


def test_halving_on_val_loss_promotes_the_lowest_losses_and_all_agree(data_dir, tmp_path):
    run_sweep(
        data_dir,
        tmp_path / "cache",
        tmp_path / "h",
        "npdl_halving",
        "hydra.sweeper.include_defaults=false",  # plain halving: no point kept
        "hydra.sweeper.metric=val_loss",
        "hydra.sweeper.n_configs=6",
        "hydra.sweeper.eta=3",
        "hydra.sweeper.min_epochs=1",
        "hydra.sweeper.max_epochs=3",
        *SPACE,
    )
    rows = leaderboard(tmp_path / "h")
    by_epochs = rows_by_epochs(rows)
    assert {e: len(r) for e, r in by_epochs.items()} == {1: 6, 3: 2}
    # The two promoted are the two lowest losses of rung 0, not the highest.
    rung0 = sorted(by_epochs[1], key=lambda r: float(r["val_loss"]))
    assert {r["overrides"] for r in rung0[:2]} == {r["overrides"] for r in by_epochs[3]}
    # The leaderboard ranks by loss, lowest first; its first row is the halving winner
    # (the lowest loss at the top rung) and best_overrides.json names the same.
    assert [float(r["val_loss"]) for r in rows] == sorted(float(r["val_loss"]) for r in rows)
    top = min(by_epochs[3], key=lambda r: float(r["val_loss"]))
    best = json.loads((tmp_path / "h" / "best_overrides.json").read_text())
    assert best["metric"] == "val_loss"
    winner = dict(item.split("=", 1) for item in top["overrides"].split())
    assert {k: float(v) for k, v in best["overrides"].items()} == {
        k: float(v) for k, v in winner.items()
    }


def test_the_configured_values_are_a_trial_and_reach_the_top_rung(data_dir, tmp_path):
    run_sweep(
        data_dir,
        tmp_path / "cache",
        tmp_path / "h",
        *HALVING_9_TO_3,
        *SPACE,
    )
    rows = rows_by_epochs(leaderboard(tmp_path / "h"))
    assert CONFIGURED in {r["overrides"] for r in rows[1]}
    assert CONFIGURED in {r["overrides"] for r in rows[3]}  # never eliminated
    top = rows[3]
    configured = next(r for r in top if r["overrides"] == CONFIGURED)
    best = json.loads((tmp_path / "h" / "best_overrides.json").read_text())
    winner = next(r for r in top if r["rank"] == min(t["rank"] for t in top))
    assert float(winner["val_acc"]) >= float(configured["val_acc"])
    assert as_numbers(best["overrides"]) == as_numbers(winner["overrides"])


def test_a_finite_space_smaller_than_asked_is_tried_once_each(data_dir, tmp_path):
    result = subprocess.run(
        sweep_args(
            data_dir,
            tmp_path / "cache",
            tmp_path / "r",
            "npdl_random",
            "hydra.sweeper.n_trials=6",
            "optimizer.lr=choice(1e-5,3e-4,1e-3,3e-1)",
        ),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "the space has only 4 points: each is tried once (asked for 6)" in result.stdout
    lrs = sorted(float(r["overrides"].split("=")[1]) for r in leaderboard(tmp_path / "r"))
    assert lrs == [1e-5, 3e-4, 1e-3, 3e-1]


def test_hyperband_runs_its_brackets_and_resumes_promotions(data_dir, tmp_path):
    cache = tmp_path / "cache"
    run_sweep(
        data_dir,
        cache,
        tmp_path / "hb",
        "npdl_hyperband",
        "hydra.sweeper.include_defaults=false",
        "hydra.sweeper.eta=3",
        "hydra.sweeper.min_epochs=1",
        "hydra.sweeper.max_epochs=3",
        *SPACE,
    )
    # Brackets (3 at 1 epoch -> 1 at 3) and (2 at 3): 6 trials, 5 configurations.
    rows = leaderboard(tmp_path / "hb")
    assert {e: len(r) for e, r in rows_by_epochs(rows).items()} == {1: 3, 3: 3}
    assert len({r["overrides"] for r in rows}) == 5
    # The promoted configuration resumed from its 1-epoch checkpoint.
    assert [e["from_epoch"] for e in events(cache, "resume")] == [1]
    best = json.loads((tmp_path / "hb" / "best_overrides.json").read_text())
    top = min((r for r in rows if r["epochs"] == "3"), key=lambda r: int(r["rank"]))
    assert best["sampler"] == "hyperband" and best["epochs_trained"] == 3 + 2 + 6
    assert as_numbers(best["overrides"]) == as_numbers(top["overrides"])


TPE_SEARCH = ("npdl_tpe", "hydra.sweeper.n_trials=6", "hydra.sweeper.n_startup=3", *SPACE)


def test_tpe_is_seeded_rebuilt_from_the_store_and_grows(data_dir, tmp_path):
    cache = tmp_path / "cache"
    run_sweep(data_dir, cache, tmp_path / "a", *TPE_SEARCH)
    first = leaderboard(tmp_path / "a")
    assert len(first) == 6 and len({r["overrides"] for r in first}) == 6
    assert CONFIGURED in {r["overrides"] for r in first}
    stored = len(events(cache, "store"))
    # Rerun: the model is rebuilt from the store's results, proposes the same points,
    # and every trial is a hit.
    run_sweep(data_dir, cache, tmp_path / "b", *TPE_SEARCH)
    assert len(events(cache, "store")) == stored
    again = leaderboard(tmp_path / "b")
    assert [(r["overrides"], r["val_acc"]) for r in again] == [
        (r["overrides"], r["val_acc"]) for r in first
    ]
    # Grown to 8 trials: only the 2 new ones train.
    run_sweep(data_dir, cache, tmp_path / "c", *TPE_SEARCH, "hydra.sweeper.n_trials=8")
    assert len(events(cache, "store")) == stored + 2
    assert {r["overrides"] for r in first} < {r["overrides"] for r in leaderboard(tmp_path / "c")}


def test_tpe_on_val_loss_picks_the_lowest_loss(data_dir, tmp_path):
    run_sweep(
        data_dir, tmp_path / "cache", tmp_path / "l", *TPE_SEARCH, "hydra.sweeper.metric=val_loss"
    )
    rows = leaderboard(tmp_path / "l")
    best = json.loads((tmp_path / "l" / "best_overrides.json").read_text())
    lowest = min(rows, key=lambda r: float(r["val_loss"]))
    assert rows[0]["overrides"] == lowest["overrides"]
    assert as_numbers(best["overrides"]) == as_numbers(lowest["overrides"])


BOHB_SEARCH = (
    "npdl_bohb",
    "hydra.sweeper.eta=2",
    "hydra.sweeper.min_epochs=1",
    "hydra.sweeper.max_epochs=4",
    *SPACE,
)


#: Successive halving whose rungs are finished runs (each rung's schedule its own).
OWN_RUNGS_SEARCH = (*HALVING_9_TO_3, "hydra.sweeper.rung_schedule=own", *SPACE)


#: TPE with warm starts: the killed search's stored trials are its own on the rerun,
#: never told to it as an earlier search's (its points are recorded before launch).
WARM_TPE_SEARCH = (*TPE_SEARCH, "hydra.sweeper.warm_start=true")


@pytest.mark.parametrize(
    "search",
    [TPE_SEARCH, BOHB_SEARCH, OWN_RUNGS_SEARCH, WARM_TPE_SEARCH],
    ids=["tpe", "bohb", "own-rungs", "tpe-warm-start"],
)
def test_model_based_search_killed_and_rerun_ends_as_an_uninterrupted_one(
    data_dir, tmp_path, search
):
    run_sweep(data_dir, tmp_path / "c1", tmp_path / "whole", *search)
    whole = leaderboard(tmp_path / "whole")
    winner = json.loads((tmp_path / "whole" / "best_overrides.json").read_text())["overrides"]
    cache = tmp_path / "c2"
    process = start_killable(sweep_args(data_dir, cache, tmp_path / "k", *search), ROOT)
    deadline = time.monotonic() + 300
    while len(events(cache, "store")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = {(e["lineage"], e["epochs"]) for e in events(cache, "store")}
    before_the_end = len(whole) if search is OWN_RUNGS_SEARCH else 6
    assert 3 <= len(finished) < before_the_end, "the kill came too late to interrupt the search"
    run_sweep(data_dir, cache, tmp_path / "rerun", *search)
    rerun = leaderboard(tmp_path / "rerun")
    assert [(r["overrides"], r["epochs"], r["val_acc"]) for r in rerun] == [
        (r["overrides"], r["epochs"], r["val_acc"]) for r in whole
    ]
    assert (
        json.loads((tmp_path / "rerun" / "best_overrides.json").read_text())["overrides"] == winner
    )
    hits = {(e["lineage"], e["epochs"]) for e in events(cache, "hit")}
    assert finished <= hits  # every trial finished before the kill came from the store


def test_bohb_proposes_from_the_model_after_its_first_bracket(data_dir, tmp_path):
    budgets = ("hydra.sweeper.eta=2", "hydra.sweeper.min_epochs=1", "hydra.sweeper.max_epochs=4")
    boards = {}
    for sampler in ("npdl_hyperband", "npdl_bohb"):
        sweep = tmp_path / sampler
        run_sweep(data_dir, tmp_path / "cache", sweep, sampler, *budgets, *SPACE)
        boards[sampler] = leaderboard(sweep)

    def first_bracket_and_later(rows):
        first = {r["overrides"] for r in rows if r["epochs"] == "1"}
        return first, {r["overrides"] for r in rows} - first

    # Brackets (4 at 1 epoch), (3 at 2), (3 at 4): ten configurations each.
    hb_first, hb_later = first_bracket_and_later(boards["npdl_hyperband"])
    bohb_first, bohb_later = first_bracket_and_later(boards["npdl_bohb"])
    assert len(hb_first) == len(bohb_first) == 4 and len(bohb_later) == 6
    assert bohb_first == hb_first and CONFIGURED in bohb_first  # the same random start
    assert bohb_later.isdisjoint(hb_later)  # then the TPE model's proposals, not draws
    best = json.loads((tmp_path / "npdl_bohb" / "best_overrides.json").read_text())
    top = min((r for r in boards["npdl_bohb"] if r["epochs"] == "4"), key=lambda r: int(r["rank"]))
    assert best["sampler"] == "bohb"
    assert as_numbers(best["overrides"]) == as_numbers(top["overrides"])


def test_halving_reports_rank_agreement_and_audits_eliminated_trials(data_dir, tmp_path):
    out = run_sweep(
        data_dir,
        tmp_path / "cache",
        tmp_path / "h",
        *HALVING_9_TO_3,
        "hydra.sweeper.audit=2",
        *SPACE,
    )
    rows = leaderboard(tmp_path / "h")
    best = json.loads((tmp_path / "h" / "best_overrides.json").read_text())
    (pair,) = best["fidelity"]
    at = rows_by_epochs(rows)
    assert pair["from_epochs"] == 1 and pair["to_epochs"] == 3 and pair["n"] == len(at[3])
    # The audit trained 2 eliminated configurations to 3 epochs, kept out of the board.
    assert best["audit"]["trained"] == 2 and 0 <= best["audit"]["beat_winner"] <= 2
    audited = {json.dumps(t["overrides"], sort_keys=True) for t in best["audit"]["trials"]}
    assert len(audited) == 2 and len(at[3]) in (3, 4)  # top third (+ the configured values)
    assert CONFIGURED in {r["overrides"] for r in at[3]}
    assert "Rank agreement between budgets" in (tmp_path / "h" / "leaderboard.md").read_text()
    warned = "predicts the 3-epoch one poorly" in out
    assert warned == (pair["spearman"] is not None and pair["spearman"] < 0.5)


ASHA = (
    "npdl_asha",
    "hydra.sweeper.n_configs=6",
    "hydra.sweeper.eta=3",
    "hydra.sweeper.min_epochs=1",
    "hydra.sweeper.max_epochs=3",
    "hydra.sweeper.workers=2",
    *SPACE,
)


def test_asha_schedule_depends_on_workers_not_on_how_the_launcher_runs_them(data_dir, tmp_path):
    run_sweep(data_dir, tmp_path / "c1", tmp_path / "basic", *ASHA)
    run_sweep(
        data_dir,
        tmp_path / "c2",
        tmp_path / "joblib",
        *ASHA,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    )
    assert len({e["pid"] for e in events(tmp_path / "c2", "store")}) == 2  # two processes
    keep = ("rank", "overrides", "val_acc", "epochs", "status")
    basic, joblib = leaderboard(tmp_path / "basic"), leaderboard(tmp_path / "joblib")
    assert [{k: r[k] for k in keep} for r in basic] == [{k: r[k] for k in keep} for r in joblib]
    # Promotions happened before the first rung was complete: the first promotion's
    # store event comes before the last first-rung configuration's.
    stores = [(e["epochs"], e["lineage"]) for e in events(tmp_path / "c1", "store")]
    first_promotion = next(i for i, (epochs, _) in enumerate(stores) if epochs == 3)
    last_new = max(i for i, (epochs, _) in enumerate(stores) if epochs == 1)
    assert first_promotion < last_new
    best = json.loads((tmp_path / "basic" / "best_overrides.json").read_text())
    assert best["sampler"] == "asha" and best["overrides"]


def test_tpe_under_asha_is_a_pair_of_names_on_the_one_sweeper(data_dir, tmp_path):
    # The same search twice: once by its two names, once with the older option names
    # of the named searches (n_configs, max_epochs, workers) on npdl_asha plus tpe.
    composed = (
        "npdl",
        "hydra.sweeper.proposer=tpe",
        "hydra.sweeper.scheduler=asha",
        "hydra.sweeper.n_trials=5",
        "hydra.sweeper.epochs=4",
        "hydra.sweeper.min_epochs=1",
        "hydra.sweeper.eta=2",
        *SPACE,
    )
    run_sweep(data_dir, tmp_path / "cache", tmp_path / "a", *composed)
    older = (
        "npdl_asha",
        "hydra.sweeper.proposer=tpe",
        "hydra.sweeper.n_configs=5",
        "hydra.sweeper.max_epochs=4",
        "hydra.sweeper.min_epochs=1",
        "hydra.sweeper.eta=2",
        "hydra.sweeper.workers=1",
        *SPACE,
    )
    run_sweep(data_dir, tmp_path / "cache", tmp_path / "b", *older)
    rows = leaderboard(tmp_path / "a")
    assert len({r["overrides"] for r in rows if r["epochs"] == "1"}) == 5
    assert {int(r["epochs"]) for r in rows} == {1, 2, 4}
    assert CONFIGURED in {r["overrides"] for r in rows if r["epochs"] == "4"}  # always promoted
    assert (tmp_path / "a" / "leaderboard.csv").read_bytes() == (
        tmp_path / "b" / "leaderboard.csv"
    ).read_bytes()
    best = json.loads((tmp_path / "a" / "best_overrides.json").read_text())
    assert (best["sampler"], best["proposer"], best["scheduler"]) == ("tpe+asha", "tpe", "asha")


def test_a_wider_search_is_told_the_earlier_searchs_trials_and_retrains_none(data_dir, tmp_path):
    cache = tmp_path / "cache"
    narrow = ["optimizer.lr=tag(log, interval(1e-3, 1e-2))", "model.reg=choice(0.0,1e-4)"]
    tpe = (
        "npdl_tpe",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_startup=2",
        "hydra.sweeper.warm_start=true",
    )
    run_sweep(data_dir, cache, tmp_path / "narrow", *tpe, *narrow)
    first = {r["lineage"] for r in leaderboard(tmp_path / "narrow")}
    stored = {e["lineage"] for e in events(cache, "store")}
    assert first <= stored and len(first) == 4
    # A wider space holds every trial of the first search: the three that are not the
    # configured values' (this search's own first trial) are told to TPE, and none of
    # them is trained again.
    run_sweep(data_dir, cache, tmp_path / "wide", *tpe, *SPACE)
    best = json.loads((tmp_path / "wide" / "best_overrides.json").read_text())
    assert best["warm_start"] == {"trials": 3}
    trained_now = {e["lineage"] for e in events(cache, "store")} - stored
    assert trained_now.isdisjoint(first)
    assert len(trained_now) == 3  # 4 trials, the configured values' a hit
    wide = leaderboard(tmp_path / "wide")
    # Repeatable: the same wide search again is told the same trials (never its own)
    # and proposes the same points, all from the store.
    run_sweep(data_dir, cache, tmp_path / "again", *tpe, *SPACE)
    assert {e["lineage"] for e in events(cache, "store")} - stored == trained_now
    assert leaderboard(tmp_path / "again") == wide
    assert json.loads((tmp_path / "again" / "best_overrides.json").read_text())["warm_start"] == {
        "trials": 3
    }
    # Killed after its trials stored their results and before it recorded them as its
    # own: the points it launched were recorded first, so its rerun still tells only
    # the first search's trials and proposes the same points.
    records = [
        p
        for p in (cache / "searches").glob("*.json")
        if trained_now <= set(json.loads(p.read_text())["lineages"])
    ]
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert len(record["points"]) == 4
    records[0].write_text(json.dumps({**record, "lineages": []}))
    run_sweep(data_dir, cache, tmp_path / "rerun", *tpe, *SPACE)
    assert leaderboard(tmp_path / "rerun") == wide
    assert json.loads((tmp_path / "rerun" / "best_overrides.json").read_text())["warm_start"] == {
        "trials": 3
    }
    # Off: nothing told, and TPE proposes what a cold search proposes.
    run_sweep(data_dir, cache, tmp_path / "cold", *tpe[:-1], *SPACE)  # the default: off
    assert json.loads((tmp_path / "cold" / "best_overrides.json").read_text())["warm_start"] is None


def test_rungs_on_their_own_schedules_are_finished_runs_and_promotions_train_afresh(
    data_dir, tmp_path
):
    cache = tmp_path / "cache"
    run_sweep(
        data_dir,
        cache,
        tmp_path / "own",
        *HALVING_9_TO_3,
        *SPACE,
        "hydra.sweeper.rung_schedule=own",
    )
    store = RunStore(cache)
    rows = leaderboard(tmp_path / "own")
    assert {int(r["epochs"]) for r in rows} == {1, 3}
    for row in rows:
        # Each rung's learning-rate schedule ends at its own budget.
        horizon = store.description(row["lineage"])["training"]["solver"]["schedule_epochs"]
        assert horizon == int(row["budget"])
    with open(tmp_path / "own" / "trials.csv") as handle:
        log = list(csv.DictReader(handle))
    assert all(r["resumed_from"] == "" for r in log)  # nothing to resume: other lineages
    # The shared schedule (the default) resumes its promotions from their checkpoints.
    run_sweep(data_dir, cache, tmp_path / "shared", *HALVING_9_TO_3, *SPACE)
    with open(tmp_path / "shared" / "trials.csv") as handle:
        shared = list(csv.DictReader(handle))
    assert any(r["resumed_from"] == "1" for r in shared)


def test_the_fidelity_controller_keeps_ties_within_the_noise_and_says_so(data_dir, tmp_path):
    # 40 val images: a val accuracy's standard error is about 0.08, so the first rung's
    # near-ties go on with the top third instead of being cut by noise.
    run_sweep(
        data_dir,
        tmp_path / "cache",
        tmp_path / "c",
        *HALVING_9_TO_3,
        *SPACE,
        "hydra.sweeper.fidelity_control=true",
    )
    rows = rows_by_epochs(leaderboard(tmp_path / "c"))
    best = json.loads((tmp_path / "c" / "best_overrides.json").read_text())
    kept = sum(d["kept"] for d in best["controller"])
    assert kept > 0 and all(
        "standard error" in d["why"] or "agreement" in d["why"] for d in best["controller"]
    )
    assert len(rows[3]) >= 3 + kept  # the schedule's third, plus what the controller kept
    with open(tmp_path / "c" / "trials.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows[1]) + len(rows[3])


def test_multirun_without_a_list_runs_the_one_job_as_hydra_does(data_dir, tmp_path):
    out = run_sweep(
        data_dir, tmp_path / "cache", tmp_path / "one", "npdl_grid", "optimizer.lr=1e-3"
    )
    rows = leaderboard(tmp_path / "one")
    assert len(rows) == 1 and rows[0]["status"] == "ok"
    assert len([line for line in out.splitlines() if line.startswith("trial")]) == 1
