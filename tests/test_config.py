"""conf/ composes, validates and stays equal to params.yaml."""

import dataclasses
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))

from common import CONF_DIR, to_pipeline_config  # noqa: E402
from compose_params import compose_params  # noqa: E402
from npdl.config import ConfigError, PipelineConfig  # noqa: E402


def composed(overrides=()):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_params_yaml_is_the_composition_of_conf(tmp_path):
    compose_params(tmp_path / "params.yaml", [])
    expected = yaml.safe_load((tmp_path / "params.yaml").read_text())
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert committed == expected, "params.yaml is stale: run `python stages/compose_params.py`"


def test_conf_lists_every_schema_key():
    """Every key of the schema is in conf/, so `dvc exp run -S key=...` reaches it."""

    def keys(node, prefix=""):
        out = set()
        for key, value in node.items():
            out.add(prefix + key)
            if isinstance(value, dict) and key not in ("split", "activation_kwargs", "space"):
                out |= keys(value, f"{prefix}{key}.")
        return out

    from omegaconf import OmegaConf

    schema = OmegaConf.to_container(OmegaConf.structured(PipelineConfig))
    conf = OmegaConf.to_container(composed())
    assert keys(conf) == keys(schema)


def test_defaults_validate_and_top_level_lr_reg_flow_into_groups():
    cfg = to_pipeline_config(composed(["lr=0.05", "reg=1e-4"]))
    assert cfg.optimizer.lr == 0.05 and cfg.model.reg == 1e-4
    assert dataclasses.is_dataclass(cfg)


def test_experiment_fast_composes_a_narrower_projected_net_without_search():
    cfg = to_pipeline_config(composed(["+experiment=fast"]))
    assert cfg.model.input_pca == 800 and cfg.model.hidden_size == [1024, 512]
    assert not cfg.tune.enabled and cfg.normalize.method == "zca"


def test_experiment_course_baseline_composes():
    cfg = to_pipeline_config(composed(["+experiment=course_baseline"]))
    assert cfg.model.activation == "sigmoid" and cfg.model.hidden_size == [100]
    assert cfg.optimizer.name == "sgd"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+model.hidden_sizes=[3]"], "model.hidden_sizes"),
        (["solver.epochs=ten"], "solver.epochs"),
        (["lr=0"], "optimizer.lr=0.0 is not allowed: expected a learning rate > 0"),
        (["lr=-1e-3"], "optimizer.lr"),
        (["data.split.train=0.5"], "fractions summing to 1"),
        (["model.hidden_size=[512,0]"], "model.hidden_size"),
        (["model.activation=swish"], "model.activation='swish' is not allowed: expected one of"),
        (["optimizer.name=rmsprop"], "optimizer.name"),
        (["solver.schedule=linear"], "solver.schedule"),
        (["model.dropout=1.5"], "model.dropout"),
        (["data.limit_files=0"], "data.limit_files"),
        (["tune.n_trials=0"], "tune.n_trials=0 is not allowed: expected a positive number"),
        (["tune.sampler=bayes"], "tune.sampler='bayes' is not allowed: expected one of"),
        (["optimizer.name=adamax"], "expected one of"),
        (["lr=inf"], "lr=inf is not allowed: expected a finite number"),
        (["optimizer.weight_decay=nan"], "optimizer.weight_decay=nan is not allowed: expected a"),
        (["data.split.train=inf"], "data.split.train=inf is not allowed: expected a finite"),
        (["data.source_md5=abc"], "data.source_md5='abc' is not allowed: expected null or the 32"),
        (["tune.launcher=kubernetes"], "tune.launcher='kubernetes' is not allowed: expected one"),
        (["tune.launcher_settings={partition: cpu}"], "expected null for tune.launcher=basic"),
        (["tune.keep_sweeps=0"], "tune.keep_sweeps=0 is not allowed: expected >= 1"),
        (["paths.run_store_max_gb=0"], "paths.run_store_max_gb=0.0 is not allowed"),
        (["evaluate.tta_shift=32"], "evaluate.tta_shift=32 is not allowed: expected a number"),
        (["model.input_pca=0"], "model.input_pca=0 is not allowed: expected null (the whole"),
        (["model.input_pca=4000"], "model.input_pca=4000 is not allowed: expected at most the"),
        (
            ["model.input_pca=800", "normalize=standardize"],
            "model.input_pca=800 is not allowed: expected null with normalize.method=standardize",
        ),
    ],
)
def test_impossible_configs_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        to_pipeline_config(composed(overrides))


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_a_non_finite_value_of_any_float_key_is_refused_naming_it(bad):
    from npdl.config import float_values, validate_config

    keys = [key for key, _ in float_values(PipelineConfig())]
    assert {"optimizer.lr", "solver.warmup_epochs", "data.split.val", "normalize.zca_eps"} <= set(
        keys
    )
    for key in keys:
        cfg = PipelineConfig()
        *path, name = key.split(".")
        node = cfg
        for part in path:
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        if isinstance(node, dict):
            node[name] = bad
        else:
            setattr(node, name, bad)
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)}={bad!r} is not allowed: "):
            validate_config(cfg)


