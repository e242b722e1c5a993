"""The nets the training benchmarks measure, their work per step, and how npdl and
PyTorch train them.

Each net is described once here; ``bench_train.py`` (throughput and roofline) and
``profile_step.py`` (where a step's time goes) both build their trainers from it.

Work per step, counted as the roofline counts it:

* FLOPs: every matrix product (forward, weight gradients, input gradients of every
  layer but the first, which needs none);
* bytes: the optimizer's one pass over the parameters, Adam reading ``w, g, m, v``
  and writing ``w, m, v`` (7 float32 words per parameter, counted as STREAM counts
  its arrays: no write-allocate traffic).
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from harness import SHARED_ARCHIVE
from npdl import Adam, ClassificationNet, DataLoader, ImageFolderDataset, Relu, Sigmoid, Solver
from npdl.data.normalization import fit_standardization, standardize_images
from npdl.data.prepared import prepare_dataset

BATCH = 256
INPUT = 3072
CLASSES = 10
ADAM_WORDS_PER_PARAMETER = 7

NETS = {
    "course": {
        "title": "course 3072-100-10 sigmoid, Adam",
        "hidden": [100],
        "activation": "sigmoid",
        "batch_norm": False,
        "dropout": 0.0,
        "weight_decay": 0.0,
    },
    "plain": {
        "title": "3072-512-256-10 ReLU, Adam",
        "hidden": [512, 256],
        "activation": "relu",
        "batch_norm": False,
        "dropout": 0.0,
        "weight_decay": 0.0,
    },
    "default": {
        "title": "default 3072-1024-512-10 ReLU + BN + dropout 0.2, AdamW",
        "hidden": [1024, 512],
        "activation": "relu",
        "batch_norm": True,
        "dropout": 0.2,
        "weight_decay": 0.05,
    },
}


def layer_sizes(spec: dict) -> list[int]:
    return [INPUT, *spec["hidden"], CLASSES]


def matmul_shapes(spec: dict, batch: int = BATCH) -> list[tuple]:
    """Every matrix product of one step, in the order the step runs them, as
    ``(name, m, k, n, a_transposed, b_transposed)``: an (m, k) @ (k, n) product whose
    operands are C-contiguous or, where flagged, transposed views of C-contiguous
    arrays (``x.T @ dout``, ``dout @ W.T``), as the layers pass them to the BLAS."""
    pairs = list(itertools.pairwise(layer_sizes(spec)))
    shapes = [(f"forward {i}", batch, a, b, False, False) for i, (a, b) in enumerate(pairs, 1)]
    for i, (a, b) in reversed(list(enumerate(pairs, start=1))):
        shapes.append((f"weight grad {i}", a, batch, b, True, False))
        if i > 1:
            shapes.append((f"input grad {i}", batch, b, a, False, True))
    return shapes


def parameter_count(spec: dict) -> int:
    sizes = layer_sizes(spec)
    weights = sum(a * b for a, b in itertools.pairwise(sizes))
    norm = 2 * sum(spec["hidden"]) if spec["batch_norm"] else 0
    return weights + sum(sizes[1:]) + norm


def step_flops(spec: dict, batch: int = BATCH) -> float:
    """FLOPs of the matrix products of one step."""
    return float(sum(2 * m * k * n for _, m, k, n, *_ in matmul_shapes(spec, batch)))


def step_bytes(spec: dict) -> float:
    """Bytes the optimizer moves in one step (see the module docstring)."""
    return float(ADAM_WORDS_PER_PARAMETER * 4 * parameter_count(spec))


def load_images(images: int, archive=SHARED_ARCHIVE) -> tuple[np.ndarray, np.ndarray]:
    """The first ``images`` of the shared archive's train split, standardised, as
    float32 (N, 3072), with their int64 labels (N,)."""
    data = prepare_dataset(archive, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0, workers="auto")
    raw = data.images["train"][:images]
    return standardize_images(raw, fit_standardization(raw)), data.labels["train"][:images]


def npdl_solver(spec: dict, images: np.ndarray, labels: np.ndarray) -> Solver:
    """A ``Solver`` over a ``DataLoader`` of the images, as course code builds one."""
    activation = Relu() if spec["activation"] == "relu" else Sigmoid()
    model = ClassificationNet(
        activation,
        hidden_size=spec["hidden"],
        init="he" if spec["activation"] == "relu" else "std",
        batch_norm=spec["batch_norm"],
        dropout=spec["dropout"],
        rng=0,
    )
    classes = [str(i) for i in range(CLASSES)]
    images = images.reshape(len(images), 32, 32, 3)  # the dataset's layout; a view
    train = ImageFolderDataset.from_arrays(images, labels, classes)
    val = ImageFolderDataset.from_arrays(images[:1], labels[:1], classes)
    return Solver(
        model,
        DataLoader(train, batch_size=BATCH, shuffle=True, rng=0),
        DataLoader(val, batch_size=1),
        optimizer=Adam,
        learning_rate=1e-3,
        optimizer_kwargs={"weight_decay": spec["weight_decay"]},
        verbose=False,
    )


def npdl_trainer(spec: dict, images: np.ndarray, labels: np.ndarray):
    """A callable that trains one epoch through ``Solver.train`` and returns seconds."""
    solver = npdl_solver(spec, images, labels)

    def epoch() -> float:
        start = time.perf_counter()
        solver.train(epochs=1)
        return time.perf_counter() - start

    return epoch


def torch_trainer(spec: dict, images: np.ndarray, labels: np.ndarray, fused: bool):
    """The same net in PyTorch (AdamW, decay on weight matrices only), trained by a
    plain loop over a shuffled index; a callable returning seconds per epoch."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    layers, width = [], INPUT
    for hidden in spec["hidden"]:
        layers.append(nn.Linear(width, hidden))
        if spec["batch_norm"]:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(nn.ReLU() if spec["activation"] == "relu" else nn.Sigmoid())
        if spec["dropout"]:
            layers.append(nn.Dropout(spec["dropout"]))
        width = hidden
    layers.append(nn.Linear(width, CLASSES))
    net = nn.Sequential(*layers)
    matrices = [p for p in net.parameters() if p.ndim >= 2]
    others = [p for p in net.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": matrices, "weight_decay": spec["weight_decay"]},
            {"params": others, "weight_decay": 0.0},
        ],
        lr=1e-3,
        fused=fused,
    )
    loss_func = nn.CrossEntropyLoss()
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
    generator = torch.Generator().manual_seed(0)

    def epoch() -> float:
        start = time.perf_counter()
        net.train()
        order = torch.randperm(len(x_all), generator=generator)
        for i in range(0, len(order), BATCH):
            index = order[i : i + BATCH]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_func(net(x_all[index]), y_all[index])
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    return epoch
