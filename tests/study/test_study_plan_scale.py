"""Planning that scales: the same task ids as the plain encoding, pairs counted before planning, a grid too large
for the machine refused in one line before any planning or file."""

from __future__ import annotations

import copy
import subprocess
import sys
import time

import pytest
import yaml
from study_tiny import TINY

from vaesim.study import load_spec, plan_study
from vaesim.study.plan import model_pair_count, stable_hash, stable_hash_with_pairs
from vaesim.study.spec import parse_spec


def test_the_fast_task_id_hash_is_the_plain_one():
    key = {"comparison": "seeds", "metrics": ["cka", "procrustes"], "layers": ["input", "encoder.mean"],
           "probe": {"n": 100, "seed": 0}, "layer_pairs": "matching"}
    pairs = [("dsprites_beta_vae_beta=1_seed=0_abc", 0, "dsprites_beta_vae_beta=1_seed=1_def", 0),
             ('odd "quoted" \\ run é', 300000, "x", 7)]
    for chosen in (pairs, pairs[:1], []):
        assert stable_hash_with_pairs(key, chosen) == stable_hash({**key, "pairs": chosen})
        assert stable_hash_with_pairs(key, chosen, 12) == stable_hash({**key, "pairs": chosen}, 12)


@pytest.mark.parametrize("change", [
    {}, {"comparisons": {"within_run": "final", "across_steps": "final"}},
    {"comparisons": {"within_run": "self_and_final", "noise_floor": "every"}},
    {"comparisons": {"within_run": "none", "seeds": False, "factors": False}},
    {"seeds": [0, 1, 2], "datasets": ["dsprites-procedural", "digits"]},
    {"probe": {"n": 64, "sample_noise": "shared"}},
])
def test_the_pair_count_from_the_grid_is_the_plans(change):
    data = copy.deepcopy(TINY)
    for key, value in change.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    spec = parse_spec(data)
    assert model_pair_count(spec) == sum(len(task.pairs) for task in plan_study(spec).tasks["compare"])


def test_presets_count_their_pairs():
    for name in ("quick", "evidence", "training-length"):
        spec = load_spec(name)
        assert model_pair_count(spec) == sum(len(task.pairs) for task in plan_study(spec).tasks["compare"])


@pytest.mark.slow
def test_a_grid_too_large_to_plan_is_refused_in_one_line_before_anything(tmp_path):
    data = load_spec("quick").model_dump(mode="json")
    data["seeds"] = list(range(100_000))  # 40 billion model pairs
    (tmp_path / "huge.yaml").write_text(yaml.safe_dump(data))
    for command in (["study", "plan", str(tmp_path / "huge.yaml"), "--no-calibrate"],
                    ["study", "run", str(tmp_path / "huge.yaml"), "--out", str(tmp_path / "out")]):
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "vaesim", *command], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2, done.stderr
        assert time.monotonic() - start < 60
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "40,006,800,000 model pairs" in lines[0] and "GiB of memory" in lines[0], lines
    assert not (tmp_path / "out").exists()  # no lock, no running.json, nothing
