"""Fail a training job that stops making progress, instead of letting it hang.

A host that dies is found within seconds by MultiWorkerMirroredStrategy's
heartbeats. A worker whose process is alive but stuck (a read from a hung network
file system, a deadlock) keeps heartbeating, while every other worker waits for it
in the next collective until the job's max_run ends it, hours later. The trainer
beats as it reads the channels and after every call into TensorFlow; when no beat has come for `timeout`
seconds, `on_stall(message)` runs on the watchdog's own thread. It has to end the
process: the main thread is the one that is stuck.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)


def no_beat() -> None:
    """The default heartbeat of code that can be watched: nothing to tell."""


def exit_stalled(message: str) -> None:
    """Log why and where every thread was, then end the process with status 1."""
    try:
        log.error("%s", message)
        logging.shutdown()  # flush the log before the process goes
        faulthandler.dump_traceback(sys.stderr, all_threads=True)  # where it was stuck
    finally:
        os._exit(1)  # whatever happened above: a stuck job must not stay up


class StallWatchdog:
    """`with StallWatchdog(seconds) as watchdog:` ... `watchdog.beat()` after each step.

    A timeout of 0 turns it off (no thread). `clock` tells the seconds (tests drive it).
    """

    def __init__(
        self,
        timeout: float,
        on_stall: Callable[[str], None] = exit_stalled,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout < 0:
            raise ValueError(f"the stall timeout must be >= 0 seconds, got {timeout}")
        self.timeout = timeout
        self._on_stall = on_stall
        self._clock = clock
        self._last_beat = clock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)

    def __enter__(self) -> StallWatchdog:
        self.beat()
        if self.timeout:
            self._thread.start()
        return self

    def __exit__(
        self, kind: type | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def beat(self) -> None:
        self._last_beat = self._clock()

    def _watch(self) -> None:
        # Look a few times per timeout, but at least every 10 s, so a stall is acted
        # on at most a quarter-timeout (or 10 s) late.
        while not self._stopped.wait(min(self.timeout / 4, 10.0)):
            idle = self._clock() - self._last_beat
            if idle > self.timeout and not self._stopped.is_set():  # not: just left
                self._on_stall(
                    f"no training step finished in {idle:.0f} s, nor any data read"
                    f" (--stall-timeout {self.timeout:g}): a worker is stuck; failing the job"
                )
                return
