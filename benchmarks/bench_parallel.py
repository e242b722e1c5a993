"""Tuning throughput: trials per hour with 1 worker and with 2 joblib workers.

Run from the repository root::

    python benchmarks/bench_parallel.py [--pairs 3] [--trials 8] [--epochs 5] [--images 50000]

Each sweep is a real Hydra multirun of the train stage (``npdl_grid`` sweeper over
learning rate x L2) of the course's net (``+experiment=course_baseline``: 3072-100-10
sigmoid, SGD, batch 64) for ``--epochs`` epochs on a standardised subset of the shared
archive, with an empty trial cache, once with Hydra's basic launcher and once with
``hydra/launcher=joblib hydra.launcher.n_jobs=2`` (alternating, ``--pairs`` times).
Trials/hour counts whole sweeps, start-up included. With 2 workers each job runs
BLAS and npdl's update threads at ``cores // 2``. Results go to
``benchmarks/results/parallel.json``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import ROOT, SHARED_ARCHIVE, paired, ratios, summary, write_results
from npdl.data.normalization import fit_standardization, write_normalization
from npdl.data.prepared import prepare_dataset, write_prepared

LAUNCHERS = {
    "1 worker": [],
    "2 joblib workers": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
}


def prepare(folder: Path, archive: str, images: int) -> None:
    data = prepare_dataset(
        archive, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0, limit_files=images
    )
    manifest = write_prepared(folder / "prepared", data, {"source": "benchmark"})
    stats = fit_standardization(data.images["train"])
    write_normalization(
        folder / "normalized", "standardize", stats, data_hash=manifest["content_hash"]
    )


def sweep(data: Path, work: Path, launcher: list[str], trials: int, epochs: int) -> float:
    """Run one sweep in fresh folders; return trials per hour."""
    run = tempfile.mkdtemp(dir=work)
    lrs = ",".join(f"{0.05 * 2**i:g}" for i in range(trials // 2))
    command = [
        sys.executable,
        str(ROOT / "stages" / "train.py"),
        "-m",
        "+experiment=course_baseline",
        "hydra/sweeper=npdl_grid",
        f"hydra.sweep.dir={run}/sweep",
        f"paths.data={data}",
        f"paths.run_store={run}/cache",
        f"solver.epochs={epochs}",
        f"optimizer.lr={lrs}",
        "model.reg=0.0,0.001",
        *launcher,
    ]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"sweep failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    done = len(list(Path(run, "sweep").glob("*/metrics/train.json")))
    if done != trials:
        raise RuntimeError(f"expected {trials} trials, found {done} in {run}/sweep")
    return trials / seconds * 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", default=str(SHARED_ARCHIVE))
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=8, help="an even number")
    parser.add_argument("--epochs", type=int, default=5, help="the course baseline's 5")
    parser.add_argument("--images", type=int, default=50000, help="all of the archive")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="npdl-bench-") as tmp:
        work = Path(tmp)
        prepare(work / "data", args.archive, args.images)
        contenders = {
            name: (
                lambda launcher=launcher: sweep(
                    work / "data", work, launcher, args.trials, args.epochs
                )
            )
            for name, launcher in LAUNCHERS.items()
        }
        rates = paired(contenders, args.pairs)
    one, two = rates["1 worker"], rates["2 joblib workers"]
    speedup = ratios(two, one)
    print(
        f"trials/hour: 1 worker {summary(one)['median']:.0f}, 2 workers "
        f"{summary(two)['median']:.0f}, speed-up {speedup['median']:.2f}x"
    )
    write_results(
        "parallel",
        {
            "trials_per_sweep": args.trials,
            "epochs": args.epochs,
            "images": args.images,
            "trials_per_hour": {name: summary(values) for name, values in rates.items()},
            "speedup": speedup,
        },
    )


if __name__ == "__main__":
    main()
