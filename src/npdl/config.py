"""The pipeline's configuration schema: plain dataclasses and value checks.

The stages merge the composed Hydra config into these dataclasses (which rejects
unknown keys and wrong types, naming the key), then call :func:`validate_config`,
which rejects impossible values before any work is done. The module itself depends
on nothing but the standard library, so the library stays free of Hydra.

The defaults here are the composition of ``conf/`` (a test fails on any difference),
so ``PipelineConfig()`` is the recipe ``dvc repro`` runs. Each optimizer has its own
dataclass with only the fields it uses (``OPTIMIZER_CONFIGS``, chosen by ``name``).
"""

# OmegaConf 2.3 reads ``Optional[...]`` annotations, not ``X | None``.
# ruff: noqa: UP045

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from .activations import ACTIVATIONS
from .data.download import CIFAR10_MD5 as CIFAR10_MD5  # re-exported
from .data.download import CIFAR10_URL as CIFAR10_URL  # re-exported
from .network import INIT_SCHEMES
from .optimizers import OPTIMIZERS
from .registry import NAMED_SEARCHES, PROPOSERS, SCHEDULERS, is_multi_fidelity, search_pair
from .schedules import SCHEDULES
from .solver import MONITORS

SPLIT_MODES = ("train", "val", "test")


class ConfigError(ValueError):
    """An impossible configuration value; the message names the key."""


def debugging() -> bool:
    """``NPDL_DEBUG`` (or Hydra's ``HYDRA_FULL_ERROR``) is set: stages show full
    tracebacks instead of one line, and a sweep's failing trial raises."""
    return any(
        os.environ.get(key, "") not in ("", "0") for key in ("NPDL_DEBUG", "HYDRA_FULL_ERROR")
    )


@dataclass
class PathsConfig:
    """Where things live. ``data`` and ``cache`` are relative to the project root;
    ``models``, ``metrics`` and ``plots`` (PNG pictures) to the run folder (the project
    root under DVC, Hydra's job folder for direct runs, so direct runs never overwrite
    DVC's outputs). ``run_store`` (finished runs and checkpoints, shared by every
    workspace): null for ``$NPDL_RUN_STORE``, else the user's cache folder
    (:func:`npdl.run.store.store_root`); ``run_store_max_gb`` bounds it after every
    sweep and training (null: unbounded)."""

    data: str = "data"
    cache: str = ".cache/npdl"
    run_store: Optional[str] = None
    run_store_max_gb: Optional[float] = None
    models: str = "models"
    metrics: str = "metrics"
    plots: str = "plots"


@dataclass
class DataConfig:
    """prepare-split: where images come from and how they are split."""

    source: str = CIFAR10_URL
    #: null: the published md5 for the official URL, no check for any other source.
    source_md5: Optional[str] = None
    split: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    limit_files: Optional[int] = None
    image_size: int = 32
    seed: int = 0
    download_timeout: float = 60.0


@dataclass
class NormalizeConfig:
    """normalize: statistics fitted on the train split only."""

    method: str = "zca"
    zca_eps: float = 0.1


@dataclass
class ModelConfig:
    """``ClassificationNet`` architecture; ``reg`` is the course's L2 strength (the
    top-level ``reg``, when set, sets it)."""

    activation: str = "relu"
    activation_kwargs: dict[str, float] = field(default_factory=dict)
    hidden_size: list[int] = field(default_factory=lambda: [2048, 1024, 512])
    init: str = "he"
    std: float = 1e-3
    dropout: float = 0.2
    batch_norm: bool = True
    reg: float = 0.0
    #: Feed the network the whitened input's top K principal components (a fixed first
    #: layer, npdl.layers.Projection) instead of all D = 3072 values; zca only.
    input_pca: Optional[int] = 800


@dataclass
class OptimizerConfig:
    """What every optimizer takes (the top-level ``lr``, when set, sets ``lr``). Weight
    decay applies to weight matrices: ``decoupled`` (``w -= lr * weight_decay * w``) or
    coupled (L2, added to the gradient)."""

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.05
    decoupled: bool = True


