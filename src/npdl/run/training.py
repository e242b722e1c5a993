"""One training run — a configuration at an epoch budget — through the run store.

``run_training`` trains nothing when the store holds the result, resumes from the
lineage's checkpoint when a shorter run of the same lineage ran before (a search's
promotions, or a run killed mid-training), and records divergence as a status.
A run that fails (an exception) is not stored as a result: its traceback is kept in
the store's ``failures/`` and the next run trains it again.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import PipelineConfig
from ..data.normalization import read_normalization
from ..data.prepared import load_manifest, load_split
from ..io import link_or_copy
from ..threads import get_num_threads
from ..version import __version__
from .build import build_training, training_config, training_metadata, training_state
from .store import RunStore, stable_hash

log = logging.getLogger("npdl.run")

#: Solver statuses that end a lineage: training further would change nothing.
FINAL_STATUSES = ("early_stopped", "diverged")
#: Parts of the package that cannot change what a configuration trains to (what to
#: run, how to show it, how to trim the store): editing them keeps the store's results.
#: A top-level name or a path inside the package.
CODE_HASH_EXCLUDES = (
    "cli.py",
    "plots.py",
    "search",
    "run/events.py",
    "run/gc.py",
    "run/projects.py",
)
PACKAGE = Path(__file__).resolve().parents[1]


@functools.cache
def code_hash(package: Path = PACKAGE) -> str:
    """sha256 of the ``npdl`` package's source that shapes training: every ``.py``
    file (path and bytes) but ``CODE_HASH_EXCLUDES``. Any edit there changes it."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative.parts[0] in CODE_HASH_EXCLUDES or relative.as_posix() in CODE_HASH_EXCLUDES:
            continue
        digest.update(f"{relative.as_posix()}\0".encode())
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass
class RunData:
    """The data a training run trains and validates on.

    Attributes
    ----------
    train, val : (images (N, H, W, 3), int64 labels (N,))
        The images are uint8, or ZCA-whitened float16 when ``whitened``.
    classes : list of str
    preprocessing : dict of str to numpy.ndarray
        float32 ``mean`` and ``std`` (3,), plus ``zca_mean`` (D,) and ``zca_matrix``
        (D, D) for the zca normalisation (:mod:`npdl.data.normalization`).
    data_hash : str
        Identifies the data (prepared content and the fraction of it used).
    content_hash : str
        The prepared dataset's content hash (its manifest's).
    whitened : bool
        ``train``/``val`` images are ZCA-whitened float16 rather than raw uint8.
    pca_components : numpy.ndarray or None
        float32 (D, D), memory-mapped: the train split's principal directions by
        decreasing variance (zca only), for ``model.input_pca``.
    """

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    classes: list[str]
    preprocessing: dict[str, np.ndarray]
    data_hash: str
    content_hash: str = ""
    whitened: bool = False
    pca_components: np.ndarray | None = None


def load_run_data(
    data_folder: str | Path, train_fraction: float = 1.0, normalization: str | None = None
) -> RunData:
    """Prepared train/val splits and normalisation from the pipeline's data folder.

    Parameters
    ----------
    data_folder : path
        Holds ``prepared/`` and ``normalized/``.
    train_fraction : float
        Share of the training split to use (a class-balanced prefix), for cheaper
        searches; validation always uses the whole val split.
    normalization : str, optional
        The method the configuration asks for; a different one on disk is an error
        (the normalize stage has to run again first).
    """
    if not 0 < train_fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction!r}")
    folder = Path(data_folder)
    manifest = load_manifest(folder / "prepared")
    fitted = read_normalization(folder / "normalized")
    if normalization is not None and fitted.method != normalization:
        raise ValueError(
            f"{folder / 'normalized'} holds the {fitted.method!r} normalisation but the "
            f"configuration asks for normalize.method={normalization!r}; run the normalize "
            "stage again (`dvc repro normalize`, or `dvc exp run -S ...`)"
        )
    # Whitened splits, where the normalize stage stored them, else the raw ones.
    images_folder = folder / ("normalized" if fitted.whitened else "prepared")
    train_images = np.load(images_folder / "train_images.npy", allow_pickle=False)
    val_images = np.load(images_folder / "val_images.npy", allow_pickle=False)
    _, train_labels = load_split(folder / "prepared", "train", mmap=True)
    _, val_labels = load_split(folder / "prepared", "val", mmap=True)
    # The prepared train split is in round-robin class order: a prefix is balanced.
    keep = max(len(manifest["classes"]), round(len(train_labels) * train_fraction))
    has_components = fitted.whitened and (fitted.folder / "pca_components.npy").is_file()
    return RunData(
        train=(train_images[:keep], train_labels[:keep]),
        val=(val_images, val_labels),
        classes=manifest["classes"],
        preprocessing=fitted.preprocessing,
        data_hash=stable_hash([manifest["content_hash"], keep, fitted.record]),
        content_hash=manifest["content_hash"],
        whitened=fitted.whitened,
        pca_components=fitted.pca_components() if has_components else None,
    )


