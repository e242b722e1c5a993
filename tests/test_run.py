"""run_training on ZCA-whitened data: training and raw-image evaluation agree."""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import colour_images
from npdl.config import PipelineConfig, validate_config
from npdl.data.prepared import PreparedData, write_prepared
from npdl.evaluation import predict_logits
from npdl.run.store import RunStore
from npdl.run.training import code_hash, load_run_data, run_training

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))

import normalize  # noqa: E402  (the normalize stage's run())


@pytest.fixture
def zca_data(tmp_path):
    splits = {
        mode: colour_images(n, seed)
        for mode, n, seed in [("train", 300, 0), ("val", 60, 1), ("test", 60, 2)]
    }
    data = PreparedData(
        {m: s[0] for m, s in splits.items()}, {m: s[1] for m, s in splits.items()}, ["r", "g", "b"]
    )
    write_prepared(tmp_path / "prepared", data, {})
    cfg = PipelineConfig()
    cfg.paths.data, cfg.normalize.method = str(tmp_path), "zca"
    normalize.run(cfg)
    return tmp_path


def small_config():
    cfg = PipelineConfig()
    cfg.model.hidden_size, cfg.model.dropout, cfg.model.batch_norm = [16], 0.0, False
    cfg.model.input_pca = None  # the whole (small) input
    cfg.solver.epochs, cfg.solver.batch_size, cfg.optimizer.lr = 10, 32, 3e-3
    return validate_config(cfg)


def test_whitened_training_agrees_with_raw_image_evaluation(zca_data, tmp_path):
    data = load_run_data(zca_data)
    assert data.whitened and data.train[0].dtype == np.float16
    outcome = run_training(small_config(), data, RunStore(tmp_path / "cache"), keep_model=True)
    result = outcome.result
    assert result.status == "ok" and result.val_acc > 0.6  # chance is 1/3
    raw_val = np.load(zca_data / "prepared" / "val_images.npy")
    labels = np.load(zca_data / "prepared" / "val_labels.npy")
    accuracy = np.mean(predict_logits(outcome.model, raw_val).argmax(axis=1) == labels)
    assert accuracy == pytest.approx(result.val_acc, abs=1.5 / len(labels))


def test_normalization_is_part_of_the_trial_identity(zca_data, tmp_path):
    whitened = load_run_data(zca_data)
    cfg = PipelineConfig()
    cfg.paths.data, cfg.normalize.method = str(zca_data), "standardize"
    normalize.run(cfg)
    standardized = load_run_data(zca_data)
    assert not standardized.whitened and standardized.train[0].dtype == np.uint8
    assert whitened.data_hash != standardized.data_hash


def test_a_normalisation_other_than_the_configured_one_is_refused(zca_data):
    with pytest.raises(
        ValueError, match=r"holds the 'zca' normalisation .*normalize.method='standardize'"
    ):
        load_run_data(zca_data, normalization="standardize")
    assert load_run_data(zca_data, normalization="zca").whitened


def test_a_failed_run_is_not_replayed_but_trained_again(zca_data, tmp_path):
    data, store = load_run_data(zca_data), RunStore(tmp_path / "store")
    cfg = small_config()

    def crash(solver, stats):
        raise RuntimeError("the disk went away")

    failed = run_training(cfg, data, store, callbacks=[crash]).result
    assert failed.status == "failed" and "the disk went away" in failed.error
    assert (tmp_path / "store" / "failures" / failed.lineage).is_dir()  # traceback kept
    again = run_training(cfg, data, store).result  # the same configuration: trained, not replayed
    assert again.status == "ok" and not again.cache_hit
    assert run_training(cfg, data, store).result.cache_hit  # the success is what is cached
    # The crash came before the first checkpoint: the second run trained from epoch 0.
    kinds = [e["event"] for e in store.events()]
    assert kinds == ["miss", "failed", "miss", "store", "hit"]


#: The keys of a stored result (``result.json`` of a store entry), as every version of
#: the store wrote them: existing stores stay readable.
STORED_KEYS = {"status", "val_acc", "val_loss", "best_epoch", "epochs", "budget", "seconds"}
STORED_KEYS |= {"threads", "history", "lineage", "resumed_from", "npdl", "code"}
STORED_KEYS |= {"val_images"}  # the val scores' precision (the fidelity controller reads it)


