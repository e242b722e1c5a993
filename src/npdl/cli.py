"""The ``npdl`` command (a console script of the package).

``npdl cache verify [--store DIR] [--set-aside]`` checks every finished trial and
checkpoint of a run store against the sha256 recorded when it was written; it exits
1 if any fails, 2 if ``DIR`` is not a run store, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .run.store import RunStore

#: The store the pipeline uses by default (``paths.trial_cache``), from the project root.
DEFAULT_STORE = Path(".cache/npdl/trial-cache")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="npdl", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cache = commands.add_parser("cache", help="inspect the run store (trial cache)")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    verify = cache_commands.add_parser(
        "verify", help="check every entry and checkpoint against its recorded sha256"
    )
    verify.add_argument(
        "--store",
        type=Path,
        default=DEFAULT_STORE,
        help=f"the run store's folder (paths.trial_cache; default {DEFAULT_STORE})",
    )
    verify.add_argument(
        "--set-aside",
        action="store_true",
        help="move what fails into the store's corrupt/ folder (a run would retrain it)",
    )
    return parser


def verify_store(store: Path, set_aside: bool) -> int:
    if not (store / "trials").is_dir():
        print(f"error: {store} is not a run store (it has no trials/ folder)", file=sys.stderr)
        return 2
    cache = RunStore(store)
    checked, problems = cache.verify()
    for problem in problems:
        print(f"corrupt: {problem.path}: {problem.reason}")
        if set_aside:
            cache.set_aside(problem)
    moved = f"; moved to {cache.corrupt_dir}" if set_aside and problems else ""
    print(f"{checked} entries and checkpoints checked, {len(problems)} corrupt{moved}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "cache" and args.cache_command == "verify":
        return verify_store(args.store, args.set_aside)
    raise AssertionError(f"unhandled command {args}")


if __name__ == "__main__":
    sys.exit(main())
