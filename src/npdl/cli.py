"""The ``npdl`` command (a console script of the package): the run store.

- ``npdl cache ls``: every lineage: its finished epoch budgets, size, age (since last
  use), status, code version (``current``, ``other``: written by another version of
  the library, never a hit again) and a summary of its configuration;
- ``npdl cache du``: the store's size by kind of part;
- ``npdl cache gc (--max-size 2GB | --older-than 30d) [--keep-referenced] [--dry-run]``:
  removes parts by the policy of :mod:`npdl.run.gc`, never any of a lineage a process
  holds, and with ``--keep-referenced`` never an entry that ``models/tune/leaderboard.csv``
  or ``models/model.npz`` came from, of this workspace and of every project registered
  in the store (:mod:`npdl.run.projects`); projects whose folder is gone are forgotten;
  ``--dry-run`` prints what it would remove;
- ``npdl cache projects``: the workspaces registered in the store, their last use and
  whether they are still there;
- ``npdl cache verify [--set-aside]``: checks every finished trial and checkpoint
  against the sha256 recorded when it was written; exit 1 if any fails.

The store is ``--store DIR``, else ``$NPDL_RUN_STORE``, else the user's cache folder
(``~/.cache/npdl/run-store``), as for the pipeline with ``paths.run_store`` null. A
folder that is no run store: exit 2.

- ``npdl sanity [--project DIR] [--output FILE]``: the sanity stage's checks
  (:mod:`npdl.sanity`) of a project's ``params.yaml`` on its prepared data, without
  Hydra or DVC; exit 1 if one fails, 2 if the configuration or data cannot be read.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .run.gc import (
    Part,
    collect,
    format_age,
    format_size,
    inventory,
    parse_age,
    parse_size,
    referenced,
    registered_references,
)
from .run.projects import forget_gone, registered_projects
from .run.store import RunStore, store_root
from .run.training import code_hash


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="npdl", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cache = commands.add_parser("cache", help="inspect and trim the run store")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    store_help = "the run store's folder (default: $NPDL_RUN_STORE, else ~/.cache/npdl/run-store)"
    listing = cache_commands.add_parser("ls", help="every lineage: epochs, size, age, status")
    usage = cache_commands.add_parser("du", help="the store's size by kind of part")
    gc = cache_commands.add_parser("gc", help="remove parts by size or age")
    verify = cache_commands.add_parser(
        "verify", help="check every entry and checkpoint against its recorded sha256"
    )
    projects = cache_commands.add_parser(
        "projects", help="the workspaces registered in the store (kept by --keep-referenced)"
    )
    for command in (listing, usage, gc, verify, projects):
        command.add_argument("--store", type=Path, default=None, help=store_help)
    gc.add_argument("--max-size", type=_size, help="bring the store under this size (2GB, 500MB)")
    gc.add_argument("--older-than", type=_age, help="remove parts unused for longer (30d, 12h)")
    gc.add_argument(
        "--keep-referenced",
        action="store_true",
        help="never remove an entry that the leaderboard or model of this workspace or of a "
        "registered project came from",
    )
    gc.add_argument(
        "--models",
        type=Path,
        action="append",
        help="a workspace's models folder for --keep-referenced (default: ./models; repeatable)",
    )
    gc.add_argument("--dry-run", action="store_true", help="print what would go; remove nothing")
    sanity = commands.add_parser(
        "sanity", help="check a project's network, loss and learning rate in seconds"
    )
    sanity.add_argument(
        "--project", type=Path, default=Path("."), help="the project (default: this folder)"
    )
    sanity.add_argument("--output", type=Path, help="also write the report (JSON) here")
    verify.add_argument(
        "--set-aside",
        action="store_true",
        help="move what fails into the store's corrupt/ folder (a run would retrain it)",
    )
    return parser


@dataclass
class LineageSummary:
    """One line of ``npdl cache ls``."""

    lineage: str
    epochs: list[int]  # budgets of its finished entries
    checkpoint: bool
    size: int
    used: float  # its most recent use
    statuses: list[str]  # of its entries
    code: str  # 'current', 'other' (another version of the library) or 'unknown'
    in_use: bool
    config: str  # a summary of its training configuration ('-' if unknown)


def summarize(store: RunStore, parts: list[Part]) -> list[LineageSummary]:
    """Per-lineage view of ``parts`` (from :func:`inventory`), most recently used first."""
    current = code_hash()
    by_lineage: dict[str, list[Part]] = {}
    for part in parts:
        if part.lineage is not None and part.kind != "failure":
            by_lineage.setdefault(part.lineage, []).append(part)
    rows = []
    for lineage, own in by_lineage.items():
        entries = sorted((p for p in own if p.kind == "entry"), key=lambda p: p.epochs or 0)
        code = next((p.code for p in own if p.code), None)
        description = store.description(lineage) or {}
        rows.append(
            LineageSummary(
                lineage=lineage,
                epochs=[p.epochs for p in entries if p.epochs is not None],
                checkpoint=any(p.kind == "checkpoint" for p in own),
                size=sum(p.size for p in own),
                used=max(p.used for p in own),
                statuses=sorted({p.status or "?" for p in entries}),
                code="unknown" if code is None else ("current" if code == current else "other"),
                in_use=store.in_use(lineage),
                config=config_summary(description.get("training")),
            )
        )
    return sorted(rows, key=lambda row: -row.used)


def config_summary(training: dict | None) -> str:
    """``[64] relu bn dropout=0.2 | adam lr=0.001 wd=0.05 | bs=64 cosine fraction=0.25``."""
    if not training:
        return "-"
    model, opt, solver = training["model"], training["optimizer"], training["solver"]
    net = f"{model['hidden_size']} {model['activation']}" + (" bn" if model["batch_norm"] else "")
    net = (f"pca{model['input_pca']}-" if model.get("input_pca") else "") + net
    net += f" dropout={model['dropout']:g}" + (f" reg={model['reg']:g}" if model["reg"] else "")
    optimizer = f"{opt['name']} lr={opt['lr']:g} wd={opt.get('weight_decay', 0):g}"
    loop = f"bs={solver['batch_size']} {solver['schedule']}"
    if solver.get("train_fraction", 1) != 1:
        loop += f" fraction={solver['train_fraction']:g}"
    return f"{net} | {optimizer} | {loop}"


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _age(text: str) -> float:
    try:
        return parse_age(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def open_store(path: Path | None) -> RunStore | None:
    """The store at ``path`` (or the default one); None, with a message, if it is none."""
    root = store_root(path)
    if not (root / "trials").is_dir():
        if path is None and not root.exists():
            print(f"no run store at {root} yet: nothing has been trained with it")
            return None
        print(f"error: {root} is not a run store (it has no trials/ folder)", file=sys.stderr)
        return None
    return RunStore(root)


def list_store(store: RunStore) -> int:
    now, rows = time.time(), summarize(store, inventory(store))
    print(f"{'lineage':24}  {'epochs':14}  {'size':>9}  {'age':>4}  {'status':16}  code     config")
    for row in rows:
        epochs = ",".join(map(str, row.epochs)) or "-"
        epochs += " +ckpt" if row.checkpoint else ""
        status = ",".join(row.statuses) or "unfinished"
        status += " in use" if row.in_use else ""
        print(
            f"{row.lineage:24}  {epochs:14}  {format_size(row.size):>9}  "
            f"{format_age(now - row.used):>4}  {status:16}  {row.code:7}  {row.config}"
        )
    other = [row for row in rows if row.code == "other"]
    print(
        f"{len(rows)} lineages, {format_size(sum(r.size for r in rows))} in {store.root}; "
        f"{len(other)} of other code versions ({format_size(sum(r.size for r in other))})"
    )
    return 0


def disk_usage(store: RunStore) -> int:
    parts = inventory(store)
    kinds = {
        "entry": "results",
        "checkpoint": "checkpoints",
        "description": "descriptions",
        "failure": "failures",
        "corrupt": "set aside",
        "leftover": "leftovers",
    }
    for kind, label in kinds.items():
        own = [part for part in parts if part.kind == kind]
        print(f"{label:13} {format_size(sum(p.size for p in own)):>10}  ({len(own)})")
    current = code_hash()
    other = [
        p for p in parts if p.kind in ("entry", "checkpoint") and p.code not in (None, current)
    ]
    print(f"{'other code':13} {format_size(sum(p.size for p in other)):>10}  ({len(other)})")
    total = sum(part.size for part in parts)
    print(f"{'total':13} {format_size(total):>10}  {store.root}")
    files = store.event_log.files()  # the log: not a part; rotated, not trimmed by gc
    if files:
        size = sum(path.stat().st_size for path in files)
        print(f"{'(events log)':13} {format_size(size):>10}  ({len(files)} files)")
    return 0


def list_projects(store: RunStore) -> int:
    now, projects = time.time(), registered_projects(store)
    for project in projects:
        models = ", ".join(map(str, project.models))
        print(
            f"{project.state:9}  {format_age(now - project.used):>4}  {project.host}:"
            f"{project.workspace}  (models: {models})"
        )
    print(f"{len(projects)} projects registered in {store.root}")
    return 0


def collect_garbage(store: RunStore, args: argparse.Namespace) -> int:
    if args.max_size is None and args.older_than is None:
        print("error: npdl cache gc needs --max-size and/or --older-than", file=sys.stderr)
        return 2
    forgotten = forget_gone(store, dry_run=args.dry_run)
    keep, projects = set(), []
    if args.keep_referenced:
        parts = inventory(store)
        registered, projects = registered_references(store, parts)
        keep = referenced(parts, args.models or [Path("models")]) | registered
    report = collect(store, args.max_size, args.older_than, keep, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for project in forgotten:
        forget = "would forget" if args.dry_run else "forgot"
        print(f"{forget} project {project.workspace} (its folder is gone or no project)")
    for part, why in report.removed:
        name = part.path.relative_to(store.root)
        print(f"{verb} {part.kind} {name} ({format_size(part.size)}, {why})")
    summary = (
        f"{verb} {len(report.removed)} parts: {format_size(report.size_before)} -> "
        f"{format_size(report.size_after)}"
    )
    if args.max_size is not None:
        summary += f" (limit {format_size(args.max_size)})"
    if args.keep_referenced:
        summary += f"; kept {report.kept} referenced entries ({len(projects)} projects)"
    if report.busy:
        summary += f"; left {len(report.busy)} lineages in use alone"
    print(summary + ("; nothing was removed (dry run)" if args.dry_run else ""))
    if args.max_size is not None and report.size_after > args.max_size:
        print("the store is still over the limit: what is left is referenced or in use")
    return 0


def verify_store(store: RunStore, set_aside: bool) -> int:
    checked, problems = store.verify()
    for problem in problems:
        print(f"corrupt: {problem.path}: {problem.reason}")
        if set_aside:
            store.set_aside(problem)
    moved = f"; moved to {store.corrupt_dir}" if set_aside and problems else ""
    print(f"{checked} entries and checkpoints checked, {len(problems)} corrupt{moved}")
    return 1 if problems else 0


def sanity_check(project: Path, output: Path | None) -> int:
    """The sanity stage's checks of ``project/params.yaml`` on its ``paths.data``."""
    import yaml

    from .config import ConfigError, config_from_dict
    from .io import save_json
    from .run.sanity import run_sanity

    params = project / "params.yaml"
    try:
        cfg = config_from_dict(yaml.safe_load(params.read_text()) or {})
        data = Path(cfg.paths.data)
        report = run_sanity(cfg, data if data.is_absolute() else project / data)
    except (ConfigError, OSError, ValueError, yaml.YAMLError) as error:
        print(f"error: {params}: {error}", file=sys.stderr)
        return 2
    if output is not None:
        save_json(output, report.to_json())
    print(report)
    return 1 if report.failure else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sanity":
        return sanity_check(args.project, args.output)
    store = open_store(args.store)
    if store is None:
        return 2 if args.store is not None or store_root().exists() else 0
    if args.cache_command == "ls":
        return list_store(store)
    if args.cache_command == "du":
        return disk_usage(store)
    if args.cache_command == "gc":
        return collect_garbage(store, args)
    if args.cache_command == "projects":
        return list_projects(store)
    return verify_store(store, args.set_aside)


if __name__ == "__main__":
    sys.exit(main())