def test_the_store_keeps_a_result_in_its_format_and_a_hit_reads_it_back(zca_data, tmp_path):
    data, store = load_run_data(zca_data), RunStore(tmp_path / "store")
    cfg = small_config()
    cfg.solver.epochs = 2
    trained = run_training(cfg, data, store)
    assert not trained.result.cache_hit and len(trained.history) == 2
    record = store.load_result(trained.result.lineage, 2)
    assert set(record) == STORED_KEYS and record["history"] == trained.history
    assert record["val_images"] == len(data.val[1])
    hit = run_training(cfg, data, store)
    assert hit.result == replace(trained.result, cache_hit=True)
    assert hit.history == trained.history and hit.model_path == trained.model_path


def test_the_code_hash_sees_any_edit_of_the_library_source(tmp_path):
    package = tmp_path / "npdl"
    (package / "search").mkdir(parents=True)
    (package / "layers.py").write_text("SCALE = 1.0\n")
    (package / "plots.py").write_text("# pictures\n")
    (package / "search" / "spaces.py").write_text("# spaces\n")
    before = code_hash.__wrapped__(package)
    (package / "plots.py").write_text("# other pictures\n")
    (package / "search" / "spaces.py").write_text("# other spaces\n")
    assert code_hash.__wrapped__(package) == before  # what cannot change a training
    (package / "layers.py").write_text("SCALE = 2.0\n")
    assert code_hash.__wrapped__(package) != before
    (package / "layers.py").write_text("SCALE = 1.0\n")
    assert code_hash.__wrapped__(package) == before


@pytest.mark.parametrize("with_store", [True, False])
def test_a_finished_run_is_freed_by_reference_counting(zca_data, tmp_path, with_store):
    """No reference cycle keeps a run's model, optimizer state and loaders alive after
    run_training returns: with the garbage collector off, weak references die, and no
    collection (an explicit ``gc.collect()`` either) runs meanwhile."""
    import gc
    import weakref

    data = load_run_data(zca_data)
    store = RunStore(tmp_path / "cache") if with_store else None
    cfg = small_config()
    cfg.solver.epochs, cfg.solver.schedule_epochs = 2, 3  # one lineage: 2 then 3 epochs
    seen = []

    def watch(solver, stats):  # weak references only: holding the solver keeps it alive
        if not seen:
            seen.extend(
                weakref.ref(item)
                for item in (solver, solver.model, solver.train_dataloader, solver.opt)
            )
        return False

    collections = []

    def count(phase, info):
        collections.append(phase)

    gc.collect()
    gc.disable()
    gc.callbacks.append(count)
    try:
        run_training(cfg, data, store, callbacks=[watch])
        assert len(seen) == 4 and all(ref() is None for ref in seen), [r() for r in seen]
        if store is not None:  # a resumed run too: 2 -> 3 epochs from the checkpoint
            seen.clear()
            cfg.solver.epochs = 3
            result = run_training(cfg, data, store, callbacks=[watch]).result
            assert result.resumed_from == 2
            assert len(seen) == 4 and all(ref() is None for ref in seen)
        assert collections == []
    finally:
        gc.callbacks.remove(count)
        gc.enable()


@pytest.mark.parametrize("input_pca", [None, 200])
def test_training_is_the_same_to_the_bit_on_one_and_two_threads(input_pca):
    """The number of BLAS and update threads (cores // parallel trials) changes no
    number where the BLAS sums products alike on any thread count: there the store does
    not key on it. Where it does not (OpenBLAS's Haswell kernels on AMD), the thread
    count is part of the run's identity, and each count repeats itself to the bit.
    Shapes large enough for OpenBLAS to split the products between threads."""
    from npdl.run.training import RunData, lineage_of
    from npdl.threads import get_num_threads, products_depend_on_threads, set_num_threads

    rng = np.random.default_rng(0)
    images = rng.standard_normal((600, 32, 32, 3)).astype(np.float16)
    labels = np.arange(600) % 10
    basis = np.linalg.qr(rng.standard_normal((3072, 256)))[0].astype(np.float32)
    data = RunData(
        train=(images[:500], labels[:500]),
        val=(images[500:], labels[500:]),
        classes=[str(i) for i in range(10)],
        preprocessing={"mean": np.zeros(3, np.float32), "std": np.ones(3, np.float32)},
        data_hash="random",
        whitened=True,
        pca_components=basis,
    )
    cfg = PipelineConfig()
    cfg.model.hidden_size, cfg.model.input_pca = [512, 256], input_pca
    cfg.solver.epochs, cfg.solver.batch_size = 2, 250
    before = get_num_threads()
    weights, lineages = {}, {}
    try:
        for threads in (1, 2, 2):
            set_num_threads(threads)
            outcome = run_training(validate_config(cfg), data, keep_model=True)
            params = outcome.model.params
            trained = {name: params[name].tobytes() for name in sorted(params)}
            assert weights.setdefault(threads, trained) == trained  # repeats itself
            lineages[threads] = lineage_of(cfg, data.data_hash)
    finally:
        set_num_threads(before)
    if products_depend_on_threads(2):
        assert lineages[1] != lineages[2]
    else:
        assert weights[1] == weights[2] and lineages[1] == lineages[2]


