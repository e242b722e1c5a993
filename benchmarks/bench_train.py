"""Training throughput: npdl against PyTorch CPU on the same nets, and npdl's
achieved GFLOP/s against the measured sgemm peak.

Run from the repository root (PyTorch is a benchmark-only extra:
``pip install torch==2.13.0``; without it only npdl is measured)::

    python benchmarks/bench_train.py [--pairs 5] [--images 40000]

Both frameworks train one epoch at a time on the same standardised float32 images of
the shared archive's train split, shuffled, batch 256, with the same thread count,
architecture and optimizer:

* the course's net: 3072-100-10 sigmoid, Adam;
* the default net (``conf/model/mlp.yaml``): 3072-1024-512-10 ReLU with batch norm
  and dropout 0.2, AdamW (weight decay 0.05 on weight matrices only).

Each round runs, in this order, the sgemm peak, npdl, PyTorch (default ``foreach``
Adam) and PyTorch with ``fused=True`` Adam; ratios are taken within a round. Results
go to ``benchmarks/results/train.json``.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from harness import SHARED_ARCHIVE, paired, ratios, sgemm_peak, summary, write_results
from npdl import Adam, ClassificationNet, DataLoader, ImageFolderDataset, Relu, Sigmoid, Solver
from npdl.data.normalization import fit_standardization, standardize_images
from npdl.data.prepared import prepare_dataset
from npdl.threads import get_num_threads

BATCH = 256
NETS = {
    "course": {
        "title": "course 3072-100-10 sigmoid, Adam",
        "hidden": [100],
        "activation": "sigmoid",
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


def step_flops(spec: dict, batch: int) -> float:
    """FLOPs of one training step: the matrix products (forward, weight gradients and
    input gradients of every layer but the first) and Adam's 11 element-wise
    operations per parameter. Batch norm, activations, dropout and the loss add under
    0.5% and are not counted."""
    sizes = [3072, *spec["hidden"], 10]
    pairs = list(itertools.pairwise(sizes))
    products = sum(a * b for a, b in pairs)
    matmul = 2 * batch * (2 * products + sum(a * b for a, b in pairs[1:]))
    params = products + sum(sizes[1:]) + (2 * sum(spec["hidden"]) if spec["batch_norm"] else 0)
    return float(matmul + 11 * params)


def epoch_flops(spec: dict, n: int) -> float:
    full, rest = divmod(n, BATCH)
    return full * step_flops(spec, BATCH) + (step_flops(spec, rest) if rest else 0.0)


def npdl_trainer(spec: dict, images: np.ndarray, labels: np.ndarray):
    activation = Relu() if spec["activation"] == "relu" else Sigmoid()
    model = ClassificationNet(
        activation,
        hidden_size=spec["hidden"],
        init="he" if spec["activation"] == "relu" else "std",
        batch_norm=spec["batch_norm"],
        dropout=spec["dropout"],
        rng=0,
    )
    classes = [str(i) for i in range(10)]
    images = images.reshape(len(images), 32, 32, 3)  # the dataset's layout; a view
    train = ImageFolderDataset.from_arrays(images, labels, classes)
    val = ImageFolderDataset.from_arrays(images[:1], labels[:1], classes)
    solver = Solver(
        model,
        DataLoader(train, batch_size=BATCH, shuffle=True, rng=0),
        DataLoader(val, batch_size=1),
        optimizer=Adam,
        learning_rate=1e-3,
        weight_decay=spec["weight_decay"],
        verbose=False,
    )

    def epoch() -> float:
        start = time.perf_counter()
        solver.train(epochs=1)
        return time.perf_counter() - start

    return epoch


def torch_trainer(spec: dict, images: np.ndarray, labels: np.ndarray, fused: bool):
    import torch
    from torch import nn

    torch.manual_seed(0)
    layers, width = [], 3072
    for hidden in spec["hidden"]:
        layers.append(nn.Linear(width, hidden))
        if spec["batch_norm"]:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(nn.ReLU() if spec["activation"] == "relu" else nn.Sigmoid())
        if spec["dropout"]:
            layers.append(nn.Dropout(spec["dropout"]))
        width = hidden
    layers.append(nn.Linear(width, 10))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=str, default=str(SHARED_ARCHIVE))
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--images", type=int, default=40000, help="training images per epoch")
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    args = parser.parse_args()

    try:
        import torch

        torch.set_num_threads(get_num_threads())
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
        print("PyTorch is not installed (pip install torch==2.13.0): measuring npdl only")

    data = prepare_dataset(
        args.archive, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0, workers="auto"
    )
    raw = data.images["train"][: args.images]
    images = standardize_images(raw, fit_standardization(raw))
    labels = data.labels["train"][: args.images]
    n = len(images)
    print(f"{n} images, batch {BATCH}, {get_num_threads()} threads, torch {torch_version}")

    results = {"images": n, "batch": BATCH, "threads": get_num_threads(), "torch": torch_version}
    for key in args.nets:
        spec = NETS[key]
        flops = epoch_flops(spec, n)
        contenders = {
            "peak": lambda: sgemm_peak() / 1e9,
            "npdl": npdl_trainer(spec, images, labels),
        }
        if torch_version:
            contenders["torch"] = torch_trainer(spec, images, labels, fused=False)
            contenders["torch_fused"] = torch_trainer(spec, images, labels, fused=True)
        for name, run in contenders.items():  # warm-up round, not counted
            if name != "peak":
                run()
        seconds = paired(contenders, args.pairs)
        peak = seconds.pop("peak")
        rates = {name: [n / s for s in values] for name, values in seconds.items()}
        gflops = [flops / s / 1e9 for s in seconds["npdl"]]
        entry = {
            "title": spec["title"],
            "step_gflop": step_flops(spec, BATCH) / 1e9,
            "samples_per_s": {name: summary(values) for name, values in rates.items()},
            "npdl_gflops": summary(gflops),
            "sgemm_peak_gflops": summary(peak),
            "npdl_share_of_peak": ratios(gflops, peak),
        }
        if torch_version:
            entry["npdl_over_torch"] = ratios(rates["npdl"], rates["torch"])
            entry["npdl_over_torch_fused"] = ratios(rates["npdl"], rates["torch_fused"])
        results[key] = entry
        line = ", ".join(f"{k} {v['median']:,.0f}/s" for k, v in entry["samples_per_s"].items())
        print(
            f"{spec['title']}: {line}; {entry['npdl_gflops']['median']:.0f} GFLOP/s = "
            f"{entry['npdl_share_of_peak']['median']:.0%} of peak"
        )
    write_results("train", results)


if __name__ == "__main__":
    main()
