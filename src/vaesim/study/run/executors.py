"""Executors: run one stage's independent tasks, the same task code everywhere.

- :class:`LocalExecutor`: ``workers=N`` uses a process pool (spawned
  processes); by default training on the CPU uses one process per CPU and
  the other stages run in this process (:func:`default_workers`). Every
  task computes with torch and BLAS on one thread; its share of the cores
  (the CPUs this process may use, affinity and cgroup quota,
  :func:`vaesim.utils.threads.available_cpus`, // workers) goes to its
  independent units of work (:func:`vaesim.utils.threads.parallel_map`):
  never more busy threads than CPUs, and no result depends on the count.
- :class:`RayExecutor`: one Ray task per study task, each requesting the
  stage's ``num_cpus`` / ``num_gpus`` (fractional GPUs let several small VAEs
  share one card), retried ``max_retries`` times by Ray.

Both collect failures instead of stopping: a failed task is reported with its
id and error, the stage's other tasks go on.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Callable

from vaesim.study.plan import Task
from vaesim.study.run.stopping import grace_time, reclaim_signals, second_signal, signals_deferred, stop_children
from vaesim.study.spec import TaskResources
from vaesim.study.stages.devices import resolve_device
from vaesim.study.stages.task import run_task
from vaesim.utils.threads import split_cpus, worker_start

logger = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")


@dataclass
class TaskFailure:
    """A task that failed after its retries: its id and the error text."""

    task_id: str
    error: str


@dataclass
class StageOutcome:
    """What a stage's tasks returned (:func:`vaesim.study.stages.task.run_task` reports) and which failed."""

    reports: list[dict] = field(default_factory=list)
    failures: list[TaskFailure] = field(default_factory=list)


OnDone = Callable[[dict | TaskFailure], None]


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class LocalExecutor:
    """Run tasks in this process (``workers`` None or 1) or in a pool of ``workers`` processes."""

    name = "local"

    def __init__(self, workers: int | None = None, max_retries: int = 1, threads: int | None = None):
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be a positive integer (or left out for sequential); got {workers!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer (or left out for torch's default); got {threads!r}")
        self.workers = workers
        self.max_retries = max_retries
        self.threads = threads

    def run(self, study_dir: str, tasks: list[Task], resources: TaskResources, on_done: OnDone) -> StageOutcome:
        if not tasks:
            return StageOutcome()
        workers = self.workers if self.workers is not None else default_workers(tasks)
        if workers == 1 or len(tasks) == 1:
            return self._sequential(study_dir, tasks, on_done)
        return self._pool(study_dir, tasks, on_done, workers)

    def _sequential(self, study_dir: str, tasks: list[Task], on_done: OnDone) -> StageOutcome:
        outcome = StageOutcome()
        _, threads = split_cpus(1, self.threads)
        for task in tasks:
            for attempt in range(self.max_retries + 1):
                try:
                    report = run_task(study_dir, task, threads)
                except Exception as error:  # a failed task is reported, the others go on
                    logger.warning("task %s failed (attempt %d of %d): %s", task.task_id, attempt + 1,
                                   self.max_retries + 1, _error_text(error))
                    logger.info("task %s: traceback of attempt %d:\n%s", task.task_id, attempt + 1,
                                traceback.format_exc())  # shown with -v
                    if attempt == self.max_retries:
                        failure = TaskFailure(task.task_id, _error_text(error))
                        outcome.failures.append(failure)
                        on_done(failure)
                    continue
                outcome.reports.append(report)
                on_done(report)
                break
        return outcome

    def _pool(self, study_dir: str, tasks: list[Task], on_done: OnDone, workers: int) -> StageOutcome:
        outcome = StageOutcome()
        workers, threads = split_cpus(min(workers, len(tasks)), self.threads)
        if workers == 1:
            return self._sequential(study_dir, tasks, on_done)
        attempts = {task.task_id: 0 for task in tasks}
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=worker_start,
                                   initargs=(os.getpid(), watch_parent))
        try:
            pending = {}
            # workers are spawned while tasks are submitted: a SIGTERM / SIGINT then waits until every worker has
            # its start-up data (cut short, a half-started worker prints a traceback). Deferred, because the
            # handler runs in the main thread whichever thread the kernel gave the signal to; blocked too, so
            # that the workers start with them blocked until their own handlers are in place (worker_start)
            with signals_deferred():
                blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
                try:
                    for task in tasks:
                        pending[pool.submit(run_task, study_dir, task, threads)] = task
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            self._collect(study_dir, pool, pending, attempts, outcome, on_done, threads)
        except KeyboardInterrupt:  # SIGTERM / SIGINT (vaesim.study.run.stopping): no new task; workers save
            try:
                pool.shutdown(wait=False, cancel_futures=True)
            finally:
                stop_children()
            raise
        finally:
            pool.shutdown(wait=True)
        return outcome

    def _collect(self, study_dir, pool, pending, attempts, outcome, on_done, threads) -> None:
        """Wait for the pool's tasks, resubmitting failed ones up to ``max_retries`` times."""
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                task = pending.pop(future)
                try:
                    report = future.result()
                except Exception as error:
                    attempts[task.task_id] += 1
                    logger.warning("task %s failed (attempt %d of %d): %s", task.task_id,
                                   attempts[task.task_id], self.max_retries + 1, _error_text(error))
                    logger.info("task %s: traceback of attempt %d:", task.task_id, attempts[task.task_id],
                                exc_info=error)  # shown with -v
                    if attempts[task.task_id] <= self.max_retries and not _pool_broken(error):
                        with signals_deferred():  # a resubmission may spawn a worker too
                            pending[pool.submit(run_task, study_dir, task, threads)] = task
                    else:
                        failure = TaskFailure(task.task_id, _error_text(error))
                        outcome.failures.append(failure)
                        on_done(failure)
                    continue
                outcome.reports.append(report)
                on_done(report)

    def close(self) -> None:
        return None


def default_workers(tasks: list[Task]) -> int:
    """Processes for a stage when ``--workers`` is not given: one per CPU for training on the CPU, else 1.

    A run trains on one torch thread (:data:`vaesim.utils.threads.TASK_TORCH_THREADS`: its weights do not
    depend on the core count), so runs train side by side, one per core. The other stages run in this
    process and spread their independent units (layers, layer pairs, blocks) over the cores on threads.
    """
    from vaesim.utils.threads import available_cpus

    if len(tasks) < 2 or tasks[0].stage != "train" or resolve_device(tasks[0].device) != "cpu":
        return 1
    return min(len(tasks), available_cpus())


def watch_parent(parent: int, interval: float = 1.0) -> None:
    """Pool-worker initialiser: exit when the runner that started this worker is gone.

    A worker blocks waiting for its next task; if the runner is killed
    (``kill -9``) nobody ever sends one, and the worker would hold its memory
    (and, on a GPU node, GPU memory) forever. A daemon thread checks every
    ``interval`` seconds whether the worker was re-parented and then exits the
    process. Outputs are written atomically, so an exit mid-task leaves
    nothing a later run trusts.
    """
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="vaesim-watch-parent", daemon=True).start()


