"""The pipeline's configuration schema: plain dataclasses and value checks.

The stages merge the composed Hydra config into these dataclasses (which rejects
unknown keys and wrong types, naming the key), then call :func:`validate_config`,
which rejects impossible values before any work is done. The module itself depends
on nothing but the standard library, so the library stays free of Hydra.

Each dataclass declares what its values may be beside its fields: a class-level
table ``constraints`` maps a field to one constraint or a tuple of them
(:mod:`npdl.constraints`; a :class:`~npdl.constraints.Rule` reads the field's
siblings), checked in the table's order. Rules that read several groups are
``PipelineConfig.rules``. Checking a new field is one line in its class's table. The
tune group's dataclass lives in :mod:`npdl.tune_config` (its names are re-exported here).

The defaults here are the composition of ``conf/`` (a test fails on any difference),
so ``PipelineConfig()`` is the recipe ``dvc repro`` runs. Each optimizer has its own
dataclass with only the fields it uses (``OPTIMIZER_CONFIGS``, chosen by ``name``).
"""

# OmegaConf 2.3 reads ``Optional[...]`` annotations, not ``X | None``.
# ruff: noqa: UP045

from __future__ import annotations

import dataclasses
import functools
import math
import os
import typing
from dataclasses import dataclass, field
from typing import ClassVar, Optional

from .activations import ACTIVATIONS
from .constraints import ConfigError as ConfigError  # re-exported
from .constraints import (
    Constraints,
    Interval,
    Matches,
    Nullable,
    OneOf,
    Positive,
    Rule,
    Satisfies,
    check_constraints,
    refuse,
    require,
)
from .constraints import float_values as float_values  # re-exported
from .data.download import CIFAR10_MD5 as CIFAR10_MD5  # re-exported
from .data.download import CIFAR10_URL as CIFAR10_URL  # re-exported
from .network import INIT_SCHEMES
from .optimizers import OPTIMIZERS
from .schedules import SCHEDULES
from .solver import MONITORS
from .tune_config import LAUNCHERS as LAUNCHERS  # re-exported
from .tune_config import SAMPLERS as SAMPLERS  # re-exported
from .tune_config import TuneConfig
from .tune_config import search_of as search_of  # re-exported
from .tune_config import searched_space as searched_space  # re-exported

SPLIT_MODES = ("train", "val", "test")
NORMALIZE_METHODS = ("standardize", "zca")


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

    constraints: ClassVar[Constraints] = {
        "run_store_max_gb": Nullable(Positive("a size")),
    }


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

    constraints: ClassVar[Constraints] = {
        "source_md5": Nullable(
            Matches(r"[0-9a-fA-F]{32}"), expected="null or the 32 hex digits of the source's md5"
        ),
        "split": (
            Satisfies(
                lambda split: set(split) == set(SPLIT_MODES),
                f"exactly the keys {', '.join(SPLIT_MODES)}",
            ),
            Satisfies(lambda split: all(v >= 0 for v in split.values()), "non-negative fractions"),
            Satisfies(
                lambda split: math.isclose(sum(split.values()), 1.0, abs_tol=1e-6),
                lambda split: f"fractions summing to 1 (they sum to {sum(split.values()):g})",
            ),
            Satisfies(
                lambda split: split["train"] > 0 and split["val"] > 0, "train and val fractions > 0"
            ),
        ),
        "limit_files": Nullable(Positive(), expected="a positive number of images or null"),
        "image_size": Positive(expected="a positive size"),
        "download_timeout": Positive(),
    }


@dataclass
class NormalizeConfig:
    """normalize: statistics fitted on the train split only."""

    method: str = "zca"
    zca_eps: float = 0.1

    constraints: ClassVar[Constraints] = {
        "method": OneOf(NORMALIZE_METHODS),
        "zca_eps": Positive(),
    }


