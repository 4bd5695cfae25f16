"""Damage of every kind is found by `study verify` and undone by one rerun, bit for bit (issue 23 items 1-3)."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from corruption import KINDS, MODES, campaign_spec, corrupt, snapshot, victims
from vaesim.study import parse_spec, run_study
from vaesim.study import plan as layout
from vaesim.study.run.runner import study_status
from vaesim.study.store.verify import verify_study

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The campaign study run once, uninterrupted: what every repaired copy must equal."""
    out = tmp_path_factory.mktemp("campaign") / "study"
    run_study(parse_spec(campaign_spec()), out, progress=False, threads=1)
    return out


@pytest.fixture
def study(reference, tmp_path):
    target = tmp_path / "study"
    shutil.copytree(reference, target)
    return target


def _rerun(study):
    run_study(parse_spec(campaign_spec()), study, progress=False, threads=1)


def _runs():
    return layout.plan_study(parse_spec(campaign_spec())).runs


def _checkpoint_json(study, run_id, step):
    return study / layout.run_dir(run_id) / "checkpoints" / f"step_{step:08d}.json"


def test_an_edited_checkpoint_json_is_never_resumed_from(reference, study):
    # killed after the checkpoint at step 0 was written; then its learning rate is changed
    run_id = _runs()[1].run_id
    run_dir = study / layout.run_dir(run_id)
    for name in ("DONE", layout.CHECKPOINT_SUMS, "checkpoints/step_00000010.json", "checkpoints/step_00000010.safetensors"):
        (run_dir / name).unlink()
    path = _checkpoint_json(study, run_id, 0)
    record = json.loads(path.read_text())
    record["optimizer"]["vae"]["param_groups"][0]["lr"] = 0.05
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    _rerun(study)
    assert snapshot(study) == snapshot(reference)
    assert verify_study(study).ok


@pytest.mark.parametrize("damage", ["garbage", "missing", "lr"])
def test_verify_refuses_a_damaged_checkpoint_json(study, damage):
    run_id = _runs()[0].run_id
    path = _checkpoint_json(study, run_id, 10)
    if damage == "garbage":
        path.write_text("{not json")
    elif damage == "missing":
        path.unlink()
    else:
        text = path.read_text()
        assert text.count('"lr": 0.0001,') == 2
        path.write_text(text.replace('"lr": 0.0001,', '"lr": 0.05,'))
    report = verify_study(study)
    assert [p.path for p in report.problems] == [str(path.relative_to(study))]
    assert report.problems[0].fix == ("retrain", run_id, 10)


def test_every_repair_that_verify_promises_is_made_by_one_rerun(reference, study):
    runs = _runs()
    damaged = [
        study / layout.run_dir(runs[0].run_id) / "checkpoints" / "step_00000010.safetensors",
        study / layout.summary_path(runs[1].run_id, 0),
        study / layout.resampled_path(runs[1].run_id, 10),
        study / layout.latents_path(runs[0].run_id, 0),
        study / layout.run_dir(runs[1].run_id) / "metrics.jsonl",
    ]
    for path, mode in zip(damaged, ["flip", "truncate", "delete", "flip", "truncate"]):
        corrupt(path, mode)
    flagged = {p.path for p in verify_study(study).problems}
    assert flagged == {str(p.relative_to(study)) for p in damaged}
    _rerun(study)
    assert verify_study(study).ok
    assert study_status(study).complete
    assert snapshot(study) == snapshot(reference)


def test_a_damaged_final_checkpoint_and_a_missing_disentanglement_table_heal(reference, study):
    run_id = _runs()[0].run_id
    corrupt(study / layout.run_dir(run_id) / "checkpoints" / "step_00000010.safetensors", "flip")
    table = study / layout.disentanglement_path(run_id, 10)
    table.unlink()
    _rerun(study)  # raised StudyFailed (disentangle cannot load the checkpoint) on every rerun before
    assert verify_study(study).ok
    assert snapshot(study) == snapshot(reference)


@pytest.mark.parametrize("mode", MODES)
def test_corruption_campaign_one_rerun_restores_every_kind_of_file(reference, study, mode):
    """One file of every kind damaged at once; verify names each; one rerun gives the uninterrupted store."""
    assert len(KINDS) == 19
    targets = {kind: victims(study, kind)[-1] for kind in KINDS}
    for kind, path in targets.items():
        if path.exists():  # a sidecar's file may already be gone
            corrupt(path, mode)
    report = verify_study(study)
    assert not report.ok
    _rerun(study)
    assert verify_study(study).ok
    assert snapshot(study) == snapshot(reference)


def _stamps(paths):
    return [p.stat().st_mtime_ns for p in paths]


