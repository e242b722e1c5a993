"""The run store verifies what it reads: manifests of entries, digests of checkpoints,
and ``npdl cache verify`` over a whole store."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npdl import ClassificationNet, Relu
from npdl.io import load_npz, save_npz
from npdl.run.store import RunStore, arrays_digest

NPDL = Path(sys.executable).parent / "npdl"  # the package's console script


def flip_one_byte(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def cache(tmp_path):
    store = RunStore(tmp_path / "store")
    model = ClassificationNet(Relu(), input_size=12, hidden_size=[8], rng=0)
    for epochs in (1, 2, 3):
        store.store_result("lineage", epochs, {"status": "ok", "epochs": epochs}, model)
    store.store_checkpoint("lineage", {"W1": np.arange(6.0).reshape(2, 3), "position": [3]})
    return store


def corrupt_events(cache):
    return [e for e in cache.events() if e["event"] == "corrupt"]


def test_an_entry_is_served_with_a_manifest_of_its_files(cache):
    assert cache.load_result("lineage", 2) == {"status": "ok", "epochs": 2}
    entry = cache.entry_dir("lineage", 2)
    assert sorted(p.name for p in entry.iterdir()) == ["manifest.json", "model.npz", "result.json"]
    assert cache.verify_entry(entry) is None and corrupt_events(cache) == []


@pytest.mark.parametrize("name", ["model.npz", "result.json"])
def test_one_flipped_byte_makes_an_entry_a_miss_set_aside_and_logged(cache, name):
    entry = cache.entry_dir("lineage", 2)
    flip_one_byte(entry / name)
    assert cache.load_result("lineage", 2) is None
    assert not entry.exists()  # moved aside: the next store writes a fresh entry
    (event,) = corrupt_events(cache)
    assert event["epochs"] == 2 and event["reason"].startswith(f"{name}: sha256 ")
    assert (cache.corrupt_dir / event["moved_to"] / name).is_file()
    # The other entries are still served.
    assert cache.load_result("lineage", 1)["epochs"] == 1
    assert cache.load_result("lineage", 3)["epochs"] == 3
    cache.store_result("lineage", 2, {"status": "ok", "epochs": 2})
    assert cache.load_result("lineage", 2) == {"status": "ok", "epochs": 2}


def test_a_truncated_file_an_extra_file_or_no_manifest_is_never_a_hit(cache):
    truncated = cache.model_path("lineage", 1)
    truncated.write_bytes(truncated.read_bytes()[:100])
    (cache.entry_dir("lineage", 2) / "notes.txt").write_text("edited by hand")
    (cache.entry_dir("lineage", 3) / "manifest.json").unlink()
    assert [cache.load_result("lineage", e) for e in (1, 2, 3)] == [None, None, None]
    reasons = [e["reason"] for e in corrupt_events(cache)]
    assert reasons[0].startswith("model.npz: sha256")
    assert "notes.txt" in reasons[1] and "no readable manifest.json" in reasons[2]


def test_a_checkpoint_is_verified_against_the_digest_of_its_arrays(cache):
    state = cache.load_checkpoint("lineage")
    assert sorted(state) == ["W1", "position"]  # the digest is not part of the state
    np.testing.assert_array_equal(state["W1"], np.arange(6.0).reshape(2, 3))
    path = cache.checkpoint_path("lineage")
    # Edited by hand into a valid .npz (so no zip CRC fails), keeping the old digest.
    edited = load_npz(path)
    edited["W1"] = edited["W1"] + 1
    save_npz(path, edited)
    assert cache.load_checkpoint("lineage") is None
    assert not path.exists()
    assert corrupt_events(cache)[0]["reason"].startswith("checkpoint: arrays' sha256 ")
    # One flipped byte of W1's data.
    cache.store_checkpoint("lineage", state)
    raw = bytearray(path.read_bytes())
    raw[raw.find(state["W1"].tobytes()) + 9] ^= 0x01
    path.write_bytes(bytes(raw))
    assert cache.load_checkpoint("lineage") is None
    assert len(corrupt_events(cache)) == 2 and len(list(cache.corrupt_dir.iterdir())) == 2


def test_arrays_digest_sees_names_dtypes_shapes_and_values():
    base = {"a": np.zeros((2, 3), np.float32)}
    variants = [
        {"b": np.zeros((2, 3), np.float32)},
        {"a": np.zeros((2, 3), np.float64)},
        {"a": np.zeros((3, 2), np.float32)},
        {"a": np.eye(2, 3, dtype=np.float32)},
    ]
    assert len({arrays_digest(v) for v in [base, *variants]}) == 5
    assert arrays_digest(base) == arrays_digest({"a": np.zeros((2, 3), np.float32)})


def test_npdl_cache_verify_reports_and_sets_aside_what_is_damaged(cache):
    store = str(cache.root)
    clean = subprocess.run(
        [NPDL, "cache", "verify", "--store", store], capture_output=True, text=True
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "4 entries and checkpoints checked, 0 corrupt" in clean.stdout

    flip_one_byte(cache.model_path("lineage", 3))
    flip_one_byte(cache.checkpoint_path("lineage"), at=0.9)
    found = subprocess.run(
        [NPDL, "cache", "verify", "--store", store], capture_output=True, text=True
    )
    assert found.returncode == 1
    assert f"corrupt: {cache.entry_dir('lineage', 3)}: model.npz: sha256" in found.stdout
    assert f"corrupt: {cache.checkpoint_path('lineage')}: " in found.stdout
    assert "4 entries and checkpoints checked, 2 corrupt" in found.stdout
    assert cache.entry_dir("lineage", 3).exists()  # only reported

    moved = subprocess.run(
        [NPDL, "cache", "verify", "--store", store, "--set-aside"], capture_output=True, text=True
    )
    assert moved.returncode == 1 and "moved to" in moved.stdout
    assert len(list(cache.corrupt_dir.iterdir())) == 2
    after = subprocess.run(
        [NPDL, "cache", "verify", "--store", store], capture_output=True, text=True
    )
    assert after.returncode == 0 and "2 entries and checkpoints checked, 0 corrupt" in after.stdout


def test_npdl_cache_verify_names_a_folder_that_is_no_store(tmp_path):
    result = subprocess.run(
        [NPDL, "cache", "verify", "--store", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert f"{tmp_path / 'nowhere'} is not a run store" in result.stderr
