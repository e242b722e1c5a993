import numpy as np
import pytest

from gradcheck import numerical_gradient, relative_error
from npdl import Affine, BatchNorm, Dropout, affine_backward, affine_forward


def check_layer(layer, x, rng, training=True, before_forward=lambda: None):
    """Compare every gradient of ``layer`` with centred finite differences."""
    before_forward()
    out = layer.forward(x, training)
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)

    def f():
        before_forward()
        return float(np.sum(layer.forward(x, training) * dout))

    errors = {
        name: relative_error(layer.grads[name], numerical_gradient(f, p))
        for name, p in layer.params.items()
    }
    if dx is not None:
        errors["x"] = relative_error(dx, numerical_gradient(f, x))
    assert errors and max(errors.values()) < 1e-6, errors
    assert set(layer.grads) == set(layer.params)
    return errors


def test_affine_gradients():
    rng = np.random.default_rng(0)
    layer = Affine(rng.standard_normal((5, 3)), rng.standard_normal(3))
    errors = check_layer(layer, rng.standard_normal((4, 5)), rng)
    assert set(errors) == {"W", "b", "x"}


def test_first_affine_skips_input_gradient():
    rng = np.random.default_rng(1)
    layer = Affine(rng.standard_normal((5, 3)), np.zeros(3), input_grad=False)
    layer.forward(rng.standard_normal((2, 5)))
    assert layer.backward(np.ones((2, 3))) is None


def test_course_affine_functions():
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((3, 2, 4)), rng.standard_normal((8, 5)), rng.standard_normal(5)
    out, cache = affine_forward(x, w, b)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = affine_backward(dout, cache)
    assert dx.shape == x.shape
    for analytic, param in ((dx, x), (dw, w), (db, b)):
        numeric = numerical_gradient(
            lambda: float(np.sum(affine_forward(x, w, b)[0] * dout)), param
        )
        assert relative_error(analytic, numeric) < 1e-6


def test_dropout_gradient_with_fixed_mask():
    rng = np.random.default_rng(3)
    layer = Dropout(0.4)

    def fix_mask():
        layer.rng = np.random.default_rng(11)

    check_layer(layer, rng.standard_normal((6, 8)), rng, before_forward=fix_mask)


def test_dropout_is_inverted_and_identity_in_eval():
    x = np.ones((2000, 50), dtype=np.float32)
    layer = Dropout(0.3, rng=0)
    out = layer.forward(x, training=True)
    assert out.dtype == np.float32
    # p is rounded to a multiple of 1/65536, which moves the scale by < 1e-4.
    np.testing.assert_allclose(np.unique(out), [0.0, 1 / 0.7], rtol=1e-4)
    assert abs(out.mean() - 1.0) < 0.01  # expectation preserved
    assert abs((out == 0).mean() - 0.3) < 0.01
    assert layer.forward(x, training=False) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Dropout(1.0)


def test_batchnorm_gradients_in_train_mode():
    rng = np.random.default_rng(4)
    layer = BatchNorm(5, dtype=np.float64)
    layer.params["gamma"][:] = rng.standard_normal(5)
    layer.params["beta"][:] = rng.standard_normal(5)
    errors = check_layer(layer, 3 * rng.standard_normal((8, 5)) + 1, rng)
    assert set(errors) == {"gamma", "beta", "x"}


def test_batchnorm_normalises_in_train_and_uses_running_stats_in_eval():
    rng = np.random.default_rng(5)
    layer = BatchNorm(3, momentum=0.0, dtype=np.float64)
    x = rng.normal(4.0, 2.5, size=(500, 3))
    out = layer.forward(x, training=True)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-4)
    # momentum 0: running stats are exactly this batch's (variance unbiased).
    np.testing.assert_allclose(layer.buffers["running_mean"], x.mean(axis=0))
    np.testing.assert_allclose(layer.buffers["running_var"], x.var(axis=0, ddof=1))
    single = layer.forward(x[:1], training=False)
    expected = (x[:1] - x.mean(axis=0)) / np.sqrt(x.var(axis=0, ddof=1) + layer.eps)
    np.testing.assert_allclose(single, expected)
