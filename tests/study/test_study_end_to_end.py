"""A tiny study end to end: row counts per comparison, scores against linear_cka of saved activations."""

from __future__ import annotations

import functools
import os

import numpy as np
import pandas as pd
import pytest

from vaesim.data import ProbeSet
from vaesim.similarity import linear_cka, procrustes_similarity
from vaesim.study import RESULT_COLUMNS, RESULT_KEY, load_results, load_runs, load_training_metrics, query
from vaesim.study import plan as layout
from vaesim.study import run_study, study_status
from vaesim.study.store.tables import result_files

from study_tiny import KEPT_LAYERS, LAYERS as TINY_LAYERS, expected_pairs

pytestmark = pytest.mark.slow
LAYERS = 8  # len(study_tiny.LAYERS)


def expected_rows(spec) -> dict[str, int]:
    """Rows per comparison type: layer pairs x metrics for every model pair, counted by hand."""
    metrics = len(spec.metrics)
    pairs = expected_pairs(spec)
    runs = 8
    steps = len(spec.recorded_steps())
    # A checkpoint with itself gives each unordered layer pair once (L(L+1)/2), others L x L.
    self_pairs = runs * steps
    within = self_pairs * LAYERS * (LAYERS + 1) // 2 + (pairs["within_run"] - self_pairs) * LAYERS**2
    return {
        "within_run": within * metrics,
        "seeds": pairs["seeds"] * LAYERS**2 * metrics,
        "params": pairs["params"] * LAYERS**2 * metrics,
        "objectives": pairs["objectives"] * LAYERS**2 * metrics,
        "factors": pairs["factors"] * LAYERS * metrics,  # every model layer against the one factors "layer"
        "noise_floor": pairs["noise_floor"] * 4 * metrics,  # the same layer, for the 4 layers the noise reaches
    }


def check_complete(study_dir, spec) -> pd.DataFrame:
    results = load_results(study_dir)
    assert list(results.columns) == list(RESULT_COLUMNS)
    counts = results.groupby("comparison").size().to_dict()
    assert counts == expected_rows(spec)
    assert not results.duplicated(list(RESULT_KEY)).any()
    assert np.isfinite(results["score"]).all() and (results["note"] == "").all()
    assert (results["n"] == spec.probe.n).all()
    return results


@functools.lru_cache(maxsize=64)
def activations(study_dir, run_id, step):
    with np.load(study_dir / layout.activations_path(run_id, step)) as archive:
        return {k: archive[k] for k in archive.files}


def spot_check(study_dir, results, kept, rng_seed=0):
    """Stored scores equal linear CKA / Procrustes recomputed (float64 references) from saved activations."""
    rng = np.random.default_rng(rng_seed)
    probe = ProbeSet.load(study_dir / "probes" / "dsprites-procedural.npz")
    checked = 0
    for comparison in ("within_run", "seeds", "params", "objectives", "factors"):
        rows = results[(results.comparison == comparison) & results.a_layer.isin(kept)
                       & (results.b_layer.isin(kept) | (results.b_layer == "factors"))]
        for _, row in rows.iloc[rng.choice(len(rows), size=4, replace=False)].iterrows():
            x = activations(study_dir, row.a_run, row.a_step)[row.a_layer].astype(np.float64)
            if row.b_layer == "factors":
                y = probe.factors.astype(np.float64)
            else:
                y = activations(study_dir, row.b_run, row.b_step)[row.b_layer].astype(np.float64)
            reference = linear_cka(x, y) if row.metric == "cka" else procrustes_similarity(x, y)
            assert row.score == pytest.approx(reference, rel=1e-6, abs=1e-9), (comparison, row.a_layer, row.b_layer)
            checked += 1
    assert checked == 20


def test_local_study_rows_and_scores(finished_tiny, tiny_spec):
    assert len(TINY_LAYERS) == LAYERS
    results = check_complete(finished_tiny, tiny_spec)
    spot_check(finished_tiny, results, KEPT_LAYERS)
    # The same checkpoint and layer compared with itself is 1
    same = results[(results.comparison == "within_run") & (results.a_step == results.b_step)
                   & (results.a_layer == results.b_layer)]
    assert np.allclose(same.score, 1.0)
    # Metadata follows the run: a_param is the run's swept value, epochs from steps
    runs = load_runs(finished_tiny).set_index("run_id")
    merged = results.drop_duplicates("a_run").set_index("a_run")
    assert (merged.a_param == runs.loc[merged.index, "param"]).all()
    assert (merged.a_objective == runs.loc[merged.index, "objective"]).all()


def test_runs_and_training_tables(finished_tiny):
    runs = load_runs(finished_tiny)
    assert len(runs) == 8 and runs.run_id.is_unique
    for column in ("dataset", "objective", "param_name", "param", "seed", "steps", "loss", "reconstruction", "kl",
                   "kl_dim_0", "kl_dim_9", "active_dims", "cka_mean_sample"):
        assert column in runs.columns
    assert set(runs.param_name) == {"beta", "lambda_od"}
    log = load_training_metrics(finished_tiny)
    assert set(log.run_id) == set(runs.run_id)
    assert log.groupby("run_id").step.max().eq(20).all()


def test_query_joins_results_and_runs(finished_tiny, tiny_spec):
    frame = query(finished_tiny, "SELECT r.comparison, count(*) AS rows FROM results r "
                                 "JOIN runs u ON r.a_run = u.run_id GROUP BY 1 ORDER BY 1")
    assert dict(zip(frame.comparison, frame.rows)) == expected_rows(tiny_spec)
    with pytest.raises(ValueError, match="(?s)query failed: .*views are results, runs"):
        query(finished_tiny, "SELECT * FROM nowhere")


