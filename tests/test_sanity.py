"""The checks before training (npdl.sanity): the gradient check names a broken layer, the
loss at initialisation, the overfit ladder names a wrong learning rate; the sanity stage
stops `dvc repro` before tuning; `npdl sanity` runs the same checks."""

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import colour_images
from npdl import (
    ELU,
    SGD,
    Affine,
    ClassificationNet,
    CrossEntropyFromLogits,
    HiddenLayer,
    LeakyRelu,
    Maxout,
    Relu,
    Sigmoid,
    Tanh,
    sanity,
)
from npdl.cli import main as npdl_main
from npdl.config import ConfigError, PipelineConfig, config_from_dict
from npdl.data.prepared import PreparedData, write_prepared
from npdl.gradient_check import gradient_errors
from npdl.run.sanity import run_sanity

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))

import normalize  # noqa: E402  (the normalize stage's run())

ACTIVATIONS = [Sigmoid(), Tanh(), Relu(), LeakyRelu(), ELU(), Maxout(2)]


RELU = Relu()


def small_net(activation=RELU, **kwargs):
    arguments = {
        "num_layer": 3,
        "input_size": 12,
        "hidden_size": [16, 8],
        "num_classes": 4,
        "init": "he",
        "rng": 0,
        **kwargs,
    }
    return ClassificationNet(activation, **arguments)


