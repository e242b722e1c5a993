import numpy as np
import pytest

from npdl import SGD, ClassificationNet, Relu, Solver


class ArrayLoader:
    """A course-style loader over arrays: a list of {'image', 'label'} batches."""

    def __init__(self, images, labels, batch_size):
        self.batches = [
            {"image": images[i : i + batch_size], "label": labels[i : i + batch_size]}
            for i in range(0, len(images), batch_size)
        ]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def blobs(n, seed=0, dim=20, classes=3, noise=1.0):
    """Gaussian clusters: learnable but not trivially separable with noise."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((classes, dim)) * 2
    labels = rng.integers(0, classes, n)
    return (centres[labels] + noise * rng.standard_normal((n, dim))).astype(np.float32), labels


def make_solver(n_train=60, epochs_data_seed=0, **kwargs):
    x, y = blobs(n_train, seed=epochs_data_seed)
    xv, yv = blobs(60, seed=1)
    model = ClassificationNet(
        Relu(), num_layer=3, input_size=20, hidden_size=32, num_classes=3, init="he", rng=0
    )
    options = {"learning_rate": 1e-2, "verbose": False, **kwargs}
    return Solver(model, ArrayLoader(x, y, 16), ArrayLoader(xv, yv, 32), **options)


@pytest.mark.parametrize("n", [1, 10])
def test_course_recipe_overfits_small_data(n):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.float32) / 255 - 0.5
    labels = rng.integers(0, 10, n)
    loader = ArrayLoader(images, labels, batch_size=n)
    model = ClassificationNet(Relu(), hidden_size=100, std=1e-2, rng=0)
    solver = Solver(model, loader, loader, learning_rate=1e-3, verbose=False)
    solver.train(epochs=30)
    assert solver.get_dataset_accuracy(loader) == 1.0
    assert solver.train_loss_history[-1] < solver.train_loss_history[0] / 4


def test_same_seed_same_result_and_histories():
    a, b = make_solver(), make_solver()
    a.train(epochs=3)
    b.train(epochs=3)
    for k in a.model.params:
        np.testing.assert_array_equal(a.model.params[k], b.model.params[k])
    assert a.history[-1]["val_loss"] == b.history[-1]["val_loss"]
    assert [h["epoch"] for h in a.history] == [1, 2, 3]


def test_divergence_is_caught_and_reported():
    solver = make_solver(learning_rate=1e6, optimizer=SGD)
    status = solver.train(epochs=5)
    assert status == solver.status == "diverged"
    assert len(solver.train_loss_history) < 5
    assert not np.isfinite(solver.train_batch_loss[-1])


def test_early_stopping_restores_the_best_weights():
    # 12 noisy training samples and a high learning rate: val loss soon rises.
    solver = make_solver(n_train=12, learning_rate=5e-2)
    solver.train(epochs=60, patience=3)
    assert solver.status == "early_stopped"
    assert len(solver.val_loss_history) == solver.best_epoch + 3
    best_val = min(solver.val_loss_history)
    assert solver.best_model_stats["val_loss"] == best_val
    assert solver.evaluate(solver.val_dataloader)[0] == pytest.approx(best_val, rel=1e-5)


def test_callback_sees_each_epoch_and_can_stop():
    seen = []

    def stop_after_two(solver, stats):
        seen.append(stats)
        return stats["epoch"] == 2

    solver = make_solver(callbacks=[stop_after_two])
    assert solver.train(epochs=10) == "stopped"
    assert [s["epoch"] for s in seen] == [1, 2]
    assert {"train_loss", "val_loss", "train_acc", "val_acc", "lr", "seconds"} <= set(seen[0])


def test_course_lr_decay_per_epoch():
    solver = make_solver(lr_decay=0.5, learning_rate=1e-2)
    solver.train(epochs=3)
    np.testing.assert_allclose(solver.lr_history, [1e-2, 5e-3, 2.5e-3])


def test_resume_from_state_equals_uninterrupted_training():
    options = {
        "schedule": "cosine",
        "warmup_epochs": 1,
        "schedule_epochs": 4,
        "optimizer_kwargs": {"weight_decay": 0.01},
    }
    straight = make_solver(**options)
    straight.train(epochs=4)
    first = make_solver(**options)
    first.train(epochs=2)
    state = {k: np.array(v) for k, v in first.state_dict().items()}
    resumed = make_solver(**options)
    resumed.load_state_dict(state)
    resumed.train(epochs=2)
    assert resumed.epoch == 4 and resumed.global_step == straight.global_step
    for k in straight.model.params:
        np.testing.assert_allclose(resumed.model.params[k], straight.model.params[k], rtol=1e-6)
    np.testing.assert_allclose(resumed.val_loss_history, straight.val_loss_history, rtol=1e-6)


def test_optimizer_by_name_and_bad_names():
    assert type(make_solver(optimizer="sgd_momentum").opt).__name__ == "SGDMomentum"
    with pytest.raises(ValueError, match="allowed: adam, sgd, sgd_momentum"):
        make_solver(optimizer="rmsprop")
    with pytest.raises(ValueError, match="allowed: constant, step, cosine"):
        make_solver(schedule="linear")


def test_val_batch_loss_has_one_entry_per_val_batch_as_the_course():
    solver = make_solver(optimizer_kwargs={}, reg=1e-3)  # reg: a key the model names
    solver.model.reg = {"W1": 0.25}  # the L2 term the course adds to each batch's loss
    solver.train(epochs=2)
    assert len(solver.val_batch_loss) == 2 * len(solver.val_dataloader)
    per_epoch = np.reshape(solver.val_batch_loss, (2, -1)) - 0.25
    sizes = [len(batch["label"]) for batch in solver.val_dataloader]
    # The epoch's val loss (no L2 term) is the batches' size-weighted mean.
    for epoch, losses in enumerate(per_epoch):
        assert np.average(losses, weights=sizes) == pytest.approx(solver.val_loss_history[epoch])


@pytest.mark.parametrize(
    ("keyword", "named"),
    [("weight_decay", "'weight_decay'"), ("learning_rte", "did you mean 'learning_rate'?")],
)
def test_unknown_keywords_are_refused_by_name(keyword, named):
    with pytest.raises(TypeError, match="unknown keyword") as refused:
        make_solver(**{keyword: 1e-3})
    assert named in str(refused.value)
    assert "ClassificationNet" in str(refused.value)


def test_keys_meant_for_the_model_pass_and_an_own_model_with_kwargs_only_warns():
    make_solver(hidden_size=32, num_layer=3, reg=1e-4, activation=Relu)  # the course's config

    class OwnNet(ClassificationNet):  # a notebook's class, taking any keyword
        def __init__(self, **kwargs):
            super().__init__(Relu(), num_layer=2, input_size=20, num_classes=3, rng=0)

    x, y = blobs(8)
    with pytest.warns(UserWarning, match="'width'"):
        Solver(OwnNet(), ArrayLoader(x, y, 4), None, width=64, verbose=False)
