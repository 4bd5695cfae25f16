"""Downloads against a local HTTP server on 127.0.0.1 (never the internet)."""

import hashlib
import http.server
import threading

import numpy as np
import pytest

from vaesim.cli import main
from vaesim.data import DownloadError, download_file
from vaesim.data.sources import SOURCES

PAYLOAD = bytes(np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8))
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves /good.bin, /corrupt.bin (one byte flipped) and /flaky.bin (the first response stops halfway).

    Honours ``Range: bytes=N-`` with 206 Partial Content.
    """

    flaky_failures = 1
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).requests.append((self.path, self.headers.get("Range")))
        body = PAYLOAD
        if self.path == "/corrupt.bin":
            body = PAYLOAD[:1000] + bytes([PAYLOAD[1000] ^ 1]) + PAYLOAD[1001:]
        elif self.path == "/tiny.bin":
            body = b"abc"
        elif self.path not in ("/good.bin", "/flaky.bin"):
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
            if start >= len(body):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if self.path == "/flaky.bin" and type(self).flaky_failures > 0:
            type(self).flaky_failures -= 1
            self.wfile.write(chunk[: len(chunk) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)


@pytest.fixture
def server():
    _Handler.flaky_failures = 1
    _Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_good_file_is_verified_and_renamed(server, tmp_path):
    dest = tmp_path / "data" / "file.bin"
    assert download_file(f"{server}/good.bin", dest, sha256=SHA, size=len(PAYLOAD)) == dest
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "data" / "file.bin.part").exists()
    # A verified file is not fetched again.
    count = len(_Handler.requests)
    download_file(f"{server}/good.bin", dest, sha256=SHA)
    assert len(_Handler.requests) == count


def test_corrupted_file_is_removed(server, tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match=rf"file.bin.part: SHA-256 [0-9a-f]{{64}}, expected {SHA}; the corrupted file was removed"):
        download_file(f"{server}/corrupt.bin", dest, sha256=SHA)
    assert not dest.exists() and not (tmp_path / "file.bin.part").exists()


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match=r"the transfer stopped after 150000 of 300000 bytes; .*file.bin.part is kept: rerun to resume"):
        download_file(f"{server}/flaky.bin", dest, sha256=SHA)
    part = tmp_path / "file.bin.part"
    assert part.stat().st_size == 150000 and not dest.exists()
    download_file(f"{server}/flaky.bin", dest, sha256=SHA)
    assert dest.read_bytes() == PAYLOAD
    assert _Handler.requests[-1] == ("/flaky.bin", "bytes=150000-")


def test_truncated_part_with_known_size_resumes(server, tmp_path):
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:1234])
    download_file(f"{server}/good.bin", dest, sha256=SHA, size=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD and _Handler.requests[-1] == ("/good.bin", "bytes=1234-")


def test_wrong_size_is_reported(server, tmp_path):
    with pytest.raises(DownloadError, match=r"size 300000 bytes, expected 299999; the file was removed"):
        download_file(f"{server}/good.bin", tmp_path / "f.bin", size=299999)


def test_offline_fails_fast_with_where_to_put_it(tmp_path):
    import socket

    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dest = tmp_path / "dsprites" / "x.npz"
    with pytest.raises(DownloadError, match=rf"could not connect.*Get the file from http://127.0.0.1:{port}/x.npz.*put it at {dest}"):
        download_file(f"http://127.0.0.1:{port}/x.npz", dest, timeout=2)


def test_cli_download_and_info(server, tmp_path, capsys):
    root = tmp_path / "root"
    code = main(["data", "download", "dsprites", "--root", str(root), "--url", f"{server}/good.bin", "--sha256", SHA])
    assert code == 0
    target = root / "dsprites" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    assert target.read_bytes() == PAYLOAD and f"ok {target}" in capsys.readouterr().out
    assert main(["data", "info", "dsprites", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "factor orientation: 40" in out and "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz: found" in out
    assert "status: ready" in out and "sha256 unknown" in out
    assert main(["data", "info", "shapes3d", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"folder: {root / 'shapes3d'}" in out and "3dshapes.h5: MISSING" in out and "0a0f6ed98baff276" in out
    code = main(["data", "download", "dsprites", "--root", str(tmp_path / "r2"), "--url", f"{server}/corrupt.bin", "--sha256", SHA])
    err = capsys.readouterr().err
    assert code == 2 and "corrupted file was removed" in err
    assert main(["data", "download", "dsprites", "--sha256", "xyz"]) == 2
    assert "--sha256: expected 64 hexadecimal characters" in capsys.readouterr().err
    assert main(["data", "download", "digits", "--root", str(root)]) == 0
    assert "nothing to download" in capsys.readouterr().out


def test_recorded_checksums_are_well_formed():
    for name, files in SOURCES.items():
        for remote in files:
            assert remote.url.startswith(("https://", "http://")) and remote.filename in remote.url
            assert remote.sha256 is None or (len(remote.sha256) == 64 and int(remote.sha256, 16) >= 0)
    assert all(f.sha256 and f.size for f in SOURCES["smallnorb"] + SOURCES["shapes3d"])


def test_cli_info_finds_local_files(tmp_path, capsys):
    from data_writers import write_cars3d, write_smallnorb

    write_smallnorb(tmp_path / "smallnorb", gz=True)
    write_cars3d(tmp_path / "cars3d", objects=2)
    assert main(["data", "info", "smallnorb", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "training-dat.mat: found as smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat.gz" in out
    assert "status: ready" in out and "factor azimuth: 18" in out
    assert main(["data", "info", "cars3d", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "car_*_mesh.mat: 2 found (expected 183)" in out and "missing files: run `vaesim data download cars3d`" in out
    assert main(["data", "info", "digits"]) == 0
    assert "files: none needed" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:  # no action: a usage error (issue 20), not a silent exit 0
        main(["data"])
    assert usage.value.code == 2
    assert "choose an action: list, download, info" in capsys.readouterr().err


def test_cars3d_archive_extraction_takes_only_car_files(tmp_path):
    import io
    import tarfile

    from data_writers import write_cars3d
    from vaesim.data import get_dataset
    from vaesim.data.download import extract_cars3d

    write_cars3d(tmp_path / "src", objects=2)
    archive = tmp_path / "nips2015-analogy-data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted((tmp_path / "src").glob("car_*_mesh.mat")):
            tar.add(path, arcname=f"data/cars/{path.name}")
        evil = b"should never be written"
        info = tarfile.TarInfo("../../escape.txt")
        info.size = len(evil)
        tar.addfile(info, io.BytesIO(evil))
    target = tmp_path / "root" / "cars3d"
    written = extract_cars3d(archive, target)
    assert [p.name for p in written] == ["car_000_mesh.mat", "car_001_mesh.mat"]
    assert sorted(p.name for p in target.iterdir()) == ["car_000_mesh.mat", "car_001_mesh.mat"]
    assert not (tmp_path / "escape.txt").exists()
    assert get_dataset("cars3d", directory=target).factor_sizes == (2, 3, 2)
    (tmp_path / "bad.tar.gz").write_bytes(b"\x1f\x8b" + bytes(50))
    with pytest.raises(DownloadError, match=r"bad.tar.gz: could not read the Cars3D archive"):
        extract_cars3d(tmp_path / "bad.tar.gz", target)


def test_cli_download_of_a_file_that_is_not_the_format_is_refused(server, tmp_path, capsys):
    """Issue 10 item 13: a 3-byte file from --url printed 'ok'."""
    root = tmp_path / "r3"
    code = main(["data", "download", "dsprites", "--root", str(root), "--url", f"{server}/tiny.bin"])
    captured = capsys.readouterr()
    assert code != 0 and "ok " not in captured.out
    assert "is not a valid npz file" in captured.err and captured.err.count("\n") == 1
    assert not list((root / "dsprites").glob("*.npz"))


def test_offline_download_leaves_no_empty_folder_behind(tmp_path, capsys):
    import socket

    from vaesim.cli import main

    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = tmp_path / "new-root"
    args = ["data", "download", "dsprites", "--root", str(root), "--url", f"http://127.0.0.1:{port}/x.npz", "--timeout", "2"]
    assert main(args) == 2
    assert "could not connect" in capsys.readouterr().err
    assert not root.exists()
    (tmp_path / "kept").mkdir()  # a root that was there before stays
    assert main([*args[:3], "--root", str(tmp_path / "kept"), *args[5:]]) == 2
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())
