"""gunicorn settings for `serve`; each one reads the environment through settings.py.

Loaded with `gunicorn --config python:sagevit_serve.gunicorn_conf`. TensorFlow
is never imported here: the master forks workers, and each worker loads its own
model after the fork.
"""

from sagevit_serve import settings as _settings

_s = _settings.from_environ()

# SageMaker sends all traffic to port 8080 (SAGEMAKER_BIND_TO_PORT overrides).
bind = f"{_s.host}:{_s.port}"
# Each worker holds one model and runs TensorFlow on CPUs // workers threads.
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
