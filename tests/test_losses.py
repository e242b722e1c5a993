import numpy as np
import pytest

from gradcheck import numerical_gradient, relative_error
from npdl import BCE, L1, MSE, CrossEntropyFromLogits


def _case(loss, rng):
    if isinstance(loss, CrossEntropyFromLogits):
        return rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    if isinstance(loss, BCE):
        return rng.uniform(0.05, 0.95, (6, 3)), rng.integers(0, 2, (6, 3)).astype(float)
    y_out = rng.standard_normal((6, 3))
    return y_out, y_out + rng.choice([-1, 1], size=y_out.shape) * rng.uniform(0.1, 1, y_out.shape)


@pytest.mark.parametrize(
    "loss",
    [CrossEntropyFromLogits(), CrossEntropyFromLogits(label_smoothing=0.1), BCE(), MSE(), L1()],
    ids=repr,
)
def test_gradient_matches_finite_differences(loss):
    rng = np.random.default_rng(0)
    y_out, y_truth = _case(loss, rng)
    value, grad = loss(y_out, y_truth)
    assert value == pytest.approx(loss.forward(y_out, y_truth))
    np.testing.assert_allclose(grad, loss.backward(y_out, y_truth))
    # The course's contract: the cross-entropy's gradient is of the batch mean, the
    # element-wise losses' of each element's own loss (of the sum).
    reduction = "mean" if isinstance(loss, CrossEntropyFromLogits) else "sum"
    numeric = numerical_gradient(lambda: loss.forward(y_out, y_truth, reduction), y_out)
    assert relative_error(grad, numeric) < 1e-6


def test_element_wise_gradients_are_the_course_formulas():
    y_out, y_truth = np.array([[0.2, 0.9], [0.5, 0.4]]), np.array([[0.0, 1.0], [1.0, 0.4]])
    np.testing.assert_allclose(MSE().backward(y_out, y_truth), 2 * (y_out - y_truth))
    np.testing.assert_array_equal(L1().backward(y_out, y_truth), [[1, -1], [-1, 0]])
    course_bce = -(y_truth / y_out) + (1 - y_truth) / (1 - y_out)
    np.testing.assert_allclose(BCE().backward(y_out, y_truth), course_bce)


def test_cross_entropy_values_and_stability():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]])
    labels = np.array([0, 2])
    per_sample = CrossEntropyFromLogits().forward(logits, labels, reduction="none")
    np.testing.assert_allclose(per_sample, [0.0, np.log(3)])
    assert np.isfinite(CrossEntropyFromLogits().backward(logits, labels)).all()


def test_label_smoothing_target():
    logits = np.zeros((1, 4))
    smoothed = CrossEntropyFromLogits(label_smoothing=0.2).forward(logits, np.array([1]))
    # uniform prediction: loss is log(4) whatever the target distribution
    assert smoothed == pytest.approx(np.log(4))
    grad = CrossEntropyFromLogits(label_smoothing=0.2).backward(logits, np.array([1]))
    np.testing.assert_allclose(grad, [[0.25 - 0.05, 0.25 - 0.85, 0.25 - 0.05, 0.25 - 0.05]])


def test_regression_losses_values():
    assert MSE().forward(np.array([1.0, 3.0]), np.array([0.0, 1.0])) == pytest.approx(2.5)
    assert L1().forward(np.array([1.0, 3.0]), np.array([0.0, 1.0])) == pytest.approx(1.5)
    assert BCE().forward(np.array([0.5]), np.array([1.0])) == pytest.approx(np.log(2))
