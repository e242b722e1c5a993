"""The run store's project registry (``npdl.run.projects``): every workspace that uses
the store registers itself, and a gc run from anywhere keeps what each live project's
models, leaderboard and ``dvc.lock`` (resolved in its DVC cache) came from. Workspaces
are real folders with hand-written DVC files here; a real pair of DVC projects sharing
one store is the slow test at the end."""

import csv
import hashlib
import json
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import SHARED_ARCHIVE, SMALL_PROJECT, make_project, sh
from npdl.run.gc import (
    bound_store,
    enforce_limit,
    inventory,
    referenced,
    registered_references,
    result_entries,
)
from npdl.run.projects import register_project, registered_projects
from npdl.run.store import RunStore
from npdl.trial import TrialResult
from test_gc import make_lineage

NPDL = Path(sys.executable).parent / "npdl"  # the package's console script

BOARD = "rank,overrides,val_acc,val_loss,epochs,seconds,status,cache_hit,lineage,budget\n"


def board(*rows: tuple[str, int]) -> str:
    return BOARD + "".join(f"1,x=1,0.5,1.0,{b},1.0,ok,False,{lin},{b}\n" for lin, b in rows)


def npdl(*args, cwd=None):
    return subprocess.run([NPDL, *args], capture_output=True, text=True, cwd=cwd)


def cache_object(workspace: Path, data: bytes, suffix: str = "") -> str:
    """Put ``data`` into the workspace's DVC cache as DVC 3 does; its md5 (+suffix)."""
    md5 = hashlib.md5(data).hexdigest() + suffix
    path = workspace / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return md5


def dvc_lock(workspace: Path, model: bytes, leaderboard: str) -> str:
    """A ``dvc.lock`` whose train stage produced ``model`` and whose tune stage produced
    a ``models/tune`` folder holding ``leaderboard``, both in the DVC cache."""
    listing = [
        {"md5": cache_object(workspace, b"{}"), "relpath": "best_overrides.json"},
        {"md5": cache_object(workspace, leaderboard.encode()), "relpath": "leaderboard.csv"},
    ]
    folder = cache_object(workspace, json.dumps(listing).encode(), ".dir")
    model_md5 = cache_object(workspace, model)
    return (
        "schema: '2.0'\nstages:\n  tune:\n    cmd: python stages/tune.py\n    outs:\n"
        f"    - path: models/tune\n      hash: md5\n      md5: {folder}\n      nfiles: 2\n"
        "  train:\n    cmd: python stages/train.py\n    outs:\n"
        f"    - path: models/model.npz\n      hash: md5\n      md5: {model_md5}\n"
    )


@pytest.fixture
def store(tmp_path):
    store = RunStore(tmp_path / "store")
    for lineage in ("a", "b", "c", "d", "e"):
        make_lineage(store, lineage, [1, 2])
    return store


def workspace(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "params.yaml").write_text("{}\n")
    return root


def entries(store):
    return {(p.lineage, p.epochs) for p in inventory(store) if p.kind == "entry"}


def test_a_registration_is_one_small_record_refreshed_when_used(store, tmp_path):
    project = workspace(tmp_path / "project")
    record = register_project(store, project, [project / "models"], now=1000.0)
    assert record.parent == store.root / "projects"
    assert json.loads(record.read_text()) == {
        "workspace": str(project),
        "host": socket.gethostname(),
        "models": [str(project / "models")],
        "used": 1000.0,
        "npdl": json.loads(record.read_text())["npdl"],
    }
    # Every trial of a search registers: within a minute the record is left alone.
    assert register_project(store, project, [project / "models"], now=1030.0) == record
    assert json.loads(record.read_text())["used"] == 1000.0
    register_project(store, project, [project / "models"], now=1100.0)
    assert json.loads(record.read_text())["used"] == 1100.0
    assert [p.workspace for p in registered_projects(store)] == [project]
    assert list(record.parent.iterdir()) == [record]  # written aside and renamed


