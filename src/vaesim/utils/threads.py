"""Threads on a shared CPU: how many cores this process really gets, and no spin-waiting.

Measured on a 2-core machine (see benchmarks/README.md, "shared CPU"): with
the OpenMP runtime's default wait policy, torch's worker threads spin at
every parallel region's barrier; when another process holds one of the two
cores, the spinning thread burns its time slice waiting for a thread that is
not running, and a training step became 7x (quiet machine) to 5-10x (load
7-9) slower instead of the 2x of a fair share. With ``OMP_WAIT_POLICY=PASSIVE``
the waiting threads sleep and the same step is 1.7-2x slower: a fair share.

Two things are done here:

* :func:`prefer_passive_waiting` sets, unless the user already set them, the
  environment variables that stop the thread pools from spinning
  (``OMP_WAIT_POLICY=PASSIVE`` for GNU/LLVM OpenMP behind torch and MKL,
  ``KMP_BLOCKTIME=0`` for Intel OpenMP, ``OPENBLAS_THREAD_TIMEOUT=4`` for
  OpenBLAS behind numpy, whose idle threads otherwise spin ~2^28 cycles after
  every call while torch works). The runtimes read them when they load, so
  it runs where vaesim owns the process, before torch/numpy load: the
  ``vaesim`` command (:mod:`vaesim.cli`) and vaesim's spawned worker
  processes (:func:`worker_start`). ``import vaesim`` sets nothing: a
  library import must not change other libraries in a user's notebook. To
  get the policy in your own process, call :func:`prefer_passive_waiting`
  before importing torch (or set ``OMP_WAIT_POLICY=PASSIVE`` yourself).
* :func:`available_cpus` counts the CPUs this process may use: its CPU
  affinity, capped by a cgroup CPU quota (containers, Slurm, systemd), not
  ``os.cpu_count()``; :func:`split_cpus` shares them between worker
  processes so that workers x threads never exceeds it; :func:`thread_limit`
  applies a thread count to torch and to the BLAS behind numpy in a block.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, MutableMapping, Sequence

logger = logging.getLogger(__name__)

#: environment defaults that make idle pool threads sleep instead of spinning
PASSIVE_WAIT_ENV = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "KMP_BLOCKTIME": "0",
    "OPENBLAS_THREAD_TIMEOUT": "4",
}
#: spin briefly, then sleep: libgomp counts ~100,000 spins per millisecond, so 10,000 is ~0.1 ms (its default
#: is 300,000, ~3 ms, and OMP_WAIT_POLICY=PASSIVE is 0)
SHORT_SPIN_ENV = {
    "GOMP_SPINCOUNT": "10000",
    "KMP_BLOCKTIME": "0",
    "OPENBLAS_THREAD_TIMEOUT": "4",
}
WAIT_POLICIES = {"passive": PASSIVE_WAIT_ENV, "short": SHORT_SPIN_ENV, "spin": {}}
#: the policy used when ``VAESIM_WAIT`` is unset
DEFAULT_WAIT_POLICY = "passive"
#: variables any policy may set; when the user set one of them, vaesim sets none (the user's choice wins)
WAIT_ENV_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OPENBLAS_THREAD_TIMEOUT")

CGROUP_ROOT = Path("/sys/fs/cgroup")


def wait_policy(environ: MutableMapping[str, str] | None = None) -> str:
    """The thread wait policy asked for: ``VAESIM_WAIT`` (passive / short / spin); ``VAESIM_SPIN_WAIT=1`` = spin."""
    environ = os.environ if environ is None else environ
    if environ.get("VAESIM_SPIN_WAIT", "") not in ("", "0"):
        return "spin"
    policy = environ.get("VAESIM_WAIT", "").strip().lower() or DEFAULT_WAIT_POLICY
    if policy not in WAIT_POLICIES:
        raise ValueError(f"VAESIM_WAIT must be one of {sorted(WAIT_POLICIES)}; got {environ['VAESIM_WAIT']!r}")
    return policy


def prefer_passive_waiting(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the wait policy's variables in ``environ`` (default ``os.environ``) where unset; return what was set.

    ``VAESIM_WAIT=passive`` (default): threads sleep at once when idle
    (:data:`PASSIVE_WAIT_ENV`); ``short``: they spin ~0.1 ms first
    (:data:`SHORT_SPIN_ENV`); ``spin`` (or ``VAESIM_SPIN_WAIT=1``) leaves the
    environment alone (the runtimes' own defaults: faster by ~10-20% per step
    on a machine nobody else uses, several times slower on a shared one).
    If the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` themselves,
    the OpenMP variables are left as they are.
    """
    environ = os.environ if environ is None else environ
    try:
        chosen = WAIT_POLICIES[wait_policy(environ)]
    except ValueError as error:  # this runs as the CLI starts: say so in one line and keep the default
        logger.warning("%s; using %s", error, DEFAULT_WAIT_POLICY)
        chosen = WAIT_POLICIES[DEFAULT_WAIT_POLICY]
    user_omp = any(key in environ for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"))
    changed = {}
    for key, value in chosen.items():
        if key in environ or (user_omp and key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
            continue
        environ[key] = value
        changed[key] = value
    return changed


def worker_start(parent: int, watch: Callable[[int], None] | None = None) -> None:
    """Initialiser of vaesim's pool workers: apply the wait policy (before the task's modules load numpy or
    torch), then call ``watch(parent)`` (the executor's watch for a vanished runner).

    It lives in this light module so that unpickling it in a fresh spawned worker loads no thread pool.
    """
    import signal

    # the runner starts workers with SIGINT/SIGTERM blocked (a stop cannot cut a worker's start-up data in half);
    # a worker takes them again at once: a stop forwarded to it reaches training's handler
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    prefer_passive_waiting()
    if watch is not None:
        watch(parent)


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs allowed by this process's cgroup CPU quota (quota / period), or None when unlimited/unknown.

    Reads cgroup v2 ``cpu.max`` ("max 100000" or "150000 100000") and v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1 = unlimited), in
    the process's own cgroup and in the mount root; the smallest limit wins.
    """
    candidates: list[tuple[Path, str]] = []
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1], parts[2].lstrip("/")
        if controllers == "":  # v2 unified hierarchy
            candidates.append((root / path, "v2"))
        elif "cpu" in controllers.split(","):
            for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
                candidates.append((root / mount / path, "v1"))
    candidates += [(root, "v2"), (root / "cpu", "v1"), (root / "cpu,cpuacct", "v1")]
    limits = []
    for directory, version in candidates:
        limit = _read_v2(directory) if version == "v2" else _read_v1(directory)
        if limit is not None:
            limits.append(limit)
    return min(limits) if limits else None


def _read_v2(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _read_v1(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (``os.cpu_count()`` where affinity is not available)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def available_cpus() -> int:
    """CPUs this process may keep busy: affinity, capped by the cgroup quota (rounded down, at least 1).

    ``VAESIM_CPUS=N`` overrides it (e.g. to leave cores to other work).
    """
    override = os.environ.get("VAESIM_CPUS", "").strip()
    if override:
        try:
            value = int(override)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"VAESIM_CPUS must be a positive integer; got {override!r}")
        return value
    cpus = affinity_cpus()
    quota = cgroup_cpu_limit()
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return cpus


def split_cpus(workers: int, threads: int | None = None, cpus: int | None = None) -> tuple[int, int]:
    """``(workers, threads per worker)`` with ``workers x threads <= cpus`` (at least one of each).

    ``threads`` (the user's per-worker choice) is kept when it fits, else
    lowered; ``workers`` beyond ``cpus`` are cut to ``cpus`` (more processes
    than cores only take turns), with a logged warning.
    """
    cpus = available_cpus() if cpus is None else cpus
    if workers > cpus:
        logger.warning("%d worker processes asked for, but this process may use %d CPU(s); using %d workers",
                       workers, cpus, cpus)
        workers = cpus
    fair = max(1, cpus // workers)
    if threads is not None and threads > fair:
        logger.warning("%d threads per worker x %d workers exceed the %d available CPU(s); using %d",
                       threads, workers, cpus, fair)
        threads = fair
    return workers, threads or fair


_limit: int | None = None  # set by thread_limit for the block it guards


def compute_threads() -> int:
    """Threads vaesim's own numpy work may use now (per-layer centring in the similarity summaries).

    The count given to :func:`thread_limit` inside its block (an executor's
    share of the cores), else :func:`available_cpus` capped by
    ``OMP_NUM_THREADS`` when the user set it.
    """
    if _limit is not None:
        return _limit
    cpus = available_cpus()
    try:
        omp = int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0] or 0)
    except ValueError:
        omp = 0
    return max(1, min(cpus, omp)) if omp > 0 else cpus


#: torch intra-op threads of every study task on the CPU. One: a run's weights then do not depend on the
#: machine's core count, the executor (local or Ray) or the load (torch's convolutions and matrix products
#: split their sums by thread count, so two threads train other weights than one); runs train side by side.
TASK_TORCH_THREADS = 1


@contextlib.contextmanager
def thread_limit(threads: int | None) -> Iterator[None]:
    """Inside the block: torch and every BLAS call on one thread, vaesim's own work on ``threads`` threads.

    ``threads`` is the task's share of the cores (None: no change at all).
    Small linear-algebra calls never fan out over threads (a parallel region
    waits at its barrier for any thread that another process holds: a 300 x
    300 SVD took 41 ms on one thread and 281 ms on two at load 8); the share
    is used by :func:`parallel_map` over independent units (layers, layer
    pairs, row blocks), whose results do not depend on it.
    """
    global _limit
    if threads is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    import scipy.linalg  # noqa: F401 - scipy's own BLAS loaded now, so that the limit below reaches it too

    threads = max(1, int(threads))
    previous, previous_limit = torch.get_num_threads(), _limit
    torch.set_num_threads(TASK_TORCH_THREADS)
    _limit = threads
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(previous)
        _limit = previous_limit


_POOL: Any = None
_POOL_LOCK = threading.Lock()


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any], threads: int | None = None) -> list:
    """``[fn(item) for item in items]`` on up to ``threads`` (default :func:`compute_threads`) threads, in order.

    For independent units of numpy work (layers, layer pairs, row blocks):
    numpy releases the GIL inside its kernels, and each call's BLAS/LAPACK
    runs on one thread (:func:`single_threaded_blas`), so the parallelism
    comes from the units and no call waits at a barrier for a thread that
    another process holds. Items are handed out one at a time (a thread that
    gets less CPU takes fewer items). Each result depends only on its item,
    so the output is bit-identical for any thread count and load.
    """
    threads = compute_threads() if threads is None else max(1, int(threads))
    threads = min(threads, len(items))
    if threads <= 1:
        return [fn(item) for item in items]
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < threads:
            from concurrent.futures import ThreadPoolExecutor

            _POOL = ThreadPoolExecutor(max_workers=max(threads, 2), thread_name_prefix="vaesim-work")
        pool = _POOL
    if threading.current_thread().name.startswith("vaesim-work"):  # nested: run here, never wait on own pool
        return [fn(item) for item in items]
    queue = iter(enumerate(items))
    lock = threading.Lock()

    def work() -> list[tuple[int, Any]]:
        done = []
        while True:
            with lock:
                nxt = next(queue, None)
            if nxt is None:
                return done
            done.append((nxt[0], fn(nxt[1])))

    out: list = [None] * len(items)
    # One BLAS thread per call, set here in the calling thread: OpenBLAS takes a new thread count only from the
    # thread that set up its thread server (a worker thread's openblas_set_num_threads is ignored: measured with
    # scipy-openblas 0.3.x), and a call that finds the server busy runs with another blocking (R factors a few
    # ulps apart from run to run when two LAPACK calls overlapped).
    with single_threaded_blas():
        for future in [pool.submit(work) for _ in range(threads)]:
            for index, value in future.result():
                out[index] = value
    return out


_BLAS_LOCK = threading.Lock()
_blas_users = 0
_blas_limits: Any = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS/LAPACK behind numpy and scipy on one thread inside the block (see :func:`parallel_map`).

    The BLAS thread count is one process-wide setting, and OpenBLAS takes it
    only from the thread that set up its thread server (the main thread):
    :func:`parallel_map` enters this block in the calling thread around its
    parallel region, and blocks entered at the same time from several threads
    share one setting (the first to enter sets it, the last to leave restores
    it; a plain ``threadpool_limits`` per block would restore the old count
    while another block still runs its LAPACK calls).
    """
    global _blas_users, _blas_limits
    from threadpoolctl import threadpool_limits

    with _BLAS_LOCK:
        if _blas_users == 0:
            _blas_limits = threadpool_limits(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limits.restore_original_limits()
                _blas_limits = None
