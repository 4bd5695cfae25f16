"""``vaesim demo`` wired end to end on a tiny study (the real pipeline, a few training steps)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vaesim.cli import main

TINY_SPEC = {
    "name": "tiny-demo",
    "datasets": ["dsprites-procedural"],
    "objectives": [{"name": "beta_vae", "values": [1, 4]}],
    "seeds": [0],
    "training": {"steps": 8, "batch_size": 16, "lr": 0.001, "latent_dim": 4,
                 "checkpoints": {"schedule": "even", "count": 3}, "log_every": 4, "monitor_every": 4},
    "probe": {"n": 40, "seed": 0},
    "metrics": ["cka", "procrustes"],
    "comparisons": {"within_run": "all", "seeds": False, "params": True, "objectives": False, "factors": False},
    "device": "cpu",
}


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file() and p.suffix in {".safetensors", ".parquet", ".npz"}}


@pytest.mark.slow
def test_demo_runs_the_study_writes_the_report_and_reuses_work(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY_SPEC))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--spec", str(spec)]) == 0
    printed = capsys.readouterr()
    report = out / "report.html"
    assert report.is_file() and "id='findings'" in report.read_text()
    assert "claim 1: encoder layers settle before decoder layers" in printed.out
    assert f"report: {report.resolve()}" in printed.out
    assert "train" in printed.err  # progress was shown
    assert "quick smoke test" in printed.out and "'evidence' preset" in printed.out
    from html_links import unresolved_links

    for page in ("report.html", "report-procrustes.html"):  # every report report.html links is written
        assert unresolved_links(out / page) == [], page
    before = _mtimes(out)
    assert any(name.endswith(".safetensors") for name in before)

    assert main(["demo", "--out", str(out), "--spec", str(spec)]) == 0
    assert _mtimes(out) == before  # finished training, extraction and comparisons were reused
    assert f"report: {report.resolve()}" in capsys.readouterr().out


def test_demo_with_an_unknown_spec_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "x"), "--spec", "no-such-preset"]) == 2
    assert "no-such-preset" in capsys.readouterr().err


def test_demo_defaults(capsys):
    from vaesim.cli import build_parser

    args = build_parser().parse_args(["demo"])
    assert args.out == Path("vaesim-demo") and args.spec == "quick"
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    help_text = capsys.readouterr().out
    assert "--out DIR" in help_text and "--spec" not in help_text  # the test-only option stays hidden
    assert "too small to decide the claims" in help_text and "evidence" in help_text


def test_demo_reports_the_finished_part_when_tasks_fail(tmp_path, monkeypatch, capsys):
    import vaesim.study
    from synthetic_store import Synthetic
    from vaesim.study.run.executors import TaskFailure

    def failing_study(spec, out_dir, **options):
        assert options["executor"] == "local" and options["progress"] is True
        Synthetic().write_study(Path(out_dir))
        raise vaesim.study.StudyFailed(Path(out_dir), [TaskFailure("train/run-x", "RuntimeError: boom")])

    monkeypatch.setattr(vaesim.study, "run_study", failing_study)
    out = tmp_path / "partial"
    assert main(["demo", "--out", str(out)]) == 1
    printed = capsys.readouterr()
    assert "train/run-x: RuntimeError: boom" in printed.err
    assert (out / "report.html").is_file() and f"report: {(out / 'report.html').resolve()}" in printed.out
    from html_links import linked_files, unresolved_links

    assert "report-procrustes.html" in linked_files(out / "report.html")
    assert unresolved_links(out / "report.html") == [] and unresolved_links(out / "report-procrustes.html") == []
    assert printed.out.rstrip().endswith("vaesim study run evidence --out vaesim-evidence")  # says it is a smoke test
