"""Listing tar and zip archives of an ImageFolder tree, and refusing unsafe members
(npdl.data.archives, read through npdl.data.sources.ArchiveImageSource)."""

import io
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from npdl.data.archives import list_image_archive
from npdl.data.sources import ArchiveImageSource, open_image_source


def _encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


@pytest.fixture(params=["png", "jpeg"])
def image_folder(request, png_folder, jpeg_folder):
    return png_folder if request.param == "png" else jpeg_folder


def test_tar_gz_zip_and_folder_give_the_same_images(tmp_path, image_folder, image_files):
    folder = open_image_source(image_folder.root)
    tar_gz = image_files.pack_tar(image_folder.root, tmp_path / "images.tar.gz", top="images")
    tgz_flat = image_files.pack_tar(image_folder.root, tmp_path / "flat.tgz", top=None)
    plain_tar = image_files.pack_tar(image_folder.root, tmp_path / "images.tar", top="x")
    tar_xz = image_files.pack_tar(image_folder.root, tmp_path / "images.tar.xz", top="x")
    zip_flat = image_files.pack_zip(image_folder.root, tmp_path / "images.zip")
    zip_top = image_files.pack_zip(image_folder.root, tmp_path / "top.zip", top="cifar")
    expected = folder.read_images()

    for archive in (tar_gz, tgz_flat, plain_tar, tar_xz, zip_flat, zip_top):
        source = open_image_source(archive)
        assert isinstance(source, ArchiveImageSource), archive
        assert source.classes == folder.classes, archive
        assert source.names == folder.names, archive
        np.testing.assert_array_equal(source.labels, folder.labels)
        np.testing.assert_array_equal(source.read_images(), expected, err_msg=str(archive))
        np.testing.assert_array_equal(source.read_images([29, 0, 3]), expected[[29, 0, 3]])
    assert list_image_archive(tar_gz)[1] == folder.names


def test_tar_too_large_for_memory_is_streamed_with_the_same_result(
    tmp_path, png_folder, image_files, monkeypatch
):
    tar_gz = image_files.pack_tar(png_folder.root, tmp_path / "images.tar.gz", top="images")
    from_memory = open_image_source(tar_gz)
    monkeypatch.setattr("npdl.data.archives.IN_MEMORY_TAR_BYTES", 1024)  # forces the stream path
    streamed = open_image_source(tar_gz)
    assert streamed.names == from_memory.names and streamed.classes == from_memory.classes
    np.testing.assert_array_equal(streamed.read_images(), from_memory.read_images())


def test_tar_member_with_dot_dot_is_rejected(tmp_path, image_files):
    png = _encode(Image.fromarray(image_files.random_images(0, 1)[0]), "PNG")
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        image_files.add_tar_member(tar, "images/cat/000.png", png)
        image_files.add_tar_member(tar, "images/cat/../../../escaped.png", png)
    with pytest.raises(ValueError, match=r"'images/cat/\.\./\.\./\.\./escaped\.png'.*'\.\.'"):
        open_image_source(archive)


def test_absolute_member_names_are_rejected(tmp_path, image_files):
    png = _encode(Image.fromarray(image_files.random_images(0, 1)[0]), "PNG")
    tar_archive = tmp_path / "absolute.tar"
    with tarfile.open(tar_archive, "w") as tar:
        image_files.add_tar_member(tar, "/etc/cat/000.png", png)
    zip_archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(zip_archive, "w") as zipped:
        zipped.writestr("cat/000.png", png)
        zipped.writestr("../cat/001.png", png)
    with pytest.raises(ValueError, match="absolute path"):
        open_image_source(tar_archive)
    with pytest.raises(ValueError, match=r"'\.\./cat/001\.png'"):
        open_image_source(zip_archive)


def test_archive_with_mixed_depths_is_not_an_image_folder(tmp_path, image_files):
    png = _encode(Image.fromarray(image_files.random_images(0, 1)[0]), "PNG")
    archive = tmp_path / "mixed.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("cat/000.png", png)
        zipped.writestr("deeper/dog/000.png", png)
    with pytest.raises(ValueError, match=r"not an ImageFolder tree.*depths \[2, 3\]"):
        open_image_source(archive)


def test_empty_class_folder_in_archive_is_an_error(tmp_path, image_files):
    png = _encode(Image.fromarray(image_files.random_images(0, 1)[0]), "PNG")
    archive = tmp_path / "empty_class.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("top/cat/000.png", png)
        zipped.writestr("top/dog/", b"")
    with pytest.raises(ValueError, match=r"'top/dog/'.*holds no images"):
        open_image_source(archive)


def test_a_file_that_is_no_archive_is_refused(tmp_path):
    not_archive = tmp_path / "data.tar.gz"
    not_archive.write_bytes(b"plain text, not gzip")
    with pytest.raises(ValueError, match=r"data\.tar\.gz is neither a folder nor"):
        open_image_source(not_archive)


def test_corrupt_member_in_archive_names_archive_and_member(tmp_path, image_files):
    folder = tmp_path / "folder"
    image_files.write_image_folder(folder, {"cat": image_files.random_images(1, 2)})
    (folder / "cat" / "001.png").write_bytes(b"garbage")
    archive = image_files.pack_tar(folder, tmp_path / "broken.tar.gz", top="images")
    with pytest.raises(ValueError, match=r"broken\.tar\.gz:images/cat/001\.png"):
        open_image_source(archive).read_images()


def test_decompression_bomb_members_are_refused_before_reading(tmp_path, monkeypatch):
    """A member whose declared size is absurd stops the listing, naming it."""
    import npdl.data.archives as archives

    monkeypatch.setattr(archives, "MAX_MEMBER_BYTES", 1000)
    big = np.zeros((64, 64, 3), dtype=np.uint8)
    folder = tmp_path / "tree" / "cat"
    folder.mkdir(parents=True)
    Image.fromarray(big).save(folder / "big.bmp")  # 12 KB uncompressed
    for suffix, pack in (("tar.gz", "w:gz"), ("zip", None)):
        archive = tmp_path / f"bomb.{suffix}"
        if pack:
            with tarfile.open(archive, pack) as tar:
                tar.add(tmp_path / "tree", arcname="tree")
        else:
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
                zipped.write(folder / "big.bmp", "tree/cat/big.bmp")
        with pytest.raises(ValueError, match=r"big\.bmp' claims 12,.* bytes uncompressed"):
            open_image_source(archive)