@dataclass
class AdamConfig(OptimizerConfig):
    """Adam; decoupled weight decay makes it AdamW."""

    name: str = "adam"
    beta1: float = 0.9
    beta2: float = 0.999


@dataclass
class SGDConfig(OptimizerConfig):
    """Plain SGD."""

    name: str = "sgd"
    weight_decay: float = 0.0
    decoupled: bool = False


@dataclass
class SGDMomentumConfig(SGDConfig):
    """SGD with (optionally Nesterov) momentum."""

    name: str = "sgd_momentum"
    momentum: float = 0.9
    nesterov: bool = False


#: ``optimizer.name`` -> the dataclass of that optimizer's fields.
OPTIMIZER_CONFIGS: dict[str, type[OptimizerConfig]] = {
    "adam": AdamConfig,
    "sgd": SGDConfig,
    "sgd_momentum": SGDMomentumConfig,
}


@dataclass
class SolverConfig:
    """Training loop: budget, schedule, early stopping, augmentation."""

    epochs: int = 140
    batch_size: int = 256
    patience: Optional[int] = None
    monitor: str = "val_acc"
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    lr_decay: float = 1.0
    step_size: int = 10
    gamma: float = 0.1
    min_lr: float = 0.0
    schedule_epochs: Optional[int] = None
    label_smoothing: float = 0.0
    train_fraction: float = 1.0
    hflip: bool = True
    crop_padding: int = 4
    seed: int = 0


@dataclass
class TuneConfig:
    """tune: hyperparameter search on train/val before the final training.

    ``space`` maps config keys to Hydra sweep syntax (``choice(...)``, ``a,b``,
    ``interval(a,b)``, ``tag(log, interval(a,b))``). Use the real keys
    (``optimizer.lr``, ``model.reg``), not the top-level shortcuts ``lr``/``reg``.
    ``pin`` lists keys of the space to leave out: searched no more, they keep the
    configured value while the rest is tuned.
    """

    enabled: bool = True
    #: The search: a proposer (``PROPOSERS``: where configurations come from) under a
    #: scheduler (``SCHEDULERS``: budgets and promotions). ``sampler``, when set, names
    #: a pair instead (``NAMED_SEARCHES``, e.g. bohb: tpe under hyperband).
    proposer: str = "random"
    scheduler: str = "halving"
    sampler: Optional[str] = None
    space: dict[str, str] = field(
        default_factory=lambda: {
            "optimizer.lr": "tag(log, interval(3e-4, 3e-3))",
            "optimizer.weight_decay": "tag(log, interval(0.005, 0.1))",
            "model.dropout": "interval(0.0, 0.3)",
        }
    )
    pin: list[str] = field(default_factory=list)
    n_trials: int = 12
    seed: int = 0
    epochs: int = 8
    min_epochs: int = 2
    eta: int = 2
    train_fraction: float = 0.25
    metric: str = "val_acc"
    #: Schedulers with rungs: eliminated configurations trained to ``epochs`` after
    #: the search, reporting how many beat the winner (``metrics/tune.json``).
    audit: int = 0
    #: Schedulers with rungs: keep the checkpoints of eliminated trials in the run store.
    keep_checkpoints: bool = False
    #: TPE under scheduler none: random proposals before its model is used.
    n_startup: int = 8
    n_jobs: int = 1
    #: Hydra launcher of the trials (``LAUNCHERS``); ``launcher_settings`` (dotted or
    #: nested keys; null: the launcher's own) go to ``hydra.launcher``. ``basic`` with
    #: ``n_jobs`` > 1 is joblib.
    launcher: str = "basic"
    launcher_settings: Optional[dict[str, Any]] = None
    fail_fast: bool = False
    keep_trial_models: bool = True
    #: Job folders of this many searches are kept (the newest); older ones are removed.
    keep_sweeps: int = 5


@dataclass
class EvaluateConfig:
    """evaluate: the test split by default, or any labelled folder/archive."""

    source: Optional[str] = None
    metrics_path: Optional[str] = None
    model_path: Optional[str] = None
    batch_size: int = 1000
    tta_flip: bool = True
    tta_shift: int = 2


