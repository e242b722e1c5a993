"""Configuration -> objects: a ``ClassificationNet``, its optimizer, loaders, ``Solver``.

Turns the config dataclasses of :mod:`npdl.config` into the objects of one training
run; used by the train stage and by every trial of a search. All randomness (initial
weights, dropout, shuffling, augmentation) comes from one seed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ..activations import make_activation
from ..config import ModelConfig, OptimizerConfig, PipelineConfig, SolverConfig
from ..data import DataLoader, ImageFolderDataset
from ..data.transforms import prepared_transform, train_transform
from ..losses import CrossEntropyFromLogits
from ..network import ClassificationNet
from ..solver import Solver


def build_model(
    model: ModelConfig,
    input_size: int,
    num_classes: int,
    rng: np.random.Generator,
    pca_components: np.ndarray | None = None,
) -> ClassificationNet:
    """A fresh network for ``model``'s architecture.

    ``pca_components`` (input_size, D') holds the input's principal directions by
    decreasing variance; ``model.input_pca`` = K takes the first K as a fixed first layer.
    """
    projection = None
    if model.input_pca is not None:
        if pca_components is None:
            raise ValueError(
                f"model.input_pca={model.input_pca} needs the principal components the "
                "normalize stage writes with normalize.method=zca (data/normalized/"
                "pca_components.npy); run it again (`dvc repro normalize`)"
            )
        if not model.input_pca <= min(pca_components.shape[1], input_size):
            raise ValueError(
                f"model.input_pca={model.input_pca} must be at most the input's "
                f"{input_size} features"
            )
        projection = np.ascontiguousarray(pca_components[:, : model.input_pca])
    return ClassificationNet(
        activation=make_activation(model.activation, **model.activation_kwargs),
        num_layer=len(model.hidden_size) + 1,
        input_size=input_size,
        hidden_size=list(model.hidden_size),
        std=model.std,
        num_classes=num_classes,
        reg=model.reg,
        init=model.init,
        dropout=model.dropout,
        batch_norm=model.batch_norm,
        rng=rng,
        input_projection=projection,
    )


def optimizer_arguments(optimizer: OptimizerConfig) -> dict:
    """The keyword arguments of the chosen optimizer: every field of its config but
    ``name`` and ``lr`` (each optimizer's dataclass holds only what it takes)."""
    return {
        field.name: getattr(optimizer, field.name)
        for field in dataclasses.fields(optimizer)
        if field.name not in ("name", "lr")
    }


def build_solver(
    model: ClassificationNet,
    train_loader,
    val_loader,
    optimizer: OptimizerConfig,
    solver: SolverConfig,
    callbacks: Iterable[Callable] = (),
    verbose: bool = True,
) -> Solver:
    """A ``Solver`` for the configured optimizer, schedule and loss."""
    return Solver(
        model,
        train_loader,
        val_loader,
        loss_func=CrossEntropyFromLogits(label_smoothing=solver.label_smoothing),
        learning_rate=optimizer.lr,
        optimizer=optimizer.name,
        optimizer_kwargs=optimizer_arguments(optimizer),
        verbose=verbose,
        lr_decay=solver.lr_decay,
        schedule=solver.schedule,
        warmup_epochs=solver.warmup_epochs,
        step_size=solver.step_size,
        gamma=solver.gamma,
        min_lr=solver.min_lr,
        schedule_epochs=solver.schedule_epochs or solver.epochs,
        monitor=solver.monitor,
        callbacks=callbacks,
        ema=solver.ema,
    )


def make_loaders(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    classes: list[str],
    preprocessing: dict[str, np.ndarray],
    solver: SolverConfig,
    augment_rng: np.random.Generator,
    shuffle_rng: np.random.Generator,
    whitened: bool = False,
) -> tuple[DataLoader, DataLoader]:
    """Shuffled, augmented training loader and a plain validation loader (None
    without ``val``: a refit validates nothing).

    ``train`` and ``val`` are (images (N, H, W, 3), int64 labels (N,)); the images are
    uint8, or whitened float16 when ``whitened``.
    """
    image_size = train[0].shape[1]
    train_set = ImageFolderDataset.from_arrays(
        train[0],
        train[1],
        classes,
        transform=train_transform(
            preprocessing, augment_rng, solver.hflip, solver.crop_padding, image_size, whitened
        ),
    )
    train_loader = DataLoader(
        train_set, batch_size=solver.batch_size, shuffle=True, rng=shuffle_rng
    )
    if val is None:
        return train_loader, None
    val_set = ImageFolderDataset.from_arrays(
        val[0], val[1], classes, transform=prepared_transform(preprocessing, whitened)
    )
    return train_loader, DataLoader(val_set, batch_size=max(solver.batch_size, 1000))


@dataclass
class TrainingRun:
    """A model, its solver and every random generator training draws from.

    ``state()``/``load_state()`` capture all of it, so a run resumed from a
    checkpoint continues exactly as if it had never stopped.
    """

    model: ClassificationNet
    solver: Solver
    generators: dict[str, np.random.Generator]

    def state(self) -> dict[str, np.ndarray]:
        return training_state(self.solver, self.generators)

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.solver.load_state_dict(
            {k: v for k, v in state.items() if not k.startswith("rng/") and k != "status"}
        )
        for name, generator in self.generators.items():
            generator.bit_generator.state = json.loads(str(state[f"rng/{name}"]))
        self.solver.status = str(state["status"]) or None


def training_state(solver: Solver, generators: dict[str, np.random.Generator]) -> dict:
    """Everything a resumed run needs: the solver's state (weights, optimizer, position,
    history) and the state of every generator, as arrays (a checkpoint's contents)."""
    state = solver.state_dict()
    for name, generator in generators.items():
        state[f"rng/{name}"] = np.array(json.dumps(generator.bit_generator.state))
    state["status"] = np.array(solver.status or "")
    return state


def build_training(
    cfg: PipelineConfig,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    classes: list[str],
    preprocessing: dict[str, np.ndarray],
    callbacks: Iterable[Callable] = (),
    verbose: bool = True,
    whitened: bool = False,
    pca_components: np.ndarray | None = None,
) -> TrainingRun:
    """Model, loaders and solver as configured, all seeded from ``cfg.solver.seed``.

    ``train`` and ``val`` (or None: no validation) are (images (N, H, W, 3), int64
    labels (N,)): uint8, or whitened float16 when ``whitened`` (see :mod:`npdl.data.normalization`);
    ``pca_components`` (D, D) for ``model.input_pca`` (:func:`build_model`).
    """
    init_rng, augment_rng, shuffle_rng = np.random.default_rng(cfg.solver.seed).spawn(3)
    input_size = int(np.prod(train[0].shape[1:]))
    model = build_model(cfg.model, input_size, len(classes), init_rng, pca_components)
    model.class_names = list(classes)
    model.image_shape = tuple(int(n) for n in train[0].shape[1:])
    model.preprocessing = dict(preprocessing)
    train_loader, val_loader = make_loaders(
        train, val, classes, preprocessing, cfg.solver, augment_rng, shuffle_rng, whitened
    )
    solver = build_solver(
        model, train_loader, val_loader, cfg.optimizer, cfg.solver, callbacks, verbose
    )
    # The model's generator draws the dropout masks.
    generators = {"augment": augment_rng, "shuffle": shuffle_rng, "dropout": model.rng}
    return TrainingRun(model, solver, generators)


def training_metadata(cfg: PipelineConfig, solver: Solver) -> dict:
    """What a saved model records about how it was trained."""
    return {
        "config": training_config(cfg),
        "status": solver.status,
        "best_epoch": solver.best_epoch,
    }


def training_config(cfg: PipelineConfig) -> dict:
    """The parts of the configuration that decide the trained weights."""
    return {
        "model": dataclasses.asdict(cfg.model),
        "optimizer": dataclasses.asdict(cfg.optimizer),
        "solver": dataclasses.asdict(cfg.solver),
    }
