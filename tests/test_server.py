"""Real gunicorn on 127.0.0.1 serving the model that the real toolkit trained."""

import json
import signal
import time
from pathlib import Path

import hostile_clients
import numpy as np
import pytest
from batch_transform import transform
from conftest import HANG_LIMIT_S

from sagevit.model.vit import load_model
from scripts.local.server_process import (
    curl_invocations,
    free_port,
    post_json,
    request,
    start_server,
    stop_server,
    wait_until_ready,
)

pytestmark = pytest.mark.slow

READY_WITHIN_SECONDS = 300  # a bound on a hung start, ten times a slow day's
SLOW_SERVER_HOOK = Path(__file__).parent / "slow_server"  # tests/slow_server/sitecustomize.py


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


def slowed(**seconds: float) -> dict[str, str]:
    """Environment for tests/slow_server's hook: SLOW_LOAD=, SLOW_PREDICT=, PREDICTING=."""
    hook = {f"SAGEVIT_TEST_{name}": str(value) for name, value in seconds.items()}
    return {"PYTHONPATH": str(SLOW_SERVER_HOOK), **hook}


def test_sigterm_drains_in_flight_requests_then_exits_cleanly(toolkit_run, tmp_path):
    """SIGTERM while a request is inside the model (held there 3 s by the test hook, so
    how fast this machine predicts does not matter): it is answered, then serve exits 0.
    That the drain fits SageMaker's 30 s window is gunicorn's graceful_timeout (test_settings)."""
    import threading

    base, _ = toolkit_run
    port = free_port()
    predicting = tmp_path / "predicting"
    env = slowed(SLOW_PREDICT=3, PREDICTING=predicting)
    process = start_server(base / "model", port, extra_env=env)
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(url, READY_WITHIN_SECONDS, process)
    images = np.zeros((4, 32, 32, 3), np.uint8).tolist()
    answers = []
    slow = threading.Thread(target=lambda: answers.append(post_json(f"{url}/invocations", images)))
    slow.start()
    deadline = time.monotonic() + 120  # only a bound on a hung test
    while not predicting.exists():
        assert time.monotonic() < deadline and slow.is_alive(), answers
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # the request is in the model now
    slow.join(120)
    assert answers and answers[0][0] == 200  # the in-flight request was finished, not cut
    assert len(answers[0][1]["predictions"]) == 4
    assert process.wait(120) == 0  # gunicorn exits 0 after a graceful shutdown


def test_a_missing_model_stops_the_server(tmp_path):
    process = start_server(tmp_path, free_port())
    assert process.wait(HANG_LIMIT_S) != 0


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_curl_with_an_image_file(server, images, tmp_path, fmt):
    from PIL import Image

    url, _, _ = server
    path = tmp_path / f"cat.{fmt.lower()}"
    Image.fromarray(images[0]).resize((96, 96)).save(path, format=fmt)
    rows = np.array(curl_invocations(url, path, f"image/{fmt.lower()}")["predictions"])
    assert rows.shape == (1, 10)
    np.testing.assert_allclose(rows.sum(), 1.0, atol=1e-5)


def test_the_bad_input_corpus_against_the_real_server(server):
    from bad_inputs import CORPUS

    url, _, _ = server
    for name, content_type, body, status, words in CORPUS:
        got, answer = request(f"{url}/invocations", body, content_type)
        assert got == status, name
        assert words in json.loads(answer)["error"], name
    assert request(f"{url}/ping")[0] == 200


