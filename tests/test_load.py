"""Load against real gunicorn on 127.0.0.1: steady load, then a worker killed mid-run (slow)."""

import json
import os
import signal
import threading
import time

import psutil
import pytest

from scripts.bench_serve import load, make_bodies
from scripts.server_process import free_port, request, start_server, stop_server, wait_until_ready

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


def test_steady_load_has_no_errors(server):
    port, _ = server
    content_type, body = make_bodies()["json_1"]
    result = load(port, content_type, body, CLIENTS, STEADY_SECONDS)
    print(f"\n{CLIENTS} clients x {STEADY_SECONDS} s: {json.dumps(result)}")
    assert result["errors"] == 0
    assert result["requests"] > STEADY_SECONDS * 10  # far above the naive server's ~20 req/s


def test_a_killed_worker_costs_few_requests_and_the_server_recovers(server):
    port, process = server
    content_type, body = make_bodies()["json_1"]
    results = {}
    runner = threading.Thread(
        target=lambda: results.update(load(port, content_type, body, CLIENTS, 20)), daemon=True
    )
    runner.start()
    time.sleep(5)
    victim = workers(process)[0]
    os.kill(victim.pid, signal.SIGKILL)
    runner.join(60)
    print(f"\nworker {victim.pid} killed mid-run: {json.dumps(results)}")
    # Only the requests in the killed worker (at most one per client) can fail: nginx
    # answers them 502, and sends every new one to the other worker.
    assert results["errors"] <= CLIENTS
    assert results["requests"] > 100
    deadline = time.monotonic() + 60
    while len(workers(process)) < WORKERS and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(workers(process)) == WORKERS and victim.pid not in [w.pid for w in workers(process)]
    wait_until_ready(f"http://127.0.0.1:{port}", 60, process)
    assert request(f"http://127.0.0.1:{port}/ping")[0] == 200
