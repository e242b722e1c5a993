"""Wall time and peak memory of each DVC stage on the full shared archive.

Run from the repository root::

    python benchmarks/bench_pipeline.py [--repeats 3]

Copies the project into a temporary git + DVC repository, shortens only the training
budgets (``solver.epochs`` 100 -> 2, tune 12 trials of 2..8 epochs -> 4 trials of
1..2 epochs; memory does not grow with epochs) and runs ``dvc repro -s <stage>`` for
each stage in order, with ``CIFAR10_SOURCE`` set to the shared archive (50,000 JPEGs,
split 40k/5k/5k). prepare-split is run ``--repeats`` times (forced) for its time, and
as many times more as its bare command (``python stages/prepare_split.py``, what the
DVC stage runs) to separate its own time from DVC's.
Each stage is measured in its own wrapper process: wall time, and the peak resident
memory of its largest process (the stage itself, or a trial process it started).
Results go to ``benchmarks/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import ROOT, SHARED_ARCHIVE, peak_rss_of, summary, write_results

STAGES = ["prepare-split", "normalize", "tune", "train", "evaluate"]
SHORTER = [
    ("conf/solver/default.yaml", "epochs: 140", "epochs: 2"),
    ("conf/tune/base.yaml", "n_trials: 12", "n_trials: 4"),
    ("conf/tune/base.yaml", "epochs: 8", "epochs: 2"),
    ("conf/tune/base.yaml", "min_epochs: 2", "min_epochs: 1"),
]


def project_copy(repo: Path) -> None:
    """The project's tracked files in a fresh git + DVC repository at ``repo``."""
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    skip = ("tests/", "benchmarks/", ".ci/", "data/", "models/", "metrics/")
    for rel in listed:
        if (ROOT / rel).is_file() and not rel.startswith(skip):
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, repo / rel)
    for rel, old, new in SHORTER:
        path = repo / rel
        if old not in path.read_text():
            raise RuntimeError(f"{rel} no longer contains {old!r}; update SHORTER")
        path.write_text(path.read_text().replace(old, new))
    run = {"cwd": repo, "check": True, "capture_output": True}
    subprocess.run([sys.executable, "stages/compose_params.py"], **run)
    subprocess.run(["git", "init", "-q"], **run)
    subprocess.run(["dvc", "config", "--local", "core.site_cache_dir", str(repo / ".sc")], **run)
    subprocess.run(["git", "add", "-A"], **run)
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "p"],
        **run,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=SHARED_ARCHIVE)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "CIFAR10_SOURCE": str(args.archive.resolve())}

    with tempfile.TemporaryDirectory(prefix="npdl-bench-") as tmp:
        repo = Path(tmp)
        project_copy(repo)
        # A fresh run store of the benchmark's own (the shared one would serve hits).
        env["NPDL_RUN_STORE"] = str(repo / ".cache" / "npdl" / "run-store")
        stages = {}
        for stage in STAGES:
            runs = args.repeats if stage == "prepare-split" else 1
            records = [
                peak_rss_of(["dvc", "repro", "-s", "-f", stage], env=env, cwd=repo)
                for _ in range(runs)
            ]
            stages[stage] = {
                "seconds": summary([r["seconds"] for r in records]),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in records),
            }
            print(
                f"{stage}: {stages[stage]['seconds']['median']:.1f} s, "
                f"peak RSS {stages[stage]['peak_rss_mb']:.0f} MB"
            )
        # The stage's own command (as in dvc.yaml), without DVC's start-up, hashing
        # and caching around it.
        direct = [
            peak_rss_of(
                [
                    sys.executable,
                    "stages/prepare_split.py",
                    "--config-dir=.",
                    "--config-name=params",
                    "hydra.run.dir=.",
                    "hydra.output_subdir=null",
                ],
                env=env,
                cwd=repo,
            )
            for _ in range(args.repeats)
        ]
        prepare_alone = summary([r["seconds"] for r in direct])
        print(f"prepare-split without DVC: {prepare_alone['median']:.1f} s")
        manifest = (repo / "data" / "prepared" / "manifest.json").read_text()
    write_results(
        "pipeline",
        {
            "archive": args.archive.name,
            "shortened": [f"{rel}: {old} -> {new}" for rel, old, new in SHORTER],
            "stages": stages,
            "peak_rss_mb": max(s["peak_rss_mb"] for s in stages.values()),
            "prepare_split_without_dvc_seconds": prepare_alone,
            "manifest_counts": json.loads(manifest)["counts"],
        },
    )


if __name__ == "__main__":
    main()
