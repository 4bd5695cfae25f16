"""The disentangle stage: metrics per checkpoint and UDR per seed group, stored, queryable, resumable."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from study_tiny import TINY
from vaesim.data import get_dataset
from vaesim.metrics import Protocol, evaluate_disentanglement, model_factor_codes
from vaesim.metrics.protocol import METRIC_NAMES
from vaesim.study import parse_spec, plan_study, query, run_study
from vaesim.study import plan as layout
from vaesim.study.store.tables import load_disentanglement
from vaesim.training import load_checkpoint

pytestmark = pytest.mark.slow


def spec_dict(checkpoints="final"):
    spec = copy.deepcopy(TINY)
    spec.update(
        name="disentangle",
        objectives=[{"name": "beta_vae", "values": [1]}],
        training=dict(spec["training"], steps=10, checkpoints={"schedule": "even", "count": 2}),
        layers=["encoder.mean"], keep_activations=False, metrics=["cka"],
        comparisons={"within_run": "final", "params": False, "objectives": False},
        disentanglement={"checkpoints": checkpoints, "protocol_fraction": 0.002, "udr_points": 200},
    )
    return spec


def test_plan_has_one_metrics_task_per_checkpoint_and_udr_per_group():
    final = plan_study(parse_spec(spec_dict("final"))).tasks["disentangle"]
    every = plan_study(parse_spec(spec_dict("all"))).tasks["disentangle"]
    assert sum(t.task_id.startswith("disentangle/") for t in final) == 2  # two seeds, final checkpoint
    assert sum(t.task_id.startswith("udr/") for t in final) == 1
    steps = len(parse_spec(spec_dict("all")).checkpoint_steps())
    assert steps == 2  # steps 0 and 10
    assert sum(t.task_id.startswith("disentangle/") for t in every) == 2 * steps
    assert sum(t.task_id.startswith("udr/") for t in every) == steps
    no_metrics = spec_dict()
    del no_metrics["disentanglement"]
    assert plan_study(parse_spec(no_metrics)).tasks["disentangle"] == []
    with pytest.raises(ValueError, match="unknown disentanglement metrics"):
        parse_spec(dict(spec_dict(), disentanglement={"metrics": ["mig", "nope"]}))


def test_disentangle_stage_stores_rows_equal_to_direct_evaluation(tmp_path):
    spec = parse_spec(spec_dict())
    out = tmp_path / "study"
    run_study(spec, out, progress=False, threads=1)
    table = load_disentanglement(out)
    runs = plan_study(spec).runs
    assert set(table.run) == {r.run_id for r in runs}
    per_run = table[~table.metric.str.startswith("udr")]
    assert sorted(per_run.metric.unique()) == sorted(METRIC_NAMES)
    assert (per_run.step == 10).all() and len(per_run) == 2 * len(METRIC_NAMES)
    udr_rows = table[table.metric.str.startswith("udr")]
    assert sorted(udr_rows.metric.unique()) == ["udr_active_dims", "udr_lasso", "udr_spearman"]
    assert np.isfinite(table.value).all()
    # the stored numbers are the library's, for the same checkpoint, seed and protocol
    run = runs[0]
    model, _ = load_checkpoint(out / layout.run_dir(run.run_id), 10)
    direct = evaluate_disentanglement(model_factor_codes(get_dataset(run.dataset), model),
                                      seed=0, protocol=Protocol().scaled(0.002))
    stored = per_run[per_run.run == run.run_id].set_index("metric").value.to_dict()
    assert stored == pytest.approx(direct, abs=1e-12)
    counts = query(out, "select metric, count(*) as n from disentanglement group by 1")
    assert dict(zip(counts.metric, counts.n))["mig"] == 2
    files = sorted((out / "disentanglement").rglob("*.parquet"))
    stamps = [f.stat().st_mtime_ns for f in files]
    assert all(layout.checksum_path(str(f)) and (f.parent / (f.name + ".sha256")).is_file() for f in files)
    run_study(spec, out, progress=False, threads=1)  # resumable: nothing recomputed
    assert [f.stat().st_mtime_ns for f in files] == stamps


def test_corrupt_disentanglement_table_is_recomputed(tmp_path):
    spec = parse_spec(dict(spec_dict(), disentanglement={"protocol_fraction": 0.002, "udr": False,
                                                         "metrics": ["mig", "sap"]}))
    out = tmp_path / "study"
    run_study(spec, out, progress=False, threads=1)
    before = load_disentanglement(out).sort_values(["run", "metric"]).reset_index(drop=True)
    victim = sorted((out / "disentanglement").rglob("*.parquet"))[0]
    victim.write_bytes(b"not parquet")
    run_study(spec, out, progress=False, threads=1)
    after = load_disentanglement(out).sort_values(["run", "metric"]).reset_index(drop=True)
    assert after.equals(before)


def test_compare_and_disentangle_tasks_report_counters_that_move(tmp_path, monkeypatch):
    """The long calls inside the compare and disentangle tasks move their progress counters."""
    from vaesim.study.stages import compare, disentangle
    from vaesim.study.stages.progress import TaskProgress

    seen: dict[str, list] = {}

    class Spy(TaskProgress):
        def update(self, done, *, total=None, **fields):
            super().update(done, total=total, **fields)
            seen.setdefault(self.record["task"], []).append((done, self.record["total"], dict(self.record["fields"])))

    for stage in (compare, disentangle):  # the stages whose counters this test follows
        monkeypatch.setattr(stage, "TaskProgress", Spy)
    spec = parse_spec(spec_dict())
    run_study(spec, tmp_path / "study", progress=False, threads=1)
    metrics = next(v for k, v in seen.items() if k.startswith("disentangle/"))
    assert [done for done, _, _ in metrics][-1] == len(METRIC_NAMES) == metrics[-1][1]
    encoded = [fields.get("encoded", 0) for _, _, fields in metrics]
    assert encoded == sorted(encoded) and encoded[-1] > encoded[0]  # images encoded so far: moves
    compare_updates = next(v for k, v in seen.items() if k.startswith("compare/"))
    done = [d for d, _, _ in compare_updates]
    assert done == sorted(done) and done[-1] == compare_updates[-1][1] and len(set(done)) > 2
    udr_updates = next(v for k, v in seen.items() if k.startswith("udr/"))
    assert [d for d, _, _ in udr_updates] == [0, 1, 2]