def batch(n=8, features=12, classes=4, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(np.float32), rng.integers(0, classes, n)


def separable(n=100, features=32, classes=4, seed=2):
    """Images a small net overfits: class means apart, plus noise; labels in turn."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    means = rng.standard_normal((classes, features))
    images = means[labels] + 0.5 * rng.standard_normal((n, features))
    return images.astype(np.float32), labels


# -- the gradient check -----------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: a.name)
@pytest.mark.parametrize(
    "options",
    [{}, {"batch_norm": True, "dropout": 0.3, "reg": 0.05}],
    ids=["plain", "batch-norm-dropout-l2"],
)
def test_the_gradient_check_passes_on_a_correct_net_of_each_activation(activation, options):
    model = small_net(activation, **options)
    images, labels = batch()
    result = sanity.gradient_check(model, images, labels, CrossEntropyFromLogits(0.1))
    assert result.status == "passed", result.message
    parts = {part["part"]: part["relative_errors"] for part in result.figures["parts"]}
    # Every parameter is checked in its layer and through model.backward.
    checked = {name for errors in list(parts.values())[:-2] for name in errors} - {"input"}
    assert checked == set(model.params) == set(parts["model.backward (all layers and the L2 term)"])
    assert "loss (CrossEntropyFromLogits)" in parts
    assert 0 <= result.figures["largest_error"] <= 1e-5


def test_a_fixed_first_projection_is_not_checked_and_the_model_is_left_alone():
    projection = np.random.default_rng(3).standard_normal((12, 6)).astype(np.float32)
    model = small_net(input_projection=projection, batch_norm=True, dropout=0.5)
    state = {k: v.copy() for k, v in model.state_dict().items()}
    generator = json.dumps(model.rng.bit_generator.state)
    global_draw = np.random.get_state()[1].copy()  # noqa: NPY002 - checks it is left alone
    result = sanity.gradient_check(model, *batch())
    assert result.status == "passed", result.message
    assert not any("Projection" in part["part"] for part in result.figures["parts"])
    assert all("P0" not in part["relative_errors"] for part in result.figures["parts"])
    assert all(np.array_equal(v, state[k]) for k, v in model.state_dict().items())
    assert json.dumps(model.rng.bit_generator.state) == generator
    assert np.array_equal(np.random.get_state()[1], global_draw)  # noqa: NPY002
    assert model.params["W1"].dtype == np.float32


def broken(method, change):
    """``method`` with ``change(layer, dx) -> dx`` applied after it (a bug in a backward)."""

    def backward(self, dout):
        return change(self, method(self, dout))

    return backward


def flip_bias_gradient(layer, dx):
    layer.grads["b"] *= -1
    return dx


def flip_beta_gradient(layer, dx):
    layer.grads["beta"] *= -1
    return dx


@pytest.mark.parametrize(
    ("cls", "change", "expected"),
    [
        (Affine, flip_bias_gradient, "model.layers[2] (Affine: W3, b3), 'b3'"),
        (Affine, lambda layer, dx: -dx, "model.layers[2] (Affine: W3, b3), its input gradient"),
        (
            HiddenLayer,
            flip_beta_gradient,
            "model.layers[0] (HiddenLayer: W1, b1, gamma1, beta1), 'beta1'",
        ),
    ],
    ids=["affine-bias", "affine-input", "hidden-layer-beta"],
)
def test_a_broken_backward_pass_fails_naming_its_layer_and_parameter(
    monkeypatch, cls, change, expected
):
    monkeypatch.setattr(cls, "backward", broken(cls.backward, change))
    result = sanity.gradient_check(small_net(batch_norm=True, dropout=0.2), *batch())
    assert result.status == "failed"
    assert result.message.startswith(f"gradient check failed: {expected}: relative error ")
    assert "its backward pass does not match its forward pass" in result.message


def test_a_broken_activation_fails_naming_the_activation_layer(monkeypatch):
    monkeypatch.setattr(Tanh, "backward", lambda self, dout, cache: dout * (1.0 + cache * cache))
    result = sanity.gradient_check(small_net(Tanh()), *batch())
    assert result.status == "failed"
    assert "model.layers[1] (ActivationLayer(Tanh)), its input gradient" in result.message


def test_a_missing_l2_term_fails_in_model_backward_only(monkeypatch):
    original = ClassificationNet.backward

    def without_l2(self, dy):
        strength, self.reg_strength = self.reg_strength, 0.0
        try:
            return original(self, dy)
        finally:
            self.reg_strength = strength

    monkeypatch.setattr(ClassificationNet, "backward", without_l2)
    result = sanity.gradient_check(small_net(reg=0.5), *batch())
    assert result.status == "failed"
    assert "model.backward (all layers and the L2 term), 'W" in result.message
    layers = [p for p in result.figures["parts"] if p["part"].startswith("model.layers")]
    assert layers and all(max(p["relative_errors"].values()) < 1e-5 for p in layers)


def test_an_entry_at_a_kink_is_left_out_and_the_rest_still_checked():
    # One pre-activation (sample 0, unit 3) within rounding of LeakyReLU's kink: a step
    # of 1e-5 crosses it, so its two one-sided differences disagree.
    model = small_net(LeakyRelu(), hidden_size=[16], num_layer=2)
    images, labels = batch()
    weights = model.params["W1"].astype(np.float64)
    model.params["b1"][3] = -(images[0].astype(np.float64) @ weights[:, 3])
    parts = {part.label: part for part in gradient_errors(model, images, labels, entries=500)}
    activation = parts["model.layers[1] (ActivationLayer(LeakyRelu))"]
    network = parts["model.backward (all layers and the L2 term)"]
    assert activation.kinks >= 1 and network.kinks >= 1
    assert all(e is not None and e < 1e-5 for p in parts.values() for e in p.errors.values())
    assert sanity.gradient_check(model, images, labels, entries=500).status == "passed"


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("activation", [Relu(), LeakyRelu(), Maxout(3)], ids=lambda a: a.name)
def test_no_false_failure_on_piecewise_linear_nets_whatever_the_seed(activation, seed):
    model = small_net(activation, hidden_size=[64, 32], rng=seed)
    images, labels = batch(seed=seed)
    result = sanity.gradient_check(model, images, labels, entries=30, seed=seed)
    assert result.status == "passed", result.message


class CourseStyleNet:
    """The course's own contract: params/grads dicts, forward/backward, no layers."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.params = {"W1": rng.standard_normal((12, 4)) * 0.1, "b1": np.zeros(4)}
        self.grads = {"W1": np.zeros((12, 4)), "b1": np.zeros(4)}
        self.reg = {}
        self.flip = False

    def train(self):  # the course's returns nothing
        pass

    def forward(self, X):
        self.cache = X
        return X @ self.params["W1"] + self.params["b1"]

    def backward(self, dy):
        self.grads["W1"] = self.cache.T @ dy * (-1 if self.flip else 1)
        self.grads["b1"] = dy.sum(axis=0)
        return self.grads


def test_a_course_style_network_is_checked_as_a_whole():
    images, labels = batch()
    result = sanity.gradient_check(CourseStyleNet(), images, labels)
    assert result.status == "passed", result.message
    net = CourseStyleNet()
    net.flip = True
    result = sanity.gradient_check(net, images, labels)
    assert result.status == "failed" and "model.backward" in result.message
    assert "'W1'" in result.message


# -- the loss at initialisation -------------------------------------------------------


def test_the_initial_loss_is_about_ln_c():
    images, labels = separable(classes=4, features=12)
    result = sanity.initial_loss_check(small_net(), images, labels, CrossEntropyFromLogits(0.1))
    assert result.status == "passed", result.message
    assert result.figures["ln_classes"] == pytest.approx(np.log(4), rel=1e-2)
    assert abs(result.figures["loss"] - np.log(4)) <= 0.5 * np.log(4)


def test_too_large_initial_weights_fail_the_initial_loss():
    images, labels = separable(classes=4, features=12)
    model = small_net(init="std", std=10.0)
    result = sanity.initial_loss_check(model, images, labels)
    assert result.status == "failed"
    assert "expected about ln(4) = 1.39" in result.message
    assert "initial weights are too large" in result.message


def test_labels_outside_the_outputs_fail_the_initial_loss():
    images, labels = separable(classes=4, features=12)
    result = sanity.initial_loss_check(small_net(), images, labels + 3)
    assert result.status == "failed" and "labels from 3 to 6" in result.message


# -- the overfit ladder ---------------------------------------------------------------


def test_the_overfit_ladder_passes_on_a_correct_net():
    images, labels = separable()
    model = small_net(input_size=32, hidden_size=[64], num_layer=2, dropout=0.5, reg=1.0)
    result = sanity.overfit_check(model, images, labels, learning_rate=1e-2, steps=200)
    assert result.status == "passed", result.message
    sizes = result.figures["sizes"]
    assert [size["samples"] for size in sizes] == [1, 10, 100]
    assert all(size["accuracy"] >= 0.99 and size["steps"] <= 200 for size in sizes)
    assert model.dropout == 0.5 and model.reg_strength == 1.0  # its copy trained, not it


@pytest.mark.parametrize("optimizer", ["adam", "sgd_momentum", SGD])
def test_a_learning_rate_of_1e4_fails_the_overfit_check_naming_it(optimizer):
    images, labels = separable()
    model = small_net(input_size=32, hidden_size=[64], num_layer=2, batch_norm=True)
    result = sanity.overfit_check(model, images, labels, optimizer=optimizer, learning_rate=1e4)
    assert result.status == "failed"
    assert "lr=10000.0" in result.message and "learning rate is probably too high" in result.message
    assert result.message.startswith("overfit check failed: ")
    failed = result.figures["sizes"][-1]
    assert not failed["passed"] and f"{failed['samples']} image" in result.message


def test_a_learning_rate_far_too_low_says_so():
    images, labels = separable()
    model = small_net(input_size=32, hidden_size=[64], num_layer=2)
    result = sanity.overfit_check(model, images, labels, learning_rate=1e-9, steps=20)
    assert result.status == "failed"
    assert "the learning rate may be too low (lr=1e-09)" in result.message


def test_labels_that_do_not_match_the_images_fail_to_overfit():
    images, _ = separable(n=100, features=8)
    noise = np.random.default_rng(5).integers(0, 4, 100)
    model = small_net(input_size=8, hidden_size=[4], num_layer=2)
    result = sanity.overfit_check(model, images, noise, learning_rate=1e-2, steps=100)
    assert result.status == "failed" and "labels do not match the images" in result.message


# -- all of them ----------------------------------------------------------------------


def test_check_stops_at_the_first_failure_and_its_report_repeats(monkeypatch):
    images, labels = separable()
    model = small_net(input_size=32, hidden_size=[64], num_layer=2, batch_norm=True)
    one = sanity.check(model, images, labels, learning_rate=1e-2)
    two = sanity.check(model, images, labels, learning_rate=1e-2)
    assert one.passed and one.status == "passed", str(one)
    assert json.dumps(one.to_json(), sort_keys=True) == json.dumps(two.to_json(), sort_keys=True)
    assert [c.name for c in one.checks] == ["gradients", "initial_loss", "overfit"]
    one.raise_for_failure()  # nothing to raise

    monkeypatch.setattr(Affine, "backward", broken(Affine.backward, flip_bias_gradient))
    report = sanity.check(model, images, labels, learning_rate=1e-2)
    assert report.status == "failed" and report.failure.name == "gradients"
    assert [c.status for c in report.checks] == ["failed", "skipped", "skipped"]
    assert "the gradients check failed" in report.checks[2].message
    with pytest.raises(sanity.SanityCheckFailed, match=r"model.layers\[1\] \(Affine: W2, b2\)"):
        report.raise_for_failure()


# -- configuration, the pipeline's glue and `npdl sanity` ------------------------------


def test_params_yaml_reads_into_the_schema_without_hydra():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert config_from_dict(params) == PipelineConfig()
    params["sanity"]["gradient_tolerance"] = "1e-05"  # YAML 1.1 reads this as text
    assert config_from_dict(params).sanity.gradient_tolerance == 1e-5
    with pytest.raises(ConfigError, match=r"'sanity.overfit_size'"):
        config_from_dict({"sanity": {"overfit_size": [1]}})
    with pytest.raises(ConfigError, match=r"sanity.overfit_steps=0 is not allowed"):
        config_from_dict({"sanity": {"overfit_steps": 0}})
    with pytest.raises(ConfigError, match=r"optimizer.beta1"):
        config_from_dict({"optimizer": {"name": "sgd", "lr": 0.1, "beta1": 0.9}})


@pytest.fixture
def small_project(tmp_path):
    """A project folder: prepared and ZCA-normalised 8x8 images, and its params.yaml."""
    splits = {m: colour_images(n, s) for m, n, s in [("train", 150, 0), ("val", 30, 1)]}
    splits["test"] = colour_images(30, 2)
    data = PreparedData(
        {m: s[0] for m, s in splits.items()}, {m: s[1] for m, s in splits.items()}, ["r", "g", "b"]
    )
    write_prepared(tmp_path / "data" / "prepared", data, {})
    cfg = PipelineConfig()
    cfg.paths.data = str(tmp_path / "data")
    normalize.run(cfg)
    cfg.paths.data = "data"  # relative to the project, as in params.yaml
    cfg.model.hidden_size, cfg.model.input_pca = [32], 50
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(asdict(cfg)))
    return tmp_path, cfg


