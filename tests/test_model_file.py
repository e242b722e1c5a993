import json
import zipfile

import numpy as np
import pytest

from npdl import ClassificationNet, LeakyRelu, load_model


def trained_like_model():
    model = ClassificationNet(
        LeakyRelu(0.1),
        num_layer=3,
        input_size=12,
        hidden_size=[7, 5],
        num_classes=4,
        batch_norm=True,
        dropout=0.2,
        init="he",
        rng=0,
    )
    model.forward(np.random.default_rng(0).standard_normal((8, 12)))  # moves BN statistics
    model.class_names = ["a", "b", "c", "d"]
    model.preprocessing = {"mean": np.array([0.1, 0.2, 0.3]), "std": np.array([1.0, 2.0, 3.0])}
    model.metadata = {"data_hash": "abc", "config": {"lr": 0.01}}
    return model


def test_roundtrip_is_self_contained(tmp_path):
    model = trained_like_model()
    path = model.save_model(tmp_path / "model.npz")
    loaded = load_model(path)
    assert loaded.config() == model.config()
    assert loaded.class_names == model.class_names and loaded.metadata == model.metadata
    np.testing.assert_array_equal(loaded.preprocessing["std"], [1.0, 2.0, 3.0])
    x = np.random.default_rng(1).standard_normal((3, 12))
    model.eval()
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    assert not loaded.training
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temp files left


def test_default_path_follows_the_course(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = ClassificationNet(input_size=4, hidden_size=2).save_model()
    assert path.as_posix() == "models/cifar10_classification_net.npz" and path.exists()


def test_truncated_file_names_the_file(tmp_path):
    path = trained_like_model().save_model(tmp_path / "model.npz")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"model\.npz.*truncated or corrupt"):
        load_model(path)


def test_incompatible_format_version_is_refused(tmp_path):
    path = trained_like_model().save_model(tmp_path / "model.npz")
    with np.load(path) as f:
        arrays = dict(f)
    header = json.loads(str(arrays["header"]))
    header["format"] = 99
    arrays["header"] = np.array(json.dumps(header))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="model format 99"):
        load_model(path)


def test_weights_that_do_not_fit_the_architecture(tmp_path):
    path = trained_like_model().save_model(tmp_path / "model.npz")
    with np.load(path) as f:
        arrays = dict(f)
    arrays["state/W1"] = np.zeros((13, 7), dtype=np.float32)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"model.npz.*W1.*\(12, 7\)"):
        load_model(path)


def test_pickled_content_is_never_loaded(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, header=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"evil\.npz"):
        load_model(path)


def test_not_a_zip_file(tmp_path):
    path = tmp_path / "model.npz"
    path.write_text("hello")
    with pytest.raises(ValueError, match=r"model\.npz"):
        load_model(path)
    assert not zipfile.is_zipfile(path)
