"""One runner per study directory: an exclusive lock taken before anything is changed.

:class:`StudyLock` is taken by ``run_study`` before it touches the directory
(before the recorded spec is compared, rewritten or stale outputs deleted):

1. ``DIR/.lock`` is opened and ``flock``-ed exclusively without waiting. The
   kernel (or the NFS lock manager) grants it to one process only and drops
   it when that process dies, so two runners started at the same moment
   cannot both pass, and a killed runner never blocks the next one on the
   same host.
2. ``DIR/running.json`` says who runs: host, pid, the process's start time
   (clock ticks since boot, ``/proc/<pid>/stat``) and boot id, and a
   heartbeat refreshed every :data:`HEARTBEAT_S` seconds. It is published
   with ``link(2)``, which fails when the file exists, so runners on two
   hosts whose ``flock`` does not reach each other (some NFS setups) still
   cannot both claim a fresh directory.

A record is *live* when its process still runs: on this host, the pid
exists with the recorded start time and boot id (a pid reused by another
process does not count); on another host, its heartbeat is younger than
:data:`STALE_AFTER_S` seconds (a dead host stops beating). Stale records are
replaced; live ones refuse the new runner with a message naming them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

from vaesim.utils import atomic_write_json

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
RUNNING_FILE = "running.json"
#: how long a refused runner waits for the lock holder's record (published right after its flock)
RECORD_WAIT_S = 5.0
HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0


class StudyLocked(ValueError):
    """Another live runner works on the study directory."""


def process_start_ticks(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _pid_exists(pid) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def runner_alive(info: dict, now: float | None = None) -> bool:
    """True when the runner recorded in ``info`` (a ``running.json``) still runs; see the module docstring."""
    if info.get("host") == socket.gethostname():
        pid = info.get("pid")
        if not _pid_exists(pid):
            return False
        if info.get("boot_id") and boot_id() and info["boot_id"] != boot_id():
            return False
        recorded, actual = info.get("start_ticks"), process_start_ticks(pid)
        return recorded is None or actual is None or recorded == actual
    beat = info.get("heartbeat", info.get("started"))
    if not isinstance(beat, (int, float)):
        return False
    return (now if now is not None else time.time()) - beat < STALE_AFTER_S


def describe(info: dict, now: float | None = None) -> str:
    """``pid 123 on host (local executor, last heartbeat 12 s ago)``."""
    beat = info.get("heartbeat", info.get("started"))
    age = f", last heartbeat {(now or time.time()) - beat:.0f} s ago" if isinstance(beat, (int, float)) else ""
    return f"pid {info.get('pid')} on {info.get('host')} ({info.get('executor')} executor{age})"


def read_running(out_dir: Path) -> dict | None:
    """The ``running.json`` record of ``out_dir`` ({} when unreadable), or None when there is none."""
    path = Path(out_dir) / RUNNING_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


class StudyLock:
    """Exclusive claim of a study directory for one runner (a context manager)."""

    def __init__(self, out_dir, executor: str = "local"):
        self.out_dir = Path(out_dir)
        self.executor = executor
        self._fd: int | None = None
        self._info: dict | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "StudyLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock or raise :class:`StudyLocked` (nothing in the directory is changed then)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise self._refusal(self._wait_for_record()) from None
        self._fd = fd
        try:
            self._publish()
        except BaseException:
            self._unlock()
            raise
        self._thread = threading.Thread(target=self._beat, name="vaesim-study-heartbeat", daemon=True)
        self._thread.start()

    def _wait_for_record(self) -> dict:
        """The holder's ``running.json``, waiting up to :data:`RECORD_WAIT_S` for it.

        The holder publishes its record right after taking the flock; a runner
        refused in between would otherwise name "another process" instead of
        the holder's pid.
        """
        deadline = time.monotonic() + RECORD_WAIT_S
        while True:
            info = read_running(self.out_dir)
            if info or time.monotonic() >= deadline:
                return info or {}
            time.sleep(0.05)

    def _refusal(self, info: dict) -> StudyLocked:
        running = self.out_dir / RUNNING_FILE
        who = describe(info) if info else "another process"
        return StudyLocked(f"{self.out_dir} is being run by {who} (see {running}); wait for it, or stop it, "
                           f"before running the study again")

    def _publish(self) -> None:
        """Write ``running.json`` with ``link(2)`` (fails if present); replace a stale record first."""
        running = self.out_dir / RUNNING_FILE
        for _attempt in range(2):
            info = read_running(self.out_dir)
            if info is not None:
                # We hold the flock, so a runner of this host would have blocked us: a same-host record is
                # stale. A record of another host counts while its heartbeat is fresh.
                if info and info.get("host") != socket.gethostname() and runner_alive(info):
                    raise self._refusal(info)
                logger.warning("replacing the stale runner record %s (%s)", running,
                               describe(info) if info else "unreadable")
                running.unlink(missing_ok=True)
            now = time.time()
            self._info = {"pid": os.getpid(), "host": socket.gethostname(), "executor": self.executor,
                          "started": now, "heartbeat": now, "start_ticks": process_start_ticks(os.getpid()),
                          "boot_id": boot_id()}
            tmp = self.out_dir / f".tmp-running-{os.getpid()}.json"
            tmp.write_text(json.dumps(self._info))
            try:
                os.link(tmp, running)
                return
            except FileExistsError:
                continue  # another host published between our read and link: look again
            finally:
                tmp.unlink(missing_ok=True)
        raise self._refusal(read_running(self.out_dir) or {})

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                current = read_running(self.out_dir)
                if current and current.get("pid") == self._info["pid"] and current.get("host") == self._info["host"]:
                    self._info["heartbeat"] = time.time()
                    atomic_write_json(self.out_dir / RUNNING_FILE, self._info)

    def release(self) -> None:
        """Stop the heartbeat, remove our ``running.json`` and drop the lock (safe to call twice)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._fd is None:
            return
        current = read_running(self.out_dir)
        if current and self._info and current.get("pid") == self._info["pid"] \
                and current.get("host") == self._info["host"]:
            (self.out_dir / RUNNING_FILE).unlink(missing_ok=True)
        self._unlock()

    def _unlock(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None
