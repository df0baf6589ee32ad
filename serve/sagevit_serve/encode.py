"""Render probabilities in the format the client's Accept header asks for.

    application/json (default)  {"predictions": [[p0, ..., pC], ...]}        (TF Serving's shape)
    application/jsonlines       one line per input record, in order: {"predictions": [p0, ..., pC]}
                                for a record that is one image, [[...], ...] for a list of them

Top-k class names are requested with SageMaker's custom-attributes header,
`X-Amzn-SageMaker-Custom-Attributes: top_k=3` (other `key=value` attributes,
separated by `,` or `;`, are ignored). They add, per image,
`"top_k": [{"class": "cat", "probability": 0.91}, ...]`, most probable first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np

JSON = "application/json"
JSONLINES = "application/jsonlines"
RESPONSE_TYPES = (JSON, JSONLINES, "application/x-jsonlines")
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


class BadAttributes(ValueError):
    """The custom-attributes header asks for something impossible."""


def parse_top_k(header: str | None, num_classes: int) -> int | None:
    """The `top_k` custom attribute as an int in [1, num_classes], or None if absent.
    The header is `key=value` pairs split by `,` or `;` (other keys are other parties'
    and pass by); `top_k` given twice is refused, not settled by order."""
    if not header:
        return None
    pairs = [part.split("=", 1) for part in re.split(r"[,;]", header) if "=" in part]
    values = [value.strip() for key, value in pairs if key.strip() == "top_k"]
    if not values:
        return None
    if len(values) > 1:
        raise BadAttributes(f"top_k given {len(values)} times; give it once")
    value = values[0]
    if not re.fullmatch(r"[0-9]{1,9}", value) or not 1 <= int(value) <= num_classes:
        shown = value if len(value) <= 20 else f"{value[:20]}..."
        raise BadAttributes(f"top_k must be an integer from 1 to {num_classes}, got {shown!r}")
    return int(value)


def _top_k(row: np.ndarray, k: int, class_names: Sequence[str]) -> list[dict]:
    best = np.argsort(-row, kind="stable")[:k]
    return [{"class": class_names[i], "probability": float(row[i])} for i in best]


def render(
    probabilities: np.ndarray,
    mimetype: str,
    top_k: int | None,
    class_names: Sequence[str],
    records: Sequence[tuple[int, bool]] | None = None,
) -> str:
    """The response body for (B, C) probabilities.

    records: (images, bare) per input record, in order; JSON lines answer one line per
    record, a bare image's line holding one row and a list's line a list of rows. None:
    each image is a record of its own."""
    if mimetype == JSON:
        document: dict = {"predictions": probabilities.tolist()}
        if top_k:
            document["top_k"] = [_top_k(row, top_k, class_names) for row in probabilities]
        return json.dumps(document)
    records = records or [(1, True)] * len(probabilities)
    lines, start = [], 0
    for count, bare in records:
        rows = probabilities[start : start + count]
        start += count
        line: dict = {"predictions": rows[0].tolist() if bare else rows.tolist()}
        if top_k:
            best = [_top_k(row, top_k, class_names) for row in rows]
            line["top_k"] = best[0] if bare else best
        lines.append(json.dumps(line))
    return "\n".join(lines) + "\n"
