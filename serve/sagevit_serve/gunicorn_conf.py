"""gunicorn settings for `serve`; each one reads the environment through settings.py.

`serve` (cli.py) runs `gunicorn --config python:sagevit_serve.gunicorn_conf --bind
unix:SOCKET`, behind nginx (nginx.py), which alone talks to clients. TensorFlow is never
imported here: the master forks workers, and each worker loads its own model after the fork.
"""

import collections
import os
import threading
import time

from sagevit_serve import settings as _settings

_s = _settings.from_environ()

# Each worker holds one model: one per GPU, else one per CPU of the container's quota, each
# running TensorFlow on twice its share of the cores (settings.intra_op_default).
workers = _s.workers
# Threads, so that concurrent requests can share one model call (batcher.py). nginx hands
# over only complete requests, so no thread ever waits on a slow client.
worker_class = "gthread"
threads = _s.threads
# A worker whose main loop goes this long without a beat is restarted (SAGEVIT_WORKER_TIMEOUT,
# at least SageMaker's 60 s request limit). This is liveness, not a request bound: requests
# run in threads, and a slow one is answered 504 by nginx at SAGEMAKER_MODEL_SERVER_TIMEOUT.
# Loading the model is not a request either: post_fork keeps the worker beating through it,
# up to SAGEVIT_MODEL_LOAD_TIMEOUT.
timeout = _s.worker_timeout
# SageMaker sends SIGTERM, then SIGKILL 30 s later: finish in-flight requests within 25 s.
graceful_timeout = 25
# Each worker's heartbeat is a file it touches after every request: on a memory-backed file
# system that costs nothing, on the container's overlay disk a system call to storage.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Logs go to stdout/stderr, which SageMaker ships to CloudWatch.
accesslog = None
errorlog = "-"
loglevel = "info"
# No runtime control socket: nothing in a SageMaker container uses it, and two
# servers on one host (tests, demos) would fight over its default path.
control_socket_disable = True


def pre_fork(server, worker):
    """In the master: give the new worker the GPU that the fewest live workers use."""
    load = collections.Counter(getattr(w, "sagevit_gpu", None) for w in server.WORKERS.values())
    worker.sagevit_gpu = min(_s.gpus, key=lambda gpu: load[gpu]) if _s.gpus else None


def post_fork(server, worker):
    """In the worker, before TensorFlow starts: see only its own GPU, and keep the worker's
    heartbeat while it loads and compiles its model (next, in wsgi.py)."""
    if worker.sagevit_gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = worker.sagevit_gpu
        server.log.info("worker %s uses GPU %s", worker.pid, worker.sagevit_gpu)
    worker.sagevit_loaded = threading.Event()
    threading.Thread(
        target=_beat_while_loading, args=(worker,), name="load-heartbeat", daemon=True
    ).start()


def post_worker_init(worker):
    """The model is loaded: from here on the request timeout applies."""
    worker.sagevit_loaded.set()


def _beat_while_loading(worker) -> None:
    """Loading is not a request. Bound it by `load_timeout` (gunicorn halts the server on
    WORKER_BOOT_ERROR), and keep the worker's heartbeat meanwhile: the master kills a worker
    whose heartbeat is older than `timeout`. (gunicorn 27 does not yet time out a worker
    before its first beat, since its heartbeat file starts with a wall-clock time; the
    beat keeps loading safe if that changes.)"""
    deadline = time.monotonic() + _s.load_timeout
    # Once a second, as gthread's own loop beats: the worker timeout is ten beats or more.
    while not worker.sagevit_loaded.wait(1.0):
        if time.monotonic() > deadline:
            worker.log.critical(
                "cannot serve without a model: it did not load within %d s"
                " (SAGEVIT_MODEL_LOAD_TIMEOUT)",
                _s.load_timeout,
            )
            os._exit(_settings.WORKER_BOOT_ERROR)
        worker.notify()
