"""The stall watchdog: a job whose steps stop finishing fails instead of hanging."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import pytest

from sagevit.watchdog import StallWatchdog


def test_a_stall_calls_on_stall_with_the_reason():
    called = threading.Event()
    messages = []

    def on_stall(message: str) -> None:
        messages.append(message)
        called.set()

    started = time.monotonic()
    with StallWatchdog(0.2, on_stall):
        assert called.wait(5)
    assert time.monotonic() - started > 0.2
    assert len(messages) == 1
    assert re.fullmatch(
        r"no training step finished in \d+ s, nor any data read \(--stall-timeout 0\.2\):"
        r" a worker is stuck; failing the job",
        messages[0],
    )


def test_beats_keep_it_quiet_and_leaving_stops_it():
    messages = []
    with StallWatchdog(1, messages.append) as watchdog:
        for _ in range(15):  # 1.5 s of steps, each well inside the timeout
            time.sleep(0.1)
            watchdog.beat()
    time.sleep(1.5)  # past the timeout after leaving: the thread is gone
    assert messages == []
    assert not watchdog._thread.is_alive()


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
from sagevit.watchdog import StallWatchdog
logging.basicConfig(level=logging.INFO)
with StallWatchdog(0.5):
    threading.Event().wait()  # the main thread never comes back, like a hung collective
"""


def test_the_default_answer_ends_a_stuck_process_with_status_1():
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", STUCK], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    assert "ERROR:sagevit.watchdog:no training step finished in" in result.stderr
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
