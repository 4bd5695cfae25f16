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
