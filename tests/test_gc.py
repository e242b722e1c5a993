"""Trimming the run store (``npdl.run.gc``, ``npdl cache ls|du|gc``): the order parts go
in, what is never removed (held lineages, referenced entries), dry runs, and a gc
racing a real training process over the same store."""

import os
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from npdl import ClassificationNet, Relu
from npdl.data.normalization import fit_standardization, write_normalization
from npdl.data.prepared import PreparedData, write_prepared
from npdl.run.gc import collect, drop_checkpoints, inventory, parse_age, parse_size, referenced
from npdl.run.store import STORE_ENV, RunStore, store_root
from npdl.run.training import code_hash

NPDL = Path(sys.executable).parent / "npdl"  # the package's console script
DAY = 86400.0


def make_lineage(store, lineage, budgets, code=None, checkpoint=True, age=0.0):
    """Entries at ``budgets`` (a small model each) and a checkpoint, last used ``age``
    seconds ago, written by ``code`` (default: this library's)."""
    code = code or code_hash()
    store.describe(lineage, {"code": code, "training": None})
    used = time.time() - age
    for epochs in budgets:
        seed = zlib.crc32(f"{lineage}@{epochs}".encode())  # every entry's model differs
        model = ClassificationNet(Relu(), input_size=12, hidden_size=[8], rng=seed)
        store.store_result(lineage, epochs, {"status": "ok", "epochs": epochs, "code": code}, model)
        os.utime(store.entry_dir(lineage, epochs), (used, used))
    if checkpoint:
        state = {"W1": np.zeros(200), "position": np.array([max(budgets, default=1)])}
        store.store_checkpoint(lineage, state)
        os.utime(store.checkpoint_path(lineage), (used, used))


@pytest.fixture
def store(tmp_path):
    store = RunStore(tmp_path / "store")
    make_lineage(store, "old", [1, 2], age=3 * DAY)
    make_lineage(store, "recent", [1], age=3600)
    make_lineage(store, "othercode", [2], code="0" * 64)
    make_lineage(store, "unfinished", [], age=2 * DAY)  # a checkpoint only: a run killed
    return store


def names(report):
    return [f"{part.kind}:{part.lineage}:{part.epochs}" for part, _ in report.removed]


def snapshot(root: Path) -> dict:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def test_finished_checkpoints_go_first_then_other_code_then_the_least_recently_used(store):
    report = collect(store, max_bytes=0)
    assert names(report) == [
        # Checkpoints of lineages with a result (they only let a longer run resume).
        "checkpoint:othercode:None",
        "checkpoint:old:None",
        "checkpoint:recent:None",
        # Results of another version of the library: never a hit again.
        "entry:othercode:2",
        # Then by last use: three days, two days, one hour.
        "entry:old:1",
        "entry:old:2",
        "checkpoint:unfinished:None",
        "entry:recent:1",
    ]
    assert report.size_after == 0
    assert list((store.root / "trials").iterdir()) == []  # lineages went with their parts
    assert list((store.root / "locks").iterdir()) == []


def test_a_size_limit_removes_only_what_it_takes_and_never_a_kept_entry(store):
    parts = inventory(store)
    total = sum(p.size for p in parts)
    first = next(p for p in parts if p.kind == "checkpoint" and p.lineage == "othercode")
    report = collect(store, max_bytes=total - first.size)
    assert names(report) == ["checkpoint:othercode:None"]
    assert report.size_after == total - first.size
    # Kept entries stay even when nothing else may.
    keep = {("old", 2), ("othercode", 2)}
    report = collect(store, max_bytes=0, keep=keep)
    assert report.kept == 2
    left = {(p.kind, p.lineage, p.epochs) for p in inventory(store) if p.kind != "description"}
    assert left == {("entry", "old", 2), ("entry", "othercode", 2)}
    assert store.load_result("old", 2)["epochs"] == 2  # whole, verified


def test_a_dry_run_removes_nothing_and_reports_what_would_go(store):
    before = snapshot(store.root)
    report = collect(store, max_bytes=0, dry_run=True)
    assert len(report.removed) == 8 and report.size_after == 0
    assert snapshot(store.root) == before


def test_older_than_removes_every_part_unused_for_longer_whatever_the_size(store):
    report = collect(store, older_than=1.5 * DAY)
    assert sorted(names(report)) == [
        "checkpoint:old:None",
        "checkpoint:unfinished:None",
        "entry:old:1",
        "entry:old:2",
    ]
    assert {p.lineage for p in inventory(store)} == {"recent", "othercode"}


def test_a_held_lineage_is_left_alone(store):
    with store.holding("old"):
        report = collect(store, max_bytes=0)
    assert report.busy == {"old"}
    assert "old" not in {part.lineage for part, _ in report.removed}
    assert store.load_result("old", 1) is not None and store.checkpoint_path("old").is_file()
    assert collect(store, max_bytes=0).busy == set()  # released: now it goes


