"""One source of truth for configuration: schema defaults equal conf/, each optimizer
takes only its own fields, ``lr``/``reg`` are shortcuts and not second copies, and a
search's winner never replaces a value without saying so."""

import ast
import dataclasses
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))

from common import CONF_DIR  # noqa: E402
from configuration import apply_winner, to_pipeline_config  # noqa: E402
from npdl.config import (  # noqa: E402
    AdamConfig,
    ConfigError,
    PipelineConfig,
    SGDConfig,
    SGDMomentumConfig,
)
from npdl.run.build import optimizer_arguments  # noqa: E402


def composed(overrides=()):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def differences(one, two, prefix=""):
    """Keys whose values differ between two nested dicts."""
    keys = set(one) | set(two)
    out = []
    for key in sorted(keys):
        a, b = one.get(key, "<missing>"), two.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict) and key not in ("space", "split"):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: schema {a!r} vs conf {b!r}")
    return out


def test_the_schema_defaults_are_the_composition_of_conf():
    conf = OmegaConf.to_container(composed(), resolve=True)
    schema = dataclasses.asdict(PipelineConfig())
    assert differences(schema, conf) == []
    # And so are the other optimizers' defaults, against their groups.
    for name, cls in [("sgd", SGDConfig), ("sgd_momentum", SGDMomentumConfig)]:
        group = OmegaConf.to_container(composed([f"optimizer={name}"]), resolve=True)
        assert differences(dataclasses.asdict(cls()), group["optimizer"]) == []


@pytest.mark.parametrize(
    ("name", "cls", "fields"),
    [
        ("adam", AdamConfig, {"weight_decay", "decoupled", "beta1", "beta2"}),
        ("sgd", SGDConfig, {"weight_decay", "decoupled"}),
        ("sgd_momentum", SGDMomentumConfig, {"weight_decay", "decoupled", "momentum", "nesterov"}),
    ],
)
def test_each_optimizer_group_holds_only_fields_its_optimizer_uses(name, cls, fields):
    cfg = to_pipeline_config(composed([f"optimizer={name}"]))
    assert type(cfg.optimizer) is cls
    assert set(optimizer_arguments(cfg.optimizer)) == fields  # every field reaches it


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["optimizer=sgd", "+optimizer.beta1=0.9"], "optimizer.beta1"),
        (["optimizer=sgd", "+optimizer.momentum=0.9"], "optimizer.momentum"),
        (["+optimizer.nesterov=true"], "optimizer.nesterov"),
        (["optimizer.name=sgd"], "optimizer.beta1"),  # Adam's fields left behind
    ],
)
def test_a_field_the_optimizer_does_not_use_is_refused_naming_it(overrides, key):
    with pytest.raises(ConfigError, match=rf"invalid configuration at '{key}'"):
        to_pipeline_config(composed(overrides))


def test_sgd_weight_decay_reaches_the_optimizer():
    cfg = to_pipeline_config(composed(["optimizer=sgd", "optimizer.weight_decay=0.01"]))
    assert optimizer_arguments(cfg.optimizer) == {"weight_decay": 0.01, "decoupled": False}
    cfg = to_pipeline_config(composed(["optimizer=sgd", "optimizer.decoupled=true"]))
    assert optimizer_arguments(cfg.optimizer)["decoupled"] is True


@pytest.mark.parametrize("override", ["lr=0.02", "optimizer.lr=0.02"])
def test_lr_and_optimizer_lr_set_one_value(override):
    cfg = composed([override])
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert plain["optimizer"]["lr"] == 0.02  # what params.yaml would hold
    assert plain["lr"] in (None, 0.02)  # the shortcut is unset or the same value
    assert to_pipeline_config(cfg).optimizer.lr == 0.02


def test_reg_and_model_reg_set_one_value():
    for override in ("reg=1e-4", "model.reg=1e-4"):
        assert to_pipeline_config(composed([override])).model.reg == 1e-4


def test_params_yaml_holds_the_learning_rate_once():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params["lr"] is None and params["reg"] is None
    assert params["optimizer"]["lr"] == 1e-3