def test_status_and_rerun_does_nothing(finished_tiny, tiny_spec):
    status = study_status(finished_tiny)
    assert status.complete and status.running is None
    assert status.stages["compare"][0] == status.stages["compare"][1] > 0
    assert "compare  [" in status.format()
    stamps = {p: p.stat().st_mtime_ns for p in result_files(finished_tiny)}
    run_study(tiny_spec, finished_tiny, progress=False, threads=1)
    assert {p: p.stat().st_mtime_ns for p in result_files(finished_tiny)} == stamps


def test_changed_spec_is_refused_then_forced(tiny_copy, tiny_dict):
    from vaesim.study import parse_spec

    tiny_dict["comparisons"] = {"within_run": "final"}
    changed = parse_spec(tiny_dict)
    with pytest.raises(ValueError, match=r"(?s)differs in fields that change its outputs:\n  comparisons.within_run: "
                                         r"'all' -> 'final'.*--force"):
        run_study(changed, tiny_copy, progress=False)
    run_study(changed, tiny_copy, progress=False, force=True, threads=1)
    results = load_results(tiny_copy)
    within = results[results.comparison == "within_run"]
    assert (within.b_step == 20).all()
    # runs were reused: no retraining happened (the training log still has one row per logged step)
    assert not load_training_metrics(tiny_copy).duplicated(["run_id", "step"]).any()


def _flip_byte(path, offset=None):
    data = bytearray(path.read_bytes())
    position = len(data) // 2 if offset is None else offset
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_summary_and_results_are_recomputed(tiny_copy, tiny_spec, caplog):
    before = load_results(tiny_copy).sort_values(list(RESULT_KEY)).reset_index(drop=True)
    plan = layout.plan_study(tiny_spec)
    task = plan.tasks["compare"][0]  # a within_run task
    summary = tiny_copy / task.inputs[0]
    _flip_byte(summary)
    _flip_byte(tiny_copy / task.outputs[0])  # its results file too, so the summary is read again
    caplog.set_level("WARNING")
    run_study(tiny_spec, tiny_copy, progress=False, threads=1)
    messages = caplog.text
    assert f"{task.outputs[0]}: does not match its checksum; it recomputes it" in messages
    assert f"{task.inputs[0]}: does not match its checksum; it recomputes it" in messages
    after = load_results(tiny_copy).sort_values(list(RESULT_KEY)).reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)


def test_corrupt_checkpoint_is_repaired(tiny_copy, tiny_spec, caplog):
    before = load_results(tiny_copy).sort_values(list(RESULT_KEY)).reset_index(drop=True)
    plan = layout.plan_study(tiny_spec)
    run = plan.runs[2]
    checkpoint = tiny_copy / layout.run_dir(run.run_id) / "checkpoints" / "step_00000010.safetensors"
    _flip_byte(checkpoint)  # a flipped weight: safetensors still loads it, the checksum does not match
    (tiny_copy / layout.summary_path(run.run_id, 10)).unlink()
    caplog.set_level("WARNING")
    run_study(tiny_spec, tiny_copy, progress=False, threads=1)
    assert "step_00000010.safetensors: does not match the checksum recorded after training; it retrains" in caplog.text
    assert f"run {run.run_id}: checkpoint step 10 is damaged; retraining from the last good checkpoint" in caplog.text
    after = load_results(tiny_copy).sort_values(list(RESULT_KEY)).reset_index(drop=True)
    # retraining resumes from step 0 with the saved RNG state: the same weights, the same scores
    pd.testing.assert_frame_equal(before, after, check_exact=False, rtol=1e-9)


def test_truncated_checkpoint_is_repaired(tiny_copy, tiny_spec, caplog):
    plan = layout.plan_study(tiny_spec)
    run = plan.runs[5]
    checkpoint = tiny_copy / layout.run_dir(run.run_id) / "checkpoints" / "step_00000020.safetensors"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    for step in (0, 10, 20):
        (tiny_copy / layout.summary_path(run.run_id, step)).unlink()
    caplog.set_level("WARNING")
    run_study(tiny_spec, tiny_copy, progress=False, threads=1)
    assert "step_00000020.safetensors: does not match the checksum recorded after training" in caplog.text
    assert os.path.getsize(checkpoint) > 100
    check_complete(tiny_copy, tiny_spec)


def test_unreadable_recorded_spec_names_the_file_and_force_replaces_it(tiny_copy, tiny_spec, capsys):
    from vaesim.cli import main

    spec_file = tiny_copy / "spec.yaml"
    spec_file.write_bytes(bytes(range(256)) * 8)
    spec_path = tiny_copy.parent / "tiny.yaml"
    spec_path.write_text(tiny_spec.to_yaml())
    assert main(["study", "run", str(spec_path), "--out", str(tiny_copy), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(spec_file) in err and "--force" in err
    runs = {p.name: p.stat().st_mtime_ns for p in tiny_copy.glob("runs/*/checkpoints/*")}
    assert main(["study", "run", str(spec_path), "--out", str(tiny_copy), "--no-progress", "--force",
                 "--threads", "1"]) == 0
    assert study_status(tiny_copy).complete
    assert {p.name: p.stat().st_mtime_ns for p in tiny_copy.glob("runs/*/checkpoints/*")} == runs  # not retrained


def test_os_errors_print_one_line(finished_tiny, tmp_path, monkeypatch, capsys):
    import errno

    import vaesim.report
    from vaesim.cli import main

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(finished_tiny / "report.html"))

    monkeypatch.setattr(vaesim.report, "write_report", read_only)
    assert main(["report", str(finished_tiny)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vaesim: error: Read-only file system:") and "Traceback" not in err
    existing_file = tmp_path / "a-file"
    existing_file.write_text("x")
    assert main(["study", "run", str(finished_tiny / "spec.yaml"), "--out", str(existing_file)]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
