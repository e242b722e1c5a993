"""The shared run store end to end, in a temporary git + DVC repo on a small real subset
of the shared archive: DVC queue experiments (each in its own temporary copy of the
workspace) and a clone reuse each other's trials; `npdl cache gc` trims the store
without touching what the workspace came from, and `paths.run_store_max_gb` bounds it
after a sweep."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SHARED_ARCHIVE, make_project, project_store, sh
from npdl.run.gc import inventory, referenced
from npdl.run.store import RunStore

NPDL = Path(sys.executable).parent / "npdl"  # the package's console script

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_ARCHIVE.exists(), reason=f"needs {SHARED_ARCHIVE}"),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The shrunk project after one committed `dvc repro`; queue workers stopped after."""
    repo = tmp_path_factory.mktemp("project")
    make_project(repo)
    yield repo
    sh(["dvc", "queue", "stop"], repo, check=False)


def events(store: Path) -> list[dict]:
    return [json.loads(line) for line in (store / "events.jsonl").read_text().splitlines()]


def run_queue(repo: Path, jobs: int) -> None:
    """`dvc queue start -j N`, then wait until nothing is queued or running."""
    sh(["dvc", "queue", "start", "-j", str(jobs)], repo)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = sh(["dvc", "queue", "status"], repo).stdout
        if not re.search(r"\b(Running|Queued)\b", status):
            break
        time.sleep(2)
    else:
        raise AssertionError(f"the queue did not finish:\n{status}")
    if "Failed" in status:
        names = [line.split()[1] for line in status.splitlines() if "Failed" in line]
        logs = [sh(["dvc", "queue", "logs", name], repo, check=False).stdout for name in names]
        raise AssertionError(status + "\n".join(logs))


def experiments(repo: Path) -> dict[str, dict]:
    """``dvc exp show --json``: experiment name -> its params and train metrics."""
    shown = json.loads(sh(["dvc", "exp", "show", "--json", "--no-pager"], repo).stdout)
    found = {}
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            data = experiment["revs"][0]["data"]
            found[experiment["name"]] = {
                "state": experiment["executor"]["state"] if experiment["executor"] else None,
                "params": data["params"]["params.yaml"]["data"],
                "train": data["metrics"]["metrics/train.json"]["data"],
            }
    return found


def test_queued_experiments_share_the_run_store_and_an_identical_one_is_a_hit(project):
    repo, store = project, project_store(project)
    assert not store.is_relative_to(repo)  # outside the workspace and its copies
    grid = ["-S", "tune.enabled=false", "-S", "optimizer.lr=0.01,0.03"]
    sh(["dvc", "exp", "run", "--queue", *grid], repo)
    run_queue(repo, jobs=2)
    ran = experiments(repo)
    assert len(ran) == 2 and {e["state"] for e in ran.values()} == {"success"}
    by_lr = {e["params"]["optimizer"]["lr"]: e["train"] for e in ran.values()}
    assert set(by_lr) == {0.01, 0.03} and not any(t["cache_hit"] for t in by_lr.values())
    # Each trained in its own temporary copy under .dvc/tmp/exps/ (gone now), into the
    # shared store: both finished runs are in it.
    assert not list((repo / ".dvc" / "tmp" / "exps").glob("tmp*"))
    stored = {(e["lineage"], e["epochs"]) for e in events(store) if e["event"] == "store"}
    assert {(t["lineage"], t["budget"]) for t in by_lr.values()} <= stored

    # A third, identical to the first. Forced (-f): otherwise DVC's own run-cache
    # restores its outputs without running a stage (seen on this machine), and the
    # run store is never asked.
    before = len(events(store))
    third = ["-S", "tune.enabled=false", "-S", "optimizer.lr=0.01", "-n", "third"]
    sh(["dvc", "exp", "run", "--queue", "-f", *third], repo)
    run_queue(repo, jobs=1)
    again = experiments(repo)["third"]["train"]
    assert again["cache_hit"] is True and again["lineage"] == by_lr[0.01]["lineage"]
    assert again["final_train_acc"] == by_lr[0.01]["final_train_acc"]  # a refit: no val
    new = [(e["event"], e["lineage"]) for e in events(store)[before:]]
    assert new == [("hit", by_lr[0.01]["lineage"])]


