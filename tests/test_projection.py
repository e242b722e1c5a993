"""The fixed input projection: a network fed the input's top principal components.

``Projection`` against its definition, a projected network against the same network fed
the projected input, finite differences through it, the model file, and the principal
components the normalize stage stores."""

import numpy as np
import pytest

from gradcheck import numerical_gradient, relative_error
from npdl import ClassificationNet, CrossEntropyFromLogits
from npdl.config import ModelConfig
from npdl.data.normalization import (
    fit_standardization,
    fit_zca,
    read_normalization,
    whiten,
    write_normalization,
)
from npdl.layers import Projection
from npdl.network import load_model
from npdl.run.build import build_model
from test_normalization import correlated_images


def orthonormal(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((rows, cols)))[0]


def test_projection_layer_is_its_matrix_product_and_learns_nothing():
    rng = np.random.default_rng(0)
    matrix, x, dout = orthonormal(12, 5), rng.standard_normal((7, 12)), rng.standard_normal((7, 5))
    layer = Projection(matrix)
    np.testing.assert_allclose(layer.forward(x), x @ matrix)
    np.testing.assert_allclose(layer.backward(dout), dout @ matrix.T)
    assert layer.params == {} and layer.buffers["P"] is matrix
    assert Projection(matrix, input_grad=False).backward(dout) is None
    with pytest.raises(ValueError, match=r"\(D, K\) matrix"):
        Projection(np.zeros(3))


def projected_pair(batch_norm=True, dropout=0.0):
    """The same network twice (one seed): fed x through a projection, and fed x @ P."""
    matrix = orthonormal(20, 6)
    common = dict(activation="relu", hidden_size=[9, 7], num_classes=4, init="he")
    common.update(batch_norm=batch_norm, dropout=dropout, dtype=np.float64)
    projected = ClassificationNet(input_size=20, input_projection=matrix, rng=3, **common)
    plain = ClassificationNet(input_size=6, rng=3, **common)
    return projected, plain, matrix


@pytest.mark.parametrize(("batch_norm", "dropout"), [(True, 0.0), (True, 0.3), (False, 0.0)])
def test_a_projected_network_is_the_network_on_the_projected_input(batch_norm, dropout):
    projected, plain, matrix = projected_pair(batch_norm, dropout)
    assert list(projected.params) == list(plain.params)
    x, y = np.random.default_rng(1).standard_normal((10, 20)), np.arange(10) % 4
    loss = CrossEntropyFromLogits()
    for net, inputs in ((projected, x), (plain, x @ matrix)):
        net.backward(loss.backward(net.forward(inputs), y))
    for name in plain.params:
        np.testing.assert_allclose(projected.grads[name], plain.grads[name], rtol=1e-10)
    assert projected.num_operation == plain.num_operation + 10 * matrix.size


def test_gradients_through_a_projected_network_against_finite_differences():
    projected, _, _ = projected_pair()
    loss = CrossEntropyFromLogits()
    x, y = np.random.default_rng(2).standard_normal((8, 20)), np.arange(8) % 4
    projected.backward(loss.backward(projected.forward(x), y))
    for name in ("W1", "gamma1", "beta1", "W2", "W3", "b3"):
        numeric = numerical_gradient(
            lambda: loss.forward(projected.forward(x), y), projected.params[name]
        )
        assert relative_error(projected.grads[name], numeric) < 1e-6, name


def test_the_projection_is_saved_with_the_model(tmp_path):
    projected, _, matrix = projected_pair()
    projected.eval()
    x = np.random.default_rng(4).standard_normal((5, 20))
    loaded = load_model(projected.save_model(tmp_path / "model.npz"))
    assert loaded.config()["input_projection"] == 6
    np.testing.assert_array_equal(loaded.buffers["P0"], matrix)
    np.testing.assert_allclose(loaded.forward(x), projected.forward(x))


@pytest.mark.parametrize(
    ("projection", "message"),
    [
        (np.zeros((19, 6)), r"shape \(input_size=20, K\)"),
        (0, "between 1 and input_size=20"),
        (21, "between 1 and input_size=20"),
    ],
)
def test_a_projection_that_does_not_fit_is_refused(projection, message):
    with pytest.raises(ValueError, match=message):
        ClassificationNet("relu", input_size=20, input_projection=projection)


def test_zca_basis_orders_components_by_variance_and_projects_pca_whitened():
    images = correlated_images(600)
    stats = fit_standardization(images)
    zca = fit_zca(images, stats, eps=0.1)
    components = zca["pca_components"].astype(np.float64)
    np.testing.assert_allclose(components.T @ components, np.eye(48), atol=1e-5)
    flat = whiten(images, {**stats, **zca}).reshape(len(images), -1).astype(np.float64)
    projected = flat @ components[:, :10]
    variances = projected.var(axis=0)
    assert np.all(np.diff(variances) <= 1e-3)  # decreasing variance
    # PCA-whitened: variance lambda / (lambda + eps), below 1 and above 1/2 on top ones
    assert np.all(variances[:3] < 1.0) and np.all(variances[:3] > 0.5)
    assert np.allclose(np.cov(projected, rowvar=False, bias=True), np.diag(variances), atol=0.02)


def test_normalize_folder_keeps_the_components_out_of_the_models_preprocessing(tmp_path):
    images = correlated_images(200)
    stats = fit_standardization(images)
    preprocessing = {**stats, **fit_zca(images, stats, eps=0.1)}
    write_normalization(tmp_path / "zca", "zca", preprocessing, zca_eps=0.1)
    read = read_normalization(tmp_path / "zca")
    assert "pca_components" not in read.preprocessing
    np.testing.assert_array_equal(read.pca_components(), preprocessing["pca_components"])
    write_normalization(tmp_path / "std", "standardize", stats)
    with pytest.raises(ValueError, match=r"holds no principal components .* normalize\.method=zca"):
        read_normalization(tmp_path / "std").pca_components()


def test_build_model_takes_the_top_components_or_says_what_is_missing():
    components = orthonormal(48, 48)
    config = ModelConfig(hidden_size=[8], input_pca=5)
    model = build_model(config, 48, 10, np.random.default_rng(0), components)
    np.testing.assert_allclose(model.buffers["P0"], components[:, :5], rtol=1e-6)
    assert model.params["W1"].shape == (5, 8)
    with pytest.raises(ValueError, match=r"model\.input_pca=5 needs the principal components"):
        build_model(config, 48, 10, np.random.default_rng(0), None)
    with pytest.raises(ValueError, match=r"model\.input_pca=60 must be at most the input's 48"):
        build_model(ModelConfig(input_pca=60), 48, 10, np.random.default_rng(0), components)


def test_an_evaluation_leaves_the_training_output_the_next_layer_cached_alone():
    rng = np.random.default_rng(6)
    layer, x = Projection(orthonormal(20, 6)), rng.standard_normal((8, 20))
    layer.internal = True  # in a network: its outputs are buffers kept across calls
    trained = layer.forward(x, training=True)
    kept = trained.copy()
    layer.forward(rng.standard_normal((30, 20)), training=False)
    np.testing.assert_array_equal(trained, kept)
    assert layer.forward(x, training=True) is trained  # and the buffer is reused