def lineage_identity(cfg: PipelineConfig, data_hash: str) -> dict:
    """What identifies a run's training without its epoch budget (see ``store``): the
    training configuration, the data and the library's code."""
    settings = training_config(cfg)
    solver = settings["solver"]
    solver["schedule_epochs"] = solver["schedule_epochs"] or solver["epochs"]
    del solver["epochs"]
    return {"training": settings, "data": data_hash, "npdl": __version__, "code": code_hash()}


def lineage_of(cfg: PipelineConfig, data_hash: str) -> str:
    """The store's key of a run's lineage: a hash of :func:`lineage_identity`."""
    return stable_hash(lineage_identity(cfg, data_hash))[:24]


def run_training(
    cfg: PipelineConfig,
    data: RunData,
    store: RunStore | None = None,
    callbacks: Iterable[Callable] = (),
    verbose: bool = False,
    fail_fast: bool = False,
    keep_model: bool = False,
    store_model: bool = True,
    model_out: str | Path | None = None,
) -> dict:
    """Train ``cfg`` for ``cfg.solver.epochs`` epochs, or take its result from the store.

    The lineage is held in the store (:meth:`RunStore.holding`) throughout, so that
    ``npdl cache gc`` removes none of it meanwhile.

    Parameters
    ----------
    cfg : PipelineConfig
    data : RunData
    store : RunStore, optional
        Without one, the run always trains and nothing is stored.
    callbacks : per-epoch callbacks for the Solver
    verbose : print the Solver's epoch lines
    fail_fast : re-raise an exception of the training instead of recording it
    keep_model : put the trained model (best epoch) under ``result['model']``; the
        store keeps no live model, so the run trains (or resumes) even on a store hit
    store_model : write the model file into the store's entry (``model_path``)
    model_out : where to link (or copy) the stored model file, while the lineage is
        still held; nothing is written there when the run stored no model

    Returns
    -------
    dict
        ``status`` ('ok', 'diverged' or 'failed'), ``val_acc``, ``val_loss`` (best
        epoch), ``best_epoch``, ``epochs`` (run), ``budget`` (``cfg.solver.epochs``),
        ``seconds`` (of the training that produced it), ``threads`` (it ran on),
        ``history`` (per-epoch dicts), ``lineage``, ``cache_hit``, ``resumed_from``
        (epoch or None), ``config``, ``traceback`` and ``error`` (failed only),
        ``model_path`` (stored model file or None), ``model`` (with ``keep_model``).
    """
    lineage = lineage_of(cfg, data.data_hash)
    if store is None:
        return _train_or_take(cfg, data, None, lineage, callbacks, verbose, fail_fast, keep_model)
    with store.holding(lineage):
        result = _train_or_take(
            cfg, data, store, lineage, callbacks, verbose, fail_fast, keep_model, store_model
        )
        if model_out is not None and result["model_path"] is not None:
            link_or_copy(result["model_path"], model_out)
    return result


