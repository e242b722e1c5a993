"""Shared pytest fixtures."""

# ============================================================================
# Image data fixtures (tests/test_sources.py, test_data.py, test_transforms.py)
#
# Tiny real image trees written with Pillow: ImageFolders (PNG and JPEG), tar.gz
# and zip archives of them, and an official-format CIFAR-10 python archive. The
# folder fixtures are session-scoped and must be treated as read-only; tests that
# need to damage files build their own with the `image_files` helpers.
# ============================================================================

import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# ============================================================================
# The run store of the whole session: a temporary folder, never the user's
# (~/.cache/npdl/run-store). Every process the tests start inherits it; project
# copies (make_project) get one of their own.
# ============================================================================


def pytest_configure(config):
    from npdl.run.store import STORE_ENV

    config.npdl_run_store = tempfile.mkdtemp(prefix="npdl-test-run-store-")
    os.environ[STORE_ENV] = config.npdl_run_store


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "npdl_run_store", ""), ignore_errors=True)


CLASS_NAMES = ("cat", "dog", "frog")
IMAGES_PER_CLASS = 10
SIDE = 32


def random_images(seed: int, count: int, size: tuple[int, int] = (SIDE, SIDE)) -> np.ndarray:
    """``uint8 (count, H, W, 3)`` images: a smooth random gradient plus noise.

    The gradient keeps JPEG artefacts small; the noise makes every image (and its
    mirror image) distinct.
    """
    rng = np.random.default_rng(seed)
    height, width = size
    rows = np.linspace(0, 1, height)[None, :, None, None]
    columns = np.linspace(0, 1, width)[None, None, :, None]
    slopes = rng.uniform(-120, 120, (count, 1, 1, 3))
    base = rng.uniform(60, 190, (count, 1, 1, 3))
    noise = rng.normal(0, 20, (count, height, width, 3))
    images = base + slopes * (rows - columns * 0.7) + noise
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def colour_images(count, seed):
    """3 learnable classes of 8x8 images: a dominant colour channel plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    images = rng.integers(0, 120, (count, 8, 8, 3))
    images[np.arange(count), :, :, labels] += 120
    return images.astype(np.uint8), labels.astype(np.int64)


def write_image_folder(
    root: Path, images_by_class: dict[str, np.ndarray], suffix: str = ".png"
) -> list[str]:
    """Write ``root/<class>/<index:03d><suffix>`` with Pillow; return relative names."""
    names = []
    for class_name, images in images_by_class.items():
        (root / class_name).mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(images):
            name = f"{class_name}/{index:03d}{suffix}"
            Image.fromarray(image).save(root / name)
            names.append(name)
    return names


def pack_tar(folder: Path, archive: Path, top: str | None = "images") -> Path:
    """Pack ``folder`` into a tar (compression from the suffix), under ``top/``."""
    suffix_modes = {".tar.gz": "w:gz", ".tgz": "w:gz", ".tar.bz2": "w:bz2", ".tar.xz": "w:xz"}
    mode = next((m for suffix, m in suffix_modes.items() if archive.name.endswith(suffix)), "w")
    with tarfile.open(archive, mode) as tar:
        tar.add(folder, arcname=top or ".")
    return archive


def pack_zip(folder: Path, archive: Path, top: str | None = None) -> Path:
    """Pack the files of ``folder`` into a zip, at its top level unless ``top`` is given."""
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            zipped.write(path, f"{top}/{relative}" if top else relative)
    return archive


def add_tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def to_cifar_rows(images: np.ndarray) -> np.ndarray:
    """``uint8 (N, 32, 32, 3)`` -> the official ``(N, 3072)`` channel-planar rows."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def write_cifar_python_archive(
    archive: Path,
    train_batches: list[tuple[np.ndarray, np.ndarray]],
    test_batch: tuple[np.ndarray, np.ndarray],
    classes: tuple[str, ...],
    replace: dict[str, bytes] | None = None,
) -> Path:
    """Write an official-format ``cifar-10-python.tar.gz``.

    Batches are ``(images uint8 (N, 32, 32, 3), labels int (N,))``, pickled with
    protocol 2 and byte-string keys like the Python 2 originals. ``replace`` maps a
    member's file name to raw bytes written instead of its pickle.
    """
    members = {
        f"data_batch_{number}": {b"data": to_cifar_rows(images), b"labels": labels.tolist()}
        for number, (images, labels) in enumerate(train_batches, start=1)
    }
    members["test_batch"] = {
        b"data": to_cifar_rows(test_batch[0]),
        b"labels": test_batch[1].tolist(),
    }
    members["batches.meta"] = {b"label_names": [name.encode() for name in classes]}
    with tarfile.open(archive, "w:gz") as tar:
        for name, content in members.items():
            data = (replace or {}).get(name) or pickle.dumps(content, protocol=2)
            add_tar_member(tar, f"cifar-10-batches-py/{name}", data)
    return archive


