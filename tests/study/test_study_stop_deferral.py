"""A stop that arrives while pool workers are spawned is raised after the spawning, not inside it.

The runner's CI saw a half-started pool worker print ``EOFError: Ran out of input``: SIGTERM came while
the worker's start-up data was being written. Blocking the signal in the main thread did not prevent it, since
the kernel can hand a process-directed signal to another thread and Python then runs the handler in the main
thread at its next bytecode. ``signals_deferred`` makes the handler record the stop and raise it at the end.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from vaesim.study.run.stopping import StopOnSignal, StopRequested, signals_deferred


def _wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_signal_inside_a_deferred_section_is_raised_when_it_ends():
    done = []
    with StopOnSignal(grace=1) as stop:
        with pytest.raises(StopRequested) as raised:
            with signals_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                _wait_for(lambda: stop.signum is not None)
                for _ in range(1000):  # bytecodes run: the handler has run and did not raise here
                    pass
                done.append("section finished")
        assert raised.value.signum == signal.SIGTERM and done == ["section finished"]


def test_a_signal_delivered_to_another_thread_is_deferred_too():
    # a thread that does not block the signal receives it while the main thread blocks it (the real case)
    ready, release = threading.Event(), threading.Event()

    def other() -> None:
        ready.set()
        release.wait(10)

    with StopOnSignal(grace=1) as stop:
        with pytest.raises(StopRequested):
            with signals_deferred():
                worker = threading.Thread(target=other)
                worker.start()
                ready.wait(5)
                blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
                try:
                    os.kill(os.getpid(), signal.SIGTERM)  # only the other thread can take it now
                    _wait_for(lambda: stop.signum is not None)
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                release.set()
                worker.join(5)
                assert stop.signum == signal.SIGTERM  # handled, and nothing raised inside the section


def test_outside_a_deferred_section_the_stop_is_raised_at_once_and_nested_sections_raise_once():
    with StopOnSignal(grace=1):
        with pytest.raises(StopRequested):
            os.kill(os.getpid(), signal.SIGTERM)
            _wait_for(lambda: False, 2.0)  # the handler raises in here
    reached = False
    with StopOnSignal(grace=1):
        with pytest.raises(StopRequested):
            with signals_deferred():
                with signals_deferred():
                    os.kill(os.getpid(), signal.SIGINT)
                    _wait_for(lambda: False, 0.2)
                reached = True  # the inner section ended without raising: the outer one still holds the stop
        assert reached
    with signals_deferred():  # no StopOnSignal active: a plain section
        pass