def test_leftovers_of_dead_writers_and_set_aside_parts_go_before_anything_else(store):
    dead = f".epochs-0003.{socket.gethostname()}-{2**22 + 12345}.abc"
    (store.lineage_dir("recent") / dead).mkdir()
    (store.lineage_dir("recent") / dead / "model.npz").write_bytes(b"x" * 100)
    live = store.lineage_dir("recent") / f".epochs-0004.{socket.gethostname()}-{os.getpid()}.x"
    live.mkdir()
    entry = store.entry_dir("recent", 1) / "result.json"
    entry.write_text(entry.read_text().replace("ok", "ko"))
    assert store.load_result("recent", 1) is None  # set aside into corrupt/
    report = collect(store, max_bytes=0)
    assert set(names(report)[:2]) == {"leftover:recent:None", "corrupt:None:None"}
    assert live.exists()  # a live writer's staging folder is never touched
    assert not (store.lineage_dir("recent") / dead).exists()


def test_referenced_entries_are_the_leaderboards_rows_and_the_models_entry(store, tmp_path):
    models = tmp_path / "models"
    (models / "tune").mkdir(parents=True)
    (models / "tune" / "leaderboard.csv").write_text(
        "rank,overrides,val_acc,val_loss,epochs,seconds,status,cache_hit,lineage,budget\n"
        "1,lr=0.1,0.5,1.0,2,1.0,ok,False,old,2\n"
        "2,lr=0.2,0.4,1.0,1,1.0,ok,True,recent,1\n"
    )
    # The model file is a hard link to (or a copy of) an entry's model.
    (models / "model.npz").write_bytes(store.model_path("othercode", 2).read_bytes())
    assert referenced(inventory(store), [models]) == {("old", 2), ("recent", 1), ("othercode", 2)}


def test_a_search_drops_only_finished_checkpoints_it_left_and_nobody_holds(tmp_path):
    store = RunStore(tmp_path / "store")
    for lineage in ("eliminated", "carried", "held"):
        make_lineage(store, lineage, [1])  # a result at 1 epoch, a checkpoint after epoch 1
    make_lineage(store, "unfinished", [])  # killed or failed at 1 epoch: no result yet
    # Another run carried this lineage on to 3 epochs: its checkpoint is not the search's.
    store.store_checkpoint("carried", {"W1": np.zeros(200), "position": np.array([3])})
    asked = dict.fromkeys(("eliminated", "carried", "held", "unfinished"), 1)
    with store.holding("held"):
        report = drop_checkpoints(store, asked, "eliminated below 3 epochs")
    assert [part.lineage for part, _ in report.removed] == ["eliminated"]
    assert report.busy == {"held"}
    assert not store.checkpoint_path("eliminated").exists()
    for lineage in ("carried", "held", "unfinished"):
        assert store.checkpoint_path(lineage).is_file()
    # The result stays, whole.
    assert store.load_result("eliminated", 1)["epochs"] == 1
    assert store.verify()[1] == [] and list(store.root.glob("trials/*/.*")) == []
    (event,) = [e for e in store.events() if e["event"] == "pruned"]
    assert event["lineage"] == "eliminated" and event["from_epoch"] == 1
    assert event["reason"] == "eliminated below 3 epochs"


def test_sizes_and_ages_read_as_people_write_them():
    assert parse_size("2GB") == 2 * 10**9 and parse_size("500mb") == 5 * 10**8
    assert parse_size("1.5G") == 1.5e9 and parse_size("10GiB") == 10 * 2**30
    assert parse_size("1024") == 1024
    assert parse_age("30d") == 30 * DAY and parse_age("12h") == 12 * 3600
    for bad, parse in (("lots", parse_size), ("2 parsecs", parse_size), ("soon", parse_age)):
        with pytest.raises(ValueError, match=r"expected e\.g\."):
            parse(bad)


def test_the_store_lives_outside_the_workspace_unless_configured(tmp_path, monkeypatch):
    monkeypatch.delenv(STORE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert store_root() == tmp_path / "xdg" / "npdl" / "run-store"
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "env-store"))
    assert store_root() == tmp_path / "env-store"
    # paths.run_store, when set, wins; a relative one is taken from the project root.
    assert store_root("/shared/npdl", tmp_path) == Path("/shared/npdl")
    assert store_root("stores/mine", tmp_path) == tmp_path / "stores" / "mine"


def npdl(*args, env=None):
    return subprocess.run([NPDL, *args], capture_output=True, text=True, env=env)


