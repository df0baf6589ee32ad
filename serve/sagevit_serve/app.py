"""The Flask app SageMaker talks to: `/ping`, `/invocations` and `/execution-parameters`.

`create_app` starts loading the model in a background thread and returns at
once, so the worker answers `/ping` with 503 until the model is ready and with
200 (empty body) after; an invocation that arrives meanwhile waits for the model.
Every error is JSON `{"error": "<one sentence>"}` with a 4xx status, and the
worker keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import (
    HTTPException,
    NotAcceptable,
    ServiceUnavailable,
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


class ModelHolder:
    """The worker's model, loaded once in a background thread."""

    def __init__(self, batch_wait: float) -> None:
        self.predictor: Predictor | None = None
        self.batcher: Batcher | None = None
        self.error: BaseException | None = None
        self.loaded = threading.Event()
        self.batch_wait = batch_wait

    def load(
        self,
        loader: Callable[[], Predictor],
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        try:
            predictor = loader()
            self.batcher = Batcher(predictor.predict, BATCH_BUCKETS[-1], self.batch_wait)
            self.predictor = predictor
        except BaseException as error:  # reported through /ping and on_error
            log.exception("loading the model failed")
            self.error = error
            if on_error is not None:
                on_error(error)
        finally:
            self.loaded.set()

    def get(self, wait: float = 0.0) -> Predictor:
        """The predictor; wait up to `wait` seconds for loading, then 503."""
        self.loaded.wait(wait)
        if self.predictor is None:
            reason = "the model failed to load" if self.error else "the model is still loading"
            raise ServiceUnavailable(reason)
        return self.predictor


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
    model_dir: str | Path | None = None,
    *,
    predictor: Predictor | None = None,
    tf_threads: tuple[int, int] | None = None,
    max_payload_mb: float = 6.0,
    max_concurrent_transforms: int = 1,
    batch_wait: float = 0.002,
    load_wait: float = 30.0,
    background: bool = True,
    on_load_error: Callable[[BaseException], None] | None = None,
    gpu_files: Sequence[str] = (),
) -> Flask:
    """Build the app for the model exported in `model_dir` (or an already loaded `predictor`).

    tf_threads: (intra_op, inter_op) thread counts, set before TensorFlow starts;
        None leaves TensorFlow's defaults (use it when TF is already running).
    max_payload_mb: request bodies above this get 413 (SageMaker's real-time limit is 6 MB).
    max_concurrent_transforms: what /execution-parameters tells batch transform.
    batch_wait: seconds the batcher may wait for concurrent requests' images to join a
        model call (batcher.py); it never waits when no other request is coming.
    load_wait: seconds an invocation waits for a worker that is still loading its model.
        /ping answers 503 at once, but another worker may already have answered 200,
        so an invocation can reach a worker a moment before its model is ready.
    background: load the model in a thread (True) or before returning (False).
    on_load_error: called if loading fails, e.g. to stop the worker process.
    gpu_files: the GPU device files the container was given, for the device log line.
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(max_payload_mb * 1024 * 1024)
    holder = ModelHolder(batch_wait)
    app.extensions["sagevit_model"] = holder

    def loader() -> Predictor:
        if predictor is not None:
            return predictor
        if model_dir is None:
            raise ValueError("create_app needs a model_dir or a predictor")
        if tf_threads is not None:  # a fresh worker: TensorFlow has not started yet
            import tensorflow as tf

            from sagevit.gpu import grow_memory_as_needed, log_devices, require_gpus

            tf.config.threading.set_intra_op_parallelism_threads(tf_threads[0])
            tf.config.threading.set_inter_op_parallelism_threads(tf_threads[1])
            grow_memory_as_needed()
            require_gpus(gpu_files, log_devices(gpu_files), allow_cpu=True)  # warns
        return Predictor.load(model_dir)

    if background and predictor is None:
        threading.Thread(
            target=holder.load, args=(loader, on_load_error), name="model-loader", daemon=True
        ).start()
    else:
        holder.load(loader, on_load_error)

    @app.get("/ping")
    def ping() -> tuple[str, int]:
        holder.get()  # 503 until the model is ready
        return "", 200

    @app.get("/execution-parameters")
    def execution_parameters() -> Response:
        """What SageMaker batch transform asks a container for its limits."""
        return jsonify(
            MaxConcurrentTransforms=max_concurrent_transforms,
            BatchStrategy="MULTI_RECORD",
            MaxPayloadInMB=int(max_payload_mb),
        )

    @app.post("/invocations")
    def invocations() -> Response:
        model = holder.get(wait=load_wait)
        response_type = _response_type()
        decode = DECODERS.get(request.mimetype)
        if decode is None:
            shown = request.mimetype or "none"
            supported = ", ".join(DECODERS)
            raise UnsupportedMediaType(f"Content-Type {shown} is not supported; use one of {supported}")  # fmt: skip
        top_k = parse_top_k(request.headers.get(CUSTOM_ATTRIBUTES), len(model.class_names))
        with holder.batcher.request() as predict:  # tells the batcher this request is coming
            records = decode(request.get_data(cache=False), model.input_shape)
            probabilities = predict(records.images)  # in one model call with its neighbours
        layout = list(zip(records.counts, records.bare, strict=True))
        body = render(probabilities, response_type, top_k, model.class_names, layout)
        return Response(body, mimetype=response_type)

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

    return app
