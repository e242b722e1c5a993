"""Unpacking the course's download_url archives (npdl.data.unpacking)."""

import io
import tarfile
import zipfile

import pytest

from npdl.data.download import download_and_unpack
from npdl.data.sources import open_image_source
from npdl.data.unpacking import unpack_archive


def add_member(tar, name, data=b"", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data)
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def test_an_image_tree_under_one_folder_becomes_the_destination(png_folder, image_files, tmp_path):
    archive = image_files.pack_tar(png_folder.root, tmp_path / "cifar10.tar.gz", top="cifar10")
    root = unpack_archive(archive, tmp_path / "datasets" / "cifar10")
    source = open_image_source(root)
    assert source.classes == png_folder.classes and source.names == png_folder.names
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == ["cifar10"]


def test_links_are_skipped_and_other_files_kept_as_they_are(tmp_path):
    archive = tmp_path / "memory.tar"
    with tarfile.open(archive, "w") as tar:
        add_member(tar, "cifar10.pckl", b"pickle")
        add_member(tar, "notes/readme.txt", b"hello")
        add_member(tar, "passwd", kind=tarfile.SYMTYPE, link="/etc/passwd")
        add_member(tar, "hard", kind=tarfile.LNKTYPE, link="cifar10.pckl")
    root = unpack_archive(archive, tmp_path / "cifar10memory")
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "cifar10.pckl",
        "notes",
        "notes/readme.txt",
    ]
    assert (root / "cifar10.pckl").read_bytes() == b"pickle"


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/cron.d/x", "a/../../outside.txt"])
def test_a_member_outside_the_destination_leaves_nothing(tmp_path, name):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("cat/0.png", b"x")
        zipped.writestr(name, b"x")
    with pytest.raises(ValueError, match=r"absolute path or a path with '\.\.'"):
        unpack_archive(archive, tmp_path / "root")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip"]


def test_a_forced_download_overwrites_its_files_and_keeps_the_others(tmp_path):
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("cifar10.pckl", b"new")
    root = tmp_path / "root"
    root.mkdir()
    (root / "cifar10.pckl").write_bytes(b"old")
    (root / "mine.txt").write_bytes(b"kept")
    download_and_unpack(archive.as_uri(), root, progress=False)  # root holds data: no fetch
    assert (root / "cifar10.pckl").read_bytes() == b"old"
    download_and_unpack(archive.as_uri(), root, force=True, progress=False)
    assert (root / "cifar10.pckl").read_bytes() == b"new"
    assert (root / "mine.txt").read_bytes() == b"kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.zip", "root"]
