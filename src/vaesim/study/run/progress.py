"""What the runner shows while a study runs: one bar (or, without a terminal, plain lines) per stage.

The bar's postfix is what the running tasks report from inside, through
their progress files (:mod:`vaesim.study.stages.progress`): the current run,
step, loss, rate and ETA.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from vaesim.study.run.executors import TaskFailure
from vaesim.study.stages.progress import describe, read_progress

logger = logging.getLogger(__name__)


@dataclass
class StageProgress:
    """The per-stage task bar, with live progress from inside the running tasks (``.progress`` files).

    On a terminal: a tqdm bar per stage whose postfix shows the running task
    (run, step, loss, steps/s, ETA), refreshed every second. Not a terminal
    (a log file, CI): no bars; one plain line every ``quiet_every`` seconds and one when a stage ends.
    Either way a resumed training run is announced once ("resuming from step N").
    """

    enabled: bool
    out_dir: Path | None = None
    bar: object = None
    counts: dict = field(default_factory=dict)
    ran: int = 0  # tasks the current stage runs (not already done)
    finished: int = 0  # of those, the ones finished so far
    quiet_every: float = 60.0
    stream: object = None

    def __post_init__(self) -> None:
        import sys
        import threading

        self.stream = self.stream or sys.stderr
        self.terminal = bool(self.enabled and getattr(self.stream, "isatty", lambda: False)())
        self.stage = ""
        self.done = self.total = 0
        self.announced: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._last_line = time.monotonic()

    def start(self, stage: str, total: int, done: int) -> None:
        self.stage, self.total, self.done = stage, total, done
        self.finished = 0
        if self.terminal:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, desc=f"{stage:8s}", unit="task", leave=True, file=self.stream)
        logger.info("stage %s: %d of %d tasks already done", stage, done, total)
        if self.enabled and self.out_dir is not None and self._thread is None:
            import threading

            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name="vaesim-progress", daemon=True)
            self._thread.start()

    def advance(self, item) -> None:
        with self._lock:
            self.done += 1
            self.finished += not isinstance(item, TaskFailure)
            if self.bar is not None:
                self.bar.update(1)
                if isinstance(item, TaskFailure):
                    self.bar.set_postfix_str(f"failed: {item.task_id}")

    def refresh(self) -> None:
        """Show what the running tasks report (called every second by the watcher thread)."""
        records = read_progress(self.out_dir)
        with self._lock:
            for record in records:
                if record.get("resumed_from") and record["task"] not in self.announced:
                    self.announced.add(record["task"])
                    self._say(f"{self.stage}: {record.get('what', record['task'])}: resuming from step "
                              f"{record['resumed_from']}")
            text = describe(records[0]) + (f" (+{len(records) - 1} more running)" if len(records) > 1 else "") \
                if records else ""
            if self.bar is not None:
                self.bar.set_postfix_str(text, refresh=True)
            elif not self.terminal and self.stage and time.monotonic() - self._last_line >= self.quiet_every:
                # at least one line a minute in a log, also while no task reports from inside
                self._last_line = time.monotonic()
                self._say(f"{self.stage}: {self.done}/{self.total} tasks" + (f"; {text}" if text else ""))

    def _say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.refresh()
            except Exception as error:  # pragma: no cover - progress never stops a study
                logger.debug("progress refresh failed: %s", error)

    def stop(self) -> None:
        """End the stage's bar; without a terminal, one line saying how far the stage got."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and self.stage:
            print(f"{self.stage}: {self.done}/{self.total} tasks done", file=self.stream, flush=True)
        self.stage = ""

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.stop()