@dataclass
class SanityConfig:
    """sanity: the checks before any tuning (:mod:`npdl.sanity`, what each key does:
    ``conf/sanity/default.yaml``): gradients, the loss at initialisation, overfitting
    a few train images; ``enabled: false`` skips them."""

    enabled: bool = True
    seed: int = 0
    gradient_samples: int = 8
    gradient_entries: int = 10
    gradient_tolerance: float = 1e-5
    init_loss_tolerance: float = 0.5
    overfit_sizes: list[int] = field(default_factory=lambda: [1, 10, 100])
    overfit_steps: int = 200
    overfit_accuracy: float = 0.99

    constraints: ClassVar[Constraints] = {
        "gradient_samples": Interval(2, None, closed="left", what="a number of images"),
        "gradient_entries": Positive(expected="a positive number of entries"),
        "gradient_tolerance": Interval(0, 1, closed="neither", what="a relative error"),
        "init_loss_tolerance": Positive(expected="a share of ln C > 0, e.g. 0.5"),
        "overfit_sizes": Satisfies(
            lambda sizes: len(sizes) > 0 and all(n > 0 for n in sizes),
            "a non-empty list of positive numbers of images",
        ),
        "overfit_steps": Positive(expected="a positive number of steps"),
        "overfit_accuracy": Interval(0, 1, closed="right", what="an accuracy"),
    }


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
    input_pca: Optional[int] = 400

    constraints: ClassVar[Constraints] = {
        "activation": OneOf(ACTIVATIONS, sort=True, ignore_case=True),
        "hidden_size": Satisfies(
            lambda widths: len(widths) > 0 and all(h > 0 for h in widths),
            "a non-empty list of positive widths",
        ),
        "init": OneOf(INIT_SCHEMES),
        "std": Positive(),
        "dropout": Interval(0, 1, closed="left", what="a probability"),
        "reg": Interval(0, None, closed="left"),
        "input_pca": Nullable(
            Interval(1, None, closed="left"),
            expected="null (the whole input) or a number of principal components >= 1",
        ),
    }


def _optimizer_name_matches_its_fields(optimizer: OptimizerConfig) -> str | None:
    if type(optimizer) is OPTIMIZER_CONFIGS[optimizer.name]:
        return None
    return f"the name of the optimizer whose fields are given ({type(optimizer).__name__})"


@dataclass
class OptimizerConfig:
    """What every optimizer takes (the top-level ``lr``, when set, sets ``lr``). Weight
    decay applies to weight matrices: ``decoupled`` (``w -= lr * weight_decay * w``) or
    coupled (L2, added to the gradient)."""

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.05
    decoupled: bool = True

    constraints: ClassVar[Constraints] = {
        "name": (OneOf(OPTIMIZERS, sort=True), Rule(_optimizer_name_matches_its_fields)),
        "lr": Positive("a learning rate"),
        "weight_decay": Interval(0, None, closed="left"),
    }


@dataclass
class AdamConfig(OptimizerConfig):
    """Adam; decoupled weight decay makes it AdamW."""

    name: str = "adam"
    beta1: float = 0.9
    beta2: float = 0.999

    constraints: ClassVar[Constraints] = {
        **OptimizerConfig.constraints,
        "beta1": Interval(0, 1, closed="left"),
        "beta2": Interval(0, 1, closed="left"),
    }


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

    constraints: ClassVar[Constraints] = {
        **SGDConfig.constraints,
        "momentum": Interval(0, 1, closed="left"),
    }


#: ``optimizer.name`` -> the dataclass of that optimizer's fields.
OPTIMIZER_CONFIGS: dict[str, type[OptimizerConfig]] = {
    "adam": AdamConfig,
    "sgd": SGDConfig,
    "sgd_momentum": SGDMomentumConfig,
}


@dataclass
class SolverConfig:
    """Training loop: budget, schedule, early stopping, augmentation.

    ``ema`` keeps a moving average of the weights (decay per step; null: none), which
    is what is validated and kept. ``refit`` makes the train stage's single run train
    on train + val and keep its last epoch (no val selection; a sweep's jobs never
    refit). ``checkpoint_seconds`` is the least time between two checkpoints of a run
    (0: every epoch); the run's last epoch is always checkpointed. It does not change
    what is trained, so it is not part of a run's identity.
    """

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
    label_smoothing: float = 0.1
    ema: Optional[float] = 0.999
    refit: bool = True
    train_fraction: float = 1.0
    hflip: bool = True
    crop_padding: int = 4
    checkpoint_seconds: float = 300.0
    seed: int = 0

    constraints: ClassVar[Constraints] = {
        "epochs": Positive(expected="a positive number of epochs"),
        "batch_size": Positive(expected="a positive batch size"),
        "patience": Nullable(Positive(), expected="a positive number of epochs or null"),
        "monitor": OneOf(MONITORS),
        "schedule": OneOf(SCHEDULES),
        "warmup_epochs": Interval(0, None, closed="left"),
        "lr_decay": Positive(),
        "step_size": Interval(1, None, closed="left"),
        "min_lr": Interval(0, None, closed="left"),
        "schedule_epochs": Nullable(Positive(), expected="a positive number of epochs or null"),
        "label_smoothing": Interval(0, 1, closed="left"),
        "ema": Nullable(
            Interval(0, 1, closed="neither", what="a decay per step"),
            expected="a decay per step in (0, 1), e.g. 0.999, or null (no averaging)",
        ),
        "checkpoint_seconds": Interval(0, None, closed="left", what="seconds"),
        "train_fraction": Interval(0, 1, closed="right", what="a fraction"),
        "crop_padding": Interval(0, None, closed="left"),
    }


