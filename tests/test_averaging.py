"""Weight averaging: the average after each step is the hand-computed blend, batch-norm
statistics are averaged, the fixed projection is not, and a checkpoint carries it."""

import numpy as np
import pytest

from npdl.activations import Relu
from npdl.averaging import ExponentialMovingAverage
from npdl.data import DataLoader, ImageFolderDataset
from npdl.losses import CrossEntropyFromLogits
from npdl.network import ClassificationNet
from npdl.solver import Solver


def loaders(count=96, batch=32):
    rng = np.random.default_rng(1)
    images = rng.standard_normal((count, 4, 4, 3)).astype(np.float32)
    labels = np.arange(count) % 3
    train = ImageFolderDataset.from_arrays(images, labels, ["a", "b", "c"])
    val = ImageFolderDataset.from_arrays(images[:30], labels[:30], ["a", "b", "c"])
    return DataLoader(train, batch_size=batch), DataLoader(val, batch_size=30)


def network(projection=None):
    return ClassificationNet(
        Relu(),
        input_size=48,
        hidden_size=[16],
        num_classes=3,
        batch_norm=True,
        rng=0,
        input_projection=projection,
    )


def test_the_average_after_three_steps_is_the_hand_computed_blend():
    model = network()
    train, val = loaders()  # 3 batches: one epoch is 3 steps
    snapshots = []
    solver = Solver(
        model,
        train,
        val,
        CrossEntropyFromLogits(),
        learning_rate=1e-2,
        verbose=False,
        ema=0.5,
        restore_best=False,
    )
    start = model.state_dict()
    step = solver.opt.step

    def recording_step():  # the weights after each optimizer step, as the average sees them
        step()
        snapshots.append(model.state_dict())

    solver.opt.step = recording_step
    solver.train(epochs=1)
    assert len(snapshots) == 3 and solver.averaging.updates == 3
    # d_t = min(0.5, (1 + t) / (10 + t)): 0.1, 2/11, 3/12 for t = 0, 1, 2.
    decays = [0.1, 2 / 11, 3 / 12]
    for name in solver.averaging.average:
        expected = start[name].astype(np.float64)
        for decay, weights in zip(decays, snapshots, strict=True):
            expected = decay * expected + (1 - decay) * weights[name].astype(np.float64)
        np.testing.assert_allclose(solver.averaging.average[name], expected, rtol=1e-5, atol=1e-7)
    # Batch-norm running statistics are averaged too, and training moved them.
    assert {"running_mean1", "running_var1"} <= set(solver.averaging.average)
    assert not np.array_equal(solver.averaging.average["running_mean1"], start["running_mean1"])
    # After train() the model holds the average; the next train() goes on from its own.
    for name, value in solver.averaging.average.items():
        np.testing.assert_array_equal(model.state_dict()[name], value)
    np.testing.assert_array_equal(solver.state_dict()["model/W1"], snapshots[-1]["W1"])


def test_the_decay_warms_up_and_is_checked():
    average = ExponentialMovingAverage(network(), 0.999)
    assert average.decay_at(0) == pytest.approx(0.1)
    assert average.decay_at(90) == pytest.approx(91 / 100)
    assert average.decay_at(10**6) == 0.999
    for bad in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
            ExponentialMovingAverage(network(), bad)


def test_a_fixed_projection_is_not_averaged_and_validation_sees_the_average():
    projection = np.linalg.qr(np.random.default_rng(0).standard_normal((48, 12)))[0]
    model = network(projection.astype(np.float32))
    train, val = loaders()
    solver = Solver(model, train, val, learning_rate=1e-2, verbose=False, ema=0.9)
    assert "P0" in model.state_dict() and "P0" not in solver.averaging.average
    solver.train(epochs=2)
    # The best epoch's weights are the average's (the kept model is validated as kept).
    with solver.averaging.swapped_in():
        _, accuracy = solver.evaluate(val)
    assert solver.best_model_stats["val_acc"] in (accuracy, solver.val_acc_history[0])


def test_a_checkpoint_carries_the_average_and_resumes_to_the_bit():
    def fresh():
        train, val = loaders()
        return Solver(network(), train, val, learning_rate=1e-2, verbose=False, ema=0.9)

    whole = fresh()
    whole.train(epochs=3)
    first = fresh()
    first.train(epochs=1)
    state = first.state_dict()
    assert any(key.startswith("ema/") for key in state)
    resumed = fresh()
    resumed.load_state_dict(state)
    # Shuffling is off in these loaders, so the rest of the run is the same steps.
    resumed.train(epochs=2)
    for name, value in whole.averaging.average.items():
        np.testing.assert_array_equal(resumed.averaging.average[name], value)
    assert resumed.val_acc_history == whole.val_acc_history


def test_without_a_val_loader_the_last_epoch_is_kept_and_nothing_is_validated():
    train, _ = loaders()
    model = network()
    solver = Solver(model, train, None, learning_rate=1e-2, verbose=False)
    solver.train(epochs=2)
    assert solver.best_epoch is None and solver.best_params is None
    assert all(np.isnan(solver.val_acc_history)) and len(solver.val_acc_history) == 2
    with pytest.raises(ValueError, match="patience needs a val_dataloader"):
        solver.train(epochs=1, patience=3)
