"""``vaesim study verify``: every damaged file named with what a rerun does, nothing changed (issue 10)."""

from __future__ import annotations

import shutil

import pytest

from vaesim.cli import main
from vaesim.study import plan as layout
from vaesim.study import run_study
from vaesim.study.store.tables import result_files
from vaesim.study.store.verify import verify_study
from vaesim.utils import sha256_file

pytestmark = pytest.mark.slow


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _snapshot(root):
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_verify_lists_every_damaged_file_and_changes_nothing(tiny_copy, tiny_spec, capsys):
    assert verify_study(tiny_copy).ok
    assert main(["study", "verify", str(tiny_copy)]) == 0
    plan = layout.plan_study(tiny_spec)
    run = plan.runs[1].run_id
    damaged = {
        "checkpoint": tiny_copy / layout.run_dir(run) / "checkpoints" / "step_00000010.safetensors",
        "summary": tiny_copy / layout.summary_path(plan.runs[2].run_id, 20),
        "probe": tiny_copy / layout.probe_path(tiny_spec.datasets[0]),
        "results": result_files(tiny_copy)[5],
        "runs table": tiny_copy / layout.RUNS_TABLE,
        "training log": tiny_copy / layout.run_dir(plan.runs[6].run_id) / "metrics.jsonl",
    }
    for path in damaged.values():
        _flip(path)
    shutil.copy(result_files(tiny_copy)[0], tiny_copy / "results" / "extra.parquet")
    (tiny_copy / "summaries" / ".tmp-step_00000010.npz.abc123").write_bytes(b"x" * 1000)
    before = _snapshot(tiny_copy)
    assert main(["study", "verify", str(tiny_copy)]) == 1
    out = capsys.readouterr().out
    assert _snapshot(tiny_copy) == before  # verify only reads
    for what, path in damaged.items():
        assert str(path.relative_to(tiny_copy)) in out, what
    assert f"retrains run {run}" in out
    assert "extra.parquet: is not an output of this study's spec" in out
    assert ".tmp-step_00000010.npz.abc123: temporary file left by a killed writer; a rerun deletes it" in out
    assert "  8 problem(s)" in out


def test_a_rerun_removes_temporary_leftovers(tiny_copy, tiny_spec):
    leftover = tiny_copy / "results" / ".tmp-x.parquet.k1ll3d"
    leftover.write_bytes(b"partial" * 1000)
    run_study(tiny_spec, tiny_copy, progress=False, threads=1)
    assert not leftover.exists()
    assert verify_study(tiny_copy).ok


def test_status_verify_and_query_never_load_torch(finished_tiny):
    """The read-only commands check the spec and the files without torch (they start in well under 2 s)."""
    import subprocess
    import sys

    script = ("import sys; from vaesim.cli import main; "
              "codes = [main(['study', 'status', sys.argv[1]]), main(['study', 'verify', sys.argv[1]]), "
              "main(['query', sys.argv[1], 'SELECT count(*) AS n FROM results'])]; "
              "print('CODES', codes, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script, str(finished_tiny)], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "CODES [0, 0, 0] False", out.stdout + out.stderr


def test_a_finished_study_gets_no_unfinished_warning_from_report(finished_tiny):
    from vaesim.report.commands import unfinished_warning

    assert unfinished_warning(finished_tiny) is None
