"""Real gunicorn on 127.0.0.1 serving the model that the real toolkit trained."""

import json
import signal

import numpy as np
import pytest

from sagevit.model import load_model
from sagevit_serve.local import (
    free_port,
    post_json,
    request,
    start_server,
    stop_server,
    wait_until_ready,
)

pytestmark = pytest.mark.slow

READY_WITHIN_SECONDS = 60


@pytest.fixture(scope="module")
def server(toolkit_run):
    base, result = toolkit_run
    assert result.returncode == 0, result.stdout + result.stderr
    port = free_port()
    process = start_server(base / "model", port, workers=2)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, READY_WITHIN_SECONDS, process)
        yield url, base / "model", process
    finally:
        stop_server(process)


def test_ping_answers_200(server):
    url, _, _ = server
    assert request(f"{url}/ping") == (200, b"")


def test_invocations_match_the_in_process_model(server, images):
    url, model_dir, _ = server
    status, body = post_json(f"{url}/invocations", {"instances": images.tolist()})
    assert status == 200
    predictions = np.array(body["predictions"])
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, atol=1e-5)
    model = load_model(model_dir / "vit.keras")
    in_process = np.asarray(model(images.astype("float32")))
    assert predictions.argmax(axis=1).tolist() == in_process.argmax(axis=1).tolist()


def test_malformed_body_is_400_not_500(server):
    url, _, _ = server
    status, body = request(f"{url}/invocations", b'{"instances": [1, 2')
    assert status == 400 and "not valid JSON" in json.loads(body)["error"]
    assert request(f"{url}/ping")[0] == 200


def test_sigterm_stops_the_server_cleanly(toolkit_run):
    base, _ = toolkit_run
    port = free_port()
    process = start_server(base / "model", port)
    wait_until_ready(f"http://127.0.0.1:{port}", READY_WITHIN_SECONDS, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0  # gunicorn exits 0 after a graceful shutdown


def test_a_missing_model_stops_the_server(tmp_path):
    process = start_server(tmp_path, free_port())
    assert process.wait(60) != 0
