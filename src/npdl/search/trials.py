"""Running one trial — a training configuration at an epoch budget — through the cache.

``run_trial`` trains nothing when the trial is cached, resumes from the lineage's
checkpoint when a shorter trial of the same lineage ran before (successive halving's
promotions, or a run killed mid-training), and records failures and divergence as a
status instead of raising, so a sweep goes on.
"""

from __future__ import annotations

import copy
import logging
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..config import PipelineConfig
from ..io import load_json
from ..prepared import load_manifest, load_split
from ..preprocessing import load_normalization
from ..threads import get_num_threads
from ..training import build_training, training_config, training_metadata
from .cache import TrialCache, stable_hash

log = logging.getLogger("npdl.search")

#: Solver statuses that end a lineage: training further would change nothing.
FINAL_STATUSES = ("early_stopped", "diverged")


@dataclass
class TrialData:
    """The data every trial of a search trains and validates on.

    Attributes
    ----------
    train, val : (uint8 images (N, H, W, 3), int64 labels (N,))
    classes : list of str
    preprocessing : dict with float32 ``mean`` and ``std`` (3,)
    data_hash : str
        Identifies the data (prepared content and the fraction of it used).
    content_hash : str
        The prepared dataset's content hash (its manifest's).
    whitened : bool
        ``train``/``val`` images are ZCA-whitened float16 rather than raw uint8.
    """

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    classes: list[str]
    preprocessing: dict[str, np.ndarray]
    data_hash: str
    content_hash: str = ""
    whitened: bool = False


def load_trial_data(
    data_folder: str | Path, train_fraction: float = 1.0, normalization: str | None = None
) -> TrialData:
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
    preprocessing = load_normalization(folder / "normalized")
    whitened = "zca_matrix" in preprocessing
    # Whitened splits, where the normalize stage stored them, else the raw ones.
    images_folder = folder / ("normalized" if whitened else "prepared")
    train_images = np.load(images_folder / "train_images.npy", allow_pickle=False)
    val_images = np.load(images_folder / "val_images.npy", allow_pickle=False)
    _, train_labels = load_split(folder / "prepared", "train", mmap=True)
    _, val_labels = load_split(folder / "prepared", "val", mmap=True)
    # The prepared train split is in round-robin class order: a prefix is balanced.
    keep = max(len(manifest["classes"]), round(len(train_labels) * train_fraction))
    record = load_json(folder / "normalized" / "stats.json")
    fitted = record.get("method", "standardize")
    if normalization is not None and fitted != normalization:
        raise ValueError(
            f"{folder / 'normalized'} holds the {fitted!r} normalisation but the "
            f"configuration asks for normalize.method={normalization!r}; run the normalize "
            "stage again (`dvc repro normalize`, or `dvc exp run -S ...`)"
        )
    return TrialData(
        train=(train_images[:keep], train_labels[:keep]),
        val=(val_images, val_labels),
        classes=manifest["classes"],
        preprocessing=preprocessing,
        data_hash=stable_hash([manifest["content_hash"], keep, record]),
        content_hash=manifest["content_hash"],
        whitened=whitened,
    )


def lineage_of(cfg: PipelineConfig, data_hash: str) -> str:
    """Identity of a trial's training without its epoch budget (see ``cache``)."""
    settings = training_config(cfg)
    solver = settings["solver"]
    solver["schedule_epochs"] = solver["schedule_epochs"] or solver["epochs"]
    del solver["epochs"]
    return stable_hash({"training": settings, "data": data_hash, "npdl": __version__})[:24]