def test_multirecord_batch_transform_lines_up_through_gunicorn(server, images):
    """JSON documents one per line, packed as SageMaker packs them, answered as JSON lines."""
    url, _, _ = server
    limits = json.loads(request(f"{url}/execution-parameters")[1])
    assert limits["BatchStrategy"] == "MultiRecord" and limits["MaxPayloadInMB"] == 6
    data = b"".join(json.dumps(image.tolist()).encode() + b"\n" for image in images)

    def post(body: bytes) -> tuple[int, bytes]:
        accept = {"Accept": "application/jsonlines"}
        return request(f"{url}/invocations", body, "application/json", headers=accept)

    lines = transform(data, post, max_payload_bytes=len(data) // 4)
    whole = post_json(f"{url}/invocations", images.tolist())[1]["predictions"]
    rows = [json.loads(line)["predictions"] for line in lines]
    np.testing.assert_allclose(rows, whole, atol=1e-6)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_a_body_over_the_limit_gets_a_readable_413_with_content_length(server):
    """The client sends all 7 MB, then reads the answer: nginx drains the body first."""
    url, _, _ = server
    status, answer = hostile_clients.post(_port(url), hostile_clients.OVERSIZED)
    assert status == 413
    assert json.loads(answer) == {
        "error": "the body is over the 6 MB limit (SAGEMAKER_MAX_PAYLOAD_IN_MB)"
    }


def test_a_chunked_body_is_limited_too_and_never_cut_short(server, images):
    url, _, _ = server
    line = json.dumps(images[0].tolist()).encode() + b"\n"
    too_many = line * (6 * 1024 * 1024 // len(line) + 10)  # just over 6 MB of records
    status, answer = hostile_clients.post(_port(url), hostile_clients.chunks(too_many), True)
    assert status == 413 and b"over the 6 MB limit" in answer
    fits = line * 300
    status, answer = hostile_clients.post(_port(url), hostile_clients.chunks(fits), True)
    assert status == 200 and len(answer.decode().splitlines()) == 300  # every record answered


def test_slow_clients_cannot_take_the_workers(server, images):
    """More stalled clients than the workers have threads (2 x 8): /ping and a real
    request still answer before nginx would have dropped the stalled ones."""
    url, _, _ = server
    stalled = hostile_clients.stall(_port(url), 40)
    try:
        started = time.monotonic()
        assert request(f"{url}/ping", timeout=hostile_clients.ANSWER_WITHIN_S)[0] == 200
        status, body = post_json(f"{url}/invocations", [images[0].tolist()])
        assert status == 200 and len(body["predictions"]) == 1
        assert time.monotonic() - started < hostile_clients.ANSWER_WITHIN_S
    finally:
        for sock in stalled:
            sock.close()


@pytest.fixture
def sdk_predictor(server, monkeypatch):
    """The real SageMaker SDK v2 Predictor, aimed at our server through LocalSession.

    LocalSession's runtime client POSTs to http://localhost:<serving_port>/invocations
    with the predictor's Content-Type and Accept: the same request SageMaker's
    front end sends the container, without AWS.
    """
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.local import LocalSession
    from sagemaker.predictor import Predictor

    url, _, _ = server
    session = LocalSession()
    session.config = {"local": {"local_code": True, "serving_port": int(url.rsplit(":", 1)[1])}}
    return Predictor("sagevit", sagemaker_session=session, deserializer=JSONDeserializer())


def test_sdk_numpy_json_and_image_serializers(sdk_predictor, images):
    import io

    from PIL import Image
    from sagemaker.serializers import IdentitySerializer, JSONSerializer, NumpySerializer

    sdk_predictor.serializer = NumpySerializer()
    from_numpy = np.array(sdk_predictor.predict(images[:4])["predictions"])
    sdk_predictor.serializer = JSONSerializer()
    from_json = np.array(sdk_predictor.predict({"instances": images[:4].tolist()})["predictions"])
    np.testing.assert_allclose(from_numpy, from_json, atol=1e-6)
    assert from_numpy.shape == (4, 10)

    png = io.BytesIO()
    Image.fromarray(images[0]).save(png, format="PNG")
    sdk_predictor.serializer = IdentitySerializer(content_type="image/png")
    from_png = np.array(sdk_predictor.predict(png.getvalue())["predictions"])
    np.testing.assert_allclose(from_png, from_numpy[:1], atol=1e-5)


def test_loading_the_model_is_not_killed_by_the_request_or_worker_timeout(toolkit_run, tmp_path):
    """Loading is not a request: a load the test hook stretches to three worker timeouts
    (each ten of the heartbeat's one-second beats) and a 1 s request timeout kill no
    worker, before or after its first /ping. The margins are the code's, not this
    machine's: the hook sleeps, and the worker beats through it."""
    base, _ = toolkit_run
    port = free_port()
    log = tmp_path / "server.log"
    env = {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "1", "SAGEVIT_WORKER_TIMEOUT": "10"}
    with log.open("w") as output:
        process = start_server(
            base / "model", port, extra_env={**env, **slowed(SLOW_LOAD=30)}, output=output
        )
        try:
            url = f"http://127.0.0.1:{port}"
            waited = wait_until_ready(url, READY_WITHIN_SECONDS + 30, process)
            for _ in range(5):  # several of gthread's one-second beats after loading
                assert request(f"{url}/ping")[0] == 200
                time.sleep(1)
        finally:
            stop_server(process)
    text = log.read_text()
    assert waited >= 30, "the hook did not slow loading: the test proved nothing"
    assert "WORKER TIMEOUT" not in text and text.count("Booting worker") == 1, text[-3000:]


@pytest.mark.parametrize(
    ("setup", "env", "sentence"),
    [
        ("metadata", {}, "names 3 classes but the model outputs 10"),
        (None, {"SAGEVIT_MODEL_LOAD_TIMEOUT": "1"}, "did not load within 1 s"),
    ],
)
def test_a_model_that_cannot_load_stops_the_server_with_one_sentence(
    toolkit_run, tmp_path, setup, env, sentence
):
    import shutil

    base, _ = toolkit_run
    model_dir = tmp_path / "model"
    shutil.copytree(base / "model", model_dir)
    if setup == "metadata":
        metadata = json.loads((model_dir / "metadata.json").read_text())
        (model_dir / "metadata.json").write_text(
            json.dumps({**metadata, "class_names": ["a", "b", "c"]})
        )
    log = tmp_path / "server.log"
    with log.open("w") as output:
        process = start_server(model_dir, free_port(), extra_env=env, output=output)
        assert process.wait(timeout=HANG_LIMIT_S) != 0
    text = log.read_text()
    assert "cannot serve without a model: " in text and sentence in text
    assert text.count("Booting worker") == 1  # stopped, not restarted forever