@dataclass
class PipelineConfig:
    """The whole composed configuration (``conf/`` = ``params.yaml``).

    ``lr`` and ``reg`` are shortcuts: null unless set, and when set they set
    ``optimizer.lr`` and ``model.reg`` (``conf/`` interpolates them), so each value
    has one home.
    """

    seed: int = 0
    lr: Optional[float] = None
    reg: Optional[float] = None
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=AdamConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


def searched_space(tune: TuneConfig) -> dict[str, str]:
    """``tune.space`` without the keys of ``tune.pin``."""
    return {key: value for key, value in tune.space.items() if key not in tune.pin}


def search_of(tune: TuneConfig) -> tuple[str, str]:
    """The (proposer, scheduler) the tune stage runs (``tune.sampler``'s pair when set)."""
    return search_pair(tune.sampler, tune.proposer, tune.scheduler)


NORMALIZE_METHODS = ("standardize", "zca")
#: ``tune.launcher`` choices: Hydra's basic launcher, joblib, and ``conf/hydra/launcher/``.
LAUNCHERS = ("basic", "joblib", "ray_cluster", "ray_local", "slurm", "local_submitit")
SAMPLERS = tuple(NAMED_SEARCHES)


def _check(condition: bool, key: str, value, expected: str) -> None:
    if not condition:
        raise ConfigError(f"{key}={value!r} is not allowed: expected {expected}")


def _one_of(key: str, value, allowed) -> None:
    _check(value in allowed, key, value, f"one of {', '.join(map(str, allowed))}")


def float_values(node, prefix: str = ""):
    """``(dotted key, value)`` of every float in a config dataclass, its nested
    dataclasses, dicts and lists (``data.split.train``, ``model.activation_kwargs.alpha``)."""
    if dataclasses.is_dataclass(node):
        items = ((f.name, getattr(node, f.name)) for f in dataclasses.fields(node))
    elif isinstance(node, dict):
        items = ((str(key), value) for key, value in node.items())
    elif isinstance(node, list | tuple):
        items = ((str(index), value) for index, value in enumerate(node))
    else:
        return
    for name, value in items:
        if isinstance(value, float):
            yield f"{prefix}{name}", value
        else:
            yield from float_values(value, f"{prefix}{name}.")


