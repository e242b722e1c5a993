"""The official CIFAR-10 python archive and its restricted unpickler (npdl.data.cifar)."""

import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from npdl.data.cifar import Cifar10PythonSource, read_cifar10_python_archive, restricted_unpickle
from npdl.data.sources import open_image_source


def test_read_cifar10_python_archive(cifar_archive):
    result = read_cifar10_python_archive(cifar_archive.path)
    assert result["classes"] == cifar_archive.classes
    assert result["train_images"].dtype == np.uint8
    assert result["train_images"].shape == (40, 32, 32, 3)
    assert result["train_labels"].dtype == np.int64
    assert result["test_images"].shape == (9, 32, 32, 3)
    # Exact pixels prove the channel-planar rows were turned back into (H, W, C).
    np.testing.assert_array_equal(result["train_images"], cifar_archive.train_images)
    np.testing.assert_array_equal(result["train_labels"], cifar_archive.train_labels)
    np.testing.assert_array_equal(result["test_images"], cifar_archive.test_images)
    np.testing.assert_array_equal(result["test_labels"], cifar_archive.test_labels)


def test_official_archive_is_detected_with_its_train_test_partition(cifar_archive):
    source = open_image_source(cifar_archive.path)
    assert isinstance(source, Cifar10PythonSource)
    assert len(source) == 49
    assert source.names[0] == "data_batch_1/00000"
    assert source.names[-1] == "test_batch/00008"
    np.testing.assert_array_equal(source.official_test_indices, np.arange(40, 49))
    np.testing.assert_array_equal(source.official_train_indices, np.arange(40))
    assert set(source.subsets[:40]) == {"train"}
    assert set(source.subsets[40:]) == {"test"}
    np.testing.assert_array_equal(
        source.read_images([41, 3]),
        [
            cifar_archive.test_images[1],
            cifar_archive.train_images[3],
        ],
    )


def test_official_archive_and_png_folder_of_the_same_images_agree(
    tmp_path, cifar_archive, image_files
):
    images = np.concatenate([cifar_archive.train_images, cifar_archive.test_images])
    labels = np.concatenate([cifar_archive.train_labels, cifar_archive.test_labels])
    # File names carry the official position, so folder order = (class, position).
    for position, (image, label) in enumerate(zip(images, labels, strict=True)):
        class_folder = tmp_path / cifar_archive.classes[label]
        class_folder.mkdir(exist_ok=True)
        Image.fromarray(image).save(class_folder / f"{position:05d}.png")

    folder = open_image_source(tmp_path)
    official = open_image_source(cifar_archive.path)
    folder_order = np.argsort(labels, kind="stable")

    assert folder.classes == official.classes
    np.testing.assert_array_equal(folder.labels, official.labels[folder_order])
    np.testing.assert_array_equal(folder.read_images(), official.read_images(folder_order))


def test_official_archive_images_can_be_resized(cifar_archive):
    resized = open_image_source(cifar_archive.path).read_images([0, 1], size=16)
    assert resized.shape == (2, 16, 16, 3)
    assert resized.dtype == np.uint8


def test_incomplete_official_archive_names_the_missing_members(tmp_path, image_files):
    archive = tmp_path / "partial.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        meta = pickle.dumps({b"label_names": [b"a"]}, protocol=2)
        image_files.add_tar_member(tar, "cifar-10-batches-py/batches.meta", meta)
        batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}
        image_files.add_tar_member(
            tar, "cifar-10-batches-py/data_batch_1", pickle.dumps(batch, protocol=2)
        )
    with pytest.raises(ValueError, match=r"missing members \['data_batch_2'"):
        read_cifar10_python_archive(archive)
    with pytest.raises(ValueError, match="missing members"):
        open_image_source(archive)


class _RunsACommand:
    """Pickles as a call to os.system, like a malicious pickle would."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        import os

        return os.system, (self.command,)


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _RunsACommand(f"touch {marker}")}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"forbidden global (posix|nt|os)\.system"):
        restricted_unpickle(payload, "evil.pickle")
    assert not marker.exists()


def test_restricted_unpickler_loads_numpy_arrays_and_bytes():
    original = {b"data": np.arange(12, dtype=np.uint8).reshape(3, 4), b"names": [b"x"]}
    loaded = restricted_unpickle(pickle.dumps(original, protocol=2), "ok.pickle")
    np.testing.assert_array_equal(loaded[b"data"], original[b"data"])
    assert loaded[b"names"] == [b"x"]


def test_restricted_unpickler_refuses_other_codecs():
    import codecs

    class UsesRot13:
        def __reduce__(self):
            return codecs.encode, ("abc", "rot13")

    payload = pickle.dumps(UsesRot13(), protocol=2)
    # codecs.encode pickles as _codecs.encode: allowed by name, but only for latin1.
    with pytest.raises(pickle.UnpicklingError, match="rot13"):
        restricted_unpickle(payload, "codec.pickle")


def test_malicious_batch_in_official_archive_is_refused(tmp_path, image_files, cifar_archive):
    marker = tmp_path / "pwned"
    archive = image_files.write_cifar_python_archive(
        tmp_path / "cifar-10-python.tar.gz",
        [(cifar_archive.train_images[:2], cifar_archive.train_labels[:2])] * 5,
        (cifar_archive.test_images[:2], cifar_archive.test_labels[:2]),
        tuple(cifar_archive.classes),
        replace={"data_batch_3": pickle.dumps(_RunsACommand(f"touch {marker}"), protocol=2)},
    )
    with pytest.raises(pickle.UnpicklingError, match=r"data_batch_3.*forbidden global"):
        open_image_source(archive)
    assert not marker.exists()
