"""CPU counting from affinity and cgroup quota, worker/thread splitting, passive waiting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vaesim.utils import threads as th


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_in_own_cgroup(tmp_path):
    proc = tmp_path / "cgroup"
    write(proc, "0::/user.slice/job\n")
    write(tmp_path / "fs" / "user.slice" / "job" / "cpu.max", "150000 100000\n")
    write(tmp_path / "fs" / "cpu.max", "max 100000\n")
    assert th.cgroup_cpu_limit(tmp_path / "fs", proc) == pytest.approx(1.5)


def test_cgroup_v1_quota_and_unlimited(tmp_path):
    proc = tmp_path / "cgroup"
    write(proc, "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n")
    base = tmp_path / "fs" / "cpu,cpuacct" / "docker" / "abc"
    write(base / "cpu.cfs_quota_us", "300000\n")
    write(base / "cpu.cfs_period_us", "100000\n")
    assert th.cgroup_cpu_limit(tmp_path / "fs", proc) == pytest.approx(3.0)
    write(base / "cpu.cfs_quota_us", "-1\n")
    assert th.cgroup_cpu_limit(tmp_path / "fs", proc) is None
    assert th.cgroup_cpu_limit(tmp_path / "nothing", tmp_path / "missing") is None


def test_available_cpus_takes_the_smaller_of_affinity_and_quota(monkeypatch):
    monkeypatch.delenv("VAESIM_CPUS", raising=False)
    monkeypatch.setattr(th, "affinity_cpus", lambda: 8)
    monkeypatch.setattr(th, "cgroup_cpu_limit", lambda: 2.5)
    assert th.available_cpus() == 2  # rounded down: never more busy threads than the quota
    monkeypatch.setattr(th, "cgroup_cpu_limit", lambda: 0.5)
    assert th.available_cpus() == 1
    monkeypatch.setattr(th, "cgroup_cpu_limit", lambda: None)
    assert th.available_cpus() == 8
    monkeypatch.setenv("VAESIM_CPUS", "3")
    assert th.available_cpus() == 3
    monkeypatch.setenv("VAESIM_CPUS", "zero")
    with pytest.raises(ValueError, match="VAESIM_CPUS"):
        th.available_cpus()


def test_affinity_is_used_not_cpu_count():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no sched_getaffinity on this platform")
    script = "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); " \
             "os.environ.pop('VAESIM_CPUS', None); from vaesim.utils.threads import available_cpus; print(available_cpus())"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "VAESIM_CPUS": ""})
    assert out.stdout.strip() == "1"


@pytest.mark.parametrize("workers, threads, cpus, expected", [
    (1, None, 2, (1, 2)),
    (2, None, 2, (2, 1)),
    (4, None, 2, (2, 1)),      # more workers than CPUs: cut
    (1, 4, 2, (1, 2)),         # more threads than CPUs: lowered
    (2, 1, 8, (2, 1)),         # a smaller choice is kept
    (3, None, 8, (3, 2)),
])
def test_split_cpus_never_oversubscribes(workers, threads, cpus, expected):
    got = th.split_cpus(workers, threads, cpus=cpus)
    assert got == expected
    assert got[0] * got[1] <= cpus


def test_passive_waiting_keeps_user_choices():
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    changed = th.prefer_passive_waiting(env)
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and "OMP_WAIT_POLICY" not in changed
    assert env["OPENBLAS_THREAD_TIMEOUT"] == "4" and env["KMP_BLOCKTIME"] == "0"
    assert th.prefer_passive_waiting({"VAESIM_SPIN_WAIT": "1"}) == {}


def test_importing_the_library_changes_no_environment_variable():
    """`import vaesim` (and its subpackages) in a user's notebook leaves every other library's settings alone."""
    env = {k: v for k, v in os.environ.items() if k not in th.WAIT_ENV_KEYS and k != "VAESIM_SPIN_WAIT"}
    script = ("import os; before = dict(os.environ); import vaesim, vaesim.study, vaesim.training, vaesim.similarity, "
              "vaesim.utils.threads; vaesim.training.TrainConfig; vaesim.similarity.linear_cka; "
              "print(sorted(set(os.environ.items()) ^ set(before.items())))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]"


def test_the_command_and_vaesims_workers_apply_the_passive_policy_before_torch_loads():
    """Where vaesim owns the process (the `vaesim` command, its pool workers) idle threads sleep."""
    env = {k: v for k, v in os.environ.items() if k not in th.WAIT_ENV_KEYS and k != "VAESIM_SPIN_WAIT"}
    script = "import os, vaesim.cli, torch; print(os.environ['OMP_WAIT_POLICY'], 'omp' in torch.__config__.parallel_info().lower())"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split()[0] == "PASSIVE"
    script = ("import os, sys; from vaesim.utils.threads import worker_start; worker_start(1, print); "
              "print(os.environ['OMP_WAIT_POLICY'], 'numpy' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["1", "PASSIVE", "False", "False"]


def test_wait_policies_set_their_variables_and_respect_the_users():
    env = {}
    assert th.prefer_passive_waiting(env) == th.PASSIVE_WAIT_ENV  # default: passive
    env = {"VAESIM_WAIT": "short"}
    assert th.prefer_passive_waiting(env) == th.SHORT_SPIN_ENV and env["GOMP_SPINCOUNT"] == "10000"
    assert "OMP_WAIT_POLICY" not in env
    assert th.prefer_passive_waiting({"VAESIM_WAIT": "spin"}) == {}
    # the user's own OpenMP choice wins over either policy's OpenMP variable
    env = {"VAESIM_WAIT": "short", "OMP_WAIT_POLICY": "ACTIVE"}
    changed = th.prefer_passive_waiting(env)
    assert "GOMP_SPINCOUNT" not in env and changed == {"KMP_BLOCKTIME": "0", "OPENBLAS_THREAD_TIMEOUT": "4"}
    env = {"GOMP_SPINCOUNT": "5"}
    th.prefer_passive_waiting(env)
    assert "OMP_WAIT_POLICY" not in env and env["GOMP_SPINCOUNT"] == "5"
    with pytest.raises(ValueError, match="VAESIM_WAIT must be one of .*'lazy'"):
        th.wait_policy({"VAESIM_WAIT": "lazy"})


def test_a_bad_wait_policy_warns_in_one_line_and_keeps_the_default(caplog):
    """The policy is applied as the command starts: a typo must not make every command fail with a traceback."""
    env = {"VAESIM_WAIT": "lazy"}
    with caplog.at_level("WARNING", logger="vaesim.utils.threads"):
        changed = th.prefer_passive_waiting(env)
    assert changed == th.PASSIVE_WAIT_ENV
    assert "VAESIM_WAIT must be one of ['passive', 'short', 'spin']; got 'lazy'; using passive" in caplog.text
    script = "import vaesim.cli, os; print(os.environ['OMP_WAIT_POLICY'])"
    clean = {k: v for k, v in os.environ.items() if k not in th.WAIT_ENV_KEYS}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**clean, "VAESIM_WAIT": "lazy"})
    assert out.returncode == 0 and out.stdout.strip() == "PASSIVE"
    assert "Traceback" not in out.stderr and "got 'lazy'" in out.stderr


def test_compute_threads_follows_thread_limit_and_omp_num_threads(monkeypatch):
    monkeypatch.setattr(th, "available_cpus", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert th.compute_threads() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert th.compute_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    assert th.compute_threads() == 4
    with th.thread_limit(1):
        assert th.compute_threads() == 1
        with th.thread_limit(3):
            assert th.compute_threads() == 3
        assert th.compute_threads() == 1
    assert th.compute_threads() == 4
