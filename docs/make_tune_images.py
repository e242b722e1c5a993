"""Draw the README's pictures of a search from a finished tune stage's sweep folder.

    python docs/make_tune_images.py .cache/npdl/tune-sweeps/<time>-<pid> \
        [--params params.yaml] [--out docs/images]

writes ``tune_parallel.png`` and ``tune_importance.png`` into ``--out`` with the
project's own code (:func:`npdl.search.report.write_search_report`), from the folder's
``leaderboard.csv`` and the space of ``tune.space`` in ``--params`` (read with Hydra's
override parser, as the sweeper reads it). A folder whose ``best_overrides.json``
predates the importance gets it computed here, as the sweeper computes it.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from hydra_plugins.npdl_sweepers.reporting import search_importance
from hydra_plugins.npdl_sweepers.sweepers import parse_space
from npdl.io import load_json
from npdl.search import Objective
from npdl.search.report import read_leaderboard, write_search_report

PICTURES = ("tune_parallel.png", "tune_importance.png")


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("sweep", type=Path, help="the tune stage's sweep folder")
    arguments.add_argument("--params", type=Path, default=Path("params.yaml"))
    arguments.add_argument("--out", type=Path, default=Path("docs/images"))
    args = arguments.parse_args()
    space_text = yaml.safe_load(args.params.read_text())["tune"]["space"]
    parser = OverridesParser.create()
    space, _ = parse_space([f"{key}={text}" for key, text in space_text.items()], parser)
    best = load_json(args.sweep / "best_overrides.json")
    if best.get("importance") is None:
        rows = read_leaderboard(args.sweep / "leaderboard.csv")

        def value_of(key: str, text: str):
            return parser.parse_override(f"{key}={text}").value()

        objective = Objective(best.get("metric", "val_acc"))
        best["importance"] = search_importance(rows, space, value_of, objective)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        leaderboard = args.sweep / "leaderboard.csv"
        write_search_report(leaderboard, space_text, scratch, scratch, best)
        args.out.mkdir(parents=True, exist_ok=True)
        for name in PICTURES:
            shutil.copyfile(scratch / name, args.out / name)
            print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
