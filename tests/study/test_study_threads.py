"""Results do not depend on how many cores a study gets (issue 18, item 1).

Every task computes with torch and BLAS on one thread and spreads independent
units over its share of the cores; a run trains on one thread. So the same
study with 1 and with 2 CPUs writes the same bytes: checkpoints, summaries,
results.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pytest

from study_tiny import TINY

import vaesim.utils.threads as threads
from vaesim.study import parse_spec, run_study


def _digests(root: Path) -> dict[str, str]:
    kinds = ("results", "summaries", "runs")
    out = {}
    for kind in kinds:
        for path in sorted((root / kind).rglob("*")):
            if path.is_file() and path.suffix in (".parquet", ".npz", ".safetensors"):
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.mark.slow
def test_the_same_study_with_one_and_two_cpus_writes_identical_files(tmp_path, monkeypatch):
    spec = copy.deepcopy(TINY)
    spec["objectives"] = [{"name": "beta_vae", "values": [1, 8]}]
    seen: list[int] = []
    original = threads.parallel_map

    def counting(fn, items, count=None):
        seen.append(threads.compute_threads() if count is None else count)
        return original(fn, items, count)

    monkeypatch.setattr(threads, "parallel_map", counting)
    digests = {}
    for cpus in ("1", "2"):
        monkeypatch.setenv("VAESIM_CPUS", cpus)
        seen.clear()
        run_study(parse_spec(copy.deepcopy(spec)), tmp_path / cpus, progress=False)
        assert max(seen) == int(cpus)  # the units really were spread over that many threads
        digests[cpus] = _digests(tmp_path / cpus)
    assert len(digests["1"]) > 20 and any(k.startswith("results/") for k in digests["1"])
    assert digests["1"] == digests["2"]
