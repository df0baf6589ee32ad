"""SIGTERM as a stop request: SageMaker's way of ending a job (stop, spot interruption).

SageMaker sends SIGTERM, then SIGKILL 120 s later. The first SIGTERM sets a flag
that the training loop reads after every call into TensorFlow: it writes a
checkpoint and stops. A second SIGTERM ends the process at once with status 143
(128 + SIGTERM), losing at most the epoch in progress, as SIGKILL would.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType, TracebackType

log = logging.getLogger(__name__)


class StopOnSigterm:
    """`with StopOnSigterm() as stop:` ... `stop()` is True once SIGTERM has arrived."""

    def __init__(self) -> None:
        self.requested = False

    def __enter__(self) -> StopOnSigterm:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(
        self, kind: type | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        signal.signal(signal.SIGTERM, self._previous)

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            log.warning("second SIGTERM: exiting now, without a checkpoint")
            # Not a re-raise: as PID 1 in a container, the default action is to ignore it.
            os._exit(128 + signal.SIGTERM)
        self.requested = True
        log.warning("SIGTERM: stopping after this step and writing a checkpoint")


def rearm() -> None:
    """Put Python's SIGTERM handler back in charge after TensorFlow took the signal.

    MultiWorkerMirroredStrategy starts TensorFlow's coordination service, whose
    preemption notifier installs its own C-level SIGTERM handler; Python would then
    never see the signal. Call this from the main thread after making the strategy.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    handler = signal.getsignal(signal.SIGTERM)
    if callable(handler):
        signal.signal(signal.SIGTERM, handler)
