"""The Flask app SageMaker talks to: `/ping`, `/invocations` and `/execution-parameters`.

Each gunicorn worker loads its model (`load_predictor`) before it builds the app
(`create_app`) and before gunicorn lets it accept a connection (wsgi.py), so every
request finds a model: `/ping` answers 200 with an empty body. Every error is
JSON `{"error": "<one sentence>"}`: a 4xx for a request the client can fix, a 500 (logged
with its traceback) for a bug of ours, and the worker keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import (
    HTTPException,
    NotAcceptable,
    UnsupportedMediaType,
)

from sagevit_serve.batcher import Batcher
from sagevit_serve.decode import DECODERS, InvalidInput
from sagevit_serve.encode import (
    CUSTOM_ATTRIBUTES,
    JSON,
    JSONLINES,
    RESPONSE_TYPES,
    BadAttributes,
    parse_top_k,
    render,
)
from sagevit_serve.predictor import BATCH_BUCKETS, Predictor

log = logging.getLogger(__name__)


def load_predictor(
    model_dir: str | Path, tf_threads: tuple[int, int], gpu_files: Sequence[str] = ()
) -> Predictor:
    """Start TensorFlow in a fresh worker with `tf_threads` (intra_op, inter_op), log the
    devices (warning about `gpu_files`, the container's GPUs, that it cannot use), and
    load and compile the model exported in `model_dir`."""
    import tensorflow as tf  # imported here: the thread counts must be set before it starts

    from sagevit.platform.gpu import grow_memory_as_needed, log_devices, require_gpus

    tf.config.threading.set_intra_op_parallelism_threads(tf_threads[0])
    tf.config.threading.set_inter_op_parallelism_threads(tf_threads[1])
    grow_memory_as_needed()
    require_gpus(gpu_files, log_devices(gpu_files), allow_cpu=True)  # warns
    return Predictor.load(model_dir)


def _response_type() -> str:
    """The response media type the Accept header allows; JSON when it allows anything."""
    if not request.accept_mimetypes:  # no Accept header
        return JSON
    best = request.accept_mimetypes.best_match(RESPONSE_TYPES)
    if best is None:
        offered = ", ".join(RESPONSE_TYPES[:2])
        raise NotAcceptable(f"cannot answer with {request.accept_mimetypes}; offered: {offered}")
    return JSONLINES if best.endswith("jsonlines") else best  # x-jsonlines answers as jsonlines


def create_app(
    model: Predictor,
    *,
    max_payload_mb: float = 6.0,
    max_concurrent_transforms: int = 1,
    batch_wait: float = 0.002,
) -> Flask:
    """Build the app that serves `model`, a loaded Predictor.

    max_payload_mb: request bodies above this get 413 (SageMaker's real-time limit is 6 MB).
    max_concurrent_transforms: what /execution-parameters tells batch transform.
    batch_wait: seconds the batcher may wait for concurrent requests' images to join a
        model call (batcher.py); it never waits when no other request is coming.
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(max_payload_mb * 1024 * 1024)
    batcher = Batcher(model.predict, BATCH_BUCKETS[-1], batch_wait)

    @app.get("/ping")
    def ping() -> tuple[str, int]:
        return "", 200  # the model loaded before the app existed

    @app.get("/execution-parameters")
    def execution_parameters() -> Response:
        """What SageMaker batch transform asks a container for its limits."""
        return jsonify(
            MaxConcurrentTransforms=max_concurrent_transforms,
            BatchStrategy="MultiRecord",  # the API's spelling (the SDKs read it back)
            MaxPayloadInMB=int(max_payload_mb),
        )

    @app.post("/invocations")
    def invocations() -> Response:
        response_type = _response_type()
        decode = DECODERS.get(request.mimetype)
        if decode is None:
            shown = request.mimetype or "none"
            supported = ", ".join(DECODERS)
            raise UnsupportedMediaType(f"Content-Type {shown} is not supported; use one of {supported}")  # fmt: skip
        top_k = parse_top_k(request.headers.get(CUSTOM_ATTRIBUTES), len(model.class_names))
        with batcher.request() as predict:  # tells the batcher this request is coming
            records = decode(request.get_data(cache=False), model.input_shape)
            probabilities = predict(records.images)  # in one model call with its neighbours
        layout = list(zip(records.counts, records.bare, strict=True))
        body = render(probabilities, response_type, top_k, model.class_names, layout)
        return Response(body, mimetype=response_type)

    add_error_handlers(app)
    return app


def add_error_handlers(app: Flask) -> None:
    """Every error as JSON `{"error": "<one sentence>"}`: 400, the HTTP error's own, or 500."""

    @app.errorhandler(InvalidInput)
    @app.errorhandler(BadAttributes)
    def invalid_input(error: ValueError) -> tuple[Response, int]:
        return jsonify(error=str(error)), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        return jsonify(error=error.description), error.code or 500

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[Response, int]:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return jsonify(error="internal server error"), 500