def test_npdl_cache_ls_du_and_gc(store, tmp_path):
    root = str(store.root)
    listed = npdl("cache", "ls", "--store", root)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()[1:-1]}
    assert set(lines) == {"old", "recent", "othercode", "unfinished"}
    assert "1,2 +ckpt" in lines["old"] and " other " in lines["othercode"]
    assert " current " in lines["old"] and "unfinished" in lines["unfinished"]
    assert "4 lineages" in listed.stdout and "1 of other code versions" in listed.stdout
    usage = npdl("cache", "du", "--store", root)
    assert usage.returncode == 0 and "results" in usage.stdout and root in usage.stdout

    before = snapshot(store.root)
    dry = npdl("cache", "gc", "--store", root, "--max-size", "0", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove checkpoint trials/othercode/checkpoint.npz" in dry.stdout
    assert "nothing was removed (dry run)" in dry.stdout and snapshot(store.root) == before
    done = npdl("cache", "gc", "--store", root, "--older-than", "1d")
    assert done.returncode == 0 and "removed 4 parts" in done.stdout
    assert {p.lineage for p in inventory(store)} == {"recent", "othercode"}

    assert npdl("cache", "gc", "--store", root).returncode == 2  # no policy given
    bad = npdl("cache", "gc", "--store", root, "--max-size", "lots")
    assert bad.returncode == 2 and "size 'lots' is not understood" in bad.stderr
    nowhere = npdl("cache", "ls", "--store", str(tmp_path))
    assert nowhere.returncode == 2 and "is not a run store" in nowhere.stderr


# A training process over the shared store: 12 configurations of 3 epochs, each run
# twice (the second a hit, where gc left it). While a run holds its lineage, nothing of
# it may vanish: from the second epoch on its checkpoint must be there, and the model
# file of a hit must have been linked out.
WRITER = r"""
import sys, time
from pathlib import Path
from npdl.config import PipelineConfig, validate_config
from npdl.run import RunStore, lineage_of, load_run_data, run_training

data, store = load_run_data(sys.argv[1], 1.0, "standardize"), RunStore(sys.argv[2])
out = Path(sys.argv[3])
for index in range(12):
    cfg = PipelineConfig()
    cfg.normalize.method = "standardize"
    cfg.model.hidden_size, cfg.model.batch_norm, cfg.model.dropout = [8], False, 0.0
    cfg.model.input_pca = None
    cfg.solver.epochs, cfg.solver.batch_size = 3, 32
    cfg.solver.checkpoint_seconds = 0  # every epoch: a checkpoint for gc to race
    cfg.optimizer.lr = 1e-3 * (1 + index)
    validate_config(cfg)
    checkpoint = store.checkpoint_path(lineage_of(cfg, data.data_hash))
    for attempt in range(2):
        seen = []

        def still_there(solver, stats, seen=seen):
            time.sleep(0.03)  # room for a gc to strike between epochs
            seen.append(1)
            if len(seen) >= 2 and not checkpoint.is_file():
                raise RuntimeError("the checkpoint of a held lineage vanished")
            return False

        model = out / f"model-{index}-{attempt}.npz"
        result = run_training(cfg, data, store, callbacks=[still_there], model_out=model).result
        if result.status != "ok" or not model.is_file():
            print("FAILED", index, attempt, result.error, flush=True)
            sys.exit(1)
        print("ok", index, attempt, result.cache_hit, flush=True)
"""


def test_gc_racing_a_training_process_loses_nothing_it_holds(tmp_path):
    rng = np.random.default_rng(0)
    splits = {}
    for mode, count in (("train", 96), ("val", 30), ("test", 30)):
        labels = np.arange(count) % 3
        images = rng.integers(0, 120, (count, 8, 8, 3))
        images[np.arange(count), :, :, labels] += 120
        splits[mode] = (images.astype(np.uint8), labels.astype(np.int64))
    prepared = PreparedData(
        {m: s[0] for m, s in splits.items()}, {m: s[1] for m, s in splits.items()}, ["r", "g", "b"]
    )
    manifest = write_prepared(tmp_path / "data" / "prepared", prepared, {})
    stats = fit_standardization(prepared.images["train"])
    write_normalization(
        tmp_path / "data" / "normalized", "standardize", stats, data_hash=manifest["content_hash"]
    )
    store = RunStore(tmp_path / "store")
    (tmp_path / "out").mkdir()
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER,
            str(tmp_path / "data"),
            str(store.root),
            str(tmp_path / "out"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    removed = busy = 0
    while writer.poll() is None:
        report = collect(store, max_bytes=0)  # remove everything it may
        removed += len(report.removed)
        busy += len(report.busy)
    out, err = writer.communicate()
    assert writer.returncode == 0, out + err
    assert out.count("ok ") == 24
    # They really raced: gc removed parts, and found lineages held.
    assert removed > 0 and busy > 0
    # Whatever is left is whole: every entry and checkpoint verifies, no half parts.
    assert store.verify()[1] == []
    assert [e for e in store.events() if e["event"] == "corrupt"] == []
    assert list(store.root.glob("trials/*/.*")) == []
