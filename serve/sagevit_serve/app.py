"""The Flask app SageMaker talks to: `GET /ping` and `POST /invocations` on one model.

`create_app` starts loading the model in a background thread and returns at
once, so the worker answers `/ping` with 503 until the model is ready and with
200 (empty body) after; an invocation that arrives meanwhile waits for the model.
Every error is JSON `{"error": "..."}`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, ServiceUnavailable, UnsupportedMediaType

from sagevit_serve.decode import InvalidInput, decode_json
from sagevit_serve.predictor import Predictor

log = logging.getLogger(__name__)

JSON = "application/json"


class ModelHolder:
    """The worker's model, loaded once in a background thread."""

    def __init__(self) -> None:
        self.predictor: Predictor | None = None
        self.error: BaseException | None = None
        self.loaded = threading.Event()

    def load(
        self,
        loader: Callable[[], Predictor],
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        try:
            self.predictor = loader()
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


def create_app(
    model_dir: str | Path,
    *,
    tf_threads: tuple[int, int] | None = None,
    max_payload_mb: float = 6.0,
    load_wait: float = 30.0,
    background: bool = True,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> Flask:
    """Build the app for the model exported in `model_dir`.

    tf_threads: (intra_op, inter_op) thread counts, set before TensorFlow starts;
        None leaves TensorFlow's defaults (use it when TF is already running).
    max_payload_mb: request bodies above this get 413 (SageMaker's real-time limit is 6 MB).
    load_wait: seconds an invocation waits for a worker that is still loading its model.
        /ping answers 503 at once, but another worker may already have answered 200,
        so an invocation can reach a worker a moment before its model is ready.
    background: load the model in a thread (True) or before returning (False).
    on_load_error: called if loading fails, e.g. to stop the worker process.
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(max_payload_mb * 1024 * 1024)
    holder = ModelHolder()
    app.extensions["sagevit_model"] = holder

    def loader() -> Predictor:
        if tf_threads is not None:
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(tf_threads[0])
            tf.config.threading.set_inter_op_parallelism_threads(tf_threads[1])
        return Predictor.load(model_dir)

    if background:
        threading.Thread(
            target=holder.load, args=(loader, on_load_error), name="model-loader", daemon=True
        ).start()
    else:
        holder.load(loader, on_load_error)

    @app.get("/ping")
    def ping() -> Response | tuple[str, int]:
        holder.get()  # 503 until the model is ready
        return "", 200

    @app.post("/invocations")
    def invocations() -> Response:
        predictor = holder.get(wait=load_wait)
        if request.mimetype != JSON:
            shown = request.mimetype or "none"
            raise UnsupportedMediaType(f"Content-Type {shown} is not supported; send {JSON}")
        images = decode_json(request.get_data(cache=False), predictor.input_shape)
        probabilities = predictor.predict(images)
        return jsonify({"predictions": probabilities.tolist()})

    @app.errorhandler(InvalidInput)
    def invalid_input(error: InvalidInput) -> tuple[Response, int]:
        return jsonify({"error": str(error)}), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        return jsonify({"error": error.description}), error.code or 500

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[Response, int]:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return jsonify({"error": "internal server error"}), 500

    return app
