"""Glue shared by the stage entrypoints: the Hydra app wrapper, paths, the run folder.

Each stage is ``main = stage_main(run)`` over a ``run(cfg: PipelineConfig)``; the rest
is library code in ``src/npdl`` or the stage glue beside this file (configuration:
``stages/configuration.py``; launchers: ``stages/launching.py``).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from configuration import to_pipeline_config
from launching import match_threads_to_launcher
from npdl.config import ConfigError, PipelineConfig, debugging

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PROJECT_ROOT / "conf"


def project_path(relative: str) -> Path:
    """A configured path, relative paths taken from the project root."""
    path = Path(relative)
    return path if path.is_absolute() else PROJECT_ROOT / path


def run_store(cfg: PipelineConfig):
    """The run store: ``paths.run_store`` (from the project root), else
    ``$NPDL_RUN_STORE``, else the user's cache folder; shared by every workspace. This
    workspace is registered in it, so that a gc run from elsewhere keeps what its
    models came from (``npdl cache projects``)."""
    from npdl.run import RunStore
    from npdl.run.projects import register_project
    from npdl.run.store import store_root

    store = RunStore(store_root(cfg.paths.run_store, PROJECT_ROOT))
    try:
        register_project(store, PROJECT_ROOT, [project_path(cfg.paths.models)])
    except OSError as error:  # a read-only store still serves hits
        print(f"warning: cannot register {PROJECT_ROOT} in {store.root}: {error}", file=sys.stderr)
    return store


def bound_run_store(cfg: PipelineConfig, store) -> None:
    """Trim the store to ``paths.run_store_max_gb``, keeping the entries this run's and
    the workspace's leaderboard and model came from (``npdl cache gc --keep-referenced``)."""
    from npdl.run.gc import bound_store

    models = {project_path(cfg.paths.models), run_dir() / cfg.paths.models}
    bound_store(store, cfg.paths.run_store_max_gb, sorted(models))


def in_multirun() -> bool:
    """Whether this job is one of a Hydra multirun (a sweep)."""
    return HydraConfig.get().mode == RunMode.MULTIRUN


def run_dir() -> Path:
    """The folder this run writes models and metrics into: Hydra's output folder,
    which the DVC stages set to the project root (``hydra.run.dir=.``)."""
    return Path(HydraConfig.get().runtime.output_dir)


def stage_main(run):
    """Wrap ``run(cfg: PipelineConfig)`` as a Hydra app over ``conf/``; the job returns
    what ``run`` returns (sweepers read it).

    Configuration, data and file-system errors (a missing file, a full disk, an
    unreachable server) end the process with a one-line message (exit 2) instead of a
    traceback; in a sweep's job, or with ``NPDL_DEBUG=1`` (or ``HYDRA_FULL_ERROR=1``),
    they are raised.
    """

    @hydra.main(version_base="1.3", config_path="../conf", config_name="config")
    @functools.wraps(run)
    def main(cfg: DictConfig):
        try:
            match_threads_to_launcher()
            config = to_pipeline_config(cfg)
            return run(config)
        except (ConfigError, OSError, ValueError, RuntimeError) as error:
            if in_multirun() or debugging():
                raise  # a sweep's job: Hydra records it as failed and the sweeper reports it
            print(f"error: {error}", file=sys.stderr)
            print("(NPDL_DEBUG=1 shows the full traceback)", file=sys.stderr)
            sys.exit(2)

    return main
