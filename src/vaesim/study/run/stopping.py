"""Stopping a study on SIGTERM or SIGINT, sent to the runner alone or to its whole process group.

Schedulers stop a job by signalling it: Slurm's ``scancel`` and its
``--signal``, Kubernetes before ``terminationGracePeriodSeconds`` runs out,
systemd, ``kill PID``, a terminal's Ctrl-C. While a study runs,
:class:`StopOnSignal` (installed by :func:`vaesim.study.run.runner.run_study`
in the main thread) turns the first SIGTERM or SIGINT into
:class:`StopRequested` (a :class:`KeyboardInterrupt` carrying the signal, so
the CLI exits 128 + signal: 143 for SIGTERM, 130 for SIGINT), raised where the
runner is:

- running a task in this process (``--workers 1``, and every stage but
  training by default): the task is abandoned at once; its outputs are
  written atomically, so nothing half-written remains. Training, which
  installs its own handler while it runs, finishes the step under way and
  saves ``interrupted.*`` first;
- waiting on a process pool: no further task starts, SIGTERM is forwarded to
  every worker (training there saves ``interrupted.*``; other stages stop at
  once) and the runner waits for them up to the grace time
  (:data:`STOP_GRACE_S`), then kills what is left;
- waiting on Ray: every pending task is cancelled (Ray raises SIGINT's
  handler in a running task: training saves ``interrupted.*``), and the
  runner waits up to the grace time before forcing the rest.

A second signal while stopping is taken as "stop now": the wait ends.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from contextlib import contextmanager

logger = logging.getLogger(__name__)

#: seconds a stopping runner waits for its workers to save and exit (``--stop-grace``); below Kubernetes'
#: default terminationGracePeriodSeconds (30) so that the runner exits itself before the SIGKILL
STOP_GRACE_S = 20.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(KeyboardInterrupt):
    """The study was asked to stop by signal ``signum``; finished work is kept and a rerun resumes."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = int(signum)


class StopOnSignal:
    """Context manager: SIGTERM and SIGINT raise :class:`StopRequested` in the main thread while it is active.

    ``grace``: the seconds executors give their workers once a stop is requested. Installed only in the main
    thread (Python allows handlers nowhere else); previous handlers come back on exit.
    """

    def __init__(self, grace: float = STOP_GRACE_S) -> None:
        if not grace >= 0:
            raise ValueError(f"the stop grace time must be >= 0 seconds; got {grace!r}")
        self.grace = float(grace)
        self.signum: int | None = None
        self.again = threading.Event()  # a second signal while stopping: stop waiting
        self._previous: dict = {}
        self._defer = 0  # depth of signals_deferred() sections
        self._deferred: int | None = None  # a signal that came during one, raised when the last ends

    def __enter__(self) -> "StopOnSignal":
        global _ACTIVE
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                try:
                    self._previous[signum] = signal.signal(signum, self._handle)
                except (ValueError, OSError):  # an embedding interpreter that forbids it
                    pass
        _ACTIVE = self
        return self

    def _handle(self, signum, _frame) -> None:
        if self.signum is not None:
            self.again.set()
            return
        self.signum = signum
        logger.warning("%s received: stopping (running work saves or is abandoned within %g s); rerun the same "
                       "command to resume", signal.Signals(signum).name, self.grace)
        if self._defer:
            self._deferred = signum
            return
        raise StopRequested(signum)

    def __exit__(self, *exc) -> None:
        global _ACTIVE
        _ACTIVE = None
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


_ACTIVE: StopOnSignal | None = None


@contextmanager
def signals_deferred():
    """A section that a SIGTERM / SIGINT must not cut: the stop is raised when it ends, not inside it.

    For spawning pool workers: a stop raised while a worker's start-up data is being written leaves a
    half-started worker that prints a traceback (``EOFError: Ran out of input``). Blocking the signals in the
    main thread is not enough: the kernel may deliver a process-directed signal to another thread, and
    Python then runs the handler in the main thread anyway, at its next bytecode.
    """
    active = _ACTIVE
    if active is None:
        yield
        return
    active._defer += 1
    try:
        yield
    finally:
        active._defer -= 1
        if active._defer == 0 and active._deferred is not None:
            signum, active._deferred = active._deferred, None
            raise StopRequested(signum)


def reclaim_signals() -> None:
    """Put the active :class:`StopOnSignal`'s handlers back after a library replaced them (``ray.init``
    installs its own SIGTERM handler, which exits 1 at once)."""
    if _ACTIVE is not None and threading.current_thread() is threading.main_thread():
        for signum in _ACTIVE._previous:
            signal.signal(signum, _ACTIVE._handle)


def grace_time() -> float:
    """The grace time of the active :class:`StopOnSignal` (:data:`STOP_GRACE_S` outside one)."""
    return _ACTIVE.grace if _ACTIVE is not None else STOP_GRACE_S


def second_signal() -> bool:
    """True once a second signal asked a stopping runner to stop at once."""
    return _ACTIVE is not None and _ACTIVE.again.is_set()


def stop_children(grace: float | None = None) -> int:
    """SIGTERM to every child process of this one, then wait up to ``grace`` seconds for them to exit and kill
    the rest; return how many had to be killed."""
    import multiprocessing

    grace = grace_time() if grace is None else grace
    children = multiprocessing.active_children()
    for child in children:
        _signal(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        while child.is_alive() and time.monotonic() < deadline and not second_signal():
            child.join(timeout=0.1)
    killed = [child for child in children if child.is_alive()]
    for child in killed:
        logger.warning("worker %d did not stop within %g s; killed (its task reruns on resume)", child.pid, grace)
        _signal(child.pid, signal.SIGKILL)
        child.join(timeout=5)
    return len(killed)


def _signal(pid: int | None, signum: int) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
