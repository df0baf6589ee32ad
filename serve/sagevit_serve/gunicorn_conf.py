"""gunicorn settings for `serve`; each one reads the environment through settings.py.

Loaded with `gunicorn --config python:sagevit_serve.gunicorn_conf`. TensorFlow
is never imported here: the master forks workers, and each worker loads its own
model after the fork.
"""

import collections
import os

from sagevit_serve import settings as _settings

_s = _settings.from_environ()

# SageMaker sends all traffic to port 8080 (SAGEMAKER_BIND_TO_PORT overrides).
bind = f"{_s.host}:{_s.port}"
# Each worker holds one model: one per GPU, else one per CPU of the container's quota, each
# running TensorFlow on CPUs // workers threads.
workers = _s.workers
worker_class = "sync"
# SageMaker abandons an invocation after 60 s; a worker stuck longer is restarted.
timeout = _s.timeout
# SageMaker sends SIGTERM, then SIGKILL 30 s later: finish in-flight requests within 25 s.
graceful_timeout = 25
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
    """In the worker, before TensorFlow starts: see only its own GPU."""
    if worker.sagevit_gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = worker.sagevit_gpu
        server.log.info("worker %s uses GPU %s", worker.pid, worker.sagevit_gpu)
