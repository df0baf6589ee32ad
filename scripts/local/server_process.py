"""Run the real server (gunicorn) on this machine and talk to it: for the demo and tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1: each socket is held until all are chosen,
    so the kernel cannot hand the same port out twice."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def start_server(
    model_dir: str | Path,
    port: int,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
    output: IO[str] | None = None,
) -> subprocess.Popen:
    """Start `serve` (nginx in front of gunicorn) on 127.0.0.1:port for `model_dir`; the caller stops it.
    Its log goes to `output` (a file) if given, else to ours."""
    env = {
        **os.environ,
        "SM_MODEL_DIR": str(model_dir),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEVIT_BIND_HOST": "127.0.0.1",
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "sagevit_serve.cli"]
    return subprocess.Popen(command, env=env, stdout=output, stderr=output)


def request(
    url: str,
    body: bytes | None = None,
    content_type: str = "application/json",
    timeout: float = 30,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """GET (no body) or POST; return (status, body) for any HTTP status."""
    sent = {"Content-Type": content_type} if body is not None else {}
    req = urllib.request.Request(url, data=body, headers={**sent, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def post_json(url: str, payload: Any) -> tuple[int, Any]:
    status, body = request(url, json.dumps(payload).encode())
    return status, json.loads(body)


def curl_invocations(base_url: str, body_file: str | Path, content_type: str) -> Any:
    """POST a file to /invocations with the real curl, as a user would; return the JSON answer."""
    command = ["curl", "-sS", "--fail-with-body", "-H", f"Content-Type: {content_type}"]
    command += ["--data-binary", f"@{body_file}", f"{base_url}/invocations"]
    answer = subprocess.run(command, capture_output=True, text=True)
    if answer.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({answer.returncode}): {answer.stdout}{answer.stderr}"
        )
    return json.loads(answer.stdout)


def wait_until_ready(
    base_url: str,
    timeout: float = 60.0,
    process: subprocess.Popen | None = None,
    path: str = "/ping",
) -> float:
    """Poll GET `path` until it answers 200; return the seconds waited. Raise on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before {path}")
        try:
            if request(f"{base_url}{path}", timeout=2)[0] == 200:
                return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{base_url}{path} did not answer 200 within {timeout:.0f} s")


def stop_server(process: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGTERM (graceful), then SIGKILL if it outlives `timeout`; return the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
