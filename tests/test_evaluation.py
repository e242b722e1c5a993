import numpy as np
import pytest

from npdl import ClassificationNet, Relu
from npdl.data.flip_crop import crop_batch
from npdl.data.transforms import eval_transform
from npdl.evaluation import classification_metrics, predict_logits, relabel, shift_images


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


@pytest.mark.parametrize(("down", "right"), [(2, 0), (-2, 0), (0, 1), (0, -3), (1, -1)])
def test_a_shifted_image_is_the_padded_crop_at_that_offset(down, right):
    images = np.random.default_rng(2).integers(1, 256, (3, 6, 5, 2), dtype=np.uint8)
    count = len(images)
    # A crop of the image padded by p at (top, left) = (p - down, p - right).
    top, left = np.full(count, 3 - down), np.full(count, 3 - right)
    expected = crop_batch(images, top, left, (6, 5), padding=3)
    np.testing.assert_array_equal(shift_images(images, down, right), expected)
    assert shift_images(images, 0, 0) is not images


def zca_model(rng):
    model = ClassificationNet(Relu(), input_size=4 * 4 * 3, hidden_size=8, num_classes=3, rng=0)
    matrix = rng.standard_normal((48, 48)).astype(np.float32) * 0.2
    model.preprocessing = {
        "mean": np.full(3, 0.5, np.float32),
        "std": np.full(3, 0.25, np.float32),
        "zca_mean": rng.standard_normal(48).astype(np.float32) * 0.1,
        "zca_matrix": matrix,
    }
    return model


@pytest.mark.parametrize("whitened", [False, True])
def test_shift_tta_averages_the_ten_views_shifted_where_training_pads(whitened):
    rng = np.random.default_rng(3)
    model = zca_model(rng) if whitened else small_model()
    images = rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    transform = eval_transform(model.preprocessing)
    offsets = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]
    views = []
    for view in (images, images[:, :, ::-1]):
        for down, right in offsets:
            if whitened:  # the stored images are whitened: zeros (the mean) shift in
                moved = shift_images(transform(view).reshape(view.shape), down, right)
                views.append(model.forward(moved))
            else:  # raw uint8 images: black shifts in, as RandomCrop pads them
                views.append(model.forward(transform(shift_images(view, down, right))))
    expected = np.mean(views, axis=0)
    got = predict_logits(model, images, batch_size=2, tta_flip=True, tta_shift=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    alone = predict_logits(model, images, tta_shift=1)
    np.testing.assert_allclose(alone, np.mean(views[:5], axis=0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="shift must be >= 0 pixels, got -1"):
        predict_logits(model, images, tta_shift=-1)


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
