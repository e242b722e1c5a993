"""Crashes, races and full disks: a killed stage can be rerun and never leaves a partial
file where a complete one is expected; concurrent writers of one cache entry leave one
valid entry; a full disk gives a clear error and no corrupt entry."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_ARCHIVE, start_killable, write_real_subset
from npdl import ClassificationNet, Relu
from npdl.data.prepared import (
    MODES,
    PreparedData,
    load_manifest,
    load_split,
    prepare_dataset,
)
from npdl.io import atomic_folder, load_npz, save_json, staging_prefix
from npdl.run.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
needs_archive = pytest.mark.skipif(not SHARED_ARCHIVE.exists(), reason=f"needs {SHARED_ARCHIVE}")


def assert_prepared_is_complete(folder: Path) -> str:
    """The prepared folder is whole: its arrays hash to the manifest's content hash."""
    manifest = load_manifest(folder)
    images, labels = {}, {}
    for mode in MODES:
        images[mode], labels[mode] = load_split(folder, mode, mmap=False)
    data = PreparedData(images, labels, manifest["classes"])
    assert data.content_hash() == manifest["content_hash"]
    return manifest["content_hash"]


def run_killed(args: list[str], after: float, env: dict | None = None) -> bool:
    """Start ``args`` in its own process group and SIGKILL the group after ``after``
    seconds; True if it was killed before finishing."""
    process = start_killable(args, ROOT, env)
    try:
        process.wait(timeout=after)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True


# ---------------------------------------------------------------- SIGKILL, prepare-split


@pytest.mark.slow
@needs_archive
def test_sigkill_during_prepare_split_never_leaves_a_partial_dataset(tmp_path):
    data = tmp_path / "data"

    def command(seed: int) -> list[str]:
        return [
            sys.executable,
            "stages/prepare_split.py",
            f"paths.data={data}",
            f"paths.cache={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'run'}",
            "hydra.output_subdir=null",
            "data.limit_files=6000",
            f"data.seed={seed}",
        ]

    env = {**os.environ, "CIFAR10_SOURCE": str(SHARED_ARCHIVE)}
    subprocess.run(command(0), cwd=ROOT, env=env, check=True, capture_output=True)
    first = assert_prepared_is_complete(data / "prepared")
    # Rerun with another seed, killed at moments spread over listing, decoding and
    # writing: the folder is always the old dataset or the new one, whole.
    seen, killed = set(), 0
    for after in (0.5, 1.5, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0):
        killed += run_killed(command(1), after, env)
        if (data / "prepared").exists():
            seen.add(assert_prepared_is_complete(data / "prepared"))
        else:  # killed between the two renames of the swap: the old folder is aside
            assert [p for p in data.iterdir() if p.name.endswith(".old")]
        leftovers = [p.name for p in data.iterdir() if p.name != "prepared"]
        assert all(name.startswith(".prepared.") for name in leftovers), leftovers
    assert killed >= 3, "the stage finished too fast to be killed mid-way"
    # The rerun removes what killed writers left behind.
    subprocess.run(command(1), cwd=ROOT, env=env, check=True, capture_output=True)
    second = assert_prepared_is_complete(data / "prepared")
    assert second != first and seen <= {first, second}
    assert [p.name for p in data.iterdir()] == ["prepared"]


# ------------------------------------------------------------------------ SIGKILL, train


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """prepared/ and normalized/ for 2,000 real images (standardised)."""
    if not SHARED_ARCHIVE.exists():
        pytest.skip(f"needs {SHARED_ARCHIVE}")
    return write_real_subset(tmp_path_factory.mktemp("data"), 2000)


def train_command(data: Path, cache: Path, run: Path, epochs: int) -> list[str]:
    return [
        sys.executable,
        "stages/train.py",
        f"paths.data={data}",
        f"paths.run_store={cache}",
        f"hydra.run.dir={run}",
        "hydra.output_subdir=null",
        "tune.enabled=false",
        "normalize.method=standardize",
        "model.input_pca=null",  # principal components come with zca
        "model.hidden_size=[256]",
        f"solver.epochs={epochs}",
        "solver.checkpoint_seconds=0",  # every epoch: the kill lands between two
    ]