def test_an_empty_search_space_is_refused_with_an_example():
    cfg = composed()
    OmegaConf.update(cfg, "tune.space", {}, merge=False)
    with pytest.raises(ConfigError, match=r"tune.space=\{\} is not allowed: expected at least one"):
        to_pipeline_config(cfg)


def test_a_stage_refuses_bad_config_before_any_work(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "train.py"), "lr=-1", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert "optimizer.lr=-1.0 is not allowed" in result.stderr
    assert not (tmp_path / "models").exists()


def test_tune_passes_its_own_overrides_on_to_the_trials():
    from launching import sweep_command

    cfg = to_pipeline_config(composed())
    typed = [
        "paths.run_store=/shared/cache",  # a setting of the trials: passed on
        "solver.train_fraction=0.5",  # the search sets it (tune.train_fraction)
        "model.dropout=0.1",  # a searched key
        "lr=0.1",  # the shortcut of a searched key
    ]
    command = sweep_command(cfg, "/tmp/sweep", typed)
    assert "paths.run_store=/shared/cache" in command
    assert f"solver.train_fraction={cfg.tune.train_fraction}" in command
    for dropped in typed[1:]:
        assert dropped not in command


def test_npdl_debug_shows_the_full_traceback(tmp_path):
    command = [sys.executable, str(ROOT / "stages" / "train.py"), "lr=-1"]
    command.append(f"hydra.run.dir={tmp_path}")
    plain = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert "NPDL_DEBUG=1 shows the full traceback" in plain.stderr
    env = {**os.environ, "NPDL_DEBUG": "1"}
    debug = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr and "validate_config" in debug.stderr
    assert "optimizer.lr=-1.0 is not allowed" in debug.stderr


