import os

import pytest

from vaesim.utils import atomic_path, atomic_write_json, sha256_file


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_atomic_json_and_checksum(tmp_path):
    path = atomic_write_json(tmp_path / "x.json", {"b": 1, "a": [1, 2]})
    assert path.read_text().startswith("{")
    # sha256 of the exact bytes, checked against hashlib independently
    import hashlib

    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_atomic_files_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_json(tmp_path / "p.json", {})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_writer_that_recreates_the_file_still_leaves_umask_permissions(tmp_path):
    # safetensors.save_file removes and recreates its target 0600; the result must still be 0644
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    from vaesim.utils import atomic_path

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "w.safetensors") as tmp:
            save_file({"w": torch.ones(2)}, str(tmp))
        with atomic_path(tmp_path / "r.bin") as tmp:
            tmp.unlink()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, b"x")
            os.close(fd)
    finally:
        os.umask(old)
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "r.bin").stat().st_mode & 0o777 == 0o644
    assert load_file(str(tmp_path / "w.safetensors"))["w"].tolist() == [1.0, 1.0]
