"""Server settings, read from the environment in one place (the entry points use it).

| Variable                        | Default          | Why                                            |
|---------------------------------|------------------|------------------------------------------------|
| SM_MODEL_DIR                    | /opt/ml/model    | where SageMaker unpacks model.tar.gz           |
| SAGEMAKER_BIND_TO_PORT          | 8080             | the port SageMaker sends /ping and /invocations |
| SAGEVIT_BIND_HOST               | 0.0.0.0          | all interfaces in a container; 127.0.0.1 in tests |
| SAGEMAKER_MODEL_SERVER_WORKERS  | GPUs, else CPUs  | one model per GPU, or one per core (the quota) |
| SAGEMAKER_MODEL_SERVER_TIMEOUT  | 60               | seconds; SageMaker gives up on a request at 60 |
| SAGEVIT_WORKER_TIMEOUT          | max(60, request) | seconds a worker's main loop may go without a beat before it is restarted; at least 10 |
| SAGEMAKER_MAX_PAYLOAD_IN_MB     | 6                | SageMaker's real-time request limit            |
| SAGEVIT_MODEL_LOAD_TIMEOUT      | 600              | seconds to load and compile the model; not a request, so the request timeout does not apply |
| SAGEVIT_WORKER_THREADS          | 8                | requests a worker holds at once (decoding, or waiting for the model) |
| SAGEVIT_BATCH_WAIT_MS           | 2                | how long the batcher may hold a model call for concurrent requests |
| SAGEVIT_TF_INTRA_OP_THREADS     | 2 CPUs // workers | a lone request runs on two shares of cores; 2x oversubscribed at most |
| SAGEVIT_TF_INTER_OP_THREADS     | 1                | one small graph at a time per worker           |

CPUs are the container's share (cgroup quota and affinity), not the host's cores; GPUs are
the /dev/nvidiaN files the NVIDIA runtime gave the container, each worker pinned to one
(gunicorn_conf.py) and taking GPU memory as it needs it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sagevit.contract import MODEL_DIR
from sagevit.platform.machine import available_cpus, given_gpus

# gunicorn halts the whole server when a worker exits with this code, so a model that
# cannot load stops the container instead of restarting workers forever.
WORKER_BOOT_ERROR = 3

# gunicorn's gthread worker beats once a second from its main loop, and a little later
# when a request thread holds the GIL: a liveness timeout near 1 s restarts healthy,
# even idle, workers. Ten beats is the least that means "stuck", not "busy".
MIN_WORKER_TIMEOUT = 10


@dataclass(frozen=True)
class Settings:
    model_dir: str
    host: str
    port: int
    workers: int
    timeout: int  # seconds nginx waits for an answer (504 after)
    worker_timeout: int  # seconds gunicorn waits for a worker's beat (restarts it after)
    load_timeout: int
    max_payload_mb: int
    threads: int
    batch_wait_ms: int
    intra_op_threads: int
    inter_op_threads: int
    gpus: list[str] = field(default_factory=list)  # CUDA ordinals the workers are pinned to


def _int(
    environ: Mapping[str, str], name: str, default: int, minimum: int = 1, maximum: int = 10**6
) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]{1,7}", raw):
        raise ValueError(f"{name} must be a whole number, got {raw[:20]!r}")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be from {minimum} to {maximum}, got {value}")
    return value


def from_environ(
    environ: Mapping[str, str] | None = None,
    cpus: int | None = None,
    gpu_files: list[str] | None = None,
) -> Settings:
    """The settings from `environ`; `cpus` and `gpu_files` default to this container's."""
    environ = os.environ if environ is None else environ
    cpus = available_cpus() if cpus is None else cpus
    gpus = gpu_ordinals(environ, given_gpus() if gpu_files is None else gpu_files)
    workers = _int(environ, "SAGEMAKER_MODEL_SERVER_WORKERS", len(gpus) or cpus)
    # Batch transform reads MaxPayloadInMB as a whole number from 0 (unlimited) to 100.
    max_payload_mb = _int(environ, "SAGEMAKER_MAX_PAYLOAD_IN_MB", 6, minimum=1, maximum=100)
    timeout = _int(environ, "SAGEMAKER_MODEL_SERVER_TIMEOUT", 60)
    # Never restart a worker for a stall shorter than a request may take (one C call, such
    # as parsing a large JSON body, holds the GIL and so the beat).
    worker_timeout = _int(
        environ, "SAGEVIT_WORKER_TIMEOUT", max(60, timeout), minimum=MIN_WORKER_TIMEOUT
    )
    return Settings(
        model_dir=environ.get("SM_MODEL_DIR", MODEL_DIR),
        host=environ.get("SAGEVIT_BIND_HOST", "0.0.0.0"),
        port=_int(environ, "SAGEMAKER_BIND_TO_PORT", 8080, maximum=65535),
        workers=workers,
        timeout=timeout,
        worker_timeout=worker_timeout,
        load_timeout=_int(environ, "SAGEVIT_MODEL_LOAD_TIMEOUT", 600),
        max_payload_mb=max_payload_mb,
        threads=_int(environ, "SAGEVIT_WORKER_THREADS", 8, maximum=256),
        batch_wait_ms=_int(environ, "SAGEVIT_BATCH_WAIT_MS", 2, minimum=0, maximum=1000),
        intra_op_threads=_int(
            environ, "SAGEVIT_TF_INTRA_OP_THREADS", intra_op_default(cpus, workers)
        ),
        inter_op_threads=_int(environ, "SAGEVIT_TF_INTER_OP_THREADS", 1),
        gpus=gpus,
    )


def intra_op_default(cpus: int, workers: int) -> int:
    """Twice a worker's share of the cores, at most all of them. One JSON image at
    concurrency 1 is one small model call, which one core runs alone: with two it took 17%
    less time, for the default and the v1 model, and concurrency 8 lost at most 5%, within
    the noise (2 cores, 2 workers, 2026-12-05: docs/serving.md). Past 2x, untested."""
    return max(1, min(cpus, 2 * cpus // workers))


def gpu_ordinals(environ: Mapping[str, str], gpu_files: list[str]) -> list[str]:
    """The CUDA device numbers to spread workers over: CUDA_VISIBLE_DEVICES if set, else one
    per GPU device file (CUDA numbers a container's GPUs from 0, whatever their /dev names)."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [part.strip() for part in visible.split(",") if part.strip() not in ("", "-1")]
    return [str(index) for index in range(len(gpu_files))]
