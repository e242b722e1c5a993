"""Reading labelled images from folders, archives and the CIFAR-10 python release."""

import io
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from npdl.sources import (
    ArchiveImageSource,
    Cifar10PythonSource,
    FolderImageSource,
    decode_image,
    decoding_pool,
    list_image_archive,
    list_image_folder,
    open_image_source,
    read_cifar10_python_archive,
    restricted_unpickle,
)

# ------------------------------------------------------------------------ listing


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


# ----------------------------------------------------------------------- decoding


def test_png_folder_reads_the_exact_pixels(png_folder):
    source = open_image_source(png_folder.root)
    assert isinstance(source, FolderImageSource)
    images = source.read_images()
    assert images.dtype == np.uint8
    assert images.shape == (30, 32, 32, 3)
    np.testing.assert_array_equal(images, png_folder.images)


def test_read_images_follows_the_requested_order_with_repeats(png_folder):
    source = open_image_source(png_folder.root)
    images = source.read_images([7, 2, 7, -1])
    np.testing.assert_array_equal(images, png_folder.images[[7, 2, 7, 29]])
    assert source.read_images([]).shape == (0, 32, 32, 3)
    with pytest.raises(IndexError, match="30"):
        source.read_images([30])


def test_jpeg_fast_path_matches_pillow_image_open(jpeg_folder):
    for name in jpeg_folder.names:
        data = (jpeg_folder.root / name).read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            expected = np.asarray(image.convert("RGB"))
        np.testing.assert_array_equal(decode_image(data, name), expected)


def test_jpeg_images_land_in_the_slot_of_the_image_written(jpeg_folder):
    images = open_image_source(jpeg_folder.root).read_images().astype(int)
    written = jpeg_folder.images.astype(int)
    # JPEG is lossy: check each decoded image is nearest to the one written there.
    distances = np.abs(images[:, None] - written[None]).mean(axis=(2, 3, 4))
    np.testing.assert_array_equal(distances.argmin(axis=1), np.arange(len(written)))


def _encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def test_grayscale_is_converted_to_rgb():
    gray = np.arange(32 * 32, dtype=np.uint32).reshape(32, 32).astype(np.uint8)
    decoded = decode_image(_encode(Image.fromarray(gray, "L"), "PNG"), "gray.png")
    assert decoded.shape == (32, 32, 3)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[..., channel], gray)


def test_rgba_drops_alpha_keeping_the_stored_colour(image_files):
    rgb = image_files.random_images(5, 1)[0]
    alpha = np.zeros((32, 32, 1), np.uint8)  # fully transparent: colour still kept
    rgba = Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA")
    np.testing.assert_array_equal(decode_image(_encode(rgba, "PNG"), "rgba.png"), rgb)


def test_palette_images_are_looked_up_including_transparent_ones():
    palette_image = Image.new("P", (32, 32))
    palette = [0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9)
    palette_image.putpalette(palette)
    indices = np.zeros((32, 32), np.uint8)
    indices[:, 16:] = 1
    indices[:8] = 2
    palette_image.putdata(indices.reshape(-1).tolist())
    expected = np.array(palette[:9], np.uint8).reshape(3, 3)[indices]

    plain = decode_image(_encode(palette_image, "PNG"), "palette.png")
    transparent = decode_image(_encode(palette_image, "PNG", transparency=0), "palette_t.png")
    gif = decode_image(_encode(palette_image, "GIF"), "palette.gif")

    for decoded in (plain, transparent, gif):
        np.testing.assert_array_equal(decoded, expected)


def test_cmyk_jpeg_is_converted_to_rgb():
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in CMYK
    decoded = decode_image(_encode(cmyk, "JPEG", quality=95), "cmyk.jpg")
    assert decoded.shape == (32, 32, 3)
    assert np.abs(decoded.astype(int) - [255, 0, 0]).max() < 8


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_other_sizes_are_resized_bilinearly(image_files, image_format):
    large = image_files.random_images(6, 1, size=(48, 40))[0]
    data = _encode(Image.fromarray(large), image_format)
    with Image.open(io.BytesIO(data)) as opened:
        expected = np.asarray(opened.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
    decoded = decode_image(data, "large")
    np.testing.assert_array_equal(decoded, expected)
    assert decode_image(data, "large", size=(24, 16)).shape == (24, 16, 3)


def test_grayscale_jpeg_takes_the_general_path():
    gray = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    decoded = decode_image(_encode(Image.fromarray(gray, "L"), "JPEG", quality=95), "g.jpg")
    np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])
    assert np.abs(decoded[..., 1].astype(int) - gray).max() < 8