def validate_config(cfg: PipelineConfig) -> PipelineConfig:
    """Reject impossible values, naming the key and what would be right.

    Raises
    ------
    ConfigError
    """
    # inf and nan pass comparisons such as lr > 0 (or fail them with a misleading
    # message): refuse every non-finite float first, whatever its key.
    for key, value in float_values(cfg):
        _check(math.isfinite(value), key, value, "a finite number")
    data, model, opt, solver = cfg.data, cfg.model, cfg.optimizer, cfg.solver
    _check(
        data.source_md5 is None or re.fullmatch(r"[0-9a-fA-F]{32}", data.source_md5) is not None,
        "data.source_md5",
        data.source_md5,
        "null or the 32 hex digits of the source's md5",
    )
    _check(
        set(data.split) == set(SPLIT_MODES),
        "data.split",
        data.split,
        f"exactly the keys {', '.join(SPLIT_MODES)}",
    )
    _check(
        all(v >= 0 for v in data.split.values()), "data.split", data.split, "non-negative fractions"
    )
    total = sum(data.split.values())
    _check(
        math.isclose(total, 1.0, abs_tol=1e-6),
        "data.split",
        data.split,
        f"fractions summing to 1 (they sum to {total:g})",
    )
    _check(
        data.split["train"] > 0 and data.split["val"] > 0,
        "data.split",
        data.split,
        "train and val fractions > 0",
    )
    _check(
        data.limit_files is None or data.limit_files > 0,
        "data.limit_files",
        data.limit_files,
        "a positive number of images or null",
    )
    _check(data.image_size > 0, "data.image_size", data.image_size, "a positive size")
    _check(data.download_timeout > 0, "data.download_timeout", data.download_timeout, "> 0")
    _one_of("normalize.method", cfg.normalize.method, NORMALIZE_METHODS)
    _check(cfg.normalize.zca_eps > 0, "normalize.zca_eps", cfg.normalize.zca_eps, "> 0")
    _one_of("model.activation", model.activation.lower(), sorted(ACTIVATIONS))
    _check(
        len(model.hidden_size) > 0 and all(h > 0 for h in model.hidden_size),
        "model.hidden_size",
        model.hidden_size,
        "a non-empty list of positive widths",
    )
    _one_of("model.init", model.init, INIT_SCHEMES)
    _check(model.std > 0, "model.std", model.std, "> 0")
    _check(0 <= model.dropout < 1, "model.dropout", model.dropout, "a probability in [0, 1)")
    _check(
        0 <= cfg.evaluate.tta_shift < cfg.data.image_size,
        "evaluate.tta_shift",
        cfg.evaluate.tta_shift,
        f"a number of pixels >= 0 (0 = off) and below data.image_size={cfg.data.image_size}",
    )
    _check(model.reg >= 0, "model.reg", model.reg, ">= 0")
    _check(
        model.input_pca is None or model.input_pca >= 1,
        "model.input_pca",
        model.input_pca,
        "null (the whole input) or a number of principal components >= 1",
    )
    features = 3 * cfg.data.image_size**2
    _check(
        model.input_pca is None or model.input_pca <= features,
        "model.input_pca",
        model.input_pca,
        f"at most the input's {features} values (3 x data.image_size^2)",
    )
    _check(
        model.input_pca is None or cfg.normalize.method == "zca",
        "model.input_pca",
        model.input_pca,
        f"null with normalize.method={cfg.normalize.method} (principal components come "
        "with normalize.method=zca)",
    )
    _one_of("optimizer.name", opt.name, sorted(OPTIMIZERS))
    _check(
        type(opt) is OPTIMIZER_CONFIGS[opt.name],
        "optimizer.name",
        opt.name,
        f"the name of the optimizer whose fields are given ({type(opt).__name__})",
    )
    _check(opt.lr > 0, "optimizer.lr", opt.lr, "a learning rate > 0")
    _check(opt.weight_decay >= 0, "optimizer.weight_decay", opt.weight_decay, ">= 0")
    if isinstance(opt, SGDMomentumConfig):
        _check(0 <= opt.momentum < 1, "optimizer.momentum", opt.momentum, "a value in [0, 1)")
    if isinstance(opt, AdamConfig):
        _check(0 <= opt.beta1 < 1, "optimizer.beta1", opt.beta1, "a value in [0, 1)")
        _check(0 <= opt.beta2 < 1, "optimizer.beta2", opt.beta2, "a value in [0, 1)")
    for shortcut, key, value in (("lr", "optimizer.lr", opt.lr), ("reg", "model.reg", model.reg)):
        given = getattr(cfg, shortcut)
        _check(
            given is None or given == value,
            shortcut,
            given,
            f"null or the value of {key} ({value!r}), which it sets",
        )
    _check(solver.epochs > 0, "solver.epochs", solver.epochs, "a positive number of epochs")
    _check(solver.batch_size > 0, "solver.batch_size", solver.batch_size, "a positive batch size")
    _check(
        solver.patience is None or solver.patience > 0,
        "solver.patience",
        solver.patience,
        "a positive number of epochs or null",
    )
    _one_of("solver.monitor", solver.monitor, MONITORS)
    _one_of("solver.schedule", solver.schedule, SCHEDULES)
    _check(solver.warmup_epochs >= 0, "solver.warmup_epochs", solver.warmup_epochs, ">= 0")
    _check(solver.lr_decay > 0, "solver.lr_decay", solver.lr_decay, "> 0")
    _check(solver.step_size > 0, "solver.step_size", solver.step_size, ">= 1")
    _check(solver.min_lr >= 0, "solver.min_lr", solver.min_lr, ">= 0")
    _check(
        solver.schedule_epochs is None or solver.schedule_epochs > 0,
        "solver.schedule_epochs",
        solver.schedule_epochs,
        "a positive number of epochs or null",
    )
    _check(
        0 <= solver.label_smoothing < 1,
        "solver.label_smoothing",
        solver.label_smoothing,
        "a value in [0, 1)",
    )
    _check(
        0 < solver.train_fraction <= 1,
        "solver.train_fraction",
        solver.train_fraction,
        "a fraction in (0, 1]",
    )
    _check(solver.crop_padding >= 0, "solver.crop_padding", solver.crop_padding, ">= 0")
    tune = cfg.tune
    _one_of("tune.proposer", tune.proposer, tuple(PROPOSERS))
    _one_of("tune.scheduler", tune.scheduler, tuple(SCHEDULERS))
    _check(
        tune.sampler is None or tune.sampler in SAMPLERS,
        "tune.sampler",
        tune.sampler,
        f"one of {', '.join(SAMPLERS)}, or null for tune.proposer and tune.scheduler",
    )
    defaults = (TuneConfig.proposer, TuneConfig.scheduler)
    _check(
        tune.sampler is None or (tune.proposer, tune.scheduler) in (defaults, search_of(tune)),
        "tune.sampler",
        tune.sampler,
        f"null when tune.proposer and tune.scheduler are set (tune.proposer={tune.proposer} "
        f"tune.scheduler={tune.scheduler}; {tune.sampler} is "
        "tune.proposer={} tune.scheduler={})".format(*search_of(tune)),
    )
    for key in tune.pin:
        _one_of("tune.pin", key, sorted(tune.space))
    if tune.enabled:
        _check(
            len(searched_space(tune)) > 0,
            "tune.space",
            tune.space,
            "at least one key to search (and not pinned), "
            "e.g. {optimizer.lr: 'tag(log, interval(1e-5, 1e-2))'}",
        )
    _check(tune.n_trials > 0, "tune.n_trials", tune.n_trials, "a positive number of trials")
    _check(tune.epochs > 0, "tune.epochs", tune.epochs, "a positive number of epochs")
    _check(
        0 < tune.min_epochs <= tune.epochs,
        "tune.min_epochs",
        tune.min_epochs,
        f"between 1 and tune.epochs ({tune.epochs})",
    )
    _check(tune.eta >= 2, "tune.eta", tune.eta, "a reduction factor >= 2")
    _check(
        0 < tune.train_fraction <= 1,
        "tune.train_fraction",
        tune.train_fraction,
        "a fraction in (0, 1]",
    )
    _one_of("tune.metric", tune.metric, ("val_acc", "val_loss"))
    _check(tune.n_jobs >= 1, "tune.n_jobs", tune.n_jobs, ">= 1")
    _one_of("tune.launcher", tune.launcher, LAUNCHERS)
    _check(
        not tune.launcher_settings or tune.launcher != "basic" or tune.n_jobs > 1,
        "tune.launcher_settings",
        tune.launcher_settings,
        "null for tune.launcher=basic (it takes no settings; choose another launcher)",
    )
    _check(tune.keep_sweeps >= 1, "tune.keep_sweeps", tune.keep_sweeps, ">= 1 (this search's)")
    limit = cfg.paths.run_store_max_gb
    _check(limit is None or limit > 0, "paths.run_store_max_gb", limit, "null or a size > 0")
    _check(tune.audit >= 0, "tune.audit", tune.audit, ">= 0")
    _, scheduler = search_of(tune)
    rungs = ", ".join(name for name in SCHEDULERS if is_multi_fidelity(name))
    named = f"tune.sampler={tune.sampler}" if tune.sampler else f"tune.scheduler={scheduler}"
    _check(
        tune.audit == 0 or is_multi_fidelity(scheduler),
        "tune.audit",
        tune.audit,
        f"0 for {named} (an audit checks the schedulers with rungs: {rungs})",
    )
    _check(cfg.evaluate.batch_size > 0, "evaluate.batch_size", cfg.evaluate.batch_size, "> 0")
    return cfg