def test_a_clone_reuses_the_trials_of_the_first_workspace(project, tmp_path):
    repo, store = project, project_store(project)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    sh(["dvc", "config", "--local", "core.site_cache_dir", str(tmp_path / "site")], clone)
    before = len(events(store))
    log = sh(["dvc", "repro"], clone, store=store).stdout  # its own empty DVC cache
    assert "Running stage 'tune'" in log and "Running stage 'train'" in log
    new = events(store)[before:]
    assert new and {e["event"] for e in new} == {"hit"}  # every trial and the final training
    assert json.loads((clone / "metrics/train.json").read_text())["cache_hit"] is True


def snapshot(root: Path) -> dict:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


def test_gc_to_a_size_keeps_what_the_workspace_came_from_and_repro_still_hits(project, tmp_path):
    repo, root = project, project_store(project)
    store = RunStore(root)
    # Trials nothing in the workspace came from: direct runs into Hydra folders.
    for lr in ("0.02", "0.05"):
        run = f"hydra.run.dir={tmp_path / lr}"
        sh(
            [sys.executable, "stages/train.py", "tune.enabled=false", f"optimizer.lr={lr}", run],
            repo,
        )
    parts = inventory(store)
    keep = referenced(parts, [repo / "models"])
    board = (repo / "models/tune/leaderboard.csv").read_text().splitlines()
    assert len(keep) == len(board) - 1 + 1  # every search trial and the final training
    kept_lineages = {lineage for lineage, _ in keep}
    kept = [
        p
        for p in parts
        if (p.kind == "entry" and (p.lineage, p.epochs) in keep)
        or (p.kind == "description" and p.lineage in kept_lineages)
    ]
    limit = sum(p.size for p in kept)
    assert sum(p.size for p in parts) > limit
    command = [NPDL, "cache", "gc", "--max-size", f"{limit}B", "--keep-referenced"]
    env_store = ["--store", str(root)]

    before = snapshot(root)
    dry = subprocess.run(
        [*command, *env_store, "--dry-run"], cwd=repo, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    assert "would remove" in dry.stdout and "nothing was removed (dry run)" in dry.stdout
    assert snapshot(root) == before

    done = subprocess.run([*command, *env_store], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"kept {len(keep)} referenced entries" in done.stdout
    left = inventory(store)
    assert sum(p.size for p in left) <= limit
    assert {(p.kind, p.lineage, p.epochs) for p in left} == {
        (p.kind, p.lineage, p.epochs) for p in kept
    }
    assert store.verify()[1] == []

    # Everything the workspace came from is still a hit: a forced repro trains nothing.
    count = len(events(root))
    sh(["dvc", "repro", "-f"], repo)
    new = events(root)[count:]
    assert new and {e["event"] for e in new} == {"hit"}, new
    assert json.loads((repo / "metrics/train.json").read_text())["cache_hit"] is True

    # paths.run_store_max_gb: after a sweep the store holds what the workspace came
    # from and the sweep's own trials, nothing else (a limit of one byte).
    sh(
        [
            sys.executable,
            "stages/train.py",
            "tune.enabled=false",
            "optimizer.lr=0.02",
            f"hydra.run.dir={tmp_path / 'again'}",
        ],
        repo,
    )  # an unreferenced run, again
    sweep = tmp_path / "sweep"
    sh(
        [
            sys.executable,
            "stages/train.py",
            "-m",
            "tune.enabled=false",
            "optimizer.lr=0.07,0.08",
            f"hydra.sweep.dir={sweep}",
            "paths.run_store_max_gb=1e-9",
        ],
        repo,
    )
    own = {
        (json.loads(p.read_text())["lineage"], json.loads(p.read_text())["budget"])
        for p in sweep.glob("*/metrics/train.json")
    }
    assert len(own) == 2
    entries = {(p.lineage, p.epochs) for p in inventory(store) if p.kind == "entry"}
    assert entries == keep | own
    assert not [p for p in inventory(store) if p.kind == "checkpoint"]

    listed = subprocess.run([NPDL, "cache", "ls", *env_store], capture_output=True, text=True)
    assert (
        listed.returncode == 0 and "[64] relu bn" in listed.stdout and " current " in listed.stdout
    )