def test_the_configured_run_is_checked_and_disabled_reads_nothing(small_project, tmp_path):
    project, cfg = small_project
    report = run_sanity(cfg, project / "data")
    assert report.status == "passed", str(report)
    assert [s["samples"] for s in report.to_json()["checks"]["overfit"]["sizes"]] == [1, 10, 100]
    cfg.sanity.enabled = False
    skipped = run_sanity(cfg, tmp_path / "no-such-folder").to_json()
    assert skipped["status"] == "skipped"
    assert {c["message"] for c in skipped["checks"].values()} == {"skipped: sanity.enabled=false"}


def test_npdl_sanity_checks_a_project_and_names_a_learning_rate_far_too_high(small_project, capsys):
    project, cfg = small_project
    out = project / "report.json"
    assert npdl_main(["sanity", "--project", str(project), "--output", str(out)]) == 0
    assert "overfit: passed" in capsys.readouterr().out
    assert json.loads(out.read_text()) == run_sanity(cfg, project / "data").to_json()
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["optimizer"]["lr"] = 1e4
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert npdl_main(["sanity", "--project", str(project)]) == 1
    assert "overfit: failed: overfit check failed" in (printed := capsys.readouterr().out)
    assert "lr=10000.0" in printed
    params["sanity"]["overfit_steps"] = -1
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert npdl_main(["sanity", "--project", str(project)]) == 2
    assert "sanity.overfit_steps=-1 is not allowed" in capsys.readouterr().err


