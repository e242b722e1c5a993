"""End to end: real `dvc repro`, `dvc exp run`, Hydra multiruns, on a small real subset
of the shared CIFAR-10 archive, in a temporary git repository holding a copy of the
project."""

import csv
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import make_project, project_env, project_store, sh, start_killable
from npdl import load_model

ROOT = Path(__file__).resolve().parents[1]
SHARED_ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-train-jpeg.tar.gz"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_ARCHIVE.exists(), reason=f"needs {SHARED_ARCHIVE}"),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git + DVC repo holding the project, with conf/ shrunk for speed, after one
    `dvc repro` committed as the baseline."""
    repo = tmp_path_factory.mktemp("project")
    return repo, make_project(repo)


def read_json(path):
    return json.loads(Path(path).read_text())


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_repro_runs_every_stage_and_writes_every_output(project):
    repo, log = project
    for stage in ["prepare-split", "normalize", "sanity", "tune", "train", "evaluate"]:
        assert f"Running stage '{stage}'" in log
    assert log.index("Running stage 'sanity'") < log.index("Running stage 'tune'")
    sanity = read_json(repo / "metrics/sanity.json")
    assert sanity["status"] == "passed" and len(sanity["checks"]) == 3
    manifest = read_json(repo / "data/prepared/manifest.json")
    assert manifest["counts"] == {"train": 480, "val": 60, "test": 60}
    train, evaluate = (
        read_json(repo / "metrics/train.json"),
        read_json(repo / "metrics/evaluate.json"),
    )
    # Two epochs on train + val (the default refit): nothing validated, the last kept.
    assert train["refit"] is True and train["trained_on"] == "train+val"
    assert train["train_images"] == 480 + 60 and train["epochs"] == train["kept_epoch"] == 2
    assert train["val_acc"] is None and 0 <= train["final_train_acc"] <= 1
    assert evaluate["n"] == 60 and set(evaluate["per_class_accuracy"]) == set(manifest["classes"])
    # The val split was trained on: the evaluate stage does not score it.
    assert evaluate["model_trained_on"] == "train+val" and "val_accuracy" not in evaluate
    history = (repo / "metrics/train_history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,train_acc,val_loss,val_acc,lr" and len(history) == 3
    assert all(line.split(",")[3:5] == ["", ""] for line in history[1:])
    losses = [float(line.split(",")[1]) for line in history[1:]]
    assert losses[1] < losses[0], losses
    assert len((repo / "metrics/confusion.csv").read_text().splitlines()) == 61
    model = load_model(repo / "models/model.npz")
    assert model.metadata["data_hash"] == manifest["content_hash"]
    # tune ran the default search, BOHB, from 1 to 2 epochs (eta 2): Hyperband's two
    # brackets; train used its winner.
    board = (repo / "models/tune/leaderboard.csv").read_text().splitlines()
    # The first bracket: 2 configurations (the configured values and a draw) at 1 epoch,
    # the better one and the configured values (always kept to the top rung; they may be
    # the better one) at 2; the second bracket: 2 configurations at 2 epochs.
    assert board[0].startswith("rank,overrides,val_acc")
    rows = list(csv.DictReader(board))
    epochs = sorted(int(row["epochs"]) for row in rows)
    assert epochs.count(1) == 2 and epochs.count(2) in (3, 4) and len(rows) == len(epochs), rows
    best = read_json(repo / "models/tune/best_overrides.json")["overrides"]
    assert float(best["optimizer.lr"]) == model.metadata["config"]["optimizer"]["lr"]
    assert float(best["model.dropout"]) == model.metadata["config"]["model"]["dropout"]
    # The search's figures are a DVC metric: sampler, trials, rank agreement.
    tune = read_json(repo / "metrics/tune.json")
    assert tune["sampler"] == "bohb" and tune["trials"] == len(board) - 1
    assert "spearman_1_to_2" in tune and tune["epochs_trained"] > 0
    assert tune["best_val_acc"] == pytest.approx(float(board[1].split(",")[2]))
    # Too few configurations at one budget for an importance: none, and the reason.
    assert tune["importance"] == {} and tune["importance_note"].startswith("no importance: ")
    assert tune["importance_trials"] < 5 and tune["importance_method"].startswith("PED-ANOVA")
    # The tune stage's console: the search's header, a line per trial and its summary;
    # no job's detail.
    tuning = log.split("Running stage 'tune'")[1].split("Running stage 'train'")[0]
    assert "bohb search over optimizer.lr, optimizer.weight_decay, model.dropout" in tuning
    assert len([line for line in tuning.splitlines() if line.startswith("trial ")]) == len(rows)
    assert "importance: no importance" in tuning and "best: " in tuning
    assert "#0 :" not in tuning and "(Epoch 1)" not in tuning and "trained:" not in tuning

    # Nothing of Hydra's lands in the project.
    assert not (repo / "outputs").exists() and not (repo / ".hydra").exists()


def test_second_repro_runs_nothing(project):
    repo, _ = project
    log = sh(["dvc", "repro"], repo).stdout
    assert "Running stage" not in log, log


def test_dvc_plots_render(project):
    repo, _ = project
    sh(["dvc", "plots", "show", "-o", str(repo / "plots_html")], repo)
    html = (repo / "plots_html" / "index.html").read_text()
    for plot_id in ["Loss_per_epoch", "Accuracy_per_epoch", "Confusion_matrix__test_split_"]:
        assert f"vegaEmbed('#{plot_id}'" in html
    assert '"val_loss"' in html and '"predicted"' in html  # the data, not only the frames
    # The search: accuracy against each hyperparameter, and parallel coordinates.
    for plot_id in [
        "Validation_accuracy_against_the_learning_rate__tune_",
        "Validation_accuracy_against_the_weight_decay__tune_",
        "Validation_accuracy_against_dropout__tune_",
        "Trials_across_the_hyperparameters__tune__parallel_coordinates_",
    ]:
        assert f"vegaEmbed('#{plot_id}'" in html, plot_id
    assert '"hyperparameter"' in html and '"position"' in html
    # The PNG pictures are embedded too.
    for name in ["learning_curves", "confusion_matrix", "tune_hyperparameters", "tune_parallel"]:
        assert f"{name}.png" in html, name


def test_tune_plot_data_is_complete(project):
    repo, _ = project
    leaderboard = list(csv.DictReader((repo / "models/tune/leaderboard.csv").open()))
    trials = list(csv.DictReader((repo / "metrics/tune_trials.csv").open()))
    # Every configuration of the search (4: two brackets of 2), each once, at its
    # largest budget.
    assert len(trials) == len({row["overrides"] for row in leaderboard}) == 4
    assert set(trials[0]) == {"rank", "val_acc", "epochs", "lr", "weight_decay", "dropout"}
    by_rank = {row["rank"]: row for row in leaderboard}
    for trial in trials:
        row = by_rank[trial["rank"]]
        assert float(trial["val_acc"]) == pytest.approx(float(row["val_acc"]))
        assert f"optimizer.lr={trial['lr']}" in row["overrides"]
        same_point = [r for r in leaderboard if r["overrides"] == row["overrides"]]
        assert int(trial["epochs"]) == max(int(r["epochs"]) for r in same_point)
    parallel = list(csv.DictReader((repo / "metrics/tune_parallel.csv").open()))
    assert len(parallel) == 4 * 3
    positions = [float(row["position"]) for row in parallel]
    assert min(positions) == 0.0 and max(positions) == 1.0


def test_pictures_are_written_as_png_images(project):
    repo, _ = project
    for name, least in [
        ("learning_curves", (800, 300)),
        ("confusion_matrix", (500, 450)),
        ("tune_hyperparameters", (800, 300)),
        ("tune_parallel", (500, 300)),
        ("tune_importance", (400, 150)),  # the reason there is none, on the tiny search
    ]:
        path = repo / "plots" / f"{name}.png"
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size >= least, (name, image.size)
            pixels = np.asarray(image.convert("L"))
        assert pixels.std() > 5, f"{name}.png is blank"


def test_multirun_writes_per_job_outputs_and_leaves_tracked_ones_alone(project):
    repo, _ = project
    tracked = {p: digest(repo / p) for p in ["models/model.npz", "metrics/train.json"]}
    sweep = repo / "multirun" / "test"
    sh(
        [
            sys.executable,
            "stages/train.py",
            "-m",
            "lr=1e-3,1e-4",
            "reg=1e-5,1e-6",
            f"hydra.sweep.dir={sweep}",
        ],
        repo,
    )
    metrics = sorted(sweep.glob("*/metrics/train.json"))
    assert len(metrics) == 4
    assert len({read_json(m)["val_loss"] for m in metrics}) == 4
    assert len(list(sweep.glob("*/models/model.npz"))) == 4
    assert {p: digest(repo / p) for p in tracked} == tracked
    assert "multirun" in (repo / ".gitignore").read_text()


#: A command on one core with one BLAS thread (every thread count npdl derives is 1).
ONE_THREAD = ["env", "OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1", "taskset", "-c", "0"]


def search_files(folder):
    return {name: (folder / name).read_bytes() for name in ("leaderboard.csv", "leaderboard.md")}


def locked_outputs(repo):
    """The md5 that dvc.lock records for the data folders and the model file."""
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    outs = [out for stage in stages.values() for out in stage.get("outs", [])]
    wanted = ("data/prepared", "data/normalized", "models/model.npz")
    return {out["path"]: out["md5"] for out in outs if out["path"] in wanted}


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to compare with 1")
def test_forced_repro_on_one_thread_is_reproducible_to_the_byte(project):
    """The whole pipeline again from an empty run store, on one core and one BLAS thread
    where the fixture had two: the same whitening and principal components (the tiny
    project trains on its top 100), the same search, the same model, to the byte.
    Where this machine's BLAS sums products differently on one and two threads (so the
    thread count is part of a run's identity), on two threads again."""
    from npdl.threads import products_depend_on_threads

    variant = products_depend_on_threads(2)
    repo, _ = project
    before = read_json(repo / "metrics/train.json"), read_json(repo / "metrics/evaluate.json")
    model = digest(repo / "models/model.npz")
    lock, searched = locked_outputs(repo), search_files(repo / "models/tune")
    assert len(lock) == 3
    assert yaml.safe_load((repo / "params.yaml").read_text())["model"]["input_pca"] == 100
    # Empty the run store so that the forced run really trains again.
    shutil.rmtree(project_store(repo))
    sh([*([] if variant else ONE_THREAD), "dvc", "repro", "--force"], repo)
    after = read_json(repo / "metrics/train.json"), read_json(repo / "metrics/evaluate.json")
    assert before[0]["threads"] > 1 and after[0]["threads"] == (
        before[0]["threads"] if variant else 1
    )
    # Wall time and thread count are the figures that cannot repeat.
    for metrics in (before[0], after[0]):
        metrics.pop("seconds"), metrics.pop("threads")
    assert before[0]["cache_hit"] is after[0]["cache_hit"] is False
    assert after == before
    assert digest(repo / "models/model.npz") == model
    assert search_files(repo / "models/tune") == searched
    assert locked_outputs(repo) == lock  # prepared and whitened data, model: their md5


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
def test_a_search_without_the_projection_is_the_same_on_one_and_two_threads(project, tmp_path):
    from npdl.threads import products_depend_on_threads

    if products_depend_on_threads(2):
        pytest.skip(
            "this BLAS sums float32 products differently on one and two threads: the "
            "thread count is part of a run's identity here (tests/test_run.py)"
        )
    repo, _ = project
    runs = {}
    for name, prefix in (("two", []), ("one", ONE_THREAD)):
        out = tmp_path / name
        for stage in ("tune", "train"):
            sh(
                [
                    *prefix,
                    sys.executable,
                    f"stages/{stage}.py",
                    "model.input_pca=null",  # the whole (whitened) input
                    f"hydra.run.dir={out}",
                    f"paths.cache={out / 'cache'}",
                    f"paths.models={out / 'models'}",  # train reads this search's winner
                ],
                repo,
                store=tmp_path / f"{name}-store",  # each run trains everything
            )
        runs[name] = search_files(out / "models/tune"), digest(out / "models/model.npz")
        assert read_json(out / "metrics/train.json")["cache_hit"] is False
    assert runs["one"] == runs["two"]


