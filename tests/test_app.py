"""The Flask app through Flask's test client (fast)."""

import json

import numpy as np
import pytest
from conftest import in_process_probabilities

from sagevit_serve.app import create_app
from sagevit_serve.predictor import Predictor


def post(client, payload, content_type="application/json"):
    body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return client.post("/invocations", data=body, content_type=content_type)


def test_ping_is_200_with_an_empty_body(client):
    response = client.get("/ping")
    assert response.status_code == 200 and response.data == b""


@pytest.mark.parametrize("form", ["instances", "inputs", "bare list", "single image"])
def test_invocations_accepts_the_seed_clients_forms(client, images, form):
    batch = images[:3].tolist()
    payload = {
        "instances": {"instances": batch},
        "inputs": {"inputs": batch},
        "bare list": batch,
        "single image": batch[0],
    }[form]
    response = post(client, payload)
    assert response.status_code == 200, response.json
    predictions = np.array(response.json["predictions"])
    assert predictions.shape == (1 if form == "single image" else 3, 10)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, atol=1e-5)


def test_predictions_match_the_in_process_model(client, model_dir, images):
    expected = in_process_probabilities(model_dir, images)
    served = np.array(post(client, {"instances": images.tolist()}).json["predictions"])
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_charset_parameter_is_tolerated(client, images):
    response = post(client, [images[0].tolist()], "application/json; charset=utf-8")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ({"images": []}, "'instances' or 'inputs'"),
        ("42", "list of images"),
        ([], "holds no images"),
        ([[1, 2], [3]], "ragged"),
        ([["a"] * 3] * 2, "numeric"),
        (np.zeros((2, 16, 16, 3)).tolist(), "shape [2, 16, 16, 3]"),
        (np.zeros((32, 32)).tolist(), "shape [32, 32]"),
        (np.full((1, 32, 32, 3), 256.0).tolist(), "0-255"),
        (np.full((1, 32, 32, 3), -1.0).tolist(), "0-255"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than"),
    ],
)
def test_bad_input_is_a_json_400(client, body, message):
    response = post(client, body)
    assert response.status_code == 400
    assert message in response.json["error"]
    assert client.get("/ping").status_code == 200


def test_nan_is_refused(client):
    body = json.dumps(np.full((1, 32, 32, 3), 1.0).tolist()).replace("1.0", "NaN", 1)
    response = post(client, body)
    assert response.status_code == 400 and "finite" in response.json["error"]


def test_unsupported_content_type_is_415(client):
    response = post(client, b"1,2,3", "text/plain")
    assert response.status_code == 415 and "text/plain" in response.json["error"]


def test_unknown_route_and_wrong_method_are_json(client):
    assert client.get("/nope").status_code == 404 and "error" in client.get("/nope").json
    assert client.get("/invocations").status_code == 405


def test_oversized_payload_is_413(predictor):
    client = create_app(predictor, max_payload_mb=0.001).test_client()
    response = post(client, b"[" + b"0," * 2000 + b"0]")
    assert response.status_code == 413 and "error" in response.json


def test_a_model_that_cannot_load_raises_one_sentence(tmp_path):
    # wsgi.py logs it and stops the worker (tests/test_server.py runs that in gunicorn).
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        Predictor.load(tmp_path)
