"""http(s) sources: a real download from a server on 127.0.0.1, checksums, timeouts."""

import hashlib
import http.server
import socket
import threading
from functools import partial

import pytest

from npdl.data.download import download, file_md5, resolve_source


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/www on loopback; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "data.tar.gz").write_bytes(b"x" * 300_000)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_checks_md5_and_is_reused(server, tmp_path):
    md5 = hashlib.md5(b"x" * 300_000).hexdigest()
    path = download(f"{server}/data.tar.gz", tmp_path / "cache", md5=md5, progress=False)
    assert path.read_bytes() == b"x" * 300_000 and file_md5(path) == md5
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["data.tar.gz"]
    # A verified copy is reused: the server is not asked again.
    (tmp_path / "www" / "data.tar.gz").unlink()
    assert resolve_source(f"{server}/data.tar.gz", tmp_path / "cache", md5=md5) == path


def test_checksum_mismatch_keeps_nothing(server, tmp_path):
    with pytest.raises(ValueError, match=r"checksum mismatch .* expected md5 0{32}"):
        download(f"{server}/data.tar.gz", tmp_path / "cache", md5="0" * 32, progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_file_and_unreachable_server_fail_clearly(server, tmp_path):
    with pytest.raises(ConnectionError, match=r"could not download .*nothing\.tar\.gz"):
        download(f"{server}/nothing.tar.gz", tmp_path / "cache", progress=False)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionError, match="CIFAR10_SOURCE"):
        download(f"http://127.0.0.1:{port}/a.tar.gz", tmp_path / "cache", timeout=2, progress=False)


def test_a_silent_server_times_out_instead_of_hanging(tmp_path):
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/a.tar.gz"
        with pytest.raises(ConnectionError, match=r"timeout 0.5 s"):
            download(url, tmp_path / "cache", timeout=0.5, progress=False)


def test_missing_local_source_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.tar\.gz' does not exist"):
        resolve_source(tmp_path / "nowhere.tar.gz", tmp_path / "cache")
