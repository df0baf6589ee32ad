"""The stall watchdog: a job whose steps stop finishing fails instead of hanging."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import pytest

from sagevit.platform.watchdog import StallWatchdog


class FakeClock:
    """Seconds that pass only when the test says: the verdicts cannot depend on how
    quickly this machine schedules the watchdog's thread."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_stall_calls_on_stall_with_the_reason():
    called = threading.Event()
    messages = []

    def on_stall(message: str) -> None:
        messages.append(message)
        called.set()

    clock = FakeClock()
    with StallWatchdog(0.2, on_stall, clock):
        time.sleep(0.3)  # real time passes; the clock does not: no stall yet
        assert not called.is_set()
        clock.now += 7.0
        assert called.wait(60)  # a bound on a hung test only: it looks every 0.05 s
    assert len(messages) == 1
    assert re.fullmatch(
        r"no training step finished in 7 s, nor any data read \(--stall-timeout 0\.2\):"
        r" a worker is stuck; failing the job",
        messages[0],
    )


def test_beats_keep_it_quiet_and_leaving_stops_it():
    messages = []
    clock = FakeClock()
    with StallWatchdog(1, messages.append, clock) as watchdog:
        for _ in range(15):  # 15 s of steps, each well inside the timeout
            clock.now += 0.9
            watchdog.beat()
            time.sleep(0.05)  # the watchdog looks every 0.25 s of real time meanwhile
    assert not watchdog._thread.is_alive()  # leaving joined it
    clock.now += 100.0  # far past the timeout after leaving: nobody is watching
    time.sleep(0.3)
    assert messages == []


def test_zero_turns_it_off():
    messages = []
    with StallWatchdog(0, messages.append) as watchdog:
        time.sleep(0.3)
        assert not watchdog._thread.is_alive()
    assert messages == []
    with pytest.raises(ValueError, match="-1"):
        StallWatchdog(-1)


STUCK = """
import logging, threading
from sagevit.platform.watchdog import StallWatchdog
logging.basicConfig(level=logging.INFO)
with StallWatchdog(0.5):
    threading.Event().wait()  # the main thread never comes back, like a hung collective
"""


def test_the_default_answer_ends_a_stuck_process_with_status_1():
    result = subprocess.run(  # the timeout only bounds a hung test
        [sys.executable, "-c", STUCK], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    assert "ERROR:sagevit.platform.watchdog:no training step finished in" in result.stderr
    assert "most recent call first" in result.stderr  # every thread's stack, for the post-mortem


def test_the_toolkit_writes_the_failure_reason_then_exits(monkeypatch, tmp_path):
    import sagevit.toolkit as toolkit

    exits = []
    monkeypatch.setattr(toolkit, "exit_stalled", exits.append)
    monkeypatch.setattr(toolkit.files.environment, "output_dir", str(tmp_path))
    toolkit.fail_stalled("stuck")
    assert (tmp_path / "failure").read_text() == "stuck" and exits == ["stuck"]

    def unwritable(message: str) -> None:
        raise OSError("read-only file system")

    monkeypatch.setattr(toolkit.files, "write_failure_file", unwritable)
    with pytest.raises(OSError):
        toolkit.fail_stalled("stuck again")
    assert exits == ["stuck", "stuck again"]  # it still exits: a stuck job must not stay up
