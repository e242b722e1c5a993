"""Data-path throughput: archive listing + decoding, and DataLoader batches.

Run from the repository root::

    python benchmarks/bench_data.py [ARCHIVE] [--workers N] [--repeats R]

ARCHIVE defaults to the shared ``../shared/data/cifar10-train-jpeg.tar.gz`` beside the
repository. Prints

* listing and decoding time of the whole archive (best of ``--repeats``);
* DataLoader throughput (samples/s) over one epoch of the 60% train split, batch
  256, with flips + crops + rescale + normalize + flatten.

Timings vary with the machine and its load; this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from npdl.data import DataLoader, ImageFolderDataset, compute_image_mean_and_std
from npdl.sources import open_image_source
from npdl.transforms import (
    ComposeTransform,
    FlattenTransform,
    NormalizeTransform,
    RandomCrop,
    RandomHorizontalFlip,
    RescaleTransform,
)

DEFAULT_ARCHIVE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-train-jpeg.tar.gz"
)


def time_listing_and_decoding(archive: Path, workers: int | None) -> tuple[float, float, int]:
    """Seconds to list and to decode every image of ``archive``, and the image count."""
    start = time.perf_counter()
    source = open_image_source(archive)
    listed = time.perf_counter()
    images = source.read_images(workers=workers)
    decoded = time.perf_counter()
    return listed - start, decoded - listed, len(images)


def time_loader_epoch(archive: Path, workers: int | None, batch_size: int) -> tuple[float, int]:
    """Seconds for one shuffled, augmented epoch of the train split, and its size."""
    source = open_image_source(archive)
    train = ImageFolderDataset(source, mode="train", seed=0, workers=workers)
    mean, std = compute_image_mean_and_std(train.images)
    train.transform = ComposeTransform(
        [
            RandomHorizontalFlip(rng=1),
            RandomCrop(size=32, padding=4, rng=2),
            RescaleTransform(),
            NormalizeTransform(mean, std),
            FlattenTransform(),
        ]
    )
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, rng=3)
    start = time.perf_counter()
    seen = 0
    for batch in loader:
        seen += len(batch["label"])
    elapsed = time.perf_counter() - start
    assert batch["image"].dtype == np.float32 and batch["image"].shape[1] == 3072
    return elapsed, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", nargs="?", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--workers", type=int, default=None, help="decoding processes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    arguments = parser.parse_args()
    if not arguments.archive.exists():
        parser.error(f"archive {arguments.archive} not found")

    runs = [
        time_listing_and_decoding(arguments.archive, arguments.workers)
        for _ in range(arguments.repeats)
    ]
    listing, decoding, count = min(runs, key=lambda run: run[0] + run[1])
    print(f"archive: {arguments.archive} ({count} images)")
    print(
        f"listing + decoding: {listing + decoding:.2f} s "
        f"(listing {listing:.2f} s, decoding {decoding:.2f} s, "
        f"{count / decoding:,.0f} images/s; best of {arguments.repeats})"
    )

    elapsed, seen = time_loader_epoch(arguments.archive, arguments.workers, arguments.batch_size)
    print(
        f"DataLoader epoch (train split, batch {arguments.batch_size}, flip + crop + rescale + "
        f"normalize + flatten): {seen} samples in {elapsed:.2f} s = {seen / elapsed:,.0f} samples/s"
    )


if __name__ == "__main__":
    main()