# -- end to end: `dvc repro` stops at the sanity stage ---------------------------------

BROKEN_LINE = ("            dz -= tmp\n", "            dz += tmp\n")  # HiddenLayer.backward


@pytest.mark.slow
def test_a_sign_changed_in_a_backward_pass_stops_dvc_repro_at_sanity(tmp_path):
    from conftest import SHARED_ARCHIVE, make_project, sh

    if not SHARED_ARCHIVE.exists():
        pytest.skip(f"needs {SHARED_ARCHIVE}")
    repo = tmp_path / "project"
    repo.mkdir()
    make_project(repo, repro=False)
    sh(["dvc", "repro", "normalize"], repo)  # the data, prepared once
    layer = repo / "src/npdl/hidden_layer.py"
    original = layer.read_text()
    assert original.count(BROKEN_LINE[0]) == 1
    layer.write_text(original.replace(*BROKEN_LINE))  # the copy's library (on PYTHONPATH)
    started = time.perf_counter()
    failed = sh(["dvc", "repro"], repo, check=False)
    seconds = time.perf_counter() - started
    print(f"\nthe failing `dvc repro` (prepare-split, normalize, sanity) took {seconds:.1f} s")
    assert failed.returncode != 0
    assert "Running stage 'sanity'" in failed.stdout
    assert "Running stage 'tune'" not in failed.stdout and not (repo / "models/tune").exists()
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert errors[0].startswith(
        "error: gradient check failed: model.layers[1] (HiddenLayer: W1, b1, gamma1, beta1), "
    )
    assert "does not match its forward pass" in errors[0]
    report = json.loads((repo / "metrics/sanity.json").read_text())
    assert report["status"] == "failed" and report["checks"]["overfit"]["status"] == "skipped"
    # A learning rate far too high, on the stage's command line: named.
    layer.write_text(original)
    high = sh([sys.executable, "stages/sanity.py", "optimizer.lr=1e4"], repo, check=False)
    errors = [line for line in high.stderr.splitlines() if line.startswith("error: ")]
    assert high.returncode == 2 and errors[0].startswith("error: overfit check failed: ")
    assert "lr=10000.0" in errors[0]
    # Reverted: the sanity stage passes.
    passed = sh(["dvc", "repro", "sanity"], repo)
    assert "Running stage 'sanity'" in passed.stdout
    report = json.loads((repo / "metrics/sanity.json").read_text())
    assert report["status"] == "passed", report
    assert {c["status"] for c in report["checks"].values()} == {"passed"}