@dataclass(frozen=True)
class ImageFolderFixture:
    """A written ImageFolder and the pixels that went into it."""

    root: Path
    classes: list[str]
    names: list[str]  # "<class>/<file>", in listing order
    labels: np.ndarray  # int64 (N,)
    images: np.ndarray  # uint8 (N, 32, 32, 3), the arrays written (exact for PNG)


def _build_folder(root: Path, suffix: str, seed: int) -> ImageFolderFixture:
    pixels = random_images(seed, len(CLASS_NAMES) * IMAGES_PER_CLASS)
    images_by_class = {
        name: pixels[index * IMAGES_PER_CLASS : (index + 1) * IMAGES_PER_CLASS]
        for index, name in enumerate(CLASS_NAMES)
    }
    names = write_image_folder(root, images_by_class, suffix)
    labels = np.repeat(np.arange(len(CLASS_NAMES), dtype=np.int64), IMAGES_PER_CLASS)
    return ImageFolderFixture(root, list(CLASS_NAMES), names, labels, pixels)


@pytest.fixture(scope="session")
def png_folder(tmp_path_factory: pytest.TempPathFactory) -> ImageFolderFixture:
    """3 classes x 10 PNG images, 32x32 RGB (read-only)."""
    return _build_folder(tmp_path_factory.mktemp("png_folder"), ".png", seed=1)


@pytest.fixture(scope="session")
def jpeg_folder(tmp_path_factory: pytest.TempPathFactory) -> ImageFolderFixture:
    """3 classes x 10 JPEG images, 32x32 RGB (read-only; pixels are pre-compression)."""
    return _build_folder(tmp_path_factory.mktemp("jpeg_folder"), ".jpg", seed=2)


@dataclass(frozen=True)
class CifarArchiveFixture:
    """A tiny official-format CIFAR-10 python archive and its content."""

    path: Path
    classes: list[str]
    train_images: np.ndarray  # uint8 (50 - ish, 32, 32, 3), batches 1..5 in order
    train_labels: np.ndarray  # int64
    test_images: np.ndarray
    test_labels: np.ndarray


@pytest.fixture(scope="session")
def cifar_archive(tmp_path_factory: pytest.TempPathFactory) -> CifarArchiveFixture:
    """5 train batches of 8 images and a test batch of 9, 3 classes (read-only)."""
    rng = np.random.default_rng(3)
    train_batches = [
        (random_images(10 + number, 8), rng.integers(0, len(CLASS_NAMES), 8)) for number in range(5)
    ]
    test_batch = (random_images(20, 9), np.tile(np.arange(len(CLASS_NAMES)), 3))
    path = tmp_path_factory.mktemp("cifar") / "cifar-10-python.tar.gz"
    write_cifar_python_archive(path, train_batches, test_batch, CLASS_NAMES)
    return CifarArchiveFixture(
        path=path,
        classes=list(CLASS_NAMES),
        train_images=np.concatenate([images for images, _ in train_batches]),
        train_labels=np.concatenate([labels for _, labels in train_batches]).astype(np.int64),
        test_images=test_batch[0],
        test_labels=test_batch[1].astype(np.int64),
    )


class ImageFileHelpers:
    """The module-level helpers, handed to tests through the `image_files` fixture."""

    random_images = staticmethod(random_images)
    write_image_folder = staticmethod(write_image_folder)
    pack_tar = staticmethod(pack_tar)
    pack_zip = staticmethod(pack_zip)
    add_tar_member = staticmethod(add_tar_member)
    to_cifar_rows = staticmethod(to_cifar_rows)
    write_cifar_python_archive = staticmethod(write_cifar_python_archive)


@pytest.fixture
def image_files() -> type[ImageFileHelpers]:
    """Helpers to write image folders and archives in a test's own tmp_path."""
    return ImageFileHelpers


