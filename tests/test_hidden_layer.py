"""The fused hidden layer computes what the separate layers compute.

A network with ``Relu()`` is built from :class:`npdl.hidden_layer.HiddenLayer`; one with
a subclass of ``Relu`` takes the separate layers (Affine, BatchNorm, ActivationLayer,
Dropout). With the same seed both draw the same weights and dropout masks, so every
output, gradient and running estimate must agree to rounding.
"""

import numpy as np
import pytest

from gradcheck import numerical_gradient, relative_error
from npdl import ClassificationNet, CrossEntropyFromLogits, Relu
from npdl.hidden_layer import HiddenLayer
from npdl.layers import Affine


class SeparateRelu(Relu):
    """The same function; its subclass type makes the network use separate layers."""


def pair(batch_norm: bool, dropout: float, dtype=np.float64):
    kwargs = dict(
        input_size=12,
        hidden_size=[40, 24],
        num_classes=5,
        init="he",
        batch_norm=batch_norm,
        dropout=dropout,
        dtype=dtype,
    )
    fused = ClassificationNet(Relu(), rng=3, **kwargs)
    separate = ClassificationNet(SeparateRelu(), rng=3, **kwargs)
    assert sum(isinstance(layer, HiddenLayer) for layer in fused.layers) == 2
    assert not any(isinstance(layer, HiddenLayer) for layer in separate.layers)
    return fused, separate


@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "no-bn"])
@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["no-dropout", "dropout"])
def test_fused_layers_match_the_separate_layers(batch_norm, dropout):
    fused, separate = pair(batch_norm, dropout)
    rng = np.random.default_rng(0)
    loss = CrossEntropyFromLogits()
    for step in range(3):  # several steps: buffers reused, running estimates move
        x = rng.standard_normal((17, 12)) + 0.5
        y = rng.integers(0, 5, 17)
        outputs = [model.forward(x) for model in (fused, separate)]
        np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-10, atol=1e-12)
        dlogits = loss.backward(outputs[0], y)
        grads = [model.backward(dlogits.copy()) for model in (fused, separate)]
        for name in fused.params:
            a, b = grads[0][name], grads[1][name]
            if batch_norm and name in ("b1", "b2"):
                # The true gradient is zero: exact in the fused layer, rounding noise
                # in the separate ones.
                assert not np.any(a), (step, name)
                assert np.abs(b).max() < 1e-12, (step, name)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=f"{step} {name}")
    for name in fused.buffers:
        np.testing.assert_allclose(fused.buffers[name], separate.buffers[name], rtol=1e-12)
    fused.eval(), separate.eval()
    x = rng.standard_normal((9, 12))
    np.testing.assert_allclose(fused.forward(x), separate.forward(x), rtol=1e-10, atol=1e-12)


def test_fused_gradients_against_finite_differences():
    model, _ = pair(batch_norm=True, dropout=0.25)
    hidden = [layer for layer in model.layers if isinstance(layer, HiddenLayer)]
    loss = CrossEntropyFromLogits()
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((11, 12)), rng.integers(0, 5, 11)

    def logits():
        for i, layer in enumerate(hidden):
            layer.rng = np.random.default_rng(50 + i)  # the same masks every call
        return model.forward(x)

    model.backward(loss.backward(logits(), y))
    for name in ("W1", "gamma1", "beta1", "W2", "gamma2", "beta2", "W3", "b3"):
        numeric = numerical_gradient(lambda: loss.forward(logits(), y), model.params[name])
        assert relative_error(model.grads[name], numeric) < 1e-6, name


def test_standalone_layer_returns_fresh_arrays_and_keeps_dout():
    rng = np.random.default_rng(0)
    layer = HiddenLayer(rng.standard_normal((6, 8)), np.zeros(8), batch_norm=True, rng=0)
    first = layer.forward(rng.standard_normal((5, 6)))
    kept = first.copy()
    layer.forward(rng.standard_normal((5, 6)))
    np.testing.assert_array_equal(first, kept)
    dout = rng.standard_normal((5, 8))
    before = dout.copy()
    dx = layer.backward(dout)
    np.testing.assert_array_equal(dout, before)
    assert dx.shape == (5, 6)
    fresh = HiddenLayer(rng.standard_normal((6, 8)), np.zeros(8), rng=0)
    fresh.forward(rng.standard_normal((5, 6)), training=False)  # keeps no cache
    with pytest.raises(RuntimeError, match="forward pass in training mode"):
        fresh.backward(dout)


def test_network_buffers_are_reused_but_logits_are_fresh():
    model = ClassificationNet(Relu(), input_size=6, hidden_size=[8], batch_norm=True, rng=0)
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    logits1 = model.forward(x1)
    kept = logits1.copy()
    model.forward(x2)
    np.testing.assert_array_equal(logits1, kept)
    hidden = model.layers[0]
    assert isinstance(hidden, HiddenLayer) and isinstance(model.layers[1], Affine)
    assert hidden.forward(x1) is hidden.forward(x2)  # one buffer, reused


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weight": np.zeros((3, 4)), "bias": np.zeros(3)}, "bias"),
        ({"weight": np.zeros((3, 4)), "bias": np.zeros(4), "dropout": 1.0}, "dropout"),
    ],
)
def test_bad_hidden_layer_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HiddenLayer(**kwargs)


def test_a_pickled_network_leaves_its_work_buffers_behind_and_still_trains():
    import pickle

    model = ClassificationNet(Relu(), input_size=6, hidden_size=[8], batch_norm=True, rng=0)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((4, 6)), rng.integers(0, 10, 4)
    loss = CrossEntropyFromLogits()
    model.backward(loss.backward(model.forward(x), y))
    assert model.layers[0]._work
    copy = pickle.loads(pickle.dumps(model))
    assert copy.layers[0]._work == {} and copy.layers[0]._cache is None
    np.testing.assert_array_equal(copy.forward(x), model.forward(x))
    grads = copy.backward(loss.backward(copy.forward(x), y))
    np.testing.assert_array_equal(
        grads["W1"], model.backward(loss.backward(model.forward(x), y))["W1"]
    )
