"""A test hook that makes the real server slow on purpose, so that tests drive time
instead of depending on how fast this machine loads a model or answers a request.

Put this folder on PYTHONPATH (Python imports `sitecustomize` at start-up, in `serve`,
in gunicorn's master and in every worker) and set, in seconds:

    SAGEVIT_TEST_SLOW_LOAD=S     each worker loads its model, then sleeps S more
    SAGEVIT_TEST_SLOW_PREDICT=S  each request's model call sleeps S first (not the warm-up
                                 calls of loading), after touching
    SAGEVIT_TEST_PREDICTING=F    (optional) the file F, so a test knows a request is in flight

Sleeping releases the GIL, as waiting on a slow disk or GPU would: the server's own
threads (the worker's heartbeat while it loads) keep running meanwhile.
"""

import os
import time

_LOAD = float(os.environ.get("SAGEVIT_TEST_SLOW_LOAD", "0"))
_PREDICT = float(os.environ.get("SAGEVIT_TEST_SLOW_PREDICT", "0"))


def _slow_down() -> None:
    import sagevit_serve.app as app  # no TensorFlow: it starts inside load_predictor

    load = app.load_predictor
    marker = os.environ.get("SAGEVIT_TEST_PREDICTING")

    def load_slowly(*args, **kwargs):
        predictor = load(*args, **kwargs)  # compiled and warmed up at full speed
        predict = predictor.predict

        def sleep_then_predict(images):
            if marker:
                open(marker, "a").close()
            time.sleep(_PREDICT)
            return predict(images)

        if _PREDICT:
            predictor.predict = sleep_then_predict  # what create_app hands the batcher
        time.sleep(_LOAD)
        return predictor

    app.load_predictor = load_slowly  # wsgi.py imports it from the module after this


if _LOAD or _PREDICT:
    _slow_down()
