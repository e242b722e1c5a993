import numpy as np
import pytest

from npdl import SGD, Adam, SGDMomentum


class Params:
    """The smallest thing an optimizer updates: params and grads dicts."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.params = {"W1": rng.standard_normal((3, 4)), "b1": rng.standard_normal(4)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}


def run(optimizer_cls, steps=5, **kwargs):
    model = Params()
    original = {k: v for k, v in model.params.items()}
    opt = optimizer_cls(model, None, 0.1, **kwargs)
    rng = np.random.default_rng(1)
    gradients = []
    for _ in range(steps):
        for k in model.grads:
            model.grads[k][...] = rng.standard_normal(model.grads[k].shape)
        gradients.append({k: v.copy() for k, v in model.grads.items()})
        opt.step()
    for k in model.params:  # updated in place, the same arrays
        assert model.params[k] is original[k]
    return model, gradients, opt


def test_sgd_matches_reference():
    model, grads, _ = run(SGD)
    start = Params().params
    for k in start:
        expected = start[k] - 0.1 * sum(g[k] for g in grads)
        np.testing.assert_allclose(model.params[k], expected)


@pytest.mark.parametrize("decoupled", [False, True])
def test_sgd_weight_decay_matches_reference_and_shrinks_only_weight_matrices(decoupled):
    model, grads, _ = run(SGD, weight_decay=0.5, decoupled=decoupled)
    for k, w in Params().params.items():
        decay = 0.5 if w.ndim >= 2 else 0.0
        for g in grads:
            w = w * (1 - 0.1 * decay) - 0.1 * g[k] if decoupled else w - 0.1 * (g[k] + decay * w)
        np.testing.assert_allclose(model.params[k], w, rtol=1e-12)
    # With zero gradients the decay alone acts: weights shrink, biases stay.
    model, opt = Params(), None
    start = {k: v.copy() for k, v in model.params.items()}
    opt = SGD(model, None, 0.1, weight_decay=0.5, decoupled=decoupled)
    for _ in range(3):
        opt.step()
    assert np.linalg.norm(model.params["W1"]) < 0.9 * np.linalg.norm(start["W1"])
    np.testing.assert_array_equal(model.params["b1"], start["b1"])


@pytest.mark.parametrize("decoupled", [False, True])
def test_momentum_with_decoupled_or_coupled_decay_matches_reference(decoupled):
    model, grads, _ = run(SGDMomentum, momentum=0.9, weight_decay=0.2, decoupled=decoupled)
    for k, w in Params().params.items():
        decay, v = (0.2 if w.ndim >= 2 else 0.0), np.zeros_like(w)
        for g in grads:
            d = g[k] if decoupled else g[k] + decay * w
            v = 0.9 * v + d
            w = (w * (1 - 0.1 * decay) if decoupled else w) - 0.1 * v
        np.testing.assert_allclose(model.params[k], w, rtol=1e-12)


def test_a_non_finite_or_negative_weight_decay_is_refused():
    for bad in (float("nan"), float("inf"), -0.1):
        with pytest.raises(ValueError, match="weight_decay must be a finite value >= 0"):
            SGD(Params(), None, 0.1, weight_decay=bad)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_momentum_matches_reference(nesterov, weight_decay):
    model, grads, _ = run(SGDMomentum, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay)
    for k, w in Params().params.items():
        v = np.zeros_like(w)
        for g in grads:
            d = g[k] + (weight_decay * w if w.ndim >= 2 else 0)
            v = 0.9 * v + d
            w = w - 0.1 * (d + 0.9 * v if nesterov else v)
        np.testing.assert_allclose(model.params[k], w, rtol=1e-12)


@pytest.mark.parametrize(("weight_decay", "decoupled"), [(0.0, True), (0.05, True), (0.05, False)])
def test_adam_matches_textbook_formula(weight_decay, decoupled):
    model, grads, _ = run(Adam, weight_decay=weight_decay, decoupled=decoupled)
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.1
    for k, w in Params().params.items():
        m = v = np.zeros_like(w)
        decay = weight_decay if w.ndim >= 2 else 0.0
        for t, g in enumerate(grads, start=1):
            d = g[k] + (0 if decoupled else decay * w)
            m = b1 * m + (1 - b1) * d
            v = b2 * v + (1 - b2) * d * d
            if decoupled:
                w = w - lr * decay * w
            w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        np.testing.assert_allclose(model.params[k], w, rtol=1e-10)


def test_state_dict_roundtrip_resumes_identically():
    straight, _, _ = run(Adam, steps=6)
    model, _, opt = run(Adam, steps=3)
    resumed = Params()
    for k in model.params:
        resumed.params[k][...] = model.params[k]
    opt2 = Adam(resumed, None, 0.1)
    opt2.load_state_dict({k: v.copy() for k, v in opt.state_dict().items()})
    rng = np.random.default_rng(1)
    for _ in range(3):  # replay the first three gradients' random draws
        for k in resumed.grads:
            rng.standard_normal(resumed.grads[k].shape)
    for _ in range(3):
        for k in resumed.grads:
            resumed.grads[k][...] = rng.standard_normal(resumed.grads[k].shape)
        opt2.step()
    for k in straight.params:
        np.testing.assert_allclose(resumed.params[k], straight.params[k], rtol=1e-12)


def test_float32_update_stays_float32():
    model = Params()
    model.params = {k: v.astype(np.float32) for k, v in model.params.items()}
    model.grads = {k: np.ones_like(v) for k, v in model.params.items()}
    Adam(model, None, 1e-3, weight_decay=0.1).step()
    assert all(v.dtype == np.float32 for v in model.params.values())


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (SGD, {"learning_rate": 0.0}, "learning_rate must be > 0"),
        (SGDMomentum, {"momentum": 1.0}, "momentum"),
        (Adam, {"beta1": 1.5}, "beta1"),
    ],
)
def test_bad_hyperparameters_are_refused(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(Params(), None, **kwargs)
