"""Decoding image files (npdl.data.decoding), serially and in worker processes."""

import io

import numpy as np
import pytest
from PIL import Image

from npdl.data.decoding import decode_image, decoding_pool
from npdl.data.sources import open_image_source


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


# -------------------------------------------------------------- parallel decoding


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
