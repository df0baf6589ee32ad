"""The WSGI entry point gunicorn imports in each worker: `sagevit_serve.wsgi:app`.

Each worker loads (and compiles) its model here, before gunicorn lets it accept
connections, so no request ever reaches a worker without a model: while one
worker starts or restarts, the others take the traffic.
"""

import logging
import os

from sagevit.machine import given_gpus
from sagevit_serve import settings
from sagevit_serve.app import create_app


def _stop_worker(error: BaseException) -> None:
    logging.getLogger(__name__).critical("cannot serve without a model: %s", error)
    os._exit(settings.WORKER_BOOT_ERROR)


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
_s = settings.from_environ()
app = create_app(
    _s.model_dir,
    tf_threads=(_s.intra_op_threads, _s.inter_op_threads),
    max_payload_mb=_s.max_payload_mb,
    max_concurrent_transforms=_s.workers,
    batch_wait=_s.batch_wait_ms / 1000,
    background=False,
    on_load_error=_stop_worker,
    gpu_files=given_gpus(),
)
