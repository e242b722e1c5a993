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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..config import PipelineConfig
from ..data.normalization import read_normalization
from ..data.prepared import load_manifest, load_split
from ..io import link_or_copy
from ..network import ClassificationNet
from ..threads import get_num_threads, products_depend_on_threads
from ..trial import TrialResult
from ..version import __version__
from .build import build_training, training_config, training_metadata
from .checkpoints import checkpointer, resume
from .store import RunStore, stable_hash

log = logging.getLogger("npdl.run")

#: Solver statuses that end a lineage: training further would change nothing.
FINAL_STATUSES = ("early_stopped", "diverged")
#: Parts of the package that cannot change what a configuration trains to (what to
#: run, how to show or judge it, how to trim the store): editing them keeps the store's
#: results. A top-level name or a path inside the package.
CODE_HASH_EXCLUDES = (
    "cli.py",
    "diagnosis.py",
    "plots.py",
    "search",
    "sanity.py",
    "gradient_check.py",
    "run/events.py",
    "run/gc.py",
    "run/projects.py",
    "run/sanity.py",
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
        The images are uint8, or ZCA-whitened float16 when ``whitened``. ``val`` is
        None for a refit (:meth:`with_val_in_train`).
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
    val: tuple[np.ndarray, np.ndarray] | None
    classes: list[str]
    preprocessing: dict[str, np.ndarray]
    data_hash: str
    content_hash: str = ""
    whitened: bool = False
    pca_components: np.ndarray | None = None

    def with_val_in_train(self) -> RunData:
        """The data of a refit: the val split appended to the train split, nothing to
        validate on (scikit-learn's ``refit``). The test split is never part of it."""
        if self.val is None:
            raise ValueError("the val split is already part of the training data")
        images = np.concatenate([self.train[0], self.val[0]])
        labels = np.concatenate([self.train[1], self.val[1]])
        return replace(
            self,
            train=(images, labels),
            val=None,
            data_hash=stable_hash([self.data_hash, "train+val"]),
        )


def load_run_data(
    data_folder: str | Path,
    train_fraction: float = 1.0,
    normalization: str | None = None,
    with_val: bool = False,
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
    with_val : bool
        Append the val split to the training data (a refit; see
        :meth:`RunData.with_val_in_train`).
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
    data = RunData(
        train=(train_images[:keep], train_labels[:keep]),
        val=(val_images, val_labels),
        classes=manifest["classes"],
        preprocessing=fitted.preprocessing,
        data_hash=stable_hash([manifest["content_hash"], keep, fitted.record]),
        content_hash=manifest["content_hash"],
        whitened=fitted.whitened,
        pca_components=fitted.pca_components() if has_components else None,
    )
    return data.with_val_in_train() if with_val else data


def lineage_identity(cfg: PipelineConfig, data_hash: str) -> dict:
    """What identifies a run's training without its epoch budget (see ``store``): the
    training configuration, the data and the library's code; and the thread count,
    where this machine's BLAS sums products differently on different thread counts
    (:func:`~npdl.threads.products_depend_on_threads`)."""
    settings = training_config(cfg)
    solver = settings["solver"]
    solver["schedule_epochs"] = solver["schedule_epochs"] or solver["epochs"]
    del solver["epochs"]
    del solver["checkpoint_seconds"]  # when to checkpoint does not change the weights
    identity = {"training": settings, "data": data_hash, "npdl": __version__, "code": code_hash()}
    threads = get_num_threads()
    if products_depend_on_threads(threads):
        identity["threads"] = threads
    return identity


def lineage_of(cfg: PipelineConfig, data_hash: str) -> str:
    """The store's key of a run's lineage: a hash of :func:`lineage_identity`."""
    return stable_hash(lineage_identity(cfg, data_hash))[:24]


@dataclass(frozen=True)
class RunOptions:
    """How :func:`run_training` runs a configuration (not what it trains).

    Attributes
    ----------
    callbacks : tuple of callable
        Per-epoch callbacks for the Solver, ``callback(solver, stats) -> stop``.
    verbose : bool
        Print the Solver's epoch lines.
    fail_fast : bool
        Re-raise an exception of the training instead of recording it.
    keep_model : bool
        Return the trained model (best epoch) in :attr:`TrainingOutcome.model`; the
        store keeps no live model, so the run trains (or resumes) even on a store hit.
    store_model : bool
        Write the model file into the store's entry.
    model_out : Path or None
        Where to link (or copy) the stored model file while the lineage is still held;
        nothing is written there when the run stored no model.
    """

    callbacks: tuple[Callable, ...] = ()
    verbose: bool = False
    fail_fast: bool = False
    keep_model: bool = False
    store_model: bool = True
    model_out: Path | None = None


@dataclass(frozen=True)
class TrainingOutcome:
    """What :func:`run_training` returns: the trial's result and what came with it.

    Attributes
    ----------
    result : TrialResult
        Status, validation figures, epochs, the store entry (``lineage``, ``budget``).
    history : list of dict
        One dict per epoch trained (the Solver's ``history``: ``epoch``,
        ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``lr``, ...); of the
        original run for a cache hit, of the epochs before the error for a failure.
    model_path : str or None
        The stored model file, or None (no store, no model stored, or failed).
    model : ClassificationNet or None
        The trained model at its best epoch, with ``keep_model`` only.
    config : dict or None
        The training configuration (:func:`~npdl.run.build.training_config`) of a
        failed run; None otherwise.
    traceback : str or None
        The formatted traceback of a failed run; None otherwise.
    """

    result: TrialResult
    history: list[dict]
    model_path: str | None = None
    model: ClassificationNet | None = None
    config: dict | None = None
    traceback: str | None = None


#: Keys a run store record holds beside a result's (:meth:`TrialResult.to_json`, less
#: ``cache_hit``): the epoch history, and the library version and code that wrote it.
STORED_EXTRAS = ("history", "npdl", "code")


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
) -> TrainingOutcome:
    """Train ``cfg`` for ``cfg.solver.epochs`` epochs, or take its result from the store.

    The lineage is held in the store (:meth:`RunStore.holding`) throughout, so that
    ``npdl cache gc`` removes none of it meanwhile.

    Parameters
    ----------
    cfg : PipelineConfig
    data : RunData
    store : RunStore, optional
        Without one, the run always trains and nothing is stored.
    callbacks, verbose, fail_fast, keep_model, store_model, model_out
        See :class:`RunOptions`.

    Returns
    -------
    TrainingOutcome
        The :class:`~npdl.trial.TrialResult` (``status`` 'ok', 'diverged' or
        'failed'), the per-epoch history, the stored model file, and the model (with
        ``keep_model``), configuration and traceback (failed) that came with it.
    """
    options = RunOptions(
        tuple(callbacks),
        verbose,
        fail_fast,
        keep_model,
        store_model,
        None if model_out is None else Path(model_out),
    )
    lineage = lineage_of(cfg, data.data_hash)
    if store is None:
        return _train_or_take(cfg, data, None, lineage, options)
    with store.holding(lineage):
        outcome = _train_or_take(cfg, data, store, lineage, options)
        if options.model_out is not None and outcome.model_path is not None:
            link_or_copy(outcome.model_path, options.model_out)
    return outcome


def _train_or_take(
    cfg: PipelineConfig,
    data: RunData,
    store: RunStore | None,
    lineage: str,
    options: RunOptions,
) -> TrainingOutcome:
    """The store's result of ``lineage`` at ``cfg.solver.epochs``, else a training of
    it (resumed where the store has its checkpoint), stored; a failure is recorded."""
    epochs = cfg.solver.epochs
    if store is not None:
        stored = _stored_outcome(store, lineage, epochs)
        if stored is not None and not options.keep_model:
            store.log("hit", lineage, epochs)
            log.info("run %s at %d epochs: cache hit", lineage, epochs)
            return stored
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
            callbacks=list(options.callbacks),
            verbose=options.verbose,
            whitened=data.whitened,
            pca_components=data.pca_components,
        )
        resumed_from = resume(run, store, lineage, epochs)
        _train_to_budget(run, cfg, store, lineage)
    except Exception as error:
        if options.fail_fast:
            raise
        failed = _measured(run, lineage, epochs, start, resumed_from, "failed", error)
        return _record_failure(cfg, store, failed)
    status = "diverged" if run.solver.status == "diverged" else "ok"
    val_images = None if data.val is None else len(data.val[1])
    measured = _measured(run, lineage, epochs, start, resumed_from, status, val_images=val_images)
    return _store_result(cfg, data, store, run, measured, options)


