"""Load against real gunicorn on 127.0.0.1: steady load, then a worker killed mid-run (slow)."""

import json
import os
import signal
import threading
import time

import psutil
import pytest

from scripts.bench.serve import load, make_bodies
from scripts.local.server_process import (
    free_port,
    request,
    start_server,
    stop_server,
    wait_until_ready,
)

pytestmark = pytest.mark.slow

CLIENTS = 8
STEADY_SECONDS = 60
WORKERS = 2


@pytest.fixture(scope="module")
def server(model_dir):
    port = free_port()
    process = start_server(model_dir, port, workers=WORKERS)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", 120, process)
        yield port, process
    finally:
        stop_server(process)


def workers(process):
    """gunicorn's workers: the children of the gunicorn master that `serve` started."""
    (master,) = [
        child
        for child in psutil.Process(process.pid).children()
        if "gunicorn" in " ".join(child.cmdline())
    ]
    return master.children()


def test_steady_load_has_no_errors_and_concurrency_pays(server):
    """Eight clients get more answers a second than one client alone, measured in the same
    test: batching and the second worker pay, whatever this machine's speed (an absolute
    600 requests a minute measured the machine instead)."""
    port, _ = server
    content_type, body = make_bodies()["json_1"]
    alone = load(port, content_type, body, 1, STEADY_SECONDS / 4)
    result = load(port, content_type, body, CLIENTS, STEADY_SECONDS)
    print(f"\n1 client: {json.dumps(alone)}\n{CLIENTS} clients x {STEADY_SECONDS} s: {json.dumps(result)}")  # fmt: skip
    assert alone["errors"] == 0 and result["errors"] == 0
    assert result["requests_per_s"] > alone["requests_per_s"]


class Answers:
    """Counts a load's answers as they come, and how many came after `mark()`."""

    def __init__(self) -> None:
        self.ok = 0
        self.ok_after_mark: int | None = None
        self.changed = threading.Condition()

    def __call__(self, ok: bool) -> None:
        with self.changed:
            self.ok += ok
            if self.ok_after_mark is not None:
                self.ok_after_mark += ok
            self.changed.notify_all()

    def mark(self) -> None:
        with self.changed:
            self.ok_after_mark = 0

    def wait_for(self, count: int, after_mark: bool = False, timeout: float = 300) -> None:
        def enough() -> bool:
            seen = self.ok_after_mark if after_mark else self.ok
            return (seen or 0) >= count

        with self.changed:
            assert self.changed.wait_for(enough, timeout), "the load got no answers"


def test_a_killed_worker_costs_few_requests_and_the_server_recovers(server):
    """A worker is killed once the load is answered; the other one keeps answering every
    client. Events, not sleeps, order the steps, so this machine's speed cannot."""
    port, process = server
    content_type, body = make_bodies()["json_1"]
    results, answers = {}, Answers()
    stop = threading.Event()

    def run() -> None:  # 600 s only bounds a hung test: `stop` ends it
        results.update(load(port, content_type, body, CLIENTS, 600, answers, stop))

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    answers.wait_for(CLIENTS)  # the load is running
    victim = workers(process)[0]
    answers.mark()
    os.kill(victim.pid, signal.SIGKILL)
    answers.wait_for(10 * CLIENTS, after_mark=True)  # answered on after the kill
    stop.set()
    runner.join()
    print(f"\nworker {victim.pid} killed mid-run: {json.dumps(results)}")
    # Only the requests in the killed worker (at most one per client) can fail: nginx
    # answers them 502, and sends every new one to the other worker.
    assert results["errors"] <= CLIENTS
    recovery = time.monotonic() + 300  # a bound on a hung test only
    while len(workers(process)) < WORKERS and time.monotonic() < recovery:
        time.sleep(0.5)
    assert len(workers(process)) == WORKERS and victim.pid not in [w.pid for w in workers(process)]
    wait_until_ready(f"http://127.0.0.1:{port}", 300, process)
    assert request(f"http://127.0.0.1:{port}/ping")[0] == 200
