"""Listing ImageFolder directories (npdl.data.folders)."""

import numpy as np
import pytest
from PIL import Image

from npdl.data.folders import list_image_folder
from npdl.data.sources import open_image_source


def test_list_image_folder_sorts_classes_and_files(png_folder):
    classes, names, labels = list_image_folder(png_folder.root)
    assert classes == ["cat", "dog", "frog"]
    assert names == png_folder.names
    assert names[:2] == ["cat/000.png", "cat/001.png"]
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, png_folder.labels)


def test_list_image_folder_ignores_hidden_and_non_images_and_accepts_upper_case(
    tmp_path, image_files
):
    image_files.write_image_folder(
        tmp_path, {"b": image_files.random_images(0, 2), "a": image_files.random_images(1, 1)}
    )
    Image.fromarray(image_files.random_images(2, 1)[0]).save(tmp_path / "a" / "Z.PNG")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / ".hidden.png").write_bytes(b"ignored")
    (tmp_path / ".cache").mkdir()
    (tmp_path / "README.md").write_text("top-level files are not classes")

    classes, names, labels = list_image_folder(tmp_path)

    assert classes == ["a", "b"]
    assert names == ["a/000.png", "a/Z.PNG", "b/000.png", "b/001.png"]
    np.testing.assert_array_equal(labels, [0, 0, 1, 1])


def test_missing_root_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_image_folder(missing)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        open_image_source(missing)


def test_empty_class_folder_is_an_error_naming_it(tmp_path, image_files):
    image_files.write_image_folder(tmp_path, {"cat": image_files.random_images(0, 1)})
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"dog.*holds no images"):
        list_image_folder(tmp_path)


def test_folder_without_classes_is_an_error_naming_it(tmp_path):
    (tmp_path / "loose.png").write_bytes(b"")
    with pytest.raises(ValueError, match=rf"{tmp_path}.*no class sub-folders"):
        list_image_folder(tmp_path)


def test_nested_folder_inside_a_class_is_an_error(tmp_path, image_files):
    image_files.write_image_folder(tmp_path, {"cat": image_files.random_images(0, 1)})
    (tmp_path / "cat" / "more").mkdir()
    with pytest.raises(ValueError, match=r"sub-folder 'more'"):
        list_image_folder(tmp_path)
