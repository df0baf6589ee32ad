"""The WSGI entry point gunicorn imports in each worker: `sagevit_serve.wsgi:app`.

Each worker loads (and compiles) its model here, before gunicorn lets it accept
connections, so no request ever reaches a worker without a model: while one
worker starts or restarts, the others take the traffic.
"""

import logging
import os

from sagevit.platform.machine import given_gpus
from sagevit_serve import settings
from sagevit_serve.app import create_app, load_predictor

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
_s = settings.from_environ()
try:
    _model = load_predictor(_s.model_dir, (_s.intra_op_threads, _s.inter_op_threads), given_gpus())
except Exception as error:  # gunicorn halts the server on WORKER_BOOT_ERROR: no restart loop
    logging.getLogger(__name__).critical("cannot serve without a model: %s", error)
    os._exit(settings.WORKER_BOOT_ERROR)
app = create_app(
    _model,
    max_payload_mb=_s.max_payload_mb,
    max_concurrent_transforms=_s.workers,
    batch_wait=_s.batch_wait_ms / 1000,
)
