"""Turn request bodies into image batches, refusing anything the model cannot use.

Every refusal raises InvalidInput with one sentence; the app answers it as a
JSON 400. Accepted bodies, by content type (an "image" is H×W×3 numbers in 0-255):

    application/json        {"instances": [image, ...]}, {"inputs": [...]}, [image, ...] or image
    application/jsonlines   one image, list of images or {"instances": ...} object per line
                            (application/json also takes several documents, one per line:
                            batch transform's MultiRecord with SplitType Line)
    text/csv                one image per row: H*W*3 comma-separated numbers
    application/x-npy       a .npy array (H, W, 3) or (N, H, W, 3), any real dtype
    image/jpeg, image/png,  one encoded image (JPEG, PNG, GIF, BMP) of any size,
    application/x-image     decoded exactly as the trainer decodes its files (sagevit.data.images)

Untrusted input is never dangerous: .npy files are read with allow_pickle=False and
checked against the body before any allocation, encoded images are checked against
sagevit.data.images' cost limits before any pixel is decoded, and JSON nested deeper than
MAX_JSON_DEPTH is refused before it is parsed.
"""

from __future__ import annotations

import io
import json
import math
import re
import sys
import tokenize
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sagevit.data import images

MAX_JSON_DEPTH = 8  # {"instances": [[[[r, g, b]]]]} is 5 deep


class InvalidInput(ValueError):
    """The request body cannot be turned into a batch of images."""


Shape = tuple[int, int, int]


@dataclass(frozen=True)
class Records:
    """A request's images, and how its records group them.

    A record is what SageMaker batch transform splits on: with SplitType Line, one line
    (a JSON document, a JSON line, a CSV row); a whole body otherwise. Answers in JSON
    lines give one line per record, so they line up with the input."""

    images: np.ndarray  # (N, H, W, 3) float32, every record's images in order
    counts: tuple[int, ...]  # images per record; they sum to N
    bare: tuple[bool, ...]  # per record: one image (H, W, 3), not a list of them

    @classmethod
    def join(cls, parts: Sequence[Records]) -> Records:
        images = parts[0].images if len(parts) == 1 else np.concatenate([p.images for p in parts])
        counts = tuple(count for part in parts for count in part.counts)
        return cls(images, counts, tuple(bare for part in parts for bare in part.bare))


def to_records(data: Any, image_shape: Shape) -> Records:
    """One record: an image or a list of images, as a float32 (B, H, W, 3) batch.

    Pixels must be numbers: strings (even "12") and booleans are refused, as the trainer's
    reader would never produce them."""
    if isinstance(data, np.ndarray) and data.dtype.kind not in "iuf":
        raise InvalidInput(f"array dtype {data.dtype} is not a real number type")
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow becomes inf: refused below
            raw = np.asarray(data)
            if raw.dtype.kind == "O":  # integers too large for int64 (ragged rows fail here)
                raw = np.asarray(data, dtype=np.float64)
            if raw.dtype.kind not in "iuf":
                raise TypeError(raw.dtype)  # strings, even "12", and booleans
            images = raw.astype(np.float32)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(
            f"images must be numeric arrays of shape {list(image_shape)}, with no ragged rows"
            " and only numbers as pixels"
        ) from None
    if images.ndim >= 1 and images.shape[0] == 0:
        raise InvalidInput("the batch holds no images")
    bare = images.ndim == len(image_shape)
    if bare:
        images = images[np.newaxis]  # a single image
    if images.ndim != len(image_shape) + 1 or images.shape[1:] != image_shape:
        raise InvalidInput(
            f"expected images of shape {list(image_shape)} or a batch of them, "
            f"got an array of shape {list(images.shape)}"
        )
    if not np.isfinite(images).all():
        raise InvalidInput("pixel values must be finite numbers (no NaN or infinity)")
    low, high = images.min(), images.max()
    if low < 0 or high > 255:
        raise InvalidInput(f"pixel values must be in 0-255, got {low:g} to {high:g}")
    return Records(images, (len(images),), (bare,))


# A JSON string, escapes included, matched in one pass ("unrolled loop": no backtracking).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_WHITESPACE = re.compile(r"[ \t\n\r]*")  # what JSON allows between documents
_JSON = json.JSONDecoder()


def _skeleton(body: bytes) -> bytes:
    """The JSON text with every string emptied: what is left is structure and numbers."""
    return _JSON_STRING.sub(b'""', body)


def _json_depth(skeleton: bytes) -> int:
    """Deepest bracket nesting in a JSON skeleton (no string can hide a bracket there)."""
    raw = np.frombuffer(skeleton, dtype=np.uint8)
    opens = (raw == ord("[")) | (raw == ord("{"))
    closes = (raw == ord("]")) | (raw == ord("}"))
    steps = opens.astype(np.int32) - closes.astype(np.int32)
    return int(np.cumsum(steps).max(initial=0))


