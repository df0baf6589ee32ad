"""Group the images of concurrent requests into one model call (per worker process).

Each request thread decodes its body, queues its images and waits. Whichever waiting
thread finds the model free runs it on everything queued (up to `max_batch` images) and
hands each request its rows, so a lone request runs the model itself, with no hand-off
to another thread. Before a call, the runner waits up to `max_wait` seconds for more
images, but only while other requests are still decoding (they said so with
`request()`): a lone request never waits.

    with batcher.request() as predict:    # "a request is on its way"
        images = decode(body)             # (N, H, W, 3)
        probabilities = predict(images)   # (N, classes), computed with other requests'

A request larger than `max_batch` runs alone (the predictor splits it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

log = logging.getLogger(__name__)


class _Job:
    def __init__(self, images: np.ndarray) -> None:
        self.images = images
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = False


class Batcher:
    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_batch: int = 64,
        max_wait: float = 0.002,
    ) -> None:
        if max_batch < 1 or max_wait < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait >= 0, got {max_batch}, {max_wait}")  # fmt: skip
        self._predict = predict
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: deque[_Job] = deque()
        self._decoding = 0  # requests that announced themselves and have not queued yet
        self._running = False  # a thread is running the model
        self._changed = threading.Condition()
        self.calls = 0  # model calls so far, and the images they ran (for tests and logs)
        self.images = 0
        self.report_every = 60.0  # seconds between log lines on calls and images
        self._reported = (time.monotonic(), 0, 0)  # when, calls, images

    @contextmanager
    def request(self) -> Iterator[Callable[[np.ndarray], np.ndarray]]:
        """Announce a request; the yielded function queues its images and waits."""
        with self._changed:
            self._decoding += 1
        queued = False

        def predict(images: np.ndarray) -> np.ndarray:
            nonlocal queued
            job = _Job(images)
            with self._changed:
                self._decoding -= 1
                queued = True
                self._queue.append(job)
                self._changed.notify_all()
            self._until_done(job)
            if job.error is not None:
                raise job.error
            return job.result

        try:
            yield predict
        finally:
            if not queued:  # the request failed before it had images: stop waiting for it
                with self._changed:
                    self._decoding -= 1
                    self._changed.notify_all()

    def _until_done(self, job: _Job) -> None:
        """Run the model for the queue whenever it is free, until `job` has its answer."""
        while True:
            with self._changed:
                while not job.done and self._running:
                    self._changed.wait()
                if job.done:
                    return
                self._running = True
                jobs = self._gather()
            try:
                self._run(jobs)
            finally:
                with self._changed:
                    self._running = False
                    self._changed.notify_all()

    def _gather(self) -> list[_Job]:
        """Jobs for one call (lock held): wait while requests are decoding, up to max_wait."""
        deadline = time.monotonic() + self.max_wait
        while self._decoding and sum(len(j.images) for j in self._queue) < self.max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._changed.wait(left)
        jobs = [self._queue.popleft()]
        count = len(jobs[0].images)
        while self._queue and count + len(self._queue[0].images) <= self.max_batch:
            jobs.append(self._queue.popleft())
            count += len(jobs[-1].images)
        return jobs

    def _run(self, jobs: list[_Job]) -> None:
        images = jobs[0].images if len(jobs) == 1 else np.concatenate([j.images for j in jobs])
        try:
            probabilities = self._predict(images)
            start = 0
            for job in jobs:
                job.result = probabilities[start : start + len(job.images)]
                start += len(job.images)
        except Exception as error:  # every request in the call gets it, not just one
            for job in jobs:
                job.error = error
        finally:
            self.calls += 1
            self.images += len(images)
            for job in jobs:
                job.done = True
            self._report()

    def _report(self) -> None:
        """Once a minute, a log line on how well requests are being grouped."""
        now = time.monotonic()
        if now - self._reported[0] >= self.report_every:
            calls, images = self.calls - self._reported[1], self.images - self._reported[2]
            log.info(
                "batcher: %d model calls for %d images in the last %.0f s (%.1f a call)",
                calls, images, now - self._reported[0], images / calls,
            )  # fmt: skip
            self._reported = (now, self.calls, self.images)
