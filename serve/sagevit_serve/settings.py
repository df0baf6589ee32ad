"""Server settings, read from the environment in one place (the entry points use it).

| Variable                        | Default          | Why                                            |
|---------------------------------|------------------|------------------------------------------------|
| SM_MODEL_DIR                    | /opt/ml/model    | where SageMaker unpacks model.tar.gz           |
| SAGEMAKER_BIND_TO_PORT          | 8080             | the port SageMaker sends /ping and /invocations |
| SAGEVIT_BIND_HOST               | 0.0.0.0          | all interfaces in a container; 127.0.0.1 in tests |
| SAGEMAKER_MODEL_SERVER_WORKERS  | number of CPUs   | one model per worker, one worker per core      |
| SAGEMAKER_MODEL_SERVER_TIMEOUT  | 60               | seconds; SageMaker gives up on a request at 60 |
| SAGEMAKER_MAX_PAYLOAD_IN_MB     | 6                | SageMaker's real-time request limit            |
| SAGEVIT_TF_INTRA_OP_THREADS     | CPUs // workers  | workers × threads = cores: no oversubscription |
| SAGEVIT_TF_INTER_OP_THREADS     | 1                | one small graph at a time per worker           |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    model_dir: str
    host: str
    port: int
    workers: int
    timeout: int
    max_payload_mb: float
    intra_op_threads: int
    inter_op_threads: int


def _int(environ: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def from_environ(environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    cpus = os.cpu_count() or 1
    workers = _int(environ, "SAGEMAKER_MODEL_SERVER_WORKERS", cpus)
    payload = environ.get("SAGEMAKER_MAX_PAYLOAD_IN_MB", "").strip() or "6"
    try:
        max_payload_mb = float(payload)
    except ValueError:
        raise ValueError(f"SAGEMAKER_MAX_PAYLOAD_IN_MB must be a number, got {payload!r}") from None
    return Settings(
        model_dir=environ.get("SM_MODEL_DIR", "/opt/ml/model"),
        host=environ.get("SAGEVIT_BIND_HOST", "0.0.0.0"),
        port=_int(environ, "SAGEMAKER_BIND_TO_PORT", 8080),
        workers=workers,
        timeout=_int(environ, "SAGEMAKER_MODEL_SERVER_TIMEOUT", 60),
        max_payload_mb=max_payload_mb,
        intra_op_threads=_int(environ, "SAGEVIT_TF_INTRA_OP_THREADS", max(1, cpus // workers)),
        inter_op_threads=_int(environ, "SAGEVIT_TF_INTER_OP_THREADS", 1),
    )