def _train_or_take(
    cfg, data, store, lineage, callbacks, verbose, fail_fast, keep_model, store_model=True
) -> dict:
    epochs = cfg.solver.epochs
    if store is not None:
        cached = store.load_result(lineage, epochs)
        if cached is not None and not keep_model:
            store.log("hit", lineage, epochs)
            log.info("run %s at %d epochs: cache hit", lineage, epochs)
            model_file = store.model_path(lineage, epochs)
            return {
                **cached,
                "cache_hit": True,
                "model_path": str(model_file) if model_file.is_file() else None,
            }
        store.log("miss", lineage, epochs)
        log.info("run %s at %d epochs: cache miss", lineage, epochs)
        store.describe(lineage, {**lineage_identity(cfg, data.data_hash), "created": time.time()})
    start = time.perf_counter()
    run, resumed_from = None, None
    try:
        run = build_training(
            cfg,
            data.train,
            data.val,
            data.classes,
            data.preprocessing,
            callbacks=list(callbacks),
            verbose=verbose,
            whitened=data.whitened,
            pca_components=data.pca_components,
        )
        resumed_from = _resume(run, store, lineage, epochs)
        if store is not None:
            run.solver.callbacks.append(_checkpointer(run.generators, store, lineage))
        remaining = epochs - run.solver.epoch
        if remaining > 0 and run.solver.status not in FINAL_STATUSES:
            # Restored best weights are only wanted at the very end of a lineage step.
            run.solver.train(epochs=remaining, patience=cfg.solver.patience)
            if store is not None and run.solver.status in FINAL_STATUSES:
                # Longer runs of this lineage will find it finished, not resume it.
                store.store_checkpoint(lineage, run.state())
        elif run.solver.best_params is not None:
            run.model.load_state_dict(run.solver.best_params)
    except Exception as error:
        if fail_fast:
            raise
        result = _result(run, lineage, epochs, start, resumed_from, status="failed")
        result["config"] = training_config(cfg)
        result["traceback"] = traceback.format_exc()
        result["error"] = f"{type(error).__name__}: {error}"
        log.error("run %s failed: %s", lineage, result["error"])
        if store is not None:
            # A failure is an event, not a result: kept for reading, never replayed.
            store.record_failure(lineage, epochs, result)
        return {**result, "cache_hit": False, "model_path": None}
    status = "diverged" if run.solver.status == "diverged" else "ok"
    result = _result(run, lineage, epochs, start, resumed_from, status)
    run.model.metadata = {
        **training_metadata(cfg, run.solver),
        "data_hash": data.content_hash,
        "train_images": len(data.train[1]),
    }
    model_path = None
    if store is not None:
        # Which library version and code produced the result, kept with it.
        stored = {**result, "npdl": __version__, "code": code_hash()}
        entry = store.store_result(lineage, epochs, stored, run.model if store_model else None)
        store.log("store", lineage, epochs, status=status, resumed_from=resumed_from)
        model_path = str(entry / "model.npz") if store_model else None
    result = {**result, "cache_hit": False, "model_path": model_path}
    if keep_model:
        result["model"] = run.model
    return result


def _resume(run, store: RunStore | None, lineage: str, epochs: int) -> int | None:
    """Load the lineage's checkpoint if it is a prefix of this run."""
    if store is None:
        return None
    state = store.load_checkpoint(lineage)
    if state is None:
        return None
    checkpoint_epoch = int(state["position"][0])
    if checkpoint_epoch > epochs:
        return None  # a longer run of the lineage: start afresh, leave it alone
    run.load_state(state)
    store.log("resume", lineage, epochs, from_epoch=checkpoint_epoch)
    log.info("run %s resumes from epoch %d of %d", lineage, checkpoint_epoch, epochs)
    return checkpoint_epoch


def _checkpointer(generators: dict, store: RunStore, lineage: str) -> Callable:
    """A Solver callback writing the lineage's checkpoint at the end of each epoch (before
    the best weights are restored). It is handed the solver and holds only the run's
    generators: holding the run would make a cycle (run -> solver -> callback -> run)
    that only a garbage collection frees, keeping a finished run's memory alive."""

    def save(solver, stats) -> bool:
        store.store_checkpoint(lineage, training_state(solver, generators))
        return False

    return save


def _result(run, lineage, epochs, start, resumed_from, status) -> dict:
    solver = run.solver if run is not None else None
    best = (solver.best_model_stats if solver else None) or {}
    return {
        "status": status,
        "val_acc": best.get("val_acc"),
        "val_loss": best.get("val_loss"),
        "best_epoch": solver.best_epoch if solver else None,
        "epochs": solver.epoch if solver else 0,
        "budget": epochs,
        "seconds": round(time.perf_counter() - start, 3),
        "threads": get_num_threads(),
        "history": copy.deepcopy(solver.history) if solver else [],
        "lineage": lineage,
        "resumed_from": resumed_from,
    }
