"""Grid vs random vs successive halving over one space on the shared archive.

Run from the repository root::

    python benchmarks/bench_search.py [ARCHIVE] [--fraction F] [--epochs E]

The space is a 27-point grid (learning rate x L2 x width). Grid trains every point
for E epochs; random trains 9 points drawn from the same grid for E epochs; halving
starts all 27 at 1 epoch and promotes the best third (eta 3) up to E epochs, resuming
promoted trials from their checkpoints. Each search gets its own empty trial cache.
Prints, per search, the best val accuracy and the epochs actually trained (a promoted
trial costs only its extra epochs), plus the wall time. Timings vary with the
machine and its load; this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from npdl.config import PipelineConfig, validate_config
from npdl.data.normalization import fit_standardization, write_normalization
from npdl.data.prepared import prepare_dataset, write_prepared
from npdl.run.store import RunStore
from npdl.run.training import load_run_data, run_training
from npdl.search.halving import successive_halving
from npdl.search.spaces import Choice, grid_points, sample_points

DEFAULT_ARCHIVE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-train-jpeg.tar.gz"
)
SPACE = {
    "optimizer.lr": Choice((3e-4, 1e-3, 3e-3)),
    "model.reg": Choice((0.0, 1e-4, 1e-3)),
    "model.hidden_size": Choice(([256], [512, 256], [1024])),
}


def configure(point: dict, epochs: int, horizon: int) -> PipelineConfig:
    """The default configuration with ``point`` and an epoch budget applied."""
    cfg = PipelineConfig()
    cfg.solver.epochs, cfg.solver.schedule_epochs = epochs, horizon
    for key, value in point.items():
        group, name = key.split(".")
        setattr(getattr(cfg, group), name, list(value) if isinstance(value, list) else value)
    return validate_config(cfg)


def search(name, points, data, epochs, cache_dir, halving=False):
    cache = RunStore(cache_dir)
    start = time.perf_counter()
    scores: dict[tuple, float] = {}

    def run_batch(requests):
        out = []
        for index, point, budget in requests:
            result = run_training(configure(point, budget, epochs), data, cache)
            score = result["val_acc"] if result["status"] == "ok" else None
            scores[(index, budget)] = score
            out.append(score)
        return out

    if halving:
        successive_halving(points, 1, epochs, 3, run_batch)
    else:
        run_batch([(i, p, epochs) for i, p in enumerate(points)])
    trained = sum(
        e["epochs"] - (e.get("resumed_from") or 0) for e in cache.events() if e["event"] == "store"
    )
    best = max(s for s in scores.values() if s is not None)
    print(
        f"{name:8s} trials {len(scores):3d}  best val acc {best:.4f}  epochs trained "
        f"{trained:4d}  wall {time.perf_counter() - start:6.1f} s",
        flush=True,
    )
    return best, trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", nargs="?", default=DEFAULT_ARCHIVE, type=Path)
    parser.add_argument("--fraction", type=float, default=0.25, help="share of train used")
    parser.add_argument("--epochs", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        prepared = prepare_dataset(
            args.archive, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0, workers="auto"
        )
        manifest = write_prepared(scratch / "prepared", prepared, {})
        stats = fit_standardization(prepared.images["train"])
        write_normalization(
            scratch / "normalized", "standardize", stats, data_hash=manifest["content_hash"]
        )
        data = load_run_data(scratch, args.fraction)
        print(
            f"{len(data.train[1])} training images, {len(data.val[1])} validation images; "
            f"space of {len(grid_points(SPACE))} points, {args.epochs} epochs at most"
        )
        grid = grid_points(SPACE)
        results = {
            "grid": search("grid", grid, data, args.epochs, scratch / "grid"),
            "random": search(
                "random",
                sample_points(SPACE, 9, np.random.default_rng(0)),
                data,
                args.epochs,
                scratch / "random",
            ),
            "halving": search(
                "halving", grid, data, args.epochs, scratch / "halving", halving=True
            ),
        }
    grid_best, grid_epochs = results["grid"]
    for name, (best, epochs) in results.items():
        print(
            f"{name:8s} {100 * (best - grid_best):+.2f} points vs grid at "
            f"{epochs / grid_epochs:.2f} of its epochs"
        )


if __name__ == "__main__":
    main()