def _pool_broken(error: BaseException) -> bool:
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(error, BrokenProcessPool)


class RayExecutor:
    """Run tasks as Ray tasks on a local or remote Ray cluster.

    ``address=None`` joins the Ray instance already initialised in this
    process, or starts a local one (shut down again by :meth:`close`);
    ``address="auto"`` or ``"ray://host:10001"`` joins a cluster. The study
    directory must be on a file system every node sees.
    """

    name = "ray"

    def __init__(self, address: str | None = None, max_retries: int = 1):
        try:
            import ray
        except ImportError:
            raise ImportError("the Ray executor needs Ray: pip install 'vaesim[ray]'") from None
        self._ray = ray
        self.max_retries = max_retries
        self._started_here = False
        if not ray.is_initialized():
            options = {"include_dashboard": False} if address is None else {}
            ray.init(address=address, log_to_driver=False, **options)
            self._started_here = True
            reclaim_signals()  # ray.init's SIGTERM handler exits at once; the study's stops and saves
        self._remote = ray.remote(_ray_task)

    def run(self, study_dir: str, tasks: list[Task], resources: TaskResources, on_done: OnDone) -> StageOutcome:
        outcome = StageOutcome()
        threads = max(1, int(resources.num_cpus))
        options = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus,
                   "max_retries": self.max_retries, "retry_exceptions": True}
        pending = {self._remote.options(**options).remote(study_dir, task, threads): task for task in tasks}
        try:
            self._collect(pending, outcome, on_done)
        except KeyboardInterrupt:  # SIGTERM / SIGINT (vaesim.study.run.stopping): cancel; training saves first
            self._cancel(list(pending))
            raise
        return outcome

    def _cancel(self, refs: list) -> None:
        """Cancel ``refs`` (a running task gets SIGINT's handler: training saves ``interrupted.*``), wait up to
        the grace time for them to end, then force the rest."""
        ray = self._ray
        for ref in refs:
            try:
                ray.cancel(ref, force=False)
            except Exception as error:  # noqa: BLE001 - a finished or lost task: nothing to cancel
                logger.debug("cancel %s: %s", ref, error)
        deadline = time.monotonic() + grace_time()
        left = refs
        while left and time.monotonic() < deadline and not second_signal():
            _, left = ray.wait(left, num_returns=len(left), timeout=0.2)
        for ref in left:
            logger.warning("a Ray task did not stop within %g s; forced (it reruns on resume)", grace_time())
            try:
                ray.cancel(ref, force=True)
            except Exception as error:  # noqa: BLE001
                logger.debug("force-cancel %s: %s", ref, error)

    def _collect(self, pending: dict, outcome: StageOutcome, on_done: OnDone) -> None:
        ray = self._ray
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                try:
                    report = ray.get(ref)
                except Exception as error:  # RayTaskError wraps the task's own error
                    cause = getattr(error, "cause", None) or error
                    failure = TaskFailure(task.task_id, _error_text(cause))
                    logger.warning("task %s failed after %d retries: %s", task.task_id, self.max_retries,
                                   failure.error)
                    outcome.failures.append(failure)
                    on_done(failure)
                    continue
                outcome.reports.append(report)
                on_done(report)

    def close(self) -> None:
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()


def _ray_task(study_dir: str, task: Task, threads: int) -> dict:
    return run_task(study_dir, task, threads)


def make_executor(executor: str = "local", *, workers: int | None = None, address: str | None = None,
                  max_retries: int = 1, threads: int | None = None):
    """An executor by name: ``local`` (``workers``, ``threads``) or ``ray`` (``address``)."""
    if executor == "local":
        if address is not None:
            raise ValueError("--address is for the Ray executor; add --executor ray or drop --address")
        return LocalExecutor(workers=workers, max_retries=max_retries, threads=threads)
    if workers is not None:
        raise ValueError("--workers is for the local executor; Ray places tasks by the spec's resources")
    if executor == "ray":
        return RayExecutor(address=address, max_retries=max_retries)
    raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
