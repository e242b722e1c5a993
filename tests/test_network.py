import numpy as np
import pytest

from gradcheck import numerical_gradient, relative_error
from npdl import ELU, ClassificationNet, CrossEntropyFromLogits, Maxout, Relu, Sigmoid, Tanh


def check_network(model, rng, n=5):
    """Full-network check: loss = cross-entropy + L2 term; every parameter."""
    loss_func = CrossEntropyFromLogits()
    x = rng.standard_normal((n, model.input_size))
    y = rng.integers(0, model.num_classes, n)

    def f():
        return loss_func.forward(model.forward(x), y) + sum(model.reg.values())

    _loss, dlogits = loss_func(model.forward(x), y)
    model.backward(dlogits)
    errors = {
        name: relative_error(model.grads[name], numerical_gradient(f, model.params[name]))
        for name in model.params
    }
    assert max(errors.values()) < 1e-6, errors
    return errors


@pytest.mark.parametrize(
    ("activation", "num_layer", "hidden_size"),
    [(Sigmoid(), 2, 7), (Relu(), 3, 6), (Tanh(), 4, [6, 5, 4]), (ELU(), 3, 5), (Maxout(2), 3, 4)],
    ids=["sigmoid-2", "relu-3", "tanh-4-list", "elu-3", "maxout-3"],
)
def test_whole_network_gradients_with_reg(activation, num_layer, hidden_size):
    rng = np.random.default_rng(0)
    model = ClassificationNet(
        activation,
        num_layer=num_layer,
        input_size=8,
        hidden_size=hidden_size,
        num_classes=4,
        reg=0.1,
        init="he",
        dtype=np.float64,
        rng=1,
    )
    errors = check_network(model, rng)
    assert set(errors) == {f"{p}{i}" for i in range(1, num_layer + 1) for p in "Wb"}


@pytest.mark.parametrize(
    "activation", [Relu(), Tanh()], ids=["relu-fused-hidden-layers", "tanh-separate-layers"]
)
def test_network_with_batchnorm_and_fixed_dropout(activation):
    rng = np.random.default_rng(1)
    model = ClassificationNet(
        activation,
        num_layer=3,
        input_size=6,
        hidden_size=5,
        num_classes=3,
        reg=0.05,
        init="xavier",
        dropout=0.3,
        batch_norm=True,
        dtype=np.float64,
        rng=2,
    )
    # Dropout layers, or hidden layers that drop out (the fused ReLU case).
    dropouts = [layer for layer in model.layers if getattr(layer, "p", 0) > 0]
    assert len(dropouts) == 2
    loss_func = CrossEntropyFromLogits()
    x, y = rng.standard_normal((6, 6)), rng.integers(0, 3, 6)

    def logits_with_fixed_masks():
        for i, layer in enumerate(dropouts):
            layer.rng = np.random.default_rng(100 + i)
        return model.forward(x)

    def f():
        return loss_func.forward(logits_with_fixed_masks(), y) + sum(model.reg.values())

    model.backward(loss_func.backward(logits_with_fixed_masks(), y))
    for name in model.params:
        numeric = numerical_gradient(f, model.params[name])
        if name in ("b1", "b2"):
            # Batch norm removes the bias ahead of it: the true gradient is zero, and
            # both sides are rounding noise (~1e-11 for the centred difference).
            assert np.abs(model.grads[name]).max() < 1e-9, name
            assert np.abs(numeric).max() < 1e-9, name
        else:
            assert relative_error(model.grads[name], numeric) < 1e-6, name
    assert {"gamma1", "beta1", "gamma2", "beta2"} <= set(model.params)


def test_course_defaults_and_param_names():
    model = ClassificationNet(rng=0)
    assert model.params["W1"].shape == (3072, 100) and model.params["W2"].shape == (100, 10)
    assert model.params["W1"].dtype == np.float32
    assert abs(model.params["W1"].std() - 1e-3) < 1e-4
    assert list(model.params) == ["W1", "b1", "W2", "b2"] == list(model.grads)
    assert isinstance(model.activation, Sigmoid)


def test_params_view_writes_through_to_the_layers():
    model = ClassificationNet(Relu(), input_size=4, hidden_size=3, num_classes=2, rng=0)
    x = np.ones((1, 4), dtype=np.float32)
    before = model.forward(x)
    snapshot = {k: v.copy() for k, v in model.params.items()}
    model.params["W1"] = np.zeros((4, 3))
    assert not np.allclose(model.forward(x), before)
    model.params = snapshot  # course Solver restores best params this way
    np.testing.assert_array_equal(model.forward(x), before)
    with pytest.raises(ValueError, match=r"W1.*\(4, 3\)"):
        model.params["W1"] = np.zeros((3, 3))


def test_same_seed_same_weights_and_init_scales():
    a = ClassificationNet(Relu(), hidden_size=[256], init="he", rng=5)
    b = ClassificationNet(Relu(), hidden_size=[256], init="he", rng=5)
    np.testing.assert_array_equal(a.params["W1"], b.params["W1"])
    assert a.params["W1"].std() == pytest.approx(np.sqrt(2 / 3072), rel=0.02)
    xavier = ClassificationNet(Relu(), hidden_size=[256], init="xavier", rng=5)
    assert xavier.params["W2"].std() == pytest.approx(np.sqrt(2 / 266), rel=0.1)


def test_maxout_widens_the_affine_layer():
    model = ClassificationNet(Maxout(3), num_layer=3, input_size=4, hidden_size=5, num_classes=2)
    assert model.params["W1"].shape == (4, 15)
    assert model.params["W2"].shape == (5, 15)
    assert model.forward(np.zeros((2, 4))).shape == (2, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 0}, "hidden sizes must be >= 1"),
        ({"init": "orthogonal"}, "allowed: std, he, xavier"),
        ({"activation": "swish"}, "unknown activation 'swish'"),
        ({"hidden_size": [3, 3], "num_layer": 5}, "needs num_layer=3"),
        ({"reg": -1}, "reg must be >= 0"),
    ],
)
def test_bad_architecture_is_refused_with_a_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClassificationNet(**kwargs)


def test_wrong_input_width_names_both_sizes():
    model = ClassificationNet(input_size=12, hidden_size=3)
    with pytest.raises(ValueError, match="takes 12 features per sample, got 10"):
        model.forward(np.zeros((2, 10)))


def test_eval_mode_is_deterministic_and_prediction_restores_mode():
    model = ClassificationNet(
        Relu(), input_size=6, hidden_size=8, num_classes=3, dropout=0.5, rng=0
    )
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    assert not np.array_equal(model.forward(x), model.forward(x))  # dropout active
    model.eval()
    np.testing.assert_array_equal(model.forward(x), model.forward(x))
    model.train()
    loader = [{"image": x, "label": np.array([0, 1, 2, 0])}]
    labels, preds, acc = model.get_dataset_prediction(loader)
    assert model.training and labels.tolist() == [0, 1, 2, 0]
    assert acc == pytest.approx(np.mean(preds == labels))
