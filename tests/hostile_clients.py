"""Clients a model server must survive: bodies over the limit, and clients that stall."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterable

from sagevit_serve.nginx import CLIENT_TIMEOUT_S


def post(port: int, body: bytes | Iterable[bytes], chunked: bool = False) -> tuple[int, bytes]:
    """POST a JSON body (with Content-Length, or chunked); the status and the answer.
    http.client sends the whole body before it reads: a server that closes early shows
    as a broken pipe here, not as an answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", "Accept": "application/jsonlines"}
    connection.request("POST", "/invocations", body, headers, encode_chunked=chunked)
    response = connection.getresponse()
    return response.status, response.read()


def chunks(body: bytes, size: int = 65536) -> Iterable[bytes]:
    return (body[i : i + size] for i in range(0, len(body), size))


OVERSIZED = b"[" + b"0," * (7 * 1024 * 1024 // 2) + b"0]"  # 7 MB of JSON

# Stalled clients that held a worker would delay an answer until nginx drops them, after
# CLIENT_TIMEOUT_S (10 s); half of that tells "held" from "not held" whatever the
# machine's speed, since a free worker answers /ping in milliseconds.
ANSWER_WITHIN_S = CLIENT_TIMEOUT_S / 2


def stall(port: int, count: int) -> list[socket.socket]:
    """`count` connections that never finish their request: half of them stop in the
    middle of the body they promised, the others in the middle of their headers."""
    stalled = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        if i % 2:
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                         b"Content-Type: application/json\r\n\r\n[[[")  # fmt: skip
        else:
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Le")
        stalled.append(sock)
    return stalled