PROBE = """
import atexit, runpy, sys
def report():
    print("loaded:", *sorted(m for m in sys.modules if m.startswith(("npdl.", "hydra_plugins."))))
atexit.register(report)
sys.path.insert(0, sys.argv[1])
sys.argv = [sys.argv[1] + "/train.py", *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_single_training_run_never_imports_the_search_package(tmp_path):
    # The stage stops at validation (lr=-1), after Hydra's plugin scan (which imports
    # our sweepers) and after every import of the stage itself.
    command = [sys.executable, "-c", PROBE, str(ROOT / "stages"), "lr=-1"]
    command.append(f"hydra.run.dir={tmp_path}")
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 2, result.stderr
    loaded = result.stdout.split("loaded:")[1].split()
    assert "npdl.run.training" in loaded and "hydra_plugins.npdl_sweepers.sweepers" in loaded
    assert [name for name in loaded if name.startswith("npdl.search")] == []


def _config_classes():
    import npdl.config as config

    return [
        cls
        for cls in vars(config).values()
        if isinstance(cls, type)
        and dataclasses.is_dataclass(cls)
        and cls.__module__ in (config.__name__, "npdl.tune_config")
    ]


def test_every_constrained_name_is_a_field_of_its_class():
    """A typo in a ``constraints`` table (or in ``PipelineConfig.rules``) fails here,
    not silently: each key names a real field, none of them a field of the schema."""
    classes = _config_classes()
    assert {c.__name__ for c in classes} >= {"TuneConfig", "SGDMomentumConfig", "PathsConfig"}
    for cls in classes:
        fields = {f.name for f in dataclasses.fields(cls)}
        assert set(getattr(cls, "constraints", {})) <= fields, cls.__name__
        assert not {"constraints", "rules"} & fields, cls.__name__
    groups = {
        f.name: f.default_factory()
        for f in dataclasses.fields(PipelineConfig)
        if f.default_factory is not dataclasses.MISSING
    }
    for group, table in PipelineConfig.rules.items():
        assert group in groups
        for key in table:
            *path, name = key.split(".")
            owner = groups[path[0]] if path else PipelineConfig()
            assert name in {f.name for f in dataclasses.fields(owner)}, key
    # The tables are class-level: the structured config has no such keys.
    schema = OmegaConf.structured(PipelineConfig)
    assert "rules" not in schema and "constraints" not in schema.tune


def _refusal(constraint, value, owner=None):
    from npdl.constraints import ConfigError

    try:
        constraint.check("group.key", value, owner)
    except ConfigError as error:
        return str(error)
    return None


def test_each_kind_of_constraint_accepts_refuses_and_says_what_would_be_right():
    from npdl.constraints import Interval, Matches, Nullable, OneOf, Positive, Rule, Satisfies

    probability = Interval(0, 1, closed="left", what="a probability")
    assert [_refusal(probability, v) for v in (0, 0.5)] == [None, None]
    assert (
        _refusal(probability, 1) == "group.key=1 is not allowed: expected a probability in [0, 1)"
    )
    assert _refusal(Interval(0, 1, closed="right"), 0).endswith("expected a value in (0, 1]")
    assert _refusal(Interval(0, 1, closed="both"), 1) is None
    assert _refusal(Interval(None, 1, closed="neither"), 1).endswith("expected < 1")
    assert _refusal(Interval(2, None, closed="left", what="a factor"), 1).endswith("a factor >= 2")
    assert _refusal(Positive(), 1e-9) is None
    assert _refusal(Positive(), 0.0) == "group.key=0.0 is not allowed: expected > 0"
    assert _refusal(Positive(expected="a positive size"), -1).endswith("expected a positive size")
    with pytest.raises(ValueError, match="closed="):
        Interval(0, 1, closed="open")

    registry = {"b": 1, "a": 2}
    choice = OneOf(registry, sort=True)
    assert _refusal(choice, "a") is None
    assert _refusal(choice, "c") == "group.key='c' is not allowed: expected one of a, b"
    registry["c"] = 3  # a registry filled after the table was written
    assert _refusal(choice, "c") is None
    assert _refusal(OneOf(("z", "y")), "x").endswith("expected one of z, y")
    folded = OneOf(("relu",), ignore_case=True)
    assert _refusal(folded, "ReLU") is None
    assert _refusal(folded, "Swish").startswith("group.key='swish' is not allowed")

    optional = Nullable(Positive("a size"))
    assert [_refusal(optional, v) for v in (None, 2.0)] == [None, None]
    assert _refusal(optional, 0).endswith("expected null or a size > 0")
    assert _refusal(Nullable(OneOf(("a",)), expected="a or nothing"), "b").endswith("a or nothing")

    hexadecimal = Matches(r"[0-9a-f]{4}")
    assert _refusal(hexadecimal, "0f0f") is None
    assert [_refusal(hexadecimal, v) is None for v in ("0f0f0", "xyz!", 1234)] == [False] * 3

    total = Satisfies(
        lambda d: sum(d.values()) == 1, lambda d: f"a sum of 1, not {sum(d.values())}"
    )
    assert _refusal(total, {"a": 1}) is None
    assert (
        _refusal(total, {"a": 2}) == "group.key={'a': 2} is not allowed: expected a sum of 1, not 2"
    )

    within = Rule(lambda owner: None if owner["low"] <= owner["high"] else "at most high")
    assert _refusal(within, 1, {"low": 1, "high": 2}) is None
    assert _refusal(within, 3, {"low": 3, "high": 2}) == (
        "group.key=3 is not allowed: expected at most high"
    )
