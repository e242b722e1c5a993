import numpy as np
import pytest

from npdl import ClassificationNet, Relu
from npdl.evaluation import classification_metrics, predict_logits, relabel


def small_model():
    model = ClassificationNet(Relu(), input_size=4 * 4 * 3, hidden_size=8, num_classes=3, rng=0)
    model.preprocessing = {"mean": np.full(3, 0.5, np.float32), "std": np.full(3, 0.25, np.float32)}
    return model


def test_predict_logits_standardises_like_training():
    model = small_model()
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    expected = model.forward(((images / 255.0 - 0.5) / 0.25).reshape(5, -1))
    np.testing.assert_allclose(predict_logits(model, images, batch_size=2), expected, rtol=1e-5)


def test_flip_tta_averages_an_image_and_its_mirror():
    model = small_model()
    images = np.random.default_rng(1).integers(0, 256, (4, 4, 4, 3), dtype=np.uint8)
    plain = predict_logits(model, images)
    mirrored = predict_logits(model, images[:, :, ::-1])
    np.testing.assert_allclose(
        predict_logits(model, images, tta_flip=True), (plain + mirrored) / 2, rtol=1e-5
    )
    symmetric = np.concatenate([images[:, :, :2], images[:, :, 1::-1]], axis=2)
    np.testing.assert_allclose(
        predict_logits(model, symmetric, tta_flip=True), predict_logits(model, symmetric), rtol=1e-5
    )


def test_metrics_per_class_and_loss():
    logits = np.array([[5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0], [0, 0, 5.0]])
    metrics = classification_metrics(logits, np.array([0, 1, 1, 2]), ["a", "b", "c"])
    assert metrics["accuracy"] == 0.75 and metrics["n"] == 4
    assert metrics["per_class_accuracy"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert metrics["loss"] == pytest.approx(np.mean([0.0134, 0.0134, 5.0134, 0.0134]), abs=1e-3)


def test_relabel_maps_by_name_and_names_unknown_classes():
    labels = relabel(np.array([0, 1, 1]), ["cat", "dog"], ["dog", "bird", "cat"])
    assert labels.tolist() == [2, 0, 0]
    with pytest.raises(ValueError, match=r"\['fox'\] are not among the model's classes"):
        relabel(np.array([0]), ["fox"], ["dog", "cat"])