@pytest.mark.slow
def test_sigkill_during_train_resumes_from_the_last_epoch(small_data, tmp_path):
    cache, run = tmp_path / "cache", tmp_path / "run"
    process = start_killable(train_command(small_data, cache, run, epochs=8), ROOT)
    # Kill once at least two epochs are checkpointed.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        checkpoints = list((cache / "trials").glob("*/checkpoint.npz"))
        if checkpoints:
            try:
                if int(load_npz(checkpoints[0])["position"][0]) >= 2:
                    break
            except (ValueError, OSError, KeyError):
                pass  # being replaced right now
        time.sleep(0.05)
    assert process.poll() is None, "training ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (run / "metrics" / "train.json").exists()  # nothing half-reported

    subprocess.run(
        train_command(small_data, cache, run, epochs=8), cwd=ROOT, check=True, capture_output=True
    )
    metrics = json.loads((run / "metrics" / "train.json").read_text())
    assert metrics["status"] == "ok" and metrics["epochs"] == 8
    assert metrics["resumed_from"] is not None and metrics["resumed_from"] >= 2
    resumes = [e for e in RunStore(cache).events() if e["event"] == "resume"]
    assert resumes and resumes[-1]["from_epoch"] >= 2
    ClassificationNet.load(run / "models" / "model.npz")  # a whole, loadable model


# --------------------------------------------------------- two writers of one cache entry


def _store_many(root: str, barrier, worker: int, entries: int) -> None:
    cache = RunStore(Path(root))
    model = ClassificationNet(Relu(), input_size=48, hidden_size=[64], rng=worker)
    barrier.wait()
    for epochs in range(1, entries + 1):
        cache.store_result("lineage", epochs, {"writer": worker, "epochs": epochs}, model)


