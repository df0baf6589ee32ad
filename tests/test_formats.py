"""Every request and response format a SageMaker client sends, through Flask's test client."""

import io
import json

import numpy as np
import pytest
from batch_transform import mini_batches, transform
from PIL import Image

from sagevit_serve.encode import CUSTOM_ATTRIBUTES


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def encoded(array, fmt, size=None, mode="RGB"):
    image = Image.fromarray(array.astype(np.uint8))
    if size:
        image = image.resize(size)
    buffer = io.BytesIO()
    image.convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


def predictions(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    return np.array(response.json["predictions"])


@pytest.fixture
def expected(predictor, images):
    return predictor.predict(images.astype(np.float32))


@pytest.mark.parametrize(
    ("content_type", "make_body"),
    [
        ("application/json", lambda x: json.dumps({"instances": x.tolist()})),
        ("application/json", lambda x: json.dumps({"inputs": x.astype(float).tolist()})),
        ("application/json", lambda x: json.dumps(x.tolist())),
        ("application/jsonlines", lambda x: "\n".join(json.dumps(i.tolist()) for i in x)),
        (
            "application/jsonlines",
            lambda x: "\n".join(json.dumps({"instances": [i.tolist()]}) for i in x) + "\n",
        ),
        ("text/csv", lambda x: "\n".join(",".join(map(str, i.reshape(-1))) for i in x)),
        ("application/x-npy", lambda x: npy(x)),
        ("application/x-npy", lambda x: npy(x.astype(np.float64))),
    ],
)
def test_batch_formats_give_the_models_probabilities(
    client, images, expected, content_type, make_body
):
    response = client.post("/invocations", data=make_body(images), content_type=content_type)
    np.testing.assert_allclose(predictions(response), expected, atol=1e-5)


def test_single_npy_image(client, images, expected):
    response = client.post("/invocations", data=npy(images[0]), content_type="application/x-npy")
    np.testing.assert_allclose(predictions(response), expected[:1], atol=1e-5)


@pytest.mark.parametrize("content_type", ["image/png", "application/x-image"])
def test_png_at_model_size_is_lossless(client, images, expected, content_type):
    response = client.post(
        "/invocations", data=encoded(images[0], "PNG"), content_type=content_type
    )
    np.testing.assert_allclose(predictions(response), expected[:1], atol=1e-5)


@pytest.mark.parametrize(
    ("fmt", "size", "mode"),
    [("JPEG", (32, 32), "RGB"), ("JPEG", (640, 480), "RGB"), ("PNG", (100, 37), "RGBA"),
     ("PNG", (64, 64), "L"), ("PNG", (50, 50), "P")],
)  # fmt: skip
def test_images_of_any_size_and_mode_are_converted_and_resized(client, images, fmt, size, mode):
    body = encoded(images[1], fmt, size, mode)
    response = client.post("/invocations", data=body, content_type=f"image/{fmt.lower()}")
    rows = predictions(response)
    assert rows.shape == (1, 10)
    np.testing.assert_allclose(rows.sum(), 1.0, atol=1e-5)


def test_jsonlines_answers_one_line_per_record(client, images, expected):
    """A record that is one image gets a line of one row; a list of images, a line of rows."""
    body = "\n".join(
        [json.dumps(images[0].tolist()), json.dumps({"instances": images[1:4].tolist()})]
    )
    response = client.post(
        "/invocations", data=body, content_type="application/jsonlines",
        headers={"Accept": "application/jsonlines"},
    )  # fmt: skip
    assert response.status_code == 200 and response.mimetype == "application/jsonlines"
    first, second = (json.loads(line) for line in response.get_data(as_text=True).splitlines())
    np.testing.assert_allclose(first["predictions"], expected[0], atol=1e-5)
    np.testing.assert_allclose(second["predictions"], expected[1:4], atol=1e-5)


@pytest.mark.parametrize("content_type", ["application/json", "application/jsonlines", "text/csv"])
@pytest.mark.parametrize("accept", ["application/jsonlines", "application/x-jsonlines"])
def test_multirecord_batch_transform_output_lines_up_with_its_input(
    client, images, expected, content_type, accept
):
    """SplitType=Line, MultiRecord, as SageMaker packs it (several requests), then joined."""
    if content_type == "text/csv":
        data = "".join(",".join(map(str, image.reshape(-1))) + "\n" for image in images)
    else:  # one document per line: bare images and TF Serving objects mixed
        data = "".join(
            json.dumps(image.tolist() if i % 2 else {"instances": [image.tolist()]}) + "\n"
            for i, image in enumerate(images)
        )

    def post(body: bytes) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type, "Accept": accept}
        response = client.post("/invocations", data=body, headers=headers)
        return response.status_code, response.get_data()

    lines = transform(data.encode(), post, max_payload_bytes=len(data) // 3)
    assert len(mini_batches(data.encode(), len(data) // 3)) >= 3
    assert len(lines) == len(images)
    for i, line in enumerate(lines):
        rows = np.array(json.loads(line)["predictions"]).reshape(-1, expected.shape[1])
        np.testing.assert_allclose(rows, expected[i : i + 1], atol=1e-5)


def test_top_k_in_jsonlines(client, images):
    body = "\n".join(json.dumps(image.tolist()) for image in images[:2])
    response = client.post(
        "/invocations", data=body, content_type="application/jsonlines",
        headers={CUSTOM_ATTRIBUTES: "top_k=1", "Accept": "application/jsonlines"},
    )  # fmt: skip
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert [len(line["top_k"]) for line in lines] == [1, 1]
    assert all(set(line["top_k"][0]) == {"class", "probability"} for line in lines)


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/*", "text/html, application/json;q=0.5"])  # fmt: skip
def test_json_is_the_default_response(client, images, accept):
    headers = {"Accept": accept} if accept else {}
    response = client.post("/invocations", json=[images[0].tolist()], headers=headers)
    assert response.status_code == 200 and response.mimetype == "application/json"


def test_unsupported_accept_is_406(client, images):
    response = client.post(
        "/invocations", json=[images[0].tolist()], headers={"Accept": "text/csv"}
    )
    assert response.status_code == 406 and "application/json" in response.json["error"]


@pytest.mark.parametrize("attributes", ["top_k=3", "trace=abc; top_k=3", "top_k=3,other=1"])
def test_top_k_class_names_through_custom_attributes(
    client, predictor, images, expected, attributes
):
    response = client.post(
        "/invocations", json=images[:2].tolist(), headers={CUSTOM_ATTRIBUTES: attributes}
    )
    assert response.status_code == 200
    top = response.json["top_k"]
    assert [len(row) for row in top] == [3, 3]
    for row, probabilities in zip(top, expected[:2], strict=True):
        best = int(np.argmax(probabilities))
        assert row[0] == {"class": predictor.class_names[best], "probability": pytest.approx(float(probabilities[best]), abs=1e-6)}  # fmt: skip
        assert row[0]["probability"] >= row[1]["probability"] >= row[2]["probability"]


@pytest.mark.parametrize("value", ["0", "11", "-1", "three", ""])
def test_impossible_top_k_is_400(client, images, value):
    response = client.post("/invocations", json=[images[0].tolist()], headers={CUSTOM_ATTRIBUTES: f"top_k={value}"})  # fmt: skip
    assert response.status_code == 400 and "top_k" in response.json["error"]


def test_execution_parameters_match_the_server_limits(predictor):
    from sagevit_serve.app import create_app

    client = create_app(predictor, max_payload_mb=6, max_concurrent_transforms=3).test_client()
    assert client.get("/execution-parameters").json == {
        "MaxConcurrentTransforms": 3,
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 6,
    }


def test_execution_parameters_are_what_the_sdks_local_batch_transform_reads(predictor, monkeypatch):  # fmt: skip
    """The SDK's local transform job takes BatchStrategy from this answer and hands it to
    its strategy factory (sagemaker.local.entities, then sagemaker.local.data)."""
    # Importing the SDK looks up a region; keep it off the instance metadata address.
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    from sagemaker.local.data import (
        MultiRecordStrategy,
        get_batch_strategy_instance,
        get_splitter_instance,
    )

    from sagevit_serve.app import create_app

    answer = create_app(predictor).test_client().get("/execution-parameters").json
    strategy = get_batch_strategy_instance(answer["BatchStrategy"], get_splitter_instance(None))
    assert isinstance(strategy, MultiRecordStrategy)


def test_large_batches_are_split_into_buckets(client, predictor):
    batch = np.random.default_rng(0).integers(0, 256, (150, 32, 32, 3)).astype(np.float32)
    response = client.post("/invocations", data=npy(batch), content_type="application/x-npy")
    rows = predictions(response)
    assert rows.shape == (150, 10)
    np.testing.assert_allclose(rows[:64], predictor.predict(batch[:64]), atol=1e-5)