def _stored_outcome(store: RunStore, lineage: str, epochs: int) -> TrainingOutcome | None:
    """The stored result of ``lineage`` at ``epochs`` as a cache hit, or None. A record
    that is no trial result (another version's) counts as none."""
    record = store.load_result(lineage, epochs)
    if record is None:
        return None
    fields = {key: value for key, value in record.items() if key not in STORED_EXTRAS}
    try:
        result = TrialResult.from_json({**fields, "cache_hit": True})
    except ValueError as error:
        log.warning("run %s at %d epochs: stored result unreadable: %s", lineage, epochs, error)
        return None
    model_file = store.model_path(lineage, epochs)
    return TrainingOutcome(
        result,
        record.get("history", []),
        model_path=str(model_file) if model_file.is_file() else None,
    )


def _train_to_budget(run, cfg: PipelineConfig, store: RunStore | None, lineage: str) -> None:
    """Train ``run`` (restored or fresh) on to ``cfg.solver.epochs``; a run already
    there, or finished early, gets its best weights back."""
    remaining = cfg.solver.epochs - run.solver.epoch
    if store is not None:
        solver = cfg.solver
        horizon = solver.schedule_epochs or solver.epochs
        run.solver.callbacks.append(
            checkpointer(
                run.generators, store, lineage, solver.checkpoint_seconds, solver.epochs, horizon
            )
        )
    if remaining > 0 and run.solver.status not in FINAL_STATUSES:
        # Restored best weights are only wanted at the very end of a lineage step.
        run.solver.train(epochs=remaining, patience=cfg.solver.patience)
        if store is not None and run.solver.status in FINAL_STATUSES:
            # Longer runs of this lineage will find it finished, not resume it.
            store.store_checkpoint(lineage, run.state())
    elif run.solver.best_params is not None:
        run.model.load_state_dict(run.solver.best_params)