def test_evaluate_any_folder_matches_an_independent_computation(project, tmp_path):
    repo, _ = project
    # A held-out folder: real images the pipeline never read (beyond limit_files).
    images = np.load(repo / "data/prepared/test_images.npy")
    labels = np.load(repo / "data/prepared/test_labels.npy")
    classes = read_json(repo / "data/prepared/manifest.json")["classes"]
    folder = tmp_path / "heldout"
    for i, (image, label) in enumerate(zip(images[:40], labels[:40], strict=True)):
        (folder / classes[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / classes[label] / f"{i}.png")
    out = tmp_path / "scores.json"
    sh(
        [
            sys.executable,
            "stages/evaluate.py",
            f"evaluate.source={folder}",
            f"evaluate.metrics_path={out}",
        ],
        repo,
    )
    reported = read_json(out)
    # Independently: decode with Pillow, standardise and whiten with NumPy; forward the
    # original and the mirror image, each unmoved and moved 2 pixels up, down, left and
    # right with the whitened mean (0) shifted in (the default TTA), argmax of the sum.
    model = load_model(repo / "models/model.npz")
    pre = model.preprocessing
    mean, std = pre["mean"], pre["std"]
    correct = total = 0
    for class_dir in sorted(folder.iterdir()):
        for file in sorted(class_dir.iterdir()):
            x = (np.asarray(Image.open(file).convert("RGB"), np.float64) / 255 - mean) / std
            logits = 0
            for view in (x, x[:, ::-1]):
                white = ((view.reshape(1, -1) - pre["zca_mean"]) @ pre["zca_matrix"]).reshape(
                    x.shape
                )
                padded = np.pad(white, ((2, 2), (2, 2), (0, 0)))
                height, width = x.shape[:2]
                for top, left in ((2, 2), (0, 2), (4, 2), (2, 0), (2, 4)):
                    window = padded[top : top + height, left : left + width]
                    logits = logits + model.forward(window.reshape(1, -1))
            predicted = logits.argmax()
            correct += int(classes[predicted] == class_dir.name)
            total += 1
    assert reported["n"] == total == 40
    assert reported["accuracy"] == pytest.approx(correct / total)


def test_sigkill_during_tune_then_rerun_reuses_the_finished_trials(project):
    repo, _ = project
    cache = project_store(repo)
    shutil.rmtree(cache)  # the fixture's search is cached: start this one afresh
    reports = [repo / "models/tune" / name for name in ("leaderboard.csv", "best_overrides.json")]
    before = [path.read_bytes() for path in reports]
    command = [
        sys.executable,
        "stages/tune.py",
        "--config-dir=.",
        "--config-name=params",
        "hydra.run.dir=.",
        "hydra.output_subdir=null",
    ]
    process = start_killable(command, repo, project_env(repo))
    events = cache / "events.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if events.exists() and '"store"' in events.read_text():
            break
        time.sleep(0.01)
    assert process.poll() is None, "the search ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    stored = [json.loads(line) for line in events.read_text().splitlines()]
    stored = {(e["lineage"], e["epochs"]) for e in stored if e["event"] == "store"}
    assert stored
    # The reports were never half-written: still the fixture's.
    assert [path.read_bytes() for path in reports] == before

    sh(command, repo)
    rerun = [json.loads(line) for line in events.read_text().splitlines()]
    hits = {(e["lineage"], e["epochs"]) for e in rerun if e["event"] == "hit"}
    assert stored <= hits  # every trial finished before the kill came from the cache
    # Same data, same seeds: the search reaches the same result as before.
    assert json.loads(reports[1].read_text())["overrides"] == json.loads(before[1])["overrides"]
    keep = ("rank", "overrides", "val_acc", "val_loss", "epochs", "status")

    def ranking(text):
        return [{k: row[k] for k in keep} for row in csv.DictReader(text.splitlines())]

    assert ranking(reports[0].read_text()) == ranking(before[0].decode())


def test_exp_run_with_set_param_changes_metrics(project):
    repo, _ = project
    baseline = read_json(repo / "metrics/evaluate.json")
    # With tuning on, the search picks lr; set it by hand with tuning off.
    result = sh(
        ["dvc", "exp", "run", "-S", "tune.enabled=false", "-S", "lr=0.01", "-n", "higher-lr"], repo
    )
    assert "Running stage 'train'" in result.stdout
    assert "Running stage 'prepare-split'" not in result.stdout
    changed = read_json(repo / "metrics/evaluate.json")
    assert changed["loss"] != baseline["loss"]
    diff = sh(["dvc", "metrics", "diff", "HEAD", "--precision", "6", "--json"], repo).stdout
    assert "loss" in json.loads(diff)["metrics/evaluate.json"]
    show = sh(["dvc", "exp", "show", "--no-pager", "--json"], repo).stdout
    assert "higher-lr" in show
    assert "lr: 0.01" in (repo / "params.yaml").read_text()


def restore_baseline(repo):
    """Back to the fixture's committed state (after `dvc exp run` changed the workspace)."""
    sh(["git", "checkout", "--", "."], repo)
    sh(["dvc", "checkout", "--force"], repo)


def stored_lr(model_path):
    return load_model(model_path).metadata["config"]["optimizer"]["lr"]


def test_the_four_ways_of_setting_the_learning_rate_agree(project, tmp_path):
    repo, _ = project
    restore_baseline(repo)
    learned = {}
    for way in ("lr=0.02", "optimizer.lr=0.02"):
        run = tmp_path / way.split("=")[0]
        sh(
            [sys.executable, "stages/train.py", way, "tune.enabled=false", f"hydra.run.dir={run}"],
            repo,
        )
        learned[way] = stored_lr(run / "models" / "model.npz")
    for way in ("lr=0.02", "optimizer.lr=0.02"):
        sh(["dvc", "exp", "run", "-S", "tune.enabled=false", "-S", way], repo)
        learned[f"-S {way}"] = stored_lr(repo / "models" / "model.npz")
        # params.yaml (what `dvc exp show` reads) holds one value: the shortcut is
        # unset or the same.
        params = yaml.safe_load((repo / "params.yaml").read_text())
        assert params["optimizer"]["lr"] == 0.02 and params["lr"] in (None, 0.02), params
        restore_baseline(repo)
    assert learned == dict.fromkeys(learned, 0.02)


def test_a_tuned_value_replacing_the_users_says_so(project):
    repo, _ = project
    restore_baseline(repo)
    # A learning rate that diverges (Adam at 1e30, whatever the data: batch norm keeps
    # smaller ones finite on the tiny project) never wins: the search's winner replaces it.
    # (The sanity stage would stop the pipeline first, naming it: here it is off.)
    overrides = ["-S", "optimizer.lr=1e30", "-S", "sanity.enabled=false"]
    result = sh(["dvc", "exp", "run", *overrides], repo)
    assert "replaces the configured optimizer.lr=1e+30; to keep yours, pin it" in result.stdout
    assert "tune.pin=[optimizer.lr]" in result.stdout
    restore_baseline(repo)


def test_editing_the_library_retrains_and_reverting_it_hits_the_store_again(project):
    repo, _ = project
    restore_baseline(repo)
    events = project_store(repo) / "events.jsonl"
    board = repo / "models/tune/leaderboard.csv"
    keep = ("rank", "overrides", "val_acc", "val_loss", "epochs", "status", "lineage", "budget")

    def repro(*flags):
        before = len(events.read_text().splitlines()) if events.exists() else 0
        sh(["dvc", "repro", *flags], repo)  # the copy's own src/npdl on the path
        new = [json.loads(line) for line in events.read_text().splitlines()[before:]]
        ranking = [{k: row[k] for k in keep} for row in csv.DictReader(board.open())]
        return (
            new,
            read_json(repo / "metrics/train.json"),
            digest(repo / "models/model.npz"),
            ranking,
        )

    baseline_model = digest(repo / "models/model.npz")
    # Every stage of the committed project once more, so that the store holds all of
    # its runs whatever earlier tests removed from it; the same numbers, to the byte.
    _, _, model, baseline_ranking = repro("--force")
    assert model == baseline_model
    # The layer the default ReLU network is built of (npdl.hidden_layer).
    layers = repo / "src/npdl/hidden_layer.py"
    original = layers.read_text()
    edited = original.replace("eps: float = 1e-5", "eps: float = 2e-5")
    assert edited != original
    layers.write_text(edited)  # one line of a layer: batch norm's epsilon
    try:
        new, train, model, _ = repro()
        assert train["cache_hit"] is False and model != baseline_model
        assert {e["event"] for e in new} >= {"miss", "store"} and "hit" not in {
            e["event"] for e in new
        }
    finally:
        layers.write_text(original)
    # Reverted: DVC reruns the stages (--no-run-cache: not restored from DVC's own
    # cache), and every trial and the final training are hits of the run store, with
    # the same promotions and the same model.
    new, train, model, ranking = repro("--no-run-cache")
    assert {e["event"] for e in new} == {"hit"}, new
    assert ranking == baseline_ranking
    assert train["cache_hit"] is True and model == baseline_model
    restore_baseline(repo)
