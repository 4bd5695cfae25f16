"""Repair deletes only what is verified bad (issue 10 item 6)."""

from __future__ import annotations

import errno
import json

import pytest

from vaesim.study import StudyFailed, run_study
from vaesim.study import plan as layout
from vaesim.study.stages import checkpoints as run_files
from vaesim.study.stages.files import discard
from vaesim.study.store import verify
from vaesim.study.store.tables import result_files
from vaesim.utils import sha256_file

pytestmark = pytest.mark.slow


def _checkpoints(study, run_id) -> dict[str, str]:
    folder = study / layout.run_dir(run_id) / "checkpoints"
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())}


def _untouched(study, run_id) -> dict[str, int]:
    """Modification times of a run's checkpoint files (a retrained file is written again)."""
    folder = study / layout.run_dir(run_id) / "checkpoints"
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def _results(study) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in result_files(study)}


def test_a_load_error_of_an_intact_checkpoint_deletes_nothing(tiny_copy, tiny_spec, monkeypatch):
    import vaesim.training

    run_id = layout.plan_study(tiny_spec).runs[2].run_id
    checkpoints, results = _untouched(tiny_copy, run_id), _results(tiny_copy)
    (tiny_copy / layout.summary_path(run_id, 10)).unlink()

    def out_of_memory(*args, **kwargs):
        raise MemoryError("cannot allocate 9 GB")

    monkeypatch.setattr(vaesim.training, "load_checkpoint", out_of_memory)
    with pytest.raises(StudyFailed, match="MemoryError: cannot allocate 9 GB"):
        run_study(tiny_spec, tiny_copy, progress=False, threads=1)
    assert _untouched(tiny_copy, run_id) == checkpoints  # nothing retrained
    assert (tiny_copy / layout.checkpoint_sums_path(run_id)).is_file()
    assert (tiny_copy / layout.summary_path(run_id, 20)).is_file()
    assert _results(tiny_copy) == results


def test_an_unreadable_sums_record_deletes_nothing(tiny_copy, tiny_spec, monkeypatch):
    run_id = layout.plan_study(tiny_spec).runs[4].run_id
    checkpoints, results = _untouched(tiny_copy, run_id), _results(tiny_copy)
    (tiny_copy / layout.summary_path(run_id, 0)).unlink()
    real = run_files.read_sums

    def eio(path):
        if run_id in str(path):
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real(path)

    for reader in (run_files, verify):  # the extract stage and verify (the runner's repairs) read the record
        monkeypatch.setattr(reader, "read_sums", eio)
    with pytest.raises(StudyFailed, match="Input/output error"):
        run_study(tiny_spec, tiny_copy, progress=False, threads=1)
    assert _untouched(tiny_copy, run_id) == checkpoints
    assert (tiny_copy / layout.summary_path(run_id, 20)).is_file() and _results(tiny_copy) == results


def test_a_checkpoint_damaged_before_the_sums_were_written_is_retrained(tiny_copy, tiny_spec):
    run_id = layout.plan_study(tiny_spec).runs[3].run_id
    checkpoints = _checkpoints(tiny_copy, run_id)
    sums_file = tiny_copy / layout.checkpoint_sums_path(run_id)
    sums = json.loads(sums_file.read_text())
    weights = tiny_copy / layout.run_dir(run_id) / "checkpoints" / "step_00000020.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped weight: safetensors still loads it
    weights.write_bytes(bytes(data))
    # A runner killed between DONE and the sums write: no sums, nothing extracted from this run yet.
    sums_file.unlink()
    for step in (0, 10, 20):
        discard(tiny_copy / layout.summary_path(run_id, step))
        discard(tiny_copy / layout.activations_path(run_id, step))
    run_study(tiny_spec, tiny_copy, progress=False, threads=1)
    assert json.loads(sums_file.read_text()) == sums  # the flipped file was not accepted
    assert _checkpoints(tiny_copy, run_id) == checkpoints  # retrained from step 10: the same bytes again


def test_a_garbled_sums_record_is_rebuilt_without_retraining(tiny_copy, tiny_spec):
    run_id = layout.plan_study(tiny_spec).runs[0].run_id
    sums_file = tiny_copy / layout.checkpoint_sums_path(run_id)
    sums = json.loads(sums_file.read_text())
    folder = tiny_copy / layout.run_dir(run_id) / "checkpoints"
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    sums_file.write_bytes(b"\x00\x01garbage")
    run_study(tiny_spec, tiny_copy, progress=False, threads=1)
    assert json.loads(sums_file.read_text()) == sums
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes
