"""Study files in the wrong shape (issue 21): a garbled failures.json, folders replaced by files or symlinks."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml

from study_tiny import TINY

from vaesim.cli import main
from vaesim.study import run_study
from vaesim.study.run.shapes import SET_ASIDE


@pytest.fixture
def fresh_study(tmp_path):
    """A study directory with its recorded spec and nothing computed yet (status works without training)."""
    study = tmp_path / "study"
    study.mkdir()
    (study / "spec.yaml").write_text(yaml.safe_dump(copy.deepcopy(TINY)))
    return study


@pytest.mark.parametrize("garbage", [b"{not json", b"\xff\xfe\x00binary", b"[1, 2, 3]", b'{"task_id": "x"}',
                                     b'[{"task_id": "train/x"}]'])
def test_status_reports_a_garbled_failures_file_and_carries_on(fresh_study, garbage, capsys):
    (fresh_study / "failures.json").write_bytes(garbage)
    assert main(["study", "status", str(fresh_study)]) == 0
    out, err = capsys.readouterr()
    assert "failures.json" in out and "the next run writes it again" in out
    assert "pending" in out and "Traceback" not in err


def study_files(root: Path) -> dict[str, bytes]:
    """Every file a study's readers use (bookkeeping of the last run left out), by relative path."""
    skip = {"provenance.json", "failures.json", ".lock", "running.json", ".hash-cache.json"}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip and not {".progress", SET_ASIDE} & set(p.relative_to(root).parts)}


@pytest.mark.slow
def test_entries_of_the_wrong_kind_get_one_line_and_a_rerun_restores_them(finished_tiny, tiny_copy, tiny_spec,
                                                                         tmp_path, capsys, caplog):
    reference = study_files(finished_tiny)
    results = sorted((tiny_copy / "results").glob("*.parquet"))
    outside = tmp_path / "elsewhere.parquet"
    outside.write_bytes(results[0].read_bytes())
    shutil.rmtree(tiny_copy / "results")  # results/ replaced by a plain file
    (tiny_copy / "results").write_text("not a folder")
    (tiny_copy / "runs.parquet").unlink()  # a table replaced by a folder
    (tiny_copy / "runs.parquet").mkdir()
    summary = next((tiny_copy / "summaries").rglob("*.npz"))
    summary.unlink()
    summary.symlink_to(tmp_path / "nowhere.npz")  # a dangling symlink
    probe = next((tiny_copy / "probes").rglob("*.npz"))
    probe.unlink()
    probe.symlink_to(outside)  # a symlink leading out of the study
    assert main(["study", "status", str(tiny_copy)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    caplog.clear()
    run_study(tiny_spec, tiny_copy, progress=False, threads=1)
    lines = [r.getMessage() for r in caplog.records if r.name == "vaesim.study.run.shapes"]
    assert len(lines) == 4 and all("moved to set-aside/" in line for line in lines), lines
    assert study_files(tiny_copy) == reference  # bit-identical to the uninterrupted run
    assert (tiny_copy / SET_ASIDE / "results").read_text() == "not a folder"  # kept, not deleted
    assert (tiny_copy / SET_ASIDE / "runs.parquet").is_dir()
    assert main(["study", "verify", str(tiny_copy)]) == 0


# -- entries this user cannot read -------------------------------------------------------------------------------
UNPRIVILEGED = 65534  # nobody: the user the scenario runs as when the tests run as root (root reads everything)


def damage_permissions(study: Path) -> list[Path]:
    """Make a results file, a run's summaries folder and a checkpoint unreadable (mode 000); return them."""
    victims = [sorted((study / "results").glob("*.parquet"))[0],
               sorted(p for p in (study / "summaries").iterdir() if p.is_dir())[0],
               sorted((study / "runs").rglob("step_*.safetensors"))[-1]]
    for victim in victims:
        victim.chmod(0)
    return victims


def unprivileged_python() -> list[str] | None:
    """The command prefix that runs this interpreter as an unprivileged user, or None when it cannot import vaesim."""
    import os
    import subprocess
    import sys

    if os.geteuid() != 0:
        return [sys.executable]
    prefix = ["setpriv", f"--reuid={UNPRIVILEGED}", f"--regid={UNPRIVILEGED}", "--clear-groups", sys.executable]
    try:
        probe = subprocess.run(prefix + ["-c", "import vaesim, torch"], capture_output=True, timeout=120,
                               cwd="/", env={**os.environ, "HOME": "/tmp"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    return prefix if probe.returncode == 0 else None


def same_data(files: dict[str, bytes], reference: dict[str, bytes]) -> bool:
    """The same files with the same data: bytes equal, except .npz archives (and their sidecars), whose arrays are
    compared bit for bit (the unprivileged user may run another build of Python, whose zipfile writes other
    header bytes around the same arrays)."""
    import io

    import numpy as np

    assert set(files) == set(reference), set(files) ^ set(reference)
    for name, data in files.items():
        if name.endswith(".npz.sha256") or Path(name).name == "DONE":
            # the archive's own hash (the archive is checked below and `study verify` checks the pair), and
            continue  # DONE: the time training finished (a retrained run finishes again)
        if name.endswith(".npz"):
            new, old = np.load(io.BytesIO(data)), np.load(io.BytesIO(reference[name]))
            if sorted(new.files) != sorted(old.files) or not all(
                    new[key].dtype == old[key].dtype and new[key].tobytes() == old[key].tobytes() for key in old.files):
                raise AssertionError(f"{name}: other arrays")
        elif data != reference[name]:
            raise AssertionError(f"{name}: other bytes")
    return True


@pytest.mark.slow
def test_unreadable_entries_get_one_line_and_a_rerun_restores_them(finished_tiny):
    """A file or folder the user cannot read is set aside with one line (status and verify first say so), and the
    rerun recomputes it: the store is bit-identical to the uninterrupted run. Under root (which may read
    anything) the scenario runs as ``nobody`` on a copy owned by ``nobody``."""
    import os
    import subprocess
    import tempfile

    from vaesim.study.store.verify import DISPLACED

    python = unprivileged_python()
    if python is None:
        pytest.skip("the tests run as root and this interpreter or vaesim cannot be read by an unprivileged user, "
                    "so no entry can be made unreadable")
    reference = study_files(finished_tiny)
    home = Path(tempfile.mkdtemp(prefix="vaesim-unreadable-", dir="/tmp"))
    try:
        study = home / "study"
        shutil.copytree(finished_tiny, study)
        if os.geteuid() == 0:
            for path in [home, *home.rglob("*")]:
                os.lchown(path, UNPRIVILEGED, UNPRIVILEGED)
        victims = damage_permissions(study)
        env = {**os.environ, "HOME": str(home), "VAESIM_CPUS": "1"}

        def vaesim(*args):
            return subprocess.run(python + ["-m", "vaesim", *args], capture_output=True, text=True, env=env,
                                  cwd=str(home), timeout=900)

        status = vaesim("study", "status", str(study))
        assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
        assert "corrupt" in status.stdout  # the unreadable result counts as not trusted
        verify = vaesim("study", "verify", str(study))
        assert verify.returncode != 0 and "Traceback" not in verify.stderr, verify.stdout + verify.stderr
        for victim in victims:
            assert str(victim.relative_to(study)) in verify.stdout, verify.stdout + verify.stderr
        assert "cannot read" in verify.stdout
        rerun = vaesim("study", "run", str(study / "spec.yaml"), "--out", str(study), "--threads", "1",
                       "--no-progress")
        assert rerun.returncode == 0 and "Traceback" not in rerun.stderr, rerun.stderr
        moved = [line for line in rerun.stderr.splitlines() if "cannot read" in line]
        assert len(moved) == len(victims), rerun.stderr  # one line each
        for path in [p for p in study.rglob("*") if not p.is_symlink()]:
            path.chmod(path.stat().st_mode | 0o700)  # the set-aside entries, so the comparison can read around them
        restored = {name: data for name, data in study_files(study).items() if DISPLACED not in name}
        assert same_data(restored, reference)  # the uninterrupted run's numbers, bit for bit
        assert (study / SET_ASIDE / victims[0].relative_to(study)).is_file()  # kept, not deleted
        assert (study / SET_ASIDE / victims[1].relative_to(study)).is_dir()
        assert len(list(victims[2].parent.glob(victims[2].name + DISPLACED + "*"))) == 1
        assert vaesim("study", "verify", str(study)).returncode == 0
    finally:
        for path in [p for p in home.rglob("*") if not p.is_symlink()]:
            path.chmod(0o700)
        shutil.rmtree(home, ignore_errors=True)


def test_an_entry_the_user_may_not_read_is_set_aside_with_one_line(tmp_path, monkeypatch, caplog):
    """The same rule on any account (root included): what os.access refuses is moved aside, the rest stays."""
    import os

    from vaesim.study.run.shapes import set_aside_wrong_kinds

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "a.parquet").write_bytes(b"kept")
    (tmp_path / "results" / "b.parquet").write_bytes(b"fine")
    (tmp_path / "summaries" / "run").mkdir(parents=True)
    refused = {tmp_path / "results" / "a.parquet", tmp_path / "summaries" / "run"}
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) not in refused and real_access(path, mode))
    lines = set_aside_wrong_kinds(tmp_path, ["results/a.parquet", "results/b.parquet", "summaries/run/x.npz"])
    assert len(lines) == 2
    assert any("a file this user cannot read" in line for line in lines)
    assert any("a folder this user cannot read, enter or write" in line for line in lines)
    assert (tmp_path / SET_ASIDE / "results" / "a.parquet").read_bytes() == b"kept"
    assert (tmp_path / SET_ASIDE / "summaries" / "run").is_dir()
    assert (tmp_path / "results" / "b.parquet").read_bytes() == b"fine"
