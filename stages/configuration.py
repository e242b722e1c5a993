"""Hydra config -> the validated ``PipelineConfig``, and applying a search's winner.

The one place that knows Hydra's and OmegaConf's side of the configuration; the
library (``npdl.config``) holds the schema and the value checks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import hydra_plugins.npdl_resolvers  # noqa: F401  (the resolvers conf/ uses)
from npdl.config import OPTIMIZER_CONFIGS, ConfigError, PipelineConfig, validate_config
from npdl.io import load_json
from npdl.overrides import shown_text

#: Top-level shortcuts and the keys they set.
SHORTCUTS = {"lr": "optimizer.lr", "reg": "model.reg"}


def typed_keys() -> set[str]:
    """Keys given on this run's command line (empty outside a Hydra run)."""
    if not HydraConfig.initialized():
        return set()
    overrides = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    return {override.get_key_element().lstrip("+~") for override in overrides}


def to_pipeline_config(cfg: DictConfig) -> PipelineConfig:
    """Merge a composed config into the schema and check its values.

    The optimizer group is merged into the dataclass its ``name`` picks, so a field
    that optimizer does not use is refused. A shortcut (``lr``, ``reg``) that is set
    sets its key, unless that key itself was typed on this run's command line.

    Raises
    ------
    ConfigError
        Unknown key, wrong type or impossible value; the message names the key.
    """
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
        optimizer = plain.pop("optimizer", {})
        config = _merge(PipelineConfig, plain, "")
        name = optimizer.get("name", "adam")
        if name not in OPTIMIZER_CONFIGS:
            raise ConfigError(
                f"optimizer.name={name!r} is not allowed: expected one of "
                f"{', '.join(sorted(OPTIMIZER_CONFIGS))}"
            )
        try:
            config.optimizer = _merge(OPTIMIZER_CONFIGS[name], optimizer, "optimizer.")
        except ConfigError as error:
            raise ConfigError(
                f"{error} (optimizer.name={name} takes "
                f"{', '.join(f.name for f in dataclasses.fields(OPTIMIZER_CONFIGS[name]))}; "
                f"choose an optimizer with its group, optimizer={name})"
            ) from None
    except OmegaConfBaseException as error:
        raise ConfigError(f"invalid configuration: {str(error).splitlines()[0]}") from None
    typed = typed_keys()
    for shortcut, key in SHORTCUTS.items():
        value = getattr(config, shortcut)
        if value is not None and key not in typed:
            _set(config, key, value)
        elif value is not None:
            setattr(config, shortcut, _get(config, key))  # the typed key wins
    return validate_config(config)


def _merge(schema, values: dict, prefix: str):
    """``values`` typed by the dataclass ``schema``; a dict-valued field (``tune.space``)
    takes the given dict whole instead of merging it into the schema's default."""
    try:
        node = OmegaConf.structured(schema)
        _clear_plain_dicts(node)
        return OmegaConf.to_object(OmegaConf.merge(node, values))
    except OmegaConfBaseException as error:
        key = f"{prefix}{getattr(error, 'full_key', '')}"
        message = str(error).splitlines()[0]
        raise ConfigError(f"invalid configuration at {key!r}: {message}") from None


def _clear_plain_dicts(node: DictConfig) -> None:
    for key in list(node.keys()):
        if OmegaConf.get_type(node, key) is dict:
            node[key] = {}
        elif isinstance(node[key], DictConfig):
            _clear_plain_dicts(node[key])


def _get(config, key: str):
    group, field = key.split(".")
    return getattr(getattr(config, group), field)


def _set(config, key: str, value) -> None:
    group, field = key.split(".")
    setattr(getattr(config, group), field, value)


def apply_winner(cfg: PipelineConfig, winner: dict[str, str]) -> PipelineConfig:
    """``cfg`` with a search's best ``key -> override text`` applied, then validated.

    Keys typed on this run's command line, and keys of ``tune.pin``, keep their
    value. Every key whose value the winner replaces is printed with both values and
    how to keep one's own.
    """
    typed = typed_keys()
    typed |= {SHORTCUTS[key] for key in typed if key in SHORTCUTS}
    node = OmegaConf.structured(cfg)
    parser = OverridesParser.create()
    for key, text in winner.items():
        current = OmegaConf.select(node, key)
        if key in typed or key in cfg.tune.pin:
            print(f"keeping {key}={current} (given; the search's winner has {shown_text(text)})")
            continue
        tuned = parser.parse_override(f"{key}={text}").value()
        if tuned != current:
            print(
                f"tuned {key}={shown_text(text)} replaces the configured {key}={current}; to "
                f"keep yours, pin it (tune.pin=[{key}]: the search leaves it out) or set "
                "tune.enabled=false"
            )
        OmegaConf.update(node, key, tuned)
    merged = OmegaConf.to_object(node)
    for shortcut, key in SHORTCUTS.items():  # a shortcut holds no stale second copy
        if getattr(merged, shortcut) is not None:
            setattr(merged, shortcut, _get(merged, key))
    return validate_config(merged)


def apply_tune_winner(cfg: PipelineConfig, best_overrides: Path) -> PipelineConfig:
    """``cfg`` with the tune stage's winner (``best_overrides.json``) applied."""
    if not best_overrides.is_file():
        raise FileNotFoundError(
            f"tune.enabled is true but {best_overrides} does not exist: run the tune stage "
            "(`dvc repro tune`) or set tune.enabled=false"
        )
    return apply_winner(cfg, load_json(best_overrides)["overrides"] or {})
