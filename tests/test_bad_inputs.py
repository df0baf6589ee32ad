"""Bad input gets a clear 4xx and the worker keeps serving; the decoders never crash."""

import json
import re

import numpy as np
import pytest
from bad_inputs import CORPUS
from hypothesis import given, settings
from hypothesis import strategies as st

from sagevit_serve.decode import DECODERS, InvalidInput

SHAPE = (32, 32, 3)


def test_the_corpus_is_large():
    assert len(CORPUS) >= 30


@pytest.mark.parametrize(("name", "content_type", "body", "status", "words"), CORPUS, ids=[c[0] for c in CORPUS])  # fmt: skip
def test_bad_input_is_a_clear_4xx(client, name, content_type, body, status, words):
    response = client.post("/invocations", data=body, headers={"Content-Type": content_type} if content_type else {})  # fmt: skip
    assert response.status_code == status
    assert words in response.json["error"]
    assert "\n" not in response.json["error"]
    assert client.get("/ping").status_code == 200


def _check_decoder(content_type, body):
    try:
        records = DECODERS[content_type](body, SHAPE)
    except InvalidInput as error:
        assert str(error)
        return
    batch = records.images
    assert sum(records.counts) == len(batch)
    assert batch.dtype == np.float32 and batch.shape[1:] == SHAPE
    assert np.isfinite(batch).all() and batch.min() >= 0 and batch.max() <= 255


@settings(max_examples=200, deadline=None)
@given(content_type=st.sampled_from(sorted(DECODERS)), body=st.binary(max_size=4096))
def test_decoders_refuse_arbitrary_bytes_cleanly(content_type, body):
    _check_decoder(content_type, body)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["instances", "inputs", "x"]), children, max_size=2)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(document=json_values)
def test_json_decoders_refuse_arbitrary_documents_cleanly(document):
    body = json.dumps(document).encode()
    _check_decoder("application/json", body)
    _check_decoder("application/jsonlines", body)


@settings(max_examples=100, deadline=None)
@given(
    batch=st.integers(1, 3),
    value=st.floats(-1e3, 1e3, allow_nan=False),
    size=st.sampled_from([(32, 32, 3), (31, 32, 3), (32, 32, 1)]),
)
def test_csv_and_npy_accept_exactly_the_valid_arrays(batch, value, size):
    array = np.full((batch, *size), value, np.float32)
    valid = size == SHAPE and 0 <= np.float32(value) <= 255  # as the server sees it
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    for content_type, body in [
        ("application/x-npy", buffer.getvalue()),
        (
            "text/csv",
            "\n".join(",".join(map(repr, row.reshape(-1).tolist())) for row in array).encode(),
        ),
    ]:
        if valid:
            assert DECODERS[content_type](body, SHAPE).images.shape == (batch, *SHAPE)
        else:
            with pytest.raises(InvalidInput):
                DECODERS[content_type](body, SHAPE)


npy_headers = st.fixed_dictionaries(
    {
        "descr": st.sampled_from(["<f4", "<f8", "|u1", "<i8", "|b1", "<U3", "|O", "<c8", "x", 3]),
        "fortran_order": st.sampled_from([False, True, 0, "no"]),
        "shape": st.lists(st.integers(-2, 2**70), max_size=5).map(tuple) | st.just("(1,"),
    }
)


@settings(max_examples=300, deadline=None)
@given(header=npy_headers, data=st.binary(max_size=64), raw_header=st.booleans())
def test_npy_decoder_refuses_any_header_cleanly(header, data, raw_header):
    from bad_inputs import _npy_with_header

    text = repr(header) if not raw_header else str(header).replace("'", "")
    _check_decoder("application/x-npy", _npy_with_header(text, data))


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=30) | st.integers(-(10**6), 10**6).map(str) | st.just("9" * 5000))
def test_top_k_attribute_is_an_ascii_integer_in_range_or_a_clean_refusal(value):
    from sagevit_serve.encode import BadAttributes, parse_top_k

    try:
        k = parse_top_k(f"top_k={value}", 10)
    except BadAttributes as error:
        assert "\n" not in str(error) and len(str(error)) < 200
        return
    # The value ends at the first separator (`top_k=1,` is top_k=1 and an empty pair).
    assert k is None or (1 <= k <= 10 and re.split(r"[,;]", value)[0].strip() == str(k))


def test_top_k_given_twice_is_refused_not_settled_by_order():
    from sagevit_serve.encode import BadAttributes, parse_top_k

    assert parse_top_k("trace=abc; top_k=3,", 10) == 3
    with pytest.raises(BadAttributes, match="top_k given 2 times"):
        parse_top_k("top_k=3,top_k=5", 10)


@pytest.mark.parametrize("value", ["٣", "²", "3\u200b", " 7" + "0" * 5000, "0x3", "+3", "3.0"])
def test_top_k_refuses_non_ascii_digits_and_long_numbers(client, value):
    response = client.post(
        "/invocations",
        json={"instances": [np.zeros((32, 32, 3)).tolist()]},
        headers={"X-Amzn-SageMaker-Custom-Attributes": f"top_k={value}"},
    )
    assert response.status_code == 400 and "top_k must be an integer" in response.json["error"]
