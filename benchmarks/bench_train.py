"""Training speed: one epoch of the course's net and of the default net on the
shared archive (80% train split), float32, batch 256, Adam.

Run from the repository root::

    python benchmarks/bench_train.py [ARCHIVE] [--epochs E]

Prints seconds per epoch and training samples/s (min / median / max over E epochs).
Timings vary with the machine and its load; this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from npdl import ClassificationNet, DataLoader, ImageFolderDataset, Relu, Sigmoid, Solver
from npdl.prepared import prepare_dataset
from npdl.preprocessing import eval_transform, fit_standardization

DEFAULT_ARCHIVE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-train-jpeg.tar.gz"
)
NETS = {
    "course 3072-100-10 sigmoid": lambda: ClassificationNet(Sigmoid(), hidden_size=100, rng=0),
    "default 3072-512-256-10 relu": lambda: ClassificationNet(
        Relu(), hidden_size=[512, 256], init="he", rng=0
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", nargs="?", default=DEFAULT_ARCHIVE, type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    data = prepare_dataset(
        args.archive, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0, workers="auto"
    )
    stats = fit_standardization(data.images["train"])
    transform = eval_transform(stats)
    train = ImageFolderDataset.from_arrays(
        data.images["train"], data.labels["train"], data.classes, transform=transform
    )
    val = ImageFolderDataset.from_arrays(
        data.images["val"][:1], data.labels["val"][:1], data.classes, transform=transform
    )
    print(f"{len(train)} training images, batch 256, Adam, float32")
    for name, make in NETS.items():
        solver = Solver(
            make(),
            DataLoader(train, batch_size=256, shuffle=True, rng=0),
            DataLoader(val, batch_size=1),
            learning_rate=1e-3,
            verbose=False,
        )
        seconds = []
        for _ in range(args.epochs):
            start = time.perf_counter()
            solver.train(epochs=1)
            seconds.append(time.perf_counter() - start)
        rates = sorted(len(train) / s for s in seconds)
        print(
            f"{name}: {statistics.median(seconds):.2f} s/epoch; samples/s min "
            f"{rates[0]:,.0f} median {statistics.median(rates):,.0f} max {rates[-1]:,.0f}"
        )


if __name__ == "__main__":
    main()
