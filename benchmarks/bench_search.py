"""Searches compared on the tabular benchmark, ours against Optuna 5, at equal epochs.

Run from the repository root, after ``record_search_table.py`` (replays: ~10 min; the
real runs: ~30 min more,
saved one by one in ``results/search_real.json``)::

    python benchmarks/bench_search.py [--seeds 30] [--real] [--work DIR] [--table NAME|FILE]
        [--methods NAME,...]

Every search of :mod:`search_replay` runs on ``results/search_table.csv`` for each seed
until 100 R epochs are spent; regret (the table's best val accuracy at R minus the best
found, in points) is summarised at 10 R, 30 R and 100 R, and at a third of the grid's
epochs, as median and interquartile range over the seeds. ``--real`` also runs halving
and TPE for real (``stages/train.py -m`` with the sweeper, a fresh run store, on the
recorder's data) for 3 seeds each, and compares each with its replay.

Writes ``results/search.json`` and ``docs/images/search_regret.png``. ``--table`` replays
another recorded table instead (a name of ``record_search_table.TABLES``, or any CSV of
the same columns, e.g. one recorded elsewhere): ``results/search_<name>.json`` and
``docs/images/search_regret_<name>.png``; ``--real`` and the noise figure belong to the
default table only.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness import write_results
from npdl.registry import search_name
from record_search_table import FIXED, ROOT, TABLES
from search_replay import OPTUNA, OURS, Table, regret_at, replay, single_search

RESULTS = Path(__file__).resolve().parent / "results"
#: The picture, beside the documentation's other images (docs/images).
FIGURE = ROOT / "docs" / "images" / "search_regret.png"
MULTIPLES = (10, 30, 100)
#: The real runs: sweeper options, the same in the replay they are compared with.
REAL = {
    "halving": {"n_trials": 27, "min_epochs": 1, "epochs": 27, "eta": 3},
    "tpe": {"n_trials": 12},
}


def quartiles(values: list[float]) -> dict[str, float]:
    q1, median, q3 = np.nanpercentile(values, [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3)}


def median_regret(traces: list, best: float, budget: int) -> float | None:
    """Median regret over the seeds at ``budget``; None before any trial reached R."""
    regrets = [100 * regret_at(trace, best, budget) for trace in traces]
    finished = [r for r in regrets if not math.isnan(r)]
    return float(np.median(regrets)) if len(finished) == len(regrets) else None


def compare(table: Table, seeds: int, names: list[str] | None = None, earlier=None) -> dict:
    """Regret of every search at the budgets, over ``seeds`` seeds, and its curve.

    ``names``: only these searches are replayed, the others' figures are taken from
    ``earlier`` (a results file of the same table and seeds)."""
    R = table.max_epochs
    budgets = {f"{m}R": m * R for m in MULTIPLES}
    budgets["grid/3"] = table.grid_epochs() // 3
    curve_at = np.unique(np.geomspace(R, 100 * R, 40).astype(int)).tolist()
    methods = {}
    for name in [*OURS, *OPTUNA]:
        if names is not None and name not in names and name in earlier["methods"]:
            methods[name] = earlier["methods"][name]
            continue
        start = time.perf_counter()
        traces = [replay(name, table, seed, 100 * R) for seed in range(seeds)]
        regrets = {
            label: [100 * regret_at(trace, table.best, budget) for trace in traces]
            for label, budget in budgets.items()
        }
        methods[name] = {
            "regret": {label: quartiles(values) for label, values in regrets.items()},
            "within_half_point_at_grid/3": float(np.mean([r <= 0.5 for r in regrets["grid/3"]])),
            "curve": [median_regret(traces, table.best, b) for b in curve_at],
        }
        summary = ", ".join(
            f"{label} {v['median']:.2f}" for label, v in methods[name]["regret"].items()
        )
        print(f"{name:22s} median regret {summary}  ({time.perf_counter() - start:.0f} s)")
    return {
        "budgets": budgets,
        "curve_epochs": curve_at,
        "methods": methods,
        "default": default_holds(methods),
    }


def default_holds(methods: dict) -> dict:
    """The default search against the bar it must meet on every table: at 30 R and
    100 R its median regret is at most the better of our random search and Optuna's
    TPE + Hyperband, plus 0.1 point; at 10 R, whether it beats random search."""
    (proposer, scheduler), options = OURS["default"]

    def median(name: str, budget: str) -> float:
        return methods[name]["regret"][budget]["median"]

    bars = {
        budget: min(median("random", budget), median("optuna tpe+hyperband", budget)) + 0.1
        for budget in ("30R", "100R")
    }
    result = {
        "search": search_name(proposer, scheduler),
        "proposer": proposer,
        "scheduler": scheduler,
        "options": options,
        "bar": bars,
        "within_bar": {b: median("default", b) <= bar + 1e-9 for b, bar in bars.items()},
        "beats_random_at_10R": median("default", "10R") < median("random", "10R"),
    }
    result["holds"] = all(result["within_bar"].values())
    print(
        f"default search ({result['search']}): within the bar at 30R and 100R: "
        f"{result['holds']}; beats random at 10R: {result['beats_random_at_10R']}"
    )
    return result


def rank_agreement(table: Table) -> dict[int, float]:
    """Spearman correlation, over every point, between its val accuracy after ``b``
    epochs and after R: how well each budget predicts the final ranking."""
    from npdl.search.fidelity import spearman

    final = [table.result(key, table.max_epochs)[0] for key in table.acc]
    budgets = sorted({1, 2, 3, 4, 6, 9, 13, 18} & set(range(1, table.max_epochs)))
    return {
        b: round(spearman([table.result(key, b)[0] for key in table.acc], final), 3)
        for b in budgets
    }


def asha_workers(table: Table, seeds: int) -> dict:
    """ASHA with 1 worker against 2 (one search each, per seed): how often the same
    winner, and the best val accuracy at R of each."""
    same, best = 0, {1: [], 2: []}
    for seed in range(seeds):
        winners = {}
        for workers in (1, 2):
            search = single_search("asha", table, seed, {"n_jobs": workers})
            winners[workers] = search.winner
            top = [r["val_acc"] for r in search.rows if r["epochs"] == table.max_epochs]
            best[workers].append(100 * max(top))
        same += winners[1] == winners[2]
    return {
        "seeds": seeds,
        "same_winner": same,
        "best_val_acc_median": {w: float(np.median(v)) for w, v in best.items()},
    }


def noise(path: Path, table: Table) -> dict:
    """Run-to-run noise at R: the same points trained with another seed."""
    other = Table(path)
    gaps = [
        100 * (other.result(key, other.max_epochs)[0] - table.result(key, table.max_epochs)[0])
        for key in other.acc
    ]
    # The difference of two runs has twice the variance of one.
    return {"points": len(gaps), "sd_of_one_run": float(np.std(gaps, ddof=1) / math.sqrt(2))}


def real_run(name: str, seed: int, work: Path, table: Table) -> dict:
    """One real sweep with a fresh run store; its best val accuracy and epochs trained."""
    with tempfile.TemporaryDirectory() as scratch:
        sweep_dir = Path(scratch) / "sweep"
        space = [f"{key}={','.join(choice.values)}" for key, choice in table.space.items()]
        options = [f"hydra.sweeper.{k}={v}" for k, v in REAL[name].items()]
        command = [
            sys.executable,
            str(ROOT / "stages" / "train.py"),
            "-m",
            f"hydra/sweeper=npdl_{name}",
            f"hydra.sweeper.seed={seed}",
            "hydra.sweeper.include_defaults=false",
            *options,
            f"hydra.sweep.dir={sweep_dir}",
            f"paths.data={work / 'data'}",
            f"paths.run_store={Path(scratch) / 'store'}",
            # One job at a time; the halving sweeper sets solver.epochs per rung.
            *[item for item in FIXED if not item.startswith(("hydra", "solver.epochs"))],
            *([] if name == "halving" else [f"solver.epochs={table.max_epochs}"]),
            *space,
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT, capture_output=True)
        seconds = time.perf_counter() - start
        best = json.loads((sweep_dir / "best_overrides.json").read_text())
        with open(sweep_dir / "leaderboard.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
    top = max(float(row["val_acc"]) for row in rows if row["epochs"] == str(table.max_epochs))
    replayed = single_search(name, table, seed, REAL[name])
    replay_top = max(row["val_acc"] for row in replayed.rows if row["epochs"] == table.max_epochs)
    return {
        "sampler": name,
        "seed": seed,
        "best_val_acc": top,
        "replayed_best_val_acc": replay_top,
        "same_winner": best["overrides"] == replayed.winner,
        "epochs_trained": best["epochs_trained"],
        "replayed_epochs_trained": replayed.spent,
        "seconds": round(seconds, 1),
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    R = result["table"]["max_epochs"]
    figure, axes = plt.subplots(figsize=(8, 5))
    for name, method in result["methods"].items():
        style = "--" if name.startswith("optuna") else "-"
        curve = [np.nan if value is None else value for value in method["curve"]]
        axes.plot(np.array(result["curve_epochs"]) / R, curve, style, label=name)
    axes.set_xscale("log")
    axes.set_xlabel("epochs spent / R (R = 27)")
    axes.set_ylabel("median regret, val accuracy points")
    axes.set_title(f"Best so far on the tabular benchmark, {result['seeds']} seeds")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def describe_table(table: Table) -> dict:
    """A table's size, budget, best point and space, for the results file."""
    best_key = max(table.acc, key=lambda k: table.result(k, table.max_epochs)[0])
    return {
        "points": len(table.acc),
        "max_epochs": table.max_epochs,
        "grid_epochs": table.grid_epochs(),
        "best_val_acc": table.best,
        "best_point": dict(zip(table.keys, best_key, strict=True)),
        "space": {k: list(c.values) for k, c in table.space.items()},
    }


