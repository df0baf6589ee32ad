"""What SageMaker batch transform sends and keeps, for SplitType=Line, MultiRecord.

It splits the input file at line ends, packs as many whole records (lines) as fit in
MaxPayloadInMB into each request, and with AssembleWith=Line writes the answers' lines
one after another. The output lines up with the input only if every answer has exactly
one line per record it was sent.
"""

from __future__ import annotations

from collections.abc import Callable


def mini_batches(data: bytes, max_payload_bytes: int) -> list[bytes]:
    """The request bodies: the file's lines (newline kept), packed in order."""
    bodies, current = [], b""
    for record in data.splitlines(keepends=True):
        if not record.strip():
            continue
        if current and len(current) + len(record) > max_payload_bytes:
            bodies.append(current)
            current = b""
        current += record
    return [*bodies, current] if current else bodies


def transform(
    data: bytes, post: Callable[[bytes], tuple[int, bytes]], max_payload_bytes: int
) -> list[str]:
    """Send `data` as batch transform would through `post` (body -> status, answer);
    return the assembled output lines."""
    lines = []
    for body in mini_batches(data, max_payload_bytes):
        status, answer = post(body)
        assert status == 200, answer
        lines += [line for line in answer.decode().splitlines() if line]
    return lines