def test_a_run_killed_between_two_timed_checkpoints_resumes_from_the_newer_one(
    zca_data, tmp_path, monkeypatch
):
    """Checkpoints every 60 s (a fake clock: each epoch takes 30 s) are written at epochs
    2 and 4 (not at 6, which ends the schedule: nothing resumes from there); a crash in
    epoch 5 resumes from epoch 4 and ends with the uninterrupted run's numbers, to the
    bit. A budget short of the schedule's end (a search's rung) is checkpointed at its
    end."""
    import npdl.run.checkpoints as checkpoints

    now = [0.0]
    monkeypatch.setattr(checkpoints, "clock", lambda: now[0])

    class Crash(Exception):
        pass

    def ticking(crash_at=None):
        def tick(solver, stats):
            now[0] = 30.0 * solver.epoch
            if solver.epoch == crash_at:
                raise Crash
            return False

        return tick

    class CountingStore(RunStore):
        def store_checkpoint(self, lineage, state):
            self.written.append(int(state["position"][0]))
            return super().store_checkpoint(lineage, state)

    cfg = small_config()
    cfg.solver.epochs, cfg.solver.checkpoint_seconds = 6, 60.0
    cfg.solver.ema, cfg.model.dropout = 0.9, 0.1  # every state a resume must restore
    data = load_run_data(zca_data)
    runs = {}
    for name in ("whole", "killed"):
        store = CountingStore(tmp_path / name)
        store.written = []
        now[0] = 0.0
        if name == "killed":
            with pytest.raises(Crash):
                run_training(cfg, data, store, callbacks=[ticking(5)], fail_fast=True)
            assert store.written == [2, 4]
            store.written = []
        outcome = run_training(cfg, data, store, callbacks=[ticking()], keep_model=True)
        runs[name] = outcome, store.written
    whole, killed = runs["whole"][0], runs["killed"][0]
    assert runs["whole"][1] == [2, 4] and runs["killed"][1] == []
    assert killed.result.resumed_from == 4 and whole.result.resumed_from is None
    for name, value in whole.model.state_dict().items():
        assert killed.model.state_dict()[name].tobytes() == value.tobytes(), name
    drop = ("seconds",)
    assert [{k: v for k, v in row.items() if k not in drop} for row in killed.history] == [
        {k: v for k, v in row.items() if k not in drop} for row in whole.history
    ]
    # A rung: 3 of a 6-epoch schedule, checkpointed at its end though 3 < 60 s passed.
    rung = replace(cfg, solver=replace(cfg.solver, epochs=3, schedule_epochs=6, seed=1))
    store = CountingStore(tmp_path / "rung")
    store.written, now[0] = [], 0.0
    run_training(rung, data, store, callbacks=[ticking()])
    assert store.written == [2, 3]


def test_when_to_checkpoint_is_not_part_of_a_run_identity():
    from npdl.run.training import lineage_of

    cfg = small_config()
    often = replace(cfg, solver=replace(cfg.solver, checkpoint_seconds=0.0))
    assert lineage_of(cfg, "data") == lineage_of(often, "data")
    averaged = replace(cfg, solver=replace(cfg.solver, ema=0.99))
    assert lineage_of(cfg, "data") != lineage_of(averaged, "data")