def other_table(name: str, table: Table, seeds: int, names=None, earlier=None) -> None:
    """Every search replayed on another table; its results and picture beside the
    default table's."""
    result = {
        "table": {"name": name, **describe_table(table)},
        "seeds": seeds,
        **compare(table, seeds, names, earlier),
        "rank_agreement_with_R": rank_agreement(table),
    }
    plot(result, FIGURE.with_name(f"search_regret_{name}.png"))
    write_results(f"search_{name}", result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--real", action="store_true", help="also the real runs (~20 min)")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "npdl" / "search-table")
    parser.add_argument("--table", default="default", help="a recorded table's name or a CSV")
    parser.add_argument(
        "--methods",
        help="replay only these searches (comma-separated, e.g. default), keeping the "
        "others' figures from the table's results file (same table and seeds)",
    )
    args = parser.parse_args()
    names = args.methods.split(",") if args.methods else None
    if args.table in TABLES:
        name, table_file = args.table, RESULTS / TABLES[args.table][2]
    else:
        name, table_file = Path(args.table).stem, Path(args.table)
    earlier = None
    if names is not None:
        earlier_file = RESULTS / ("search.json" if name == "default" else f"search_{name}.json")
        earlier = json.loads(earlier_file.read_text())
        if earlier["seeds"] != args.seeds:
            raise SystemExit(f"{earlier_file} holds {earlier['seeds']} seeds, not {args.seeds}")
    if name != "default":
        other_table(name, Table(table_file), args.seeds, names, earlier)
        return
    table = Table(table_file)
    result = {
        "table": {**describe_table(table), "noise": noise(RESULTS / "search_noise.csv", table)},
        "seeds": args.seeds,
        **compare(table, args.seeds, names, earlier),
        "asha_workers": earlier["asha_workers"] if earlier else asha_workers(table, args.seeds),
        "rank_agreement_with_R": rank_agreement(table),
    }
    real_file = RESULTS / "search_real.json"
    real = json.loads(real_file.read_text()) if real_file.exists() else []
    if args.real:
        # Each real run is saved as it ends: a killed benchmark reruns only the rest.
        done = {(run["sampler"], run["seed"]) for run in real}
        for name in REAL:
            for seed in range(3):
                if (name, seed) in done:
                    continue
                real.append(real_run(name, seed, args.work.resolve(), table))
                print(real[-1], flush=True)
                temporary = real_file.with_suffix(".json.tmp")
                temporary.write_text(json.dumps(real, indent=2) + "\n")
                temporary.replace(real_file)
    result["real"] = real
    plot(result, FIGURE)
    write_results("search", result)


if __name__ == "__main__":
    main()
