"""A corpus of bad requests: (name, content type, body, expected status, words in the error)."""

import gzip
import io
import json
import struct
import zlib

import numpy as np
from PIL import Image

from scripts.bench.decode import png


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _npz():
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((32, 32, 3)))
    return buffer.getvalue()


def _png_bomb(width=100_000, height=100_000, bit_depth=8, colour_type=2):
    """A valid PNG header claiming width x height pixels (the data is never decoded)."""
    return png(width, height, bit_depth, colour_type, zlib.compress(b"\x00" * 1000))


def _png(size=(32, 32)):
    buffer = io.BytesIO()
    Image.new("RGB", size).save(buffer, format="PNG")
    return buffer.getvalue()


def _many_scans():
    """A small progressive JPEG with its last scan repeated 200 times."""
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (9, 99, 199)).save(buffer, format="JPEG", progressive=True)
    data = buffer.getvalue()
    last, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    return data[:end] + data[last:end] * 200 + data[end:]


def _webp():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="WEBP")
    return buffer.getvalue()


def _npy_with_header(header: str, data: bytes = b"") -> bytes:
    """A .npy version 1.0 file with this header text (padded as numpy pads it)."""
    text = header.encode("latin1")
    text += b" " * (63 - (len(text) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


ZEROS = np.zeros((32, 32, 3))
ZEROS_JSON = json.dumps(ZEROS.tolist())
JSON, JSONL, CSV, NPY, JPEG, PNG = (
    "application/json", "application/jsonlines", "text/csv",
    "application/x-npy", "image/jpeg", "image/png",
)  # fmt: skip
ROW = ",".join(["0"] * 3072)

CORPUS = [
    ("empty json", JSON, b"", 400, "no JSON document"),
    ("truncated json", JSON, b'{"instances": [[1, 2', 400, "not valid JSON"),
    ("not utf-8", JSON, b"\xff\xfe\x00", 400, "not valid JSON"),
    ("json string", JSON, b'"hello"', 400, "list of images"),
    ("json number", JSON, b"42", 400, "list of images"),
    ("json null", JSON, b"null", 400, "list of images"),
    ("wrong key", JSON, b'{"images": []}', 400, "'instances' or 'inputs'"),
    ("instances not a list", JSON, b'{"instances": 3}', 400, "list of images"),
    ("empty batch", JSON, b"[]", 400, "holds no images"),
    ("empty instances", JSON, b'{"instances": []}', 400, "holds no images"),
    ("ragged", JSON, b"[[1, 2], [3]]", 400, "ragged"),
    ("strings", JSON, b'[["a", "b"]]', 400, "numeric"),
    ("booleans in nested lists", JSON, b"[[[true]]]", 400, "numbers, not true or false"),
    (
        "wrong size",
        JSON,
        json.dumps(np.zeros((16, 16, 3)).tolist()).encode(),
        400,
        "shape [1, 16, 16, 3]",
    ),
    ("wrong channels", JSON, json.dumps(np.zeros((32, 32, 4)).tolist()).encode(), 400, "shape"),
    ("rank 2", JSON, json.dumps(np.zeros((32, 32)).tolist()).encode(), 400, "shape [32, 32]"),
    ("rank 5", JSON, json.dumps(np.zeros((1, 1, 32, 32, 3)).tolist()).encode(), 400, "shape"),
    ("NaN", JSON, json.dumps(ZEROS.tolist()).replace("0.0", "NaN", 1).encode(), 400, "finite"),
    (
        "Infinity",
        JSON,
        json.dumps(ZEROS.tolist()).replace("0.0", "Infinity", 1).encode(),
        400,
        "finite",
    ),
    ("above 255", JSON, json.dumps((ZEROS + 256).tolist()).encode(), 400, "0-255"),
    ("negative", JSON, json.dumps((ZEROS - 1).tolist()).encode(), 400, "0-255"),
    (
        "huge number",
        JSON,
        json.dumps(ZEROS.tolist()).replace("0.0", "1e999", 1).encode(),
        400,
        "finite",
    ),
    ("deep nesting", JSON, b"[" * 50_000 + b"]" * 50_000, 400, "nested deeper"),
    ("deep objects", JSON, b'{"a":' * 100 + b"1" + b"}" * 100, 400, "nested deeper"),
    (
        "closing brackets in a string hide deep nesting",
        JSON,
        b'["' + b"]" * 5000 + b'", ' + b"[" * 5000 + b"]" * 5000 + b"]",
        400,
        "nested deeper",
    ),
    (
        "escaped quote does not end a string",
        JSON,
        b'["\\"' + b"[" * 50 + b'", 1]',
        400,
        "only numbers as pixels",
    ),
    ("integer too long to parse", JSON, b"[" + b"7" * 5000 + b"]", 400, "digits"),
    ("integer too long in a line", JSONL, b"[" + b"7" * 5000 + b"]", 400, "line 1"),
    (
        "huge integer pixel",
        JSON,
        ZEROS_JSON.replace("0.0", "1" + "0" * 40, 1).encode(),
        400,
        "finite",
    ),
    ("boolean pixel", JSON, ZEROS_JSON.replace("0.0", "true", 1).encode(), 400, "numbers"),
    (
        "numeric string pixel",
        JSON,
        ZEROS_JSON.replace("0.0", '"5"', 1).encode(),
        400,
        "only numbers",
    ),
    ("boolean npy", NPY, _npy(np.zeros((32, 32, 3), bool)), 400, "not a real number"),
    (
        "npy shape too large for memory",
        NPY,
        _npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (10000000000, 32, 32, 3), }"
        ),
        400,
        "declares shape",
    ),
    (
        "npy shape too large for an integer",
        NPY,
        _npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (" + "9" * 80 + ", 3), }"
        ),
        400,
        "declares shape",
    ),
    (
        "npy header syntax error",
        NPY,
        _npy_with_header("{'descr': '<f4', 'shape': (1, 2"),
        400,
        "not a readable .npy",
    ),
    ("npy header not a dict", NPY, _npy_with_header("[1, 2, 3]"), 400, "not a readable .npy"),
    ("npy version 9", NPY, b"\x93NUMPY\x09\x00" + b"\x00" * 64, 400, "not a readable .npy"),
    ("jsonlines empty", JSONL, b"\n\n", 400, "no JSON document"),
    ("json documents, second bad", JSON, ZEROS_JSON.encode() + b"\n[[oops", 400, "not valid JSON"),
    (
        "json documents, second wrong",
        JSON,
        ZEROS_JSON.encode() + b"\n{}",
        400,
        "line 2: JSON object",
    ),
    ("jsonlines bad line", JSONL, json.dumps(ZEROS.tolist()).encode() + b"\n{oops", 400, "line 2"),
    ("csv short row", CSV, b"1,2,3", 400, "3072 values"),
    ("csv text", CSV, b"a,b,c", 400, "comma-separated numbers"),
    ("csv ragged", CSV, (ROW + "\n1,2").encode(), 400, "comma-separated numbers"),
    ("csv empty", CSV, b"", 400, "no rows"),
    ("csv out of range", CSV, ROW.replace("0", "300", 1).encode(), 400, "0-255"),
    ("npy garbage", NPY, b"not an npy file", 400, "not a readable .npy"),
    (
        "npy pickled objects",
        NPY,
        _npy(np.array([object()], dtype=object)),
        400,
        "not a readable .npy",
    ),
    ("npy strings", NPY, _npy(np.array(["a"] * 3072).reshape(32, 32, 3)), 400, "not a real number"),
    ("npz archive", NPY, _npz(), 400, "not an .npz"),
    ("npy wrong shape", NPY, _npy(np.zeros((3, 32, 32))), 400, "shape"),
    ("npy complex", NPY, _npy(np.zeros((32, 32, 3), np.complex64)), 400, "not a real number"),
    ("jpeg garbage", JPEG, b"\xff\xd8\xff garbage", 400, "not a decodable image"),
    ("truncated png", PNG, _png()[:40], 400, "not a decodable image"),
    ("png bomb", PNG, _png_bomb(), 400, "pixel limit"),
    ("gzip as png", PNG, gzip.compress(b"hello"), 400, "not a decodable image"),
    ("jpeg of 210 scans", JPEG, _many_scans(), 400, "over the limit of 100 scans"),
    ("png 16385 x 1", PNG, _png_bomb(16_385, 1), 400, "longest side is over the 16,384 px"),
    ("png 4100^2 rgba 16 bit", PNG, _png_bomb(4100, 4100, 16, 6), 400, "over the 128 MB limit"),
    ("webp", "image/webp", _webp(), 415, "image/webp"),
    ("webp as image", "application/x-image", _webp(), 400, "JPEG, PNG, GIF, BMP"),
    ("unsupported type", "text/plain", b"hello", 415, "text/plain"),
    ("no content type", "", b"[]", 415, "none"),
    ("xml", "application/xml", b"<a/>", 415, "not supported"),
]