def test_force_after_changing_disentanglement_settings_recomputes_them(study):
    """Issue 23 item 7: the tables are addressed by run and step, so --force must drop the old ones."""
    per_run = sorted(p for p in (study / "disentanglement").rglob("*.parquet") if "udr" not in p.parts)
    udr = sorted((study / "disentanglement" / "udr").glob("*.parquet"))
    assert len(per_run) == 2 and len(udr) == 1
    spec = campaign_spec()
    spec["disentanglement"]["protocol_fraction"] = 0.003
    before_runs, before_udr = _stamps(per_run), _stamps(udr)
    run_study(parse_spec(spec), study, progress=False, threads=1, force=True)
    assert all(a != b for a, b in zip(_stamps(per_run), before_runs))  # both recomputed
    assert _stamps(udr) == before_udr  # UDR does not depend on the protocol
    spec["disentanglement"]["udr_points"] = 300
    before_runs = _stamps(per_run)
    run_study(parse_spec(spec), study, progress=False, threads=1, force=True)
    assert _stamps(udr) != before_udr and _stamps(per_run) == before_runs
    assert verify_study(study).ok


def test_disentangle_and_udr_tasks_report_progress(study, monkeypatch):
    """Issue 23 item 11: every running task keeps a .progress record, DCI and UDR included."""
    import vaesim.metrics
    import vaesim.metrics.udr
    from vaesim.study.stages.progress import read_progress

    seen = {}
    real_evaluate, real_udr = vaesim.metrics.evaluate_disentanglement, vaesim.metrics.udr.udr

    def evaluate(*args, **kwargs):
        seen.setdefault("disentangle", [r["task"] for r in read_progress(study)])
        return real_evaluate(*args, **kwargs)

    def udr(*args, **kwargs):
        seen.setdefault("udr", [r["task"] for r in read_progress(study)])
        return real_udr(*args, **kwargs)

    monkeypatch.setattr(vaesim.metrics, "evaluate_disentanglement", evaluate)
    monkeypatch.setattr(vaesim.metrics.udr, "udr", udr)
    for path in (study / "disentanglement").rglob("*.parquet"):
        path.unlink()
    _rerun(study)
    assert seen["disentangle"][0].startswith("disentangle/") and seen["udr"][0].startswith("udr/")
    assert read_progress(study) == []  # removed when the tasks end


def _shape_damage(study, shape):
    runs = _runs()
    if shape == "results is a file":
        shutil.rmtree(study / "results")
        (study / "results").write_text("not a folder")
        return "results"
    if shape == "checkpoint is a folder":
        path = study / layout.run_dir(runs[0].run_id) / "checkpoints" / "step_00000010.safetensors"
        path.unlink()
        path.mkdir()
        return str(path.relative_to(study))
    if shape == "summary is a link":
        path = study / layout.summary_path(runs[1].run_id, 10)
        other = study / layout.summary_path(runs[0].run_id, 10)
        path.unlink()
        path.symlink_to(other)
        return str(path.relative_to(study))
    if shape == "summaries is a link":
        elsewhere = study.parent / "elsewhere"
        (study / "summaries").rename(elsewhere)
        (study / "summaries").symlink_to(elsewhere, target_is_directory=True)
        return "summaries"
    raise ValueError(shape)


@pytest.mark.parametrize("shape", ["results is a file", "checkpoint is a folder", "summary is a link",
                                   "summaries is a link"])
def test_an_entry_of_the_wrong_shape_gets_one_line_and_a_rerun_restores_it(reference, study, shape, caplog):
    """Issue 21: a file where a folder belongs (or the reverse) or a link: named once, moved aside or unlinked
    (nothing deleted), and the rerun restores the study bit for bit."""
    rel = _shape_damage(study, shape)
    problems = [p for p in verify_study(study).problems if p.path == rel]
    assert len(problems) == 1 and problems[0].fix[0] in ("aside", "unlink")
    with caplog.at_level(logging.WARNING, logger="vaesim"):
        _rerun(study)
    # the runner's first look (vaesim.study.run.shapes) moves the entry into set-aside/ and names it in one line;
    # what it misses, the verify-driven repair renames beside it (".displaced-N"): either way one line
    # (a moved file whose checksum sidecar stays gets a second line: the task that rewrites it)
    lines = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith(rel + ":") or r.getMessage().startswith(f"{study / rel} ")]
    assert 1 <= len(lines) <= 2 and not any("\n" in line for line in lines)
    assert verify_study(study).ok
    restored = {k: v for k, v in snapshot(study).items()
                if ".displaced-" not in k and not k.startswith("set-aside/")}
    assert restored == snapshot(reference)
    if problems[0].fix[0] == "aside":  # what stood there is kept, never deleted
        assert (study / f"{rel}.displaced-1").exists() or (study / "set-aside" / rel).exists()
