import numpy as np
import pytest

from gradcheck import numerical_gradient, relative_error
from npdl import ELU, LeakyRelu, Maxout, Relu, Sigmoid, Tanh, make_activation

ELEMENTWISE = [Sigmoid(), Tanh(), Relu(), LeakyRelu(), LeakyRelu(slope=0.2), ELU(), ELU(alpha=0.5)]


def _inputs(rng, shape=(4, 6)):
    x = rng.standard_normal(shape)
    # Keep samples away from the kinks of ReLU-like functions, where finite
    # differences straddle two branches.
    x[np.abs(x) < 1e-2] = 0.5
    return x


@pytest.mark.parametrize("activation", [*ELEMENTWISE, Maxout(2), Maxout(3)], ids=repr)
def test_backward_matches_finite_differences(activation):
    rng = np.random.default_rng(0)
    x = _inputs(rng, (4, 12))
    out, cache = activation.forward(x)
    dout = rng.standard_normal(out.shape)
    dx = activation.backward(dout, cache)

    def f():
        return float(np.sum(activation.forward(x)[0] * dout))

    assert relative_error(dx, numerical_gradient(f, x)) < 1e-6


@pytest.mark.parametrize("activation", ELEMENTWISE, ids=repr)
def test_forward_matches_definition(activation):
    x = np.linspace(-3, 3, 13)
    expected = {
        "sigmoid": 1 / (1 + np.exp(-x)),
        "tanh": np.tanh(x),
        "relu": np.maximum(x, 0),
        "leaky_relu": np.where(x > 0, x, getattr(activation, "slope", 0) * x),
        "elu": np.where(x > 0, x, getattr(activation, "alpha", 0) * (np.exp(x) - 1)),
    }[activation.name]
    np.testing.assert_allclose(activation.forward(x)[0], expected, rtol=1e-12, atol=1e-12)


def test_leaky_relu_default_slope_is_the_course_value():
    assert LeakyRelu().slope == 0.01


def test_sigmoid_is_silent_and_exact_for_huge_inputs():
    x = np.array([-1e4, -800.0, 0.0, 800.0, 1e4], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out, _ = Sigmoid().forward(x)
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.5, 1.0, 1.0])
    assert out.dtype == np.float32


def test_float32_stays_float32():
    x = np.ones((2, 4), dtype=np.float32)
    for activation in [*ELEMENTWISE, Maxout(2)]:
        out, cache = activation.forward(x)
        assert out.dtype == np.float32, activation
        assert activation.backward(np.ones_like(out), cache).dtype == np.float32, activation


def test_maxout_takes_max_of_each_group():
    x = np.array([[1.0, 5.0, -2.0, -1.0, 3.0, 3.5]])
    out, _ = Maxout(2).forward(x)
    np.testing.assert_array_equal(out, [[5.0, -1.0, 3.5]])
    with pytest.raises(ValueError, match="divisible by 4"):
        Maxout(4).forward(x)


def test_make_activation_names_the_allowed_values():
    assert make_activation("Leaky_ReLU", slope=0.1) == LeakyRelu(0.1)
    with pytest.raises(ValueError, match="allowed: elu, leaky_relu, maxout, relu, sigmoid, tanh"):
        make_activation("swish")


def test_as_activation_takes_a_name_a_class_or_an_instance_and_refuses_the_rest():
    from npdl.activations import as_activation

    relu = Relu()
    assert as_activation(relu) is relu
    assert type(as_activation(Relu)) is Relu and type(as_activation("TANH")) is Tanh
    with pytest.raises(TypeError, match="activation must be an npdl Activation or a name, got 3"):
        as_activation(3)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        as_activation("swish")