def test_a_shortcut_that_disagrees_with_its_key_is_refused():
    cfg = PipelineConfig()
    cfg.lr, cfg.optimizer.lr = 0.5, 0.1
    from npdl.config import validate_config

    with pytest.raises(ConfigError, match=r"lr=0.5 is not allowed: expected null or the value"):
        validate_config(cfg)


def test_the_winner_replacing_a_value_says_so_and_pinned_keys_stay(capsys):
    cfg = to_pipeline_config(composed(["optimizer.lr=0.01"]))
    tuned = apply_winner(cfg, {"optimizer.lr": "0.0013", "model.dropout": "0.2"})
    out = capsys.readouterr().out
    assert tuned.optimizer.lr == 0.0013
    assert "tuned optimizer.lr=0.0013 replaces the configured optimizer.lr=0.01" in out
    assert "tune.pin=[optimizer.lr]" in out and "tune.enabled=false" in out
    assert "model.dropout" not in out  # the same value: nothing replaced
    pinned = to_pipeline_config(composed(["optimizer.lr=0.01", "tune.pin=[optimizer.lr]"]))
    kept = apply_winner(pinned, {"optimizer.lr": "0.0013"})
    assert kept.optimizer.lr == 0.01
    assert "keeping optimizer.lr=0.01" in capsys.readouterr().out


def test_a_pinned_key_must_be_in_the_space_and_leaves_the_search():
    from npdl.config import searched_space

    cfg = to_pipeline_config(composed(["tune.pin=[optimizer.lr]"]))
    assert "optimizer.lr" not in searched_space(cfg.tune) and len(searched_space(cfg.tune)) == 2
    with pytest.raises(ConfigError, match=r"tune.pin='model.reg' is not allowed: expected one of"):
        to_pipeline_config(composed(["tune.pin=[model.reg]"]))


