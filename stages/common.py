"""Glue shared by the stage entrypoints: Hydra config -> validated dataclass, paths.

Each stage is ``@stage_main`` on a ``run(cfg: PipelineConfig, run_dir: Path)``;
everything else is library code in ``src/npdl``.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from npdl.config import ConfigError, PipelineConfig, validate_config
from npdl.threads import set_num_threads, threads_per_worker

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PROJECT_ROOT / "conf"

# Launchers that run jobs in fresh interpreters (submitit locally or on SLURM) unpickle
# the job function by module name: they must find this folder's modules too.
_STAGES = str(Path(__file__).resolve().parent)
if _STAGES not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [_STAGES, os.environ.get("PYTHONPATH")])
    )


def to_pipeline_config(cfg: DictConfig) -> PipelineConfig:
    """Merge a composed config into the schema and check its values.

    Raises
    ------
    ConfigError
        Unknown key, wrong type or impossible value; the message names the key.
    """
    try:
        merged = OmegaConf.merge(OmegaConf.structured(PipelineConfig), cfg)
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        message = str(error).splitlines()[0]
        raise ConfigError(f"invalid configuration at {key!r}: {message}") from None
    return validate_config(config)


#: Top-level shortcuts and the keys they set (conf/config.yaml interpolates them).
SHORTCUTS = {"lr": "optimizer.lr", "reg": "model.reg"}


def apply_overrides(cfg: PipelineConfig, overrides: dict[str, str]) -> PipelineConfig:
    """``cfg`` with ``key -> override text`` applied, except keys set on this run's
    command line (those win), then validated again."""
    typed = {
        o.get_key_element().lstrip("+~")
        for o in _parser().parse_overrides(list(HydraConfig.get().overrides.task))
    }
    typed |= {SHORTCUTS[key] for key in typed if key in SHORTCUTS}
    node = OmegaConf.structured(cfg)
    for key, text in overrides.items():
        if key not in typed:
            OmegaConf.update(node, key, _parser().parse_override(f"{key}={text}").value())
    return to_pipeline_config(node)


def _parser() -> OverridesParser:
    return OverridesParser.create()


def project_path(relative: str) -> Path:
    """A configured path, relative paths taken from the project root."""
    path = Path(relative)
    return path if path.is_absolute() else PROJECT_ROOT / path


def in_multirun() -> bool:
    """Whether this job is one of a Hydra multirun (a sweep)."""
    return HydraConfig.get().mode == RunMode.MULTIRUN


def run_dir() -> Path:
    """The folder this run writes models and metrics into: Hydra's output folder,
    which the DVC stages set to the project root (``hydra.run.dir=.``)."""
    return Path(HydraConfig.get().runtime.output_dir)


def launcher_threads() -> int | None:
    """Threads each job of this sweep should use, from the launcher's configuration:
    the joblib launcher's ``cores // n_jobs`` (``n_jobs=-1``: one job per core), the
    CPUs a Ray task reserves (``ray.remote.num_cpus``) or a submitit job gets
    (``cpus_per_task``). None for single runs and sequential launchers."""
    if not in_multirun():
        return None
    launcher = HydraConfig.get().launcher
    n_jobs = OmegaConf.select(launcher, "n_jobs", default=None)
    if n_jobs is not None:
        n_jobs = int(n_jobs)
        return 1 if n_jobs < 0 else threads_per_worker(n_jobs)
    for key in ("ray.remote.num_cpus", "cpus_per_task"):
        cpus = OmegaConf.select(launcher, key, default=None)
        if cpus:
            return max(1, int(cpus))
    return None


def match_threads_to_launcher() -> None:
    """Give each of the sweep's parallel jobs its share of the cores (BLAS threads and
    npdl's update threads), so that two jobs on two cores run two threads, not four."""
    threads = launcher_threads()
    if threads is not None:
        set_num_threads(threads)


def stage_main(run):
    """Wrap ``run(cfg: PipelineConfig)`` as a Hydra app over ``conf/``; the job returns
    what ``run`` returns (sweepers read it).

    Configuration, data and file-system errors (a missing file, a full disk, an
    unreachable server) end the process with a one-line message (exit 2) instead of a
    traceback.
    """

    @hydra.main(version_base="1.3", config_path="../conf", config_name="config")
    @functools.wraps(run)
    def main(cfg: DictConfig):
        try:
            match_threads_to_launcher()
            config = to_pipeline_config(cfg)
            return run(config)
        except (ConfigError, OSError, ValueError, RuntimeError) as error:
            if in_multirun():
                raise  # Hydra records the job as failed; the sweeper reports it
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return main