@pytest.fixture(scope="session")
def shared_cifar_jpeg_archive() -> Path:
    """The shared 50,000-image JPEG archive beside the repository (skip if absent)."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-train-jpeg.tar.gz"
    if not path.is_file():
        pytest.skip(f"shared archive {path} not found (expected ../shared/data/ beside the repo)")
    return path


# ============================================================================
# end of image data fixtures
# ============================================================================


# ============================================================================
# Real subsets of the shared archive and killable processes (end-to-end tests)
# ============================================================================

SHARED_ARCHIVE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-train-jpeg.tar.gz"
)


def write_real_subset(folder: Path, limit_files: int) -> Path:
    """``folder/prepared`` and ``folder/normalized`` (standardised) for ``limit_files``
    images of the shared archive, split 80/10/10 with seed 0, as the stages write them."""
    from npdl.data.normalization import fit_standardization, write_normalization
    from npdl.data.prepared import prepare_dataset, write_prepared

    data = prepare_dataset(
        SHARED_ARCHIVE, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0, limit_files=limit_files
    )
    manifest = write_prepared(folder / "prepared", data, {"source": "test"})
    stats = fit_standardization(data.images["train"])
    write_normalization(
        folder / "normalized", "standardize", stats, data_hash=manifest["content_hash"]
    )
    return folder


def start_killable(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """Start ``args`` in a process group of its own (``os.killpg`` then kills it and
    every process it started), its output discarded."""
    return subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


# ============================================================================
# Project copies: the project's files in a temporary git + DVC repository
# (tests/test_pipeline.py, tests/test_run_store.py)
# ============================================================================

ROOT = Path(__file__).resolve().parents[1]
#: conf/ shrunk so that `dvc repro` and `dvc exp run` (which recomposes conf/) stay small.
SMALL_PROJECT = [
    ("conf/data/cifar10.yaml", "limit_files: null", "limit_files: 600"),
    ("conf/data/cifar10.yaml", "image_size: 32", "image_size: 16"),
    ("conf/solver/default.yaml", "epochs: 140", "epochs: 2"),
    ("conf/solver/default.yaml", "batch_size: 256", "batch_size: 64"),
    ("conf/model/mlp.yaml", "hidden_size: [2048, 1024, 512]", "hidden_size: [64]"),
    ("conf/model/mlp.yaml", "input_pca: 400", "input_pca: 100"),
    ("conf/tune/base.yaml", "n_trials: 12", "n_trials: 3"),
    ("conf/tune/base.yaml", "epochs: 8", "epochs: 2"),
    ("conf/tune/base.yaml", "min_epochs: 2", "min_epochs: 1"),
]


def project_store(cwd) -> Path:
    """The run store of a project copy's commands: beside the copy, outside it."""
    cwd = Path(cwd)
    return cwd.parent / f"{cwd.name}-run-store"


def project_env(cwd, store=None) -> dict:
    """The environment of commands in a project copy: its own library on the path
    (not the installed one), the shared archive as the data source, its own run store
    (or ``store``)."""
    from npdl.run.store import STORE_ENV

    src = Path(cwd) / "src"
    extra = {"PYTHONPATH": str(src)} if src.is_dir() else {}
    extra[STORE_ENV] = str(store or project_store(cwd))
    return {**os.environ, "CIFAR10_SOURCE": str(SHARED_ARCHIVE), **extra}


def sh(args, cwd, check=True, store=None):
    """Run ``args`` in a project copy (``project_env``); its output, checked."""
    env = project_env(cwd, store)
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def project_files():
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # Artifacts of earlier runs in a working copy are not part of the project.
    skip = ("tests/", ".ci/", "data/", "models/", "metrics/", "outputs/", "multirun/")
    return [p for p in listed if (ROOT / p).is_file() and not p.startswith(skip)]


def make_project(repo: Path, edits=SMALL_PROJECT, store=None, repro: bool = True) -> str:
    """A git + DVC repo at ``repo`` holding the project with ``edits`` applied to conf/,
    after one `dvc repro` (into ``store``, default ``project_store(repo)``) committed as
    the baseline; returns that repro's output (``repro=False``: committed unrun, "")."""
    for rel in project_files():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, repo / rel)
    sh(["git", "init", "-q"], repo)
    sh(["git", "config", "user.email", "test@example.com"], repo)
    sh(["git", "config", "user.name", "test"], repo)
    sh(["dvc", "config", "--local", "core.site_cache_dir", str(repo / ".site-cache")], repo)
    for rel, old, new in edits:
        path = repo / rel
        assert old in path.read_text(), (rel, old)
        path.write_text(path.read_text().replace(old, new))
    sh([sys.executable, "stages/compose_params.py"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "project"], repo)
    if not repro:
        return ""
    first = sh(["dvc", "repro"], repo, store=store)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "baseline"], repo)
    return first.stdout