@pytest.mark.parametrize(
    ("suffix", "damage"),
    [
        (".png", lambda data: data[: len(data) // 2]),
        (".jpg", lambda data: data[: len(data) // 2]),
        (".png", lambda data: b"this is not an image at all"),
        (".jpg", lambda data: data[:200] + bytes(len(data) - 200)),
    ],
    ids=["truncated-png", "truncated-jpeg", "not-an-image", "zeroed-jpeg"],
)
def test_corrupt_files_raise_value_error_naming_the_file(tmp_path, image_files, suffix, damage):
    image_files.write_image_folder(tmp_path, {"cat": image_files.random_images(7, 3)}, suffix)
    broken = tmp_path / "cat" / f"001{suffix}"
    broken.write_bytes(damage(broken.read_bytes()))
    source = open_image_source(tmp_path)
    with pytest.raises(ValueError, match=f"cannot decode image .*001{suffix}"):
        source.read_images()
    # The intact files still read.
    assert source.read_images([0, 2]).shape == (2, 32, 32, 3)


# ----------------------------------------------------------------------- archives


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
    monkeypatch.setattr("npdl.sources.IN_MEMORY_TAR_BYTES", 1024)  # forces the stream path
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


def test_parallel_decoding_matches_serial_and_reports_errors(tmp_path, image_files, png_folder):
    archive = image_files.pack_tar(png_folder.root, tmp_path / "images.tar.gz")
    source = open_image_source(archive)
    # Every image, some twice, out of order: several images per worker chunk.
    indices = np.r_[np.arange(30)[::-1], 5, 1, 29]
    np.testing.assert_array_equal(
        source.read_images(indices, workers=2), source.read_images(indices, workers=1)
    )

    folder = tmp_path / "broken"
    image_files.write_image_folder(folder, {"cat": image_files.random_images(1, 4)})
    (folder / "cat" / "002.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"cannot decode image .*002\.png"):
        open_image_source(folder).read_images(workers=2)


# ----------------------------------------------------------- CIFAR-10 python archive


def test_a_decoding_pool_started_early_is_reused_across_reads(tmp_path, image_files, png_folder):
    archive = image_files.pack_tar(png_folder.root, tmp_path / "images.tar.gz")
    with decoding_pool(2) as pool:
        source = open_image_source(archive)
        first = source.read_images(workers=pool)
        again = source.read_images([5, 1, 5], workers=pool)
    serial = source.read_images()
    np.testing.assert_array_equal(first, serial)
    np.testing.assert_array_equal(again, serial[[5, 1, 5]])


@pytest.mark.parametrize("workers", [None, 2])
def test_progress_is_reported_up_to_the_total(tmp_path, image_files, png_folder, workers):
    archive = image_files.pack_tar(png_folder.root, tmp_path / "images.tar.gz")
    source = open_image_source(archive)
    calls = []
    source.read_images(workers=workers, progress=lambda done, total: calls.append((done, total)))
    total = len(source)
    assert calls and calls[-1] == (total, total)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


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


# -------------------------------------------------------------------- real data


@pytest.mark.slow
def test_shared_jpeg_archive_subset(shared_cifar_jpeg_archive):
    from npdl.data import ImageFolderDataset

    source = open_image_source(shared_cifar_jpeg_archive)
    classes = ["airplane", "automobile", "bird", "cat", "deer"]
    classes += ["dog", "frog", "horse", "ship", "truck"]
    assert source.classes == classes
    assert len(source) == 50_000
    np.testing.assert_array_equal(np.bincount(source.labels), [5000] * 10)
    assert source.names[0] == "airplane/0000.jpg"

    dataset = ImageFolderDataset(source, mode="train", limit_files=100, seed=0)
    assert dataset.images.shape == (100, 32, 32, 3)
    assert dataset.images.dtype == np.uint8
    assert dataset.classes == classes
    np.testing.assert_array_equal(np.bincount(dataset.labels), [10] * 10)
    assert all(
        name.split("/")[0] == classes[label]
        for name, label in zip(dataset.names, dataset.labels, strict=True)
    )
    assert 40 < dataset.images.mean() < 200  # real photos, not blank buffers


def test_decompression_bomb_members_are_refused_before_reading(tmp_path, monkeypatch):
    """A member whose declared size is absurd stops the listing, naming it."""
    import npdl.sources as sources

    monkeypatch.setattr(sources, "MAX_MEMBER_BYTES", 1000)
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