def test_gc_keeps_what_the_committed_dvc_lock_names_after_another_experiment(store, tmp_path):
    project = workspace(tmp_path / "project")
    register_project(store, project, [project / "models"])
    # The baseline, committed: its leaderboard named a@1, a@2 and b@1; its model is c@2's.
    baseline = dvc_lock(
        project, store.model_path("c", 2).read_bytes(), board(("a", 1), ("a", 2), ("b", 1))
    )
    (project / "dvc.lock").write_text(baseline)
    git = ["git", "-C", str(project)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "dvc.lock", "dvc.yaml", "params.yaml"], check=True)
    subprocess.run(
        [*git, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "baseline"], check=True
    )
    # Another experiment checked out: the workspace's files and dvc.lock name d@2 only.
    (project / "models" / "tune").mkdir(parents=True)
    (project / "models" / "tune" / "leaderboard.csv").write_text(board(("d", 2)))
    (project / "dvc.lock").write_text(dvc_lock(project, b"another model", board(("d", 2))))

    keep, live = registered_references(store, inventory(store))
    assert keep == {("a", 1), ("a", 2), ("b", 1), ("c", 2), ("d", 2)}
    assert [p.workspace for p in live] == [project]
    # Run from somewhere else entirely: the registry, not the current folder, protects it.
    done = npdl(
        "cache",
        "gc",
        "--store",
        str(store.root),
        "--max-size",
        "0",
        "--keep-referenced",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "kept 5 referenced entries (1 projects)" in done.stdout
    assert entries(store) == keep
    assert store.verify()[1] == []


def test_a_project_whose_folder_is_gone_is_forgotten_at_the_next_gc(store, tmp_path):
    kept = workspace(tmp_path / "kept")
    (kept / "models" / "tune").mkdir(parents=True)
    (kept / "models" / "tune" / "leaderboard.csv").write_text(board(("a", 2)))
    gone = workspace(tmp_path / "gone")
    (gone / "models").mkdir()
    shutil.copyfile(store.model_path("b", 1), gone / "models" / "model.npz")
    unmarked = workspace(tmp_path / "unmarked")
    (unmarked / "models" / "tune").mkdir(parents=True)
    (unmarked / "models" / "tune" / "leaderboard.csv").write_text(board(("c", 1)))
    for project in (kept, gone, unmarked):
        register_project(store, project, [project / "models"])
    # A project of another host whose folder this host cannot see: left alone.
    elsewhere = store.root / "projects" / "0123456789abcdef.json"
    elsewhere.write_text(
        json.dumps(
            {"workspace": "/elsewhere/npdl", "host": "another-host", "models": [], "used": 1.0}
        )
    )
    listed = npdl("cache", "projects", "--store", str(store.root))
    assert listed.returncode == 0, listed.stderr
    assert "live" in listed.stdout and "4 projects registered" in listed.stdout
    assert "elsewhere  " in listed.stdout and "another-host:/elsewhere/npdl" in listed.stdout

    shutil.rmtree(gone)
    for marker in ("dvc.yaml", "params.yaml"):
        (unmarked / marker).unlink()
    dry = npdl(
        "cache",
        "gc",
        "--store",
        str(store.root),
        "--max-size",
        "0",
        "--keep-referenced",
        "--dry-run",
    )
    assert f"would forget project {gone}" in dry.stdout and len(registered_projects(store)) == 4
    report = enforce_limit(store, 0.0, [])  # paths.run_store_max_gb after a sweep
    assert sorted(p.workspace for p in report.forgotten) == sorted([gone, unmarked])
    assert {p.workspace for p in registered_projects(store)} == {kept, Path("/elsewhere/npdl")}
    assert entries(store) == {("a", 2)}  # what the forgotten projects named went too


def test_referenced_reads_a_workspaces_models_as_before(store, tmp_path):
    models = tmp_path / "models"
    (models / "tune").mkdir(parents=True)
    (models / "tune" / "leaderboard.csv").write_text(board(("a", 1), ("e", 2)))
    shutil.copyfile(store.model_path("b", 2), models / "model.npz")
    assert referenced(inventory(store), [models]) == {("a", 1), ("e", 2), ("b", 2)}


def test_a_sweep_trims_the_store_keeping_its_own_trials_and_the_leaderboards(
    store, tmp_path, caplog
):
    """What ``BoundRunStore`` (after a sweep) and the train stage both call: the jobs'
    train.json read as trial results, a file of another version skipped."""
    models = tmp_path / "models"
    (models / "tune").mkdir(parents=True)
    (models / "tune" / "leaderboard.csv").write_text(board(("a", 1)))
    sweep = tmp_path / "sweep"
    ok = TrialResult("ok", 0.5, 1.0, 2, 2, None, 3.0, 1, False, lineage="b", budget=2)
    jobs = {
        "0": ok.to_json(),
        "1": replace(ok, status="failed", lineage="c", budget=1, error="OSError: x").to_json(),
        "2": {"status": "ok", "accuracy": 0.5, "lineage": "d", "budget": 2},  # another version
        "3": TrialResult.failed("KeyError: 'lr'").to_json(),  # no entry: the job raised
    }
    for name, job in jobs.items():
        (sweep / name / "metrics").mkdir(parents=True)
        (sweep / name / "metrics" / "train.json").write_text(json.dumps(job))
    (sweep / "4" / "metrics").mkdir(parents=True)
    (sweep / "4" / "metrics" / "train.json").write_text("{")  # killed while writing
    own = result_entries(sorted(sweep.glob("*/metrics/train.json")))
    assert own == {("b", 2), ("c", 1)}
    report = bound_store(store, 0.0, [models], keep=own)
    assert entries(store) == {("a", 1), ("b", 2), ("c", 1)}
    assert report.size_after > 0 and "stays over paths.run_store_max_gb=0.0" in caplog.text
    assert bound_store(store, None, [models]) is None  # no limit: nothing to do


# -- two real DVC projects sharing one store -----------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_ARCHIVE.exists(), reason=f"needs {SHARED_ARCHIVE}")
def test_two_projects_share_a_store_and_a_gc_from_one_keeps_the_others(tmp_path):
    shared = tmp_path / "shared-store"
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    make_project(first, store=shared)
    make_project(second, [*SMALL_PROJECT, ("conf/config.yaml", "seed: 0", "seed: 1")], store=shared)
    store = RunStore(shared)
    assert {p.workspace for p in registered_projects(store)} == {first, second}
    # The tune stage's search (BOHB, 1 -> 2 epochs) left a result of every trial, and a
    # checkpoint of each configuration it promoted from 1 epoch to 2 (its 1-epoch one:
    # the schedule's end writes none).
    rows = list(csv.DictReader((first / "models/tune/leaderboard.csv").read_text().splitlines()))
    reached = {}
    for row in rows:
        reached[row["lineage"]] = max(reached.get(row["lineage"], 0), int(row["budget"]))
        assert store.load_result(row["lineage"], int(row["budget"]))["status"] == "ok"
    # Hyperband's first bracket: 2 configurations at 1 epoch, the better one and the
    # configured values (one trial if they are the better one) at 2: none or one
    # eliminated; its second bracket: 2 configurations at 2 epochs.
    assert sorted(reached.values()) in ([1, 2, 2, 2], [2, 2, 2, 2])
    started = {row["lineage"] for row in rows if row["budget"] == "1"}
    for lineage, budget in reached.items():
        promoted = budget == 2 and lineage in started
        assert store.checkpoint_path(lineage).is_file() == promoted
    baseline = referenced(inventory(store), [first / "models"])  # the workspace's own files
    assert len(baseline) >= 3  # the search's rows and the final training

    # Project A checks out another experiment: its models/ and dvc.lock now name that
    # one; what its committed pipeline produced is only in its DVC cache.
    sh(
        ["dvc", "exp", "run", "-S", "tune.enabled=false", "-S", "optimizer.lr=0.02"],
        first,
        store=shared,
    )
    experiment = referenced(inventory(store), [first / "models"])
    assert experiment and experiment.isdisjoint(baseline)
    ours = referenced(inventory(store), [second / "models"])
    assert ours and ours.isdisjoint(baseline | experiment)

    command = ["cache", "gc", "--max-size", "0", "--keep-referenced"]
    done = sh([NPDL, *command], second, store=shared)
    assert "(2 projects)" in done.stdout
    assert entries(store) == baseline | experiment | ours
    assert store.verify()[1] == []

    # Project A's folder removed: forgotten at the next gc, and what only it named goes.
    shutil.rmtree(first)
    again = sh([NPDL, *command], second, store=shared)
    assert f"forgot project {first}" in again.stdout
    assert [p.workspace for p in registered_projects(store)] == [second]
    assert entries(store) == ours
    # Project B's pipeline still finds everything it came from: a forced repro hits.
    count = len(store.events())
    sh(["dvc", "repro", "-f"], second, store=shared)
    assert {e["event"] for e in store.events()[count:]} == {"hit"}
