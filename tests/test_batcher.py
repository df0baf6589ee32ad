"""The batcher: concurrent requests share model calls; a lone request never waits."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from sagevit_serve.batcher import Batcher

LONG_WAIT = 30.0  # a max_wait no test could sit out: finishing at all shows nobody waited


def fingerprint(images: np.ndarray) -> np.ndarray:
    """A fake model: each image's sum, so every request can check it got its own rows."""
    time.sleep(0.01)
    return images.reshape(len(images), -1).sum(axis=1, keepdims=True)


def images_of(value: float, count: int = 1) -> np.ndarray:
    return np.full((count, 2, 2, 3), value, np.float32)


def test_a_lone_request_runs_at_once():
    batcher = Batcher(fingerprint, max_wait=LONG_WAIT)
    started = time.monotonic()
    with batcher.request() as predict:
        result = predict(images_of(1.0, 3))
    assert time.monotonic() - started < LONG_WAIT / 2
    assert result.ravel().tolist() == [12.0, 12.0, 12.0]
    assert batcher.calls == 1


def test_concurrent_requests_share_calls_and_get_their_own_rows():
    # All eight announce themselves before any queues, and the runner waits while any is
    # decoding: with a wait no test could sit out, that is one call however slowly the
    # threads are scheduled (a 1 s wait made it depend on the machine).
    batcher = Batcher(fingerprint, max_batch=64, max_wait=LONG_WAIT)
    announced = threading.Barrier(8)
    results = {}

    def client(value: int) -> None:
        with batcher.request() as predict:
            announced.wait()  # all eight are "decoding" before any queues its images
            results[value] = predict(images_of(value, count=2))

    threads = [threading.Thread(target=client, args=(value,)) for value in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LONG_WAIT)
    assert batcher.images == 16 and batcher.calls == 1
    for value, rows in results.items():
        assert rows.ravel().tolist() == [value * 12.0] * 2


def test_a_request_that_fails_while_decoding_holds_no_one_up():
    batcher = Batcher(fingerprint, max_wait=LONG_WAIT)
    started = time.monotonic()
    with pytest.raises(ValueError), batcher.request():
        raise ValueError("a bad body")
    with batcher.request() as predict:
        predict(images_of(1.0))
    assert time.monotonic() - started < LONG_WAIT / 2


def test_a_model_error_reaches_every_request_in_the_call_and_the_next_call_works():
    calls = []

    def flaky(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return fingerprint(images)

    batcher = Batcher(flaky)
    with pytest.raises(RuntimeError, match="out of memory"), batcher.request() as predict:
        predict(images_of(1.0))
    with batcher.request() as predict:
        assert predict(images_of(1.0)).ravel().tolist() == [12.0]


def test_calls_hold_at_most_max_batch_images_unless_one_request_is_larger():
    sizes = []

    def recording(images: np.ndarray) -> np.ndarray:
        sizes.append(len(images))
        return fingerprint(images)

    batcher = Batcher(recording, max_batch=4, max_wait=LONG_WAIT)
    announced = threading.Barrier(3)

    def client(count: int) -> None:
        with batcher.request() as predict:
            announced.wait()
            assert len(predict(images_of(1.0, count))) == count

    threads = [threading.Thread(target=client, args=(count,)) for count in (3, 3, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LONG_WAIT)
    assert sorted(sizes) == [3, 3, 9]  # 3 + 3 > 4; the 9-image request alone


@pytest.mark.parametrize(("max_batch", "max_wait"), [(0, 0.0), (8, -1.0)])
def test_impossible_settings_are_refused(max_batch, max_wait):
    with pytest.raises(ValueError, match="max_batch"):
        Batcher(fingerprint, max_batch=max_batch, max_wait=max_wait)