def test_no_module_of_the_library_imports_hydra_omegaconf_or_dvc():
    forbidden = {"hydra", "omegaconf", "dvc"}
    found = []
    for path in sorted((ROOT / "src" / "npdl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert found == []


def test_no_library_file_is_over_500_lines_and_no_stage_over_80():
    sizes = {p: len(p.read_text().splitlines()) for p in (ROOT / "src").rglob("*.py")}
    assert {str(p): n for p, n in sizes.items() if n > 500} == {}
    stages = ["prepare_split", "normalize", "sanity", "tune", "train", "evaluate"]
    lengths = {s: len((ROOT / "stages" / f"{s}.py").read_text().splitlines()) for s in stages}
    assert {s: n for s, n in lengths.items() if n > 80} == {}


@pytest.mark.parametrize(
    ("sampler", "proposer", "scheduler"),
    [("hyperband", "random", "hyperband"), ("tpe", "tpe", "none"), ("bohb", "tpe", "hyperband")],
)
def test_the_model_based_and_multi_fidelity_samplers_are_choices_of_the_tune_stage(
    sampler, proposer, scheduler
):
    from launching import sweep_command

    cfg = to_pipeline_config(composed([f"tune.sampler={sampler}"]))
    command = sweep_command(cfg, "/tmp/sweep")
    assert "hydra/sweeper=npdl" in command
    assert f"hydra.sweeper.proposer={proposer}" in command
    assert f"hydra.sweeper.scheduler={scheduler}" in command
    # Every option of the search under the tune stage's own name, whatever the pair.
    assert f"hydra.sweeper.n_trials={cfg.tune.n_trials}" in command
    assert f"hydra.sweeper.epochs={cfg.tune.epochs}" in command


def test_a_proposer_and_a_scheduler_compose_and_a_named_pair_must_not_contradict_them():
    from launching import sweep_command

    cfg = to_pipeline_config(composed(["tune.proposer=tpe", "tune.scheduler=asha"]))
    command = sweep_command(cfg, "/tmp/sweep")
    assert {"hydra.sweeper.proposer=tpe", "hydra.sweeper.scheduler=asha"} <= set(command)
    with pytest.raises(
        ConfigError,
        match=r"tune.sampler='tpe' is not allowed: expected null when tune.proposer and "
        r"tune.scheduler are set \(tune.proposer=tpe tune.scheduler=asha; tpe is "
        r"tune.proposer=tpe tune.scheduler=none\)",
    ):
        to_pipeline_config(composed(["tune.scheduler=asha", "tune.sampler=tpe"]))
    with pytest.raises(ConfigError, match=r"tune.scheduler='pbt' is not allowed: expected one of"):
        to_pipeline_config(composed(["tune.scheduler=pbt"]))


def test_an_audit_is_refused_for_a_sampler_without_rungs():
    with pytest.raises(
        ConfigError, match=r"tune.audit=2 is not allowed: expected 0 for tune.scheduler=none"
    ):
        to_pipeline_config(composed(["tune=random", "tune.audit=2"]))
    with pytest.raises(
        ConfigError, match=r"tune.audit=2 is not allowed: expected 0 for tune.sampler=random"
    ):
        to_pipeline_config(composed(["tune.sampler=random", "tune.audit=2"]))
    assert to_pipeline_config(composed(["tune.audit=2"])).tune.audit == 2


def test_the_tune_stage_runs_its_trials_on_the_configured_launcher():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from launching import sweep_command

    def launcher_args(*overrides):
        command = sweep_command(to_pipeline_config(composed(overrides)), "/tmp/sweep")
        overrides = command[command.index("--multirun") + 1 :]
        OverridesParser.create().parse_overrides(overrides)  # every one is valid
        return [arg for arg in command if "launcher" in arg]

    assert launcher_args() == []  # Hydra's basic launcher: one trial after another
    # tune.n_jobs keeps its meaning: > 1 with the basic launcher is joblib.
    assert launcher_args("tune.n_jobs=2") == ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    assert launcher_args("tune.launcher=joblib", "tune.n_jobs=3")[1] == "hydra.launcher.n_jobs=3"
    assert launcher_args("tune.launcher=ray_local") == ["hydra/launcher=ray_local"]
    settings = (
        "tune.launcher_settings={ray: {init: {address: 'head:6379'}}, ray.remote.num_cpus: 2}"
    )
    assert launcher_args("tune.launcher=ray_cluster", settings) == [
        "hydra/launcher=ray_cluster",
        "++hydra.launcher.ray.init.address=head:6379",
        "++hydra.launcher.ray.remote.num_cpus=2",
    ]
    slurm = "tune.launcher_settings={partition: 'cpu long', setup: ['module load x']}"
    assert launcher_args("tune.launcher=slurm", slurm)[1:] == [
        '++hydra.launcher.partition="cpu long"',
        '++hydra.launcher.setup=["module load x"]',
    ]


def test_the_sweeper_takes_the_tune_stages_names_and_defaults():
    from hydra_plugins.npdl_sweepers.config import SearchConf
    from launching import SWEEPER_KEYS
    from npdl.config import TuneConfig

    sweeper = {f.name: f.default for f in dataclasses.fields(SearchConf)}
    tune = {f.name: f.default for f in dataclasses.fields(TuneConfig)}
    # Every option the tune stage passes is a field of both, under one name.
    assert set(SWEEPER_KEYS) <= set(sweeper) & set(tune)
    # And the defaults agree: the command line's search is the tune stage's, but for
    # epochs (null: the trials' own solver.epochs) and the seed (the pipeline's seed).
    shared = (set(sweeper) & set(tune)) - {"epochs", "seed"}
    assert shared >= {"proposer", "scheduler", "n_trials", "min_epochs", "eta", "n_jobs"}
    assert {k: sweeper[k] for k in shared} == {k: tune[k] for k in shared}


def test_a_replaced_value_is_printed_to_3_significant_digits(capsys):
    cfg = to_pipeline_config(composed(["optimizer.lr=0.01"]))
    tuned = apply_winner(cfg, {"optimizer.lr": "0.0025834120354216315"})
    assert tuned.optimizer.lr == 0.0025834120354216315  # the value itself: every digit
    out = capsys.readouterr().out
    assert "tuned optimizer.lr=0.00258 replaces the configured optimizer.lr=0.01" in out