@dataclass
class EvaluateConfig:
    """evaluate: the test split by default, or any labelled folder/archive."""

    source: Optional[str] = None
    metrics_path: Optional[str] = None
    model_path: Optional[str] = None
    batch_size: int = 1000
    tta_flip: bool = True
    tta_shift: int = 2

    constraints: ClassVar[Constraints] = {
        "batch_size": Positive(),
    }


# Rules across groups: each reads a whole PipelineConfig.


def _tta_shift_below_the_image_size(cfg: PipelineConfig) -> str | None:
    size = cfg.data.image_size
    below = 0 <= cfg.evaluate.tta_shift < size
    return None if below else f"a number of pixels >= 0 (0 = off) and below data.image_size={size}"


def _input_pca_fits_the_image(cfg: PipelineConfig) -> str | None:
    features = 3 * cfg.data.image_size**2
    if cfg.model.input_pca is None or cfg.model.input_pca <= features:
        return None
    return f"at most the input's {features} values (3 x data.image_size^2)"


def _input_pca_needs_zca(cfg: PipelineConfig) -> str | None:
    if cfg.model.input_pca is None or cfg.normalize.method == "zca":
        return None
    return (
        f"null with normalize.method={cfg.normalize.method} (principal components come "
        "with normalize.method=zca)"
    )


def _shortcut_rule(shortcut: str, key: str) -> Rule:
    """``lr`` (``reg``), when set, equals ``optimizer.lr`` (``model.reg``), which it sets."""

    def agrees(cfg: PipelineConfig) -> str | None:
        given, value = getattr(cfg, shortcut), functools.reduce(getattr, key.split("."), cfg)
        if given is None or given == value:
            return None
        return f"null or the value of {key} ({value!r}), which it sets"

    return Rule(agrees)


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
    sanity: SanityConfig = field(default_factory=SanityConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=AdamConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    #: Checks that read several groups (dotted key -> rules of the whole config), each
    #: run right after the named group's own checks: near where they always ran, so a
    #: config with several errors still reports the first it reported.
    rules: ClassVar[dict[str, Constraints]] = {
        "model": {
            "evaluate.tta_shift": Rule(_tta_shift_below_the_image_size),
            "model.input_pca": (Rule(_input_pca_fits_the_image), Rule(_input_pca_needs_zca)),
        },
        "optimizer": {
            "lr": _shortcut_rule("lr", "optimizer.lr"),
            "reg": _shortcut_rule("reg", "model.reg"),
        },
    }


def validate_config(cfg: PipelineConfig) -> PipelineConfig:
    """Reject impossible values, naming the key and what would be right.

    Each group is checked against its class's ``constraints``, in the order of
    ``PipelineConfig``'s fields, then ``PipelineConfig.rules`` of that group; the first
    refusal is raised.

    Raises
    ------
    ConfigError
    """
    # inf and nan pass comparisons such as lr > 0 (or fail them with a misleading
    # message): refuse every non-finite float first, whatever its key.
    for key, value in float_values(cfg):
        require(math.isfinite(value), key, value, "a finite number")
    check_constraints(cfg)
    for group in dataclasses.fields(cfg):
        node = getattr(cfg, group.name)
        if dataclasses.is_dataclass(node):
            check_constraints(node, f"{group.name}.")
        check_constraints(cfg, table=cfg.rules.get(group.name, {}))
    return cfg


def config_from_dict(values: dict) -> PipelineConfig:
    """A validated ``PipelineConfig`` from a plain dict: a resolved composition such as
    ``params.yaml`` read with ``yaml.safe_load``, without Hydra (``npdl sanity``). The
    optimizer group takes the dataclass its ``name`` picks. A float written as YAML 1.1
    reads as text (``1e-05``) is taken as the float it means.

    Raises
    ------
    ConfigError
        An unknown key, a value of the wrong type, or an impossible value (naming it).
    """
    values = dict(values)
    optimizer = dict(values.pop("optimizer", {}))
    config = _dataclass_from_dict(PipelineConfig, values, "")
    name = optimizer.get("name", "adam")
    require(
        name in OPTIMIZER_CONFIGS, "optimizer.name", name, f"one of {sorted(OPTIMIZER_CONFIGS)}"
    )
    config.optimizer = _dataclass_from_dict(OPTIMIZER_CONFIGS[name], optimizer, "optimizer.")
    return validate_config(config)


def _dataclass_from_dict(cls, values: dict, prefix: str):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    arguments = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"invalid configuration at {prefix + key!r}: no such key")
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = _dataclass_from_dict(hint, value, f"{prefix}{key}.")
        elif isinstance(value, str) and float in (hint, *typing.get_args(hint)):
            try:
                value = float(value)
            except ValueError:
                raise refuse(prefix + key, value, "a number") from None
        arguments[key] = value
    return cls(**arguments)
