"""No test may reach a non-loopback endpoint: every such attempt is refused and recorded.

Installed for the pytest process by conftest.py, and for subprocesses by the
`sitecustomize.py` beside this file (put this folder on their PYTHONPATH; set
SAGEVIT_NETWORK_GUARD_LOG to a file and each refusal is appended to it). A
refusal is also recorded because libraries swallow connection errors (the
SageMaker SDK's telemetry does): the test fails on the record, not the raise.
"""

from __future__ import annotations

import ipaddress
import os
import socket

LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
LOG_VARIABLE = "SAGEVIT_NETWORK_GUARD_LOG"

violations: list[str] = []
_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


class NetworkGuardError(ConnectionRefusedError):
    """A test tried to reach something other than this machine's loopback."""


def is_loopback(host: object) -> bool:
    """True for None, localhost names, and loopback or unspecified IP addresses."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    name = str(host).strip("[]").split("%")[0].lower()
    if name in LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # a DNS name: resolving it is already a non-loopback request
    return address.is_loopback or address.is_unspecified


def _refuse(what: str) -> None:
    violations.append(what)
    if os.environ.get(LOG_VARIABLE):
        with open(os.environ[LOG_VARIABLE], "a") as log:
            log.write(what + "\n")
    raise NetworkGuardError(f"network guard: tests may only use loopback; refused {what}")


def _getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
    if not is_loopback(host):
        _refuse(f"resolving {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


def _check(sock: socket.socket, address: object) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
        _refuse(f"connecting to {address!r}")


def _connect(self: socket.socket, address: object) -> None:
    _check(self, address)
    return _real_connect(self, address)


def _connect_ex(self: socket.socket, address: object) -> int:
    _check(self, address)
    return _real_connect_ex(self, address)


def install() -> None:
    socket.getaddrinfo = _getaddrinfo
    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex
