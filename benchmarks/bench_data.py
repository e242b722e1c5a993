"""Data-path throughput: listing + decoding the shared archive, and the training
DataLoader with augmentation.

Run from the repository root::

    python benchmarks/bench_data.py [--repeats 3]

Measures, on the shared ``cifar10-train-jpeg.tar.gz`` (50,000 JPEGs):

* ``prepare_dataset`` (list, decode in worker processes, split 40k/5k/5k), the
  library call at the heart of the prepare-split stage; min / median / max over
  ``--repeats``;
* one shuffled epoch of the pipeline's training loader, batch 256, random flips and
  pad-4 crops, on (a) uint8 images standardised per batch (``normalize=standardize``)
  and (b) ZCA-whitened float16 images (``normalize=zca``, the default), in samples/s.

Results go to ``benchmarks/results/data.json``. Timings vary with the machine and
its load; this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from harness import SHARED_ARCHIVE, summary, write_results
from npdl.data import DataLoader, ImageFolderDataset
from npdl.data.normalization import fit_standardization, fit_zca, whiten
from npdl.data.prepared import prepare_dataset
from npdl.data.transforms import train_transform

SPLIT = {"train": 0.8, "val": 0.1, "test": 0.1}


def time_prepare(archive) -> tuple[float, object]:
    start = time.perf_counter()
    data = prepare_dataset(archive, SPLIT, seed=0, workers="auto")
    return time.perf_counter() - start, data


def loader_rate(images, labels, preprocessing, whitened: bool, batch: int) -> float:
    """Samples/s of one shuffled, augmented epoch (flip + crop + normalise)."""
    rng = np.random.default_rng(0)
    dataset = ImageFolderDataset.from_arrays(
        images,
        labels,
        [str(i) for i in range(10)],
        transform=train_transform(preprocessing, rng, True, 4, images.shape[1], whitened),
    )
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, rng=1)
    start = time.perf_counter()
    seen = 0
    for item in loader:
        seen += len(item["label"])
    elapsed = time.perf_counter() - start
    assert item["image"].dtype == np.float32
    return seen / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", default=str(SHARED_ARCHIVE))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    runs = [time_prepare(args.archive) for _ in range(args.repeats)]
    seconds = [s for s, _ in runs]
    data = runs[-1][1]
    total = sum(len(labels) for labels in data.labels.values())
    print(f"prepare_dataset of {total} images: median {np.median(seconds):.2f} s")

    images, labels = data.images["train"], data.labels["train"]
    stats = fit_standardization(images)
    standardized = [
        loader_rate(images, labels, stats, False, args.batch_size) for _ in range(args.repeats)
    ]
    print(f"loader, uint8 + standardise: median {np.median(standardized):,.0f} samples/s")
    # Whitening 40k images costs a minute; throughput per sample does not depend on N.
    subset = slice(0, 10000)
    zca = {**stats, **fit_zca(images[subset], stats, eps=0.1)}
    white = whiten(images[subset], zca)
    whitened = [
        loader_rate(white, labels[subset], zca, True, args.batch_size) for _ in range(args.repeats)
    ]
    print(f"loader, whitened float16: median {np.median(whitened):,.0f} samples/s")
    write_results(
        "data",
        {
            "images": total,
            "prepare_seconds": summary(seconds),
            "batch": args.batch_size,
            "loader_standardized_samples_per_s": summary(standardized),
            "loader_whitened_samples_per_s": summary(whitened),
        },
    )


if __name__ == "__main__":
    main()
