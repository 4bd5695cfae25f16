"""The verified-hash cache: a restart reads no unchanged file; any change is read again; status tells the truth."""

from __future__ import annotations

import json
import os
from pathlib import Path

from vaesim.study import load_spec, plan_study, run_study, study_status
from vaesim.study.store.hashcache import CACHE_FILE, HashCache
from vaesim.study.store.verify import verify_study


def _flip(path: Path, keep_times: bool = False) -> None:
    """Flip one byte in the middle of ``path`` (same size); ``keep_times``: put its atime/mtime back."""
    before = os.stat(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    with open(path, "r+b") as handle:  # in place: same inode, as a disk or an editor's in-place write would
        handle.write(data)
    if keep_times:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_a_restart_takes_every_unchanged_files_digest_from_the_cache(tiny_copy):
    run_study(tiny_copy / "spec.yaml", tiny_copy, progress=False, threads=1)  # a copy: every file is new to it
    cache = HashCache.load(tiny_copy)
    files = json.loads((tiny_copy / CACHE_FILE).read_text())["files"]
    assert any(key.endswith(".safetensors") for key in files) and any(key.startswith("results/") for key in files)
    plan = plan_study(load_spec(tiny_copy / "spec.yaml", import_plugins=False))
    report = verify_study(tiny_copy, plan, cache=cache)
    assert not report.problems and report.checked > 100
    assert cache.misses == 0 and cache.hits > 100  # nothing read


def test_a_changed_file_is_read_again_even_with_its_mtime_put_back(tiny_copy):
    run_study(tiny_copy / "spec.yaml", tiny_copy, progress=False, threads=1)
    checkpoint = sorted(tiny_copy.glob("runs/*/checkpoints/step_*.safetensors"))[-1]
    summary = sorted(tiny_copy.glob("summaries/**/*.npz"))[0]
    _flip(checkpoint, keep_times=True)  # the ctime still moves: the cache does not trust it
    _flip(summary)
    cache = HashCache.load(tiny_copy)
    problems = {p.path for p in verify_study(tiny_copy, cache=cache).problems}
    assert str(checkpoint.relative_to(tiny_copy)) in problems and str(summary.relative_to(tiny_copy)) in problems
    assert cache.misses == 2
    # status says what verify says, for every kind of output (it used to check only probe, compare and store)
    status = study_status(tiny_copy)
    assert not status.complete
    assert status.corrupt["train"] == 1 and status.corrupt["extract"] == 1
    assert "complete" not in status.format().splitlines()[-1]
    run_study(tiny_copy / "spec.yaml", tiny_copy, progress=False, threads=1)  # the rerun repairs both
    assert study_status(tiny_copy).complete
    assert not verify_study(tiny_copy).problems  # every byte read: all match


def test_status_names_a_damaged_file_outside_every_task(tiny_copy):
    run_study(tiny_copy / "spec.yaml", tiny_copy, progress=False, threads=1)
    run = sorted(tiny_copy.glob("runs/*/checkpoint-sums.json"))[0]
    run.write_text("not json")  # the train task's own record
    (tiny_copy / "runs" / ".tmp-leftover").write_bytes(b"x")  # a killed writer's temporary file
    status = study_status(tiny_copy)
    assert not status.complete
    text = status.format()
    assert "problem: runs/.tmp-leftover: temporary file left by a killed writer" in text
    assert status.corrupt["train"] == 1
