"""Record a tabular search benchmark: every point of a space trained 27 epochs,
per-epoch val accuracy, val loss and seconds, by our own grid sweep.

Run from the repository root (a killed run resumes from the run store when started
again)::

    python benchmarks/record_search_table.py [ARCHIVE] [--table NAME] [--work DIR]

``--table`` picks one of :data:`TABLES`: ``default`` (216 configurations of Adam's
learning rate, weight decay, width, dropout and batch norm; about 45 minutes on 2
cores) or ``optimizers`` (128 configurations of Adam or SGD with momentum over four
learning rates, some of which diverge, weight decay, width and depth, dropout; a table
whose short runs mislead) or ``narrow`` (128 configurations close to the tune stage's
own space: learning rate, weight decay, dropout, crop augmentation) or ``late`` (128
configurations of regularisation at the two best learning rates: weight decay, dropout,
crops, flips). A diverged trial's epochs after it diverged are recorded at
chance (val accuracy 0.1, val loss NaN), as the trainer ended it.

It runs the pipeline's own stages on the shared archive, in a work folder of its own
(``.cache/npdl/search-table`` by default): ``prepare_split.py`` and ``normalize.py``
(40,000 / 5,000 / 5,000 images, ZCA), then one ``train.py -m`` grid sweep
(``hydra/sweeper=npdl_grid``, 2 joblib workers) on a class-balanced 10,000-image
prefix of the train split (``solver.train_fraction=0.25``) with the 5,000 val images,
every trial on the cosine schedule of 27 epochs. A second, small sweep trains 12 of the
points again with another seed: the table's run-to-run noise.

Writes ``benchmarks/results/search_table.csv`` (one row per point and epoch; other
tables ``search_table_<name>.csv``) and, for the default table,
``benchmarks/results/search_noise.csv``. ``bench_search.py`` replays searches on them.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-train-jpeg.tar.gz"
MAX_EPOCHS = 27
#: The space, as Hydra sweep overrides (override text -> value in the table).
SPACE = {
    "optimizer.lr": ["1e-4", "2e-4", "5e-4", "1e-3", "2e-3", "5e-3"],
    "optimizer.weight_decay": ["0.0", "0.02", "0.2"],
    "model.hidden_size": ["[64]", "[128]", "[256]"],
    "model.dropout": ["0.0", "0.3"],
    "model.batch_norm": ["true", "false"],
}
FIXED = [
    f"solver.epochs={MAX_EPOCHS}",
    "solver.train_fraction=0.25",
    "tune.enabled=false",
    "tune.keep_trial_models=false",
    "hydra/launcher=joblib",
    "hydra.launcher.n_jobs=2",
]
#: A second table: 2 optimizers x 4 learning rates x 2 weight decays x 4 shapes (width
#: 128 / 512, depth 2 / 4) x 2 dropouts = 128 configurations on 6,000 training images.
OPTIMIZERS_SPACE = {
    "optimizer": ["adam", "sgd_momentum"],
    "optimizer.lr": ["1e-4", "1e-3", "1e-2", "1e-1"],
    "optimizer.weight_decay": ["0.0", "0.01"],
    "model.hidden_size": [
        "[128,128]",
        "[512,512]",
        "[128,128,128,128]",
        "[512,512,512,512]",
    ],
    "model.dropout": ["0.0", "0.5"],
}
#: A third table, narrow as the tune stage's own space is: 4 learning rates x 4 weight
#: decays x 4 dropouts around the default's, crop augmentation on or off, one shape
#: (512-256) on 6,000 training images: differences close to the noise at one epoch,
#: regularisation that pays late.
NARROW_SPACE = {
    "optimizer.lr": ["3e-4", "6e-4", "1.2e-3", "2.4e-3"],
    "optimizer.weight_decay": ["0.005", "0.015", "0.04", "0.1"],
    "model.dropout": ["0.0", "0.1", "0.2", "0.3"],
    "solver.crop_padding": ["0", "4"],
}
#: A fourth table, of regularisation that pays late: the two best learning rates of the
#: narrow table, weight decay, dropout, crops and flips, on 6,000 training images (its
#: 64 points with flips are the narrow table's, served by the run store).
LATE_SPACE = {
    "optimizer.lr": ["1.2e-3", "2.4e-3"],
    "optimizer.weight_decay": ["0.005", "0.015", "0.04", "0.1"],
    "model.dropout": ["0.0", "0.1", "0.2", "0.3"],
    "solver.crop_padding": ["0", "4"],
    "solver.hflip": ["true", "false"],
}
#: name -> (space, overrides of every trial, results file).
TABLES = {
    "default": (SPACE, FIXED, "search_table.csv"),
    "optimizers": (
        OPTIMIZERS_SPACE,
        [
            *(f for f in FIXED if not f.startswith("solver.train_fraction")),
            "solver.train_fraction=0.15",
        ],
        "search_table_optimizers.csv",
    ),
    "narrow": (
        NARROW_SPACE,
        [
            *(f for f in FIXED if not f.startswith("solver.train_fraction")),
            "solver.train_fraction=0.15",
            "model.hidden_size=[512,256]",
        ],
        "search_table_narrow.csv",
    ),
    "late": (
        LATE_SPACE,
        [
            *(f for f in FIXED if not f.startswith("solver.train_fraction")),
            "solver.train_fraction=0.15",
            "model.hidden_size=[512,256]",
        ],
        "search_table_late.csv",
    ),
}
#: Run-to-run noise: these 12 points trained again with another seed.
NOISE_GRID = {
    "optimizer.lr": "2e-4,1e-3,5e-3",
    "optimizer.weight_decay": "0.0",
    "model.hidden_size": "[128],[256]",
    "model.dropout": "0.0",
    "model.batch_norm": "true,false",
}


def stage(work: Path, name: str, *overrides: str) -> None:
    """Run ``stages/<name>`` on the work folder's data and run store."""
    command = [
        sys.executable,
        str(ROOT / "stages" / name),
        *overrides,
        f"paths.data={work / 'data'}",
        f"paths.cache={work / 'cache'}",
        f"paths.run_store={work / 'store'}",
    ]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def collect(sweep_dir: Path, space: dict = SPACE) -> list[dict]:
    """One row per job and epoch: the point's override texts, the epoch's val accuracy
    and loss, and the job's seconds per epoch trained; a diverged trial's remaining
    epochs at chance."""
    rows = []
    for job in sorted(sweep_dir.iterdir(), key=lambda p: (len(p.name), p.name)):
        overrides_file = job / ".hydra" / "overrides.yaml"
        if not overrides_file.is_file():
            continue
        overrides = dict(line.split("=", 1) for line in yaml.safe_load(overrides_file.read_text()))
        point = {key: overrides[key] for key in space}
        metrics = json.loads((job / "metrics" / "train.json").read_text())
        if metrics["status"] not in ("ok", "diverged"):
            raise SystemExit(f"{job}: trial {point} ended {metrics['status']!r}; see its log")
        trained = metrics["epochs"] - (metrics["resumed_from"] or 0)
        per_epoch = metrics["seconds"] / max(1, trained)
        history = job / "metrics" / "train_history.csv"
        epochs = []
        if history.is_file():
            with open(history, newline="") as handle:
                epochs = [
                    (float(e["val_acc"]), float(e["val_loss"])) for e in csv.DictReader(handle)
                ]
        epochs += [(0.1, math.nan)] * (MAX_EPOCHS - len(epochs))  # diverged: at chance
        for number, (acc, loss) in enumerate(epochs[:MAX_EPOCHS], start=1):
            rows.append(
                {
                    **point,
                    "epoch": number,
                    "val_acc": round(acc, 4) if math.isfinite(acc) else 0.1,
                    "val_loss": round(loss, 4),
                    "seconds": round(per_epoch, 3),
                }
            )
    return rows


def write_csv(path: Path, rows: list[dict], space: dict = SPACE) -> None:
    temporary = path.with_suffix(".csv.tmp")
    with open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=[*space, "epoch", "val_acc", "val_loss", "seconds"]
        )
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)
    print(f"wrote {path} ({len(rows)} rows)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", nargs="?", default=DEFAULT_ARCHIVE, type=Path)
    parser.add_argument("--table", choices=sorted(TABLES), default="default")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "npdl" / "search-table")
    args = parser.parse_args()
    work = args.work.resolve()
    space, fixed, results_file = TABLES[args.table]
    if not (work / "data" / "normalized" / "stats.json").is_file():
        # The pipeline's way to an offline source: CIFAR10_SOURCE replaces the URL.
        os.environ["CIFAR10_SOURCE"] = str(args.archive.resolve())
        stage(work, "prepare_split.py")
        stage(work, "normalize.py")
    sweep = work / ("grid" if args.table == "default" else f"grid-{args.table}")
    stage(
        work,
        "train.py",
        "-m",
        "hydra/sweeper=npdl_grid",
        f"hydra.sweep.dir={sweep}",
        *fixed,
        *(f"{key}={','.join(values)}" for key, values in space.items()),
    )
    RESULTS.mkdir(exist_ok=True)
    write_csv(RESULTS / results_file, collect(sweep, space), space)
    if args.table != "default":
        return
    # Run-to-run noise: 12 of the points trained again with another seed.
    noise_grid = [f"{key}={values}" for key, values in NOISE_GRID.items()]
    stage(
        work,
        "train.py",
        "-m",
        "hydra/sweeper=npdl_grid",
        "seed=1",
        f"hydra.sweep.dir={work / 'noise'}",
        *FIXED,
        *noise_grid,
    )
    noise = collect(work / "noise")
    write_csv(RESULTS / "search_noise.csv", noise)


if __name__ == "__main__":
    main()
