"""Thread control and the blocked, threaded optimizer updates (npdl.threads)."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from npdl import Adam, ClassificationNet, Relu, SGDMomentum, threads


@pytest.fixture(autouse=True)
def restore_threads():
    before = threads.get_num_threads()
    yield
    threads.set_num_threads(before)


def blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_blocks_are_aligned_views_covering_every_element():
    a = np.arange(10, dtype=np.float32).reshape(2, 5)
    b = np.zeros_like(a)
    jobs = threads.blocks(a, b, size=4)
    assert [len(x) for x, _ in jobs] == [4, 4, 2]
    for x, y in jobs:
        assert np.shares_memory(x, a) and np.shares_memory(y, b)
        y += x
    np.testing.assert_array_equal(b, a)


def test_non_contiguous_arrays_are_one_block_of_themselves():
    a = np.zeros((4, 6), dtype=np.float32)[:, ::2]
    b = np.zeros((4, 3), dtype=np.float32)
    ((x, y),) = threads.blocks(a, b, size=2)
    assert x is a and y is b


def test_blocks_refuse_arrays_of_different_shapes():
    with pytest.raises(ValueError, match="one shape"):
        threads.blocks(np.zeros(3), np.zeros(4))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_num_threads_refuses_non_positive_integers(bad):
    with pytest.raises(ValueError, match="positive integer"):
        threads.set_num_threads(bad)


def test_set_num_threads_limits_blas_too():
    threads.set_num_threads(1)
    assert threads.get_num_threads() == 1
    assert blas_threads() and set(blas_threads()) == {1}


def test_threads_per_worker_shares_the_cores():
    cores = threads.available_cores()
    assert threads.threads_per_worker(1) == cores
    assert threads.threads_per_worker(cores) == 1
    assert threads.threads_per_worker(10 * cores) == 1


def _train(optimizer_cls, n_threads: int, steps: int = 4, **kwargs) -> dict[str, np.ndarray]:
    """A few optimizer steps on a net whose first weight matrix spans several blocks,
    from fixed gradients (BLAS would sum a backward pass differently per thread count)."""
    threads.set_num_threads(n_threads)
    rng = np.random.default_rng(0)
    model = ClassificationNet(Relu(), input_size=600, hidden_size=[400], init="he", rng=1)
    assert model.params["W1"].size > 1.5 * threads.BLOCK_ELEMENTS
    opt = optimizer_cls(model, learning_rate=1e-2, weight_decay=0.1, **kwargs)
    for _ in range(steps):
        for grad in model.grads.values():
            grad[...] = rng.standard_normal(grad.shape)
        opt.step()
    return {k: v.copy() for k, v in model.params.items()}


@pytest.mark.parametrize(
    "optimizer_cls, kwargs",
    [(Adam, {}), (Adam, {"decoupled": False}), (SGDMomentum, {"nesterov": True})],
)
def test_updates_are_bitwise_identical_for_any_thread_count(optimizer_cls, kwargs):
    one = _train(optimizer_cls, 1, **kwargs)
    two = _train(optimizer_cls, 2, **kwargs)
    three = _train(optimizer_cls, 3, **kwargs)
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)
        np.testing.assert_array_equal(one[name], three[name], err_msg=name)


def test_a_replaced_parameter_array_is_the_one_updated():
    model = ClassificationNet(Relu(), input_size=6, hidden_size=[5], rng=0)
    opt = Adam(model, learning_rate=0.1)
    model.grads["W1"][...] = 1.0
    opt.step()
    layer = model.layers[0]
    old = layer.params["W"]
    layer.params["W"] = np.zeros_like(old)  # a new array, not written through
    before_old = old.copy()
    opt.step()
    assert np.all(layer.params["W"] < 0)  # the new array moved against the gradient
    np.testing.assert_array_equal(old, before_old)  # the stale one is left alone


def _step_in_child(queue) -> None:
    params = _train(Adam, 2, steps=1)
    queue.put(float(params["W1"].sum()))


def test_a_forked_child_can_run_threaded_updates():
    _train(Adam, 2, steps=1)  # the parent's pool now has a live thread
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_step_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the child hung or crashed on the inherited pool"
    assert queue.get(timeout=5) == pytest.approx(float(_train(Adam, 2, steps=1)["W1"].sum()))


def test_blocked_adam_matches_the_textbook_on_every_element():
    params = _train(Adam, 2, steps=4)
    # The same run in float64 with the textbook formulas, whole arrays at once.
    rng = np.random.default_rng(0)
    model = ClassificationNet(Relu(), input_size=600, hidden_size=[400], init="he", rng=1)
    w = {k: v.astype(np.float64) for k, v in model.params.items()}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v2 = {k: np.zeros_like(v) for k, v in w.items()}
    for t in range(1, 5):
        for name in model.grads:
            g = rng.standard_normal(w[name].shape)
            m[name] = 0.9 * m[name] + 0.1 * g
            v2[name] = 0.999 * v2[name] + 0.001 * g * g
            m_hat, v_hat = m[name] / (1 - 0.9**t), v2[name] / (1 - 0.999**t)
            if w[name].ndim >= 2:
                w[name] *= 1 - 1e-2 * 0.1
            w[name] -= 1e-2 * m_hat / (np.sqrt(v_hat) + 1e-8)
    for name in params:
        np.testing.assert_allclose(params[name], w[name], rtol=1e-4, atol=1e-6, err_msg=name)