def test_two_processes_storing_the_same_entries_leave_one_valid_entry_each(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    writers = [
        context.Process(target=_store_many, args=(str(tmp_path), barrier, worker, 30))
        for worker in (1, 2)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    cache = RunStore(tmp_path)
    for epochs in range(1, 31):
        result = cache.load_result("lineage", epochs)
        assert result is not None and result["epochs"] == epochs and result["writer"] in (1, 2)
        # The model is the one written by the same writer as the result.
        model = ClassificationNet.load(cache.model_path("lineage", epochs))
        expected = ClassificationNet(Relu(), input_size=48, hidden_size=[64], rng=result["writer"])
        np.testing.assert_array_equal(model.params["W1"], expected.params["W1"])
    staging = [p for p in cache.entry_dir("lineage", 1).parent.iterdir() if p.name.startswith(".")]
    assert staging == []


# ------------------------------------------------------------------------------ full disk


def _store_with_file_size_limit(root: str, limit: int) -> str:
    """Runs in a child: cap file sizes (the kernel then fails writes with EFBIG, as
    a full disk fails them with ENOSPC) and store a trial whose model exceeds it."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    cache = RunStore(Path(root))
    model = ClassificationNet(Relu(), hidden_size=[100], rng=0)  # ~1.2 MB
    try:
        cache.store_result("lineage", 3, {"status": "ok"}, model)
    except OSError as error:
        return str(error)
    return "stored"


def test_a_write_that_runs_out_of_space_is_a_clear_error_and_leaves_no_entry(tmp_path):
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        message = pool.apply(_store_with_file_size_limit, (str(tmp_path), 256 * 1024))
    assert message != "stored"
    assert "model.npz" in message and "File too large" in message  # names the file
    cache = RunStore(tmp_path)
    assert cache.load_result("lineage", 3) is None
    assert not cache.entry_dir("lineage", 3).exists()
    assert [p.name for p in cache.entry_dir("lineage", 3).parent.iterdir()] == []


def _mount_tiny_tmpfs(folder: Path) -> bool:
    folder.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def test_a_full_tmpfs_is_a_clear_error_and_leaves_no_entry(tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tiny_tmpfs(disk):
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        cache = RunStore(disk)
        model = ClassificationNet(Relu(), hidden_size=[100], rng=0)  # ~1.2 MB > 512 KiB
        with pytest.raises(OSError, match=r"No space left on device.*model\.npz"):
            cache.store_result("lineage", 3, {"status": "ok"}, model)
        assert cache.load_result("lineage", 3) is None
        assert [p.name for p in cache.entry_dir("lineage", 3).parent.iterdir()] == []
        # The disk is usable again: a small entry still fits.
        cache.store_result("lineage", 4, {"status": "ok"})
        assert cache.load_result("lineage", 4) == {"status": "ok"}
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# ------------------------------------------------------ leftovers of killed writers


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftovers_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "metrics.json"
    dead, alive = _dead_pid(), os.getppid()
    stale_file = tmp_path / f"{staging_prefix(target, dead)}abc.tmp"
    stale_dir = tmp_path / f"{staging_prefix(tmp_path / 'prepared', dead)}xyz"
    live_file = tmp_path / f"{staging_prefix(target, alive)}def.tmp"
    stale_file.write_text("half")
    stale_dir.mkdir()
    (stale_dir / "train_images.npy").write_bytes(b"half")
    live_file.write_text("in progress")
    save_json(target, {"ok": 1})
    assert not stale_file.exists() and live_file.exists()
    with atomic_folder(tmp_path / "prepared") as staging:
        (staging / "manifest.json").write_text("{}")
    assert not stale_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["metrics.json", "prepared", live_file.name]
    )


def test_a_folder_swap_killed_half_way_is_undone_by_the_next_writer(tmp_path):
    target = tmp_path / "prepared"
    with atomic_folder(target) as staging:
        (staging / "manifest.json").write_text('{"version": 1}')
    # What a writer killed between its two renames leaves: the old folder aside.
    aside = tmp_path / f"{staging_prefix(target, _dead_pid())}old"
    os.replace(target, aside)
    with pytest.raises(RuntimeError), atomic_folder(target):
        raise RuntimeError("this writer fails too")
    # The failed writer still put the old folder back.
    assert json.loads((target / "manifest.json").read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]


# ------------------------------------------------------------- data that cannot be used


def _image_folder(root: Path, classes: list[str], per_class: int = 4) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_a_single_class_is_refused_naming_the_source(tmp_path):
    root = _image_folder(tmp_path / "one", ["cat"])
    with pytest.raises(ValueError, match=r"one has 1 class \['cat'\].*at least 2 class"):
        prepare_dataset(root, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=0)


@pytest.mark.parametrize("kind", ["gztar", "zip"])
def test_a_truncated_archive_is_refused_naming_it(tmp_path, kind):
    import shutil

    root = _image_folder(tmp_path / "images", ["cat", "dog"], per_class=20)
    archive = Path(shutil.make_archive(str(tmp_path / "images"), kind, root))
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(str(archive))):
        prepare_dataset(archive, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=0)


def test_a_model_fed_images_of_another_size_says_what_it_expects():
    model = ClassificationNet(Relu(), input_size=16 * 16 * 3, hidden_size=[8], rng=0)
    with pytest.raises(ValueError, match=r"takes 768 features per sample, got 3072"):
        model.forward(np.zeros((2, 32, 32, 3), dtype=np.float32))


def test_atomic_writes_get_the_usual_file_modes(tmp_path):
    (tmp_path / "plain.txt").write_text("x")  # what open() gives under this umask
    expected_file = (tmp_path / "plain.txt").stat().st_mode & 0o777
    (tmp_path / "plain").mkdir()
    expected_dir = (tmp_path / "plain").stat().st_mode & 0o777
    save_json(tmp_path / "metrics.json", {"ok": 1})
    with atomic_folder(tmp_path / "prepared") as staging:
        (staging / "manifest.json").write_text("{}")
    cache = RunStore(tmp_path / "cache")
    entry = cache.store_result("lineage", 1, {"status": "ok"})
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == expected_file
    assert (tmp_path / "prepared").stat().st_mode & 0o777 == expected_dir
    assert entry.stat().st_mode & 0o777 == expected_dir
