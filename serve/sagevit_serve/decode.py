"""Turn request bodies into image batches, refusing anything the model cannot use.

Every refusal raises InvalidInput with one sentence; the app answers it as a
JSON 400. Accepted JSON, as TF Serving's clients send it:

    {"instances": [image, ...]}   {"inputs": [image, ...]}   [image, ...]   image

where an image is an H×W×3 nested list of numbers in 0-255.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np


class InvalidInput(ValueError):
    """The request body cannot be turned into a batch of images."""


def _images_from_json(document: Any) -> Any:
    if isinstance(document, dict):
        keys = [key for key in ("instances", "inputs") if key in document]
        if not keys:
            found = ", ".join(sorted(map(str, document))) or "nothing"
            raise InvalidInput(f"JSON object must have an 'instances' or 'inputs' key, got {found}")
        document = document[keys[0]]
    if not isinstance(document, list):
        raise InvalidInput("JSON body must be a list of images or an object with 'instances'")
    return document


def to_batch(data: Any, image_shape: tuple[int, int, int]) -> np.ndarray:
    """Check and convert nested lists or an array to a float32 (B, H, W, 3) batch."""
    try:
        images = np.asarray(data, dtype=np.float32)
    except (ValueError, TypeError):
        raise InvalidInput(
            f"images must be numeric arrays of shape {list(image_shape)}, with no ragged rows"
        ) from None
    if images.ndim >= 1 and images.shape[0] == 0:
        raise InvalidInput("the batch holds no images")
    if images.ndim == len(image_shape):
        images = images[np.newaxis]  # a single image
    if images.ndim != len(image_shape) + 1 or images.shape[1:] != image_shape:
        raise InvalidInput(
            f"expected images of shape {list(image_shape)} or a batch of them, "
            f"got an array of shape {list(images.shape)}"
        )
    if not np.isfinite(images).all():
        raise InvalidInput("pixel values must be finite numbers (no NaN or infinity)")
    if images.min() < 0 or images.max() > 255:
        raise InvalidInput(
            f"pixel values must be in 0-255, got {images.min():g} to {images.max():g}"
        )
    return images


def decode_json(body: bytes, image_shape: tuple[int, int, int]) -> np.ndarray:
    """A JSON request body -> float32 (B, H, W, 3) batch in 0-255."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInput(f"body is not valid JSON ({error})") from None
    except RecursionError:
        raise InvalidInput("JSON body is nested too deeply") from None
    return to_batch(_images_from_json(document), image_shape)