def run_trial(
    cfg: PipelineConfig,
    data: TrialData,
    cache: TrialCache | None = None,
    callbacks: Iterable[Callable] = (),
    verbose: bool = False,
    fail_fast: bool = False,
    keep_model: bool = False,
    store_model: bool = True,
) -> dict:
    """Train ``cfg`` for ``cfg.solver.epochs`` epochs, or take its result from the cache.

    Parameters
    ----------
    cfg : PipelineConfig
    data : TrialData
    cache : TrialCache, optional
        Without one, the trial always trains and nothing is stored.
    callbacks : per-epoch callbacks for the Solver
    verbose : print the Solver's epoch lines
    fail_fast : re-raise an exception of the training instead of recording it
    keep_model : put the trained model (best epoch) under ``result['model']``
    store_model : write the model file into the cache entry (``model_path``)

    Returns
    -------
    dict
        ``status`` ('ok', 'diverged' or 'failed'), ``val_acc``, ``val_loss`` (best
        epoch), ``best_epoch``, ``epochs`` (run), ``seconds`` (of the training that
        produced it), ``threads`` (it ran on), ``history`` (per-epoch dicts), ``lineage``, ``cache_hit``,
        ``resumed_from`` (epoch or None), ``traceback`` (failed only),
        ``model_path`` (cached model file or None).
    """
    epochs = cfg.solver.epochs
    lineage = lineage_of(cfg, data.data_hash)
    if cache is not None:
        cached = cache.load_result(lineage, epochs)
        if cached is not None and not keep_model:
            cache.log("hit", lineage, epochs)
            log.info("trial %s at %d epochs: cache hit", lineage, epochs)
            model_file = cache.model_path(lineage, epochs)
            return {
                **cached,
                "cache_hit": True,
                "model_path": str(model_file) if model_file.is_file() else None,
            }
        cache.log("miss", lineage, epochs)
        log.info("trial %s at %d epochs: cache miss", lineage, epochs)
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
        )
        resumed_from = _resume(run, cache, lineage, epochs)
        if cache is not None:
            run.solver.callbacks.append(_checkpointer(run, cache, lineage))
        remaining = epochs - run.solver.epoch
        if remaining > 0 and run.solver.status not in FINAL_STATUSES:
            # Restored best weights are only wanted at the very end of a lineage step.
            run.solver.train(epochs=remaining, patience=cfg.solver.patience)
            if cache is not None and run.solver.status in FINAL_STATUSES:
                # Longer trials of this lineage will find it finished, not resume it.
                cache.store_checkpoint(lineage, run.state())
        elif run.solver.best_params is not None:
            run.model.load_state_dict(run.solver.best_params)
    except Exception as error:
        if fail_fast:
            raise
        result = _result(run, lineage, epochs, start, resumed_from, status="failed")
        result["config"] = training_config(cfg)
        result["traceback"] = traceback.format_exc()
        result["error"] = f"{type(error).__name__}: {error}"
        log.error("trial %s failed: %s", lineage, result["error"])
        if cache is not None:
            cache.store_result(lineage, epochs, result)
            cache.log("failed", lineage, epochs, error=result["error"])
        return {**result, "cache_hit": False, "model_path": None}
    status = "diverged" if run.solver.status == "diverged" else "ok"
    result = _result(run, lineage, epochs, start, resumed_from, status)
    run.model.metadata = {
        **training_metadata(cfg, run.solver),
        "data_hash": data.content_hash,
        "train_images": len(data.train[1]),
    }
    model_path = None
    if cache is not None:
        entry = cache.store_result(lineage, epochs, result, run.model if store_model else None)
        cache.log("store", lineage, epochs, status=status, resumed_from=resumed_from)
        model_path = str(entry / "model.npz") if store_model else None
    result = {**result, "cache_hit": False, "model_path": model_path}
    if keep_model:
        result["model"] = run.model
    return result


def _resume(run, cache: TrialCache | None, lineage: str, epochs: int) -> int | None:
    """Load the lineage's checkpoint if it is a prefix of this trial."""
    if cache is None:
        return None
    state = cache.load_checkpoint(lineage)
    if state is None:
        return None
    checkpoint_epoch = int(state["position"][0])
    if checkpoint_epoch > epochs:
        return None  # a longer run of the lineage: start afresh, leave it alone
    run.load_state(state)
    cache.log("resume", lineage, epochs, from_epoch=checkpoint_epoch)
    log.info("trial %s resumes from epoch %d of %d", lineage, checkpoint_epoch, epochs)
    return checkpoint_epoch


def _checkpointer(run, cache: TrialCache, lineage: str) -> Callable:
    def save(solver, stats) -> bool:
        # The state at the end of each epoch, before the best weights are restored.
        cache.store_checkpoint(lineage, run.state())
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