def _json_documents(body: bytes) -> list[tuple[int, Any]]:
    """(line number, document) for every JSON document in the body, in order: one, or
    several separated by whitespace (JSON lines; batch transform's MultiRecord also sends
    application/json as one document per line)."""
    skeleton = _skeleton(body)
    if _json_depth(skeleton) > MAX_JSON_DEPTH:
        raise InvalidInput(f"JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    if b"true" in skeleton or b"false" in skeleton:  # outside strings, only literals spell them
        raise InvalidInput("pixel values must be numbers, not true or false")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(f"body is not valid JSON ({error})") from None
    documents, position = [], _WHITESPACE.match(text).end()
    if position == len(text):
        raise InvalidInput("the body holds no JSON document")
    while position < len(text):
        line = text.count("\n", 0, position) + 1
        try:
            document, position = _JSON.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise InvalidInput(f"body is not valid JSON ({error})") from None
        except ValueError:  # Python's int parser refuses integers over its digit limit
            digits = sys.get_int_max_str_digits()
            raise InvalidInput(f"line {line}: a number is longer than {digits} digits") from None
        except RecursionError:  # not reachable past the depth check; kept as the last guard
            raise InvalidInput(f"JSON is nested deeper than {MAX_JSON_DEPTH} levels") from None
        documents.append((line, document))
        position = _WHITESPACE.match(text, position).end()
    return documents


def _unwrap(document: Any) -> Any:
    """The image list inside TF Serving's {"instances": ...} / {"inputs": ...} wrappers."""
    if isinstance(document, dict):
        keys = [key for key in ("instances", "inputs") if key in document]
        if not keys:
            found = ", ".join(sorted(map(str, document))) or "nothing"
            raise InvalidInput(f"JSON object must have an 'instances' or 'inputs' key, got {found}")
        document = document[keys[0]]
    if not isinstance(document, list):
        raise InvalidInput("JSON body must be a list of images or an object with 'instances'")
    return document


def decode_json(body: bytes, image_shape: Shape) -> Records:
    """application/json and JSON lines: each document is a record (an image, a list of
    images, or {"instances": ...}); JSON lines is one document per line."""
    documents = _json_documents(body)
    records = []
    for line, document in documents:
        try:
            records.append(to_records(_unwrap(document), image_shape))
        except InvalidInput as error:
            where = f"line {line}: " if len(documents) > 1 else ""
            raise InvalidInput(f"{where}{error}") from None
    return Records.join(records)


def decode_csv(body: bytes, image_shape: Shape) -> Records:
    width = int(np.prod(image_shape))
    if not body.strip():
        raise InvalidInput("the CSV body holds no rows")
    try:
        with warnings.catch_warnings():  # a body of comments only: "input contained no data"
            warnings.simplefilter("ignore", UserWarning)
            rows = np.loadtxt(io.BytesIO(body), delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as error:
        raise InvalidInput(f"CSV rows must be {width} comma-separated numbers ({error})") from None
    if rows.shape[0] == 0:
        raise InvalidInput("the CSV body holds no rows")
    if rows.shape[1] != width:
        raise InvalidInput(
            f"CSV rows must have {width} values (H*W*3 for {list(image_shape)}), got {rows.shape[1]}"
        )
    images = to_records(rows.reshape(-1, *image_shape), image_shape).images
    return Records(images, (1,) * len(images), (True,) * len(images))  # a row is a record


# What numpy's header reader (ast and tokenize on untrusted text) is seen to raise.
_NPY_HEADER_ERRORS = (
    ValueError, TypeError, SyntaxError, OverflowError, MemoryError, RecursionError,
    tokenize.TokenError,
)  # fmt: skip
_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def decode_npy(body: bytes, image_shape: Shape) -> Records:
    """A .npy array, read from the body in place after its header is checked against the
    body's length: a header that declares more data than was sent costs nothing."""
    if body.startswith(b"PK\x03\x04"):
        raise InvalidInput("body must be a single .npy array, not an .npz archive")
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        if version not in _NPY_HEADER_READERS:
            raise ValueError(f"format version {version[0]}.{version[1]} is not supported")
        shape, fortran_order, dtype = _NPY_HEADER_READERS[version](stream)
    except _NPY_HEADER_ERRORS as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidInput(f"body is not a readable .npy array ({reason})") from None
    if dtype.hasobject:
        raise InvalidInput("body is not a readable .npy array (object arrays need pickle)")
    declared = math.prod(shape) * dtype.itemsize
    sent = len(body) - stream.tell()
    if declared != sent:
        raise InvalidInput(
            f"the .npy header declares shape {list(shape)} ({declared:,} bytes of data)"
            f" but the body holds {sent:,}"
        )
    array = np.frombuffer(body, dtype=dtype, count=math.prod(shape), offset=stream.tell())
    return to_records(array.reshape(shape, order="F" if fortran_order else "C"), image_shape)


def decode_image(body: bytes, image_shape: Shape) -> Records:
    """One encoded image, decoded as the trainer decodes its files (sagevit.data.images)."""
    try:
        pixels = images.decode(body, image_shape[0])
    except images.ImageError as error:
        raise InvalidInput(str(error)) from None
    return Records(pixels[np.newaxis].astype(np.float32), (1,), (True,))


DECODERS: dict[str, Callable[[bytes, Shape], Records]] = {
    "application/json": decode_json,
    "application/jsonlines": decode_json,
    "application/x-jsonlines": decode_json,
    "text/csv": decode_csv,
    "application/x-npy": decode_npy,
    "image/jpeg": decode_image,
    "image/png": decode_image,
    "application/x-image": decode_image,
}