def _record_failure(
    cfg: PipelineConfig, store: RunStore | None, failed: TrainingOutcome
) -> TrainingOutcome:
    """``failed`` with the configuration and the traceback being handled, kept in the
    store's ``failures/`` (a failure is an event, not a result: never replayed)."""
    failed = replace(failed, config=training_config(cfg), traceback=traceback.format_exc())
    result = failed.result
    log.error("run %s failed: %s", result.lineage, result.error)
    if store is not None:
        record = _store_record(
            result, history=failed.history, config=failed.config, traceback=failed.traceback
        )
        store.record_failure(result.lineage, result.budget, record)
    return failed


def _store_result(
    cfg: PipelineConfig,
    data: RunData,
    store: RunStore | None,
    run,
    measured: TrainingOutcome,
    options: RunOptions,
) -> TrainingOutcome:
    """``measured`` with the model (``keep_model``) and, with a store, written into it
    as the entry of its lineage and budget (with the model file, ``store_model``)."""
    run.model.metadata = {
        **training_metadata(cfg, run.solver),
        "data_hash": data.content_hash,
        "train_images": len(data.train[1]),
    }
    model_path = None
    result = measured.result
    if store is not None:
        # Which library version and code produced the result, kept with it.
        record = _store_record(result, history=measured.history, npdl=__version__, code=code_hash())
        model = run.model if options.store_model else None
        entry = store.store_result(result.lineage, result.budget, record, model)
        store.log(
            "store",
            result.lineage,
            result.budget,
            status=result.status,
            resumed_from=result.resumed_from,
        )
        model_path = str(entry / "model.npz") if options.store_model else None
    model = run.model if options.keep_model else None
    return replace(measured, model_path=model_path, model=model)


def _store_record(result: TrialResult, **extras) -> dict:
    """What the store keeps of ``result``: its JSON less ``cache_hit`` (a stored result
    is a hit when read back), and ``extras``."""
    record = result.to_json()
    del record["cache_hit"]
    return {**record, **extras}


def _measured(
    run,
    lineage: str,
    epochs: int,
    start: float,
    resumed_from,
    status: str,
    error=None,
    val_images: int | None = None,
) -> TrainingOutcome:
    """The result of ``run`` (None: it failed before it was built) at budget ``epochs``,
    trained since ``start`` (``time.perf_counter``), with its history."""
    solver = run.solver if run is not None else None
    best = (solver.best_model_stats if solver else None) or {}
    result = TrialResult(
        status=status,
        val_acc=best.get("val_acc"),
        val_loss=best.get("val_loss"),
        best_epoch=solver.best_epoch if solver else None,
        epochs=solver.epoch if solver else 0,
        resumed_from=resumed_from,
        seconds=round(time.perf_counter() - start, 3),
        threads=get_num_threads(),
        cache_hit=False,
        lineage=lineage,
        budget=epochs,
        val_images=val_images,
        error=None if error is None else f"{type(error).__name__}: {error}",
    )
    return TrainingOutcome(result, copy.deepcopy(solver.history) if solver else [])
