"""The nginx configuration that `serve` puts in front of gunicorn.

nginx takes every client connection (port 8080) and passes a request on to gunicorn's
unix socket only once it has all of it, so a slow or stalled client costs an idle
connection in nginx's event loop, never a worker thread (the SageMaker TensorFlow
Serving container is built the same way). It also refuses, with one-line JSON:

- bodies over SAGEMAKER_MAX_PAYLOAD_IN_MB, with or without Content-Length (413; nginx
  reads and discards the rest of the body first, so the client can read the answer);
- clients that stall: no complete headers within 10 s, or 10 s between two reads of
  the body (the connection is closed);
- requests the model does not answer within SAGEMAKER_MODEL_SERVER_TIMEOUT (504).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
from pathlib import Path

from sagevit_serve.settings import Settings

CLIENT_TIMEOUT_S = 10  # headers, and each read of the body: a stalled client is dropped
MAX_CONNECTIONS = 4096  # open client connections; stalled ones are dropped after 10 s

ERRORS = {
    400: "the request is malformed",
    413: "the body is over the {payload} MB limit (SAGEMAKER_MAX_PAYLOAD_IN_MB)",
    414: "the request line is too long",
    494: "the request headers are too large",
    502: "no model worker is ready yet; try again",
    504: "the model did not answer within {timeout} s (SAGEMAKER_MODEL_SERVER_TIMEOUT)",
}


def _error_pages(settings: Settings) -> str:
    """An error_page and a named location for each status: one line of JSON, as the app."""
    lines = []
    for status, text in ERRORS.items():
        message = text.format(payload=settings.max_payload_mb, timeout=settings.timeout)
        body = json.dumps({"error": message}).replace("'", "\\'")
        lines.append(f"        error_page {status} @error{status};")
        lines.append(
            f"        location @error{status} {{ default_type application/json;"
            f" return {400 if status == 494 else status} '{body}\\n'; }}"
        )
    return "\n".join(lines)


def _user() -> str:
    """Run nginx's workers as nobody when started as root (the container's case)."""
    if os.geteuid() != 0:
        return ""  # nginx cannot switch users; it runs as whoever started it
    nobody = pwd.getpwnam("nobody")
    return f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"


def render(settings: Settings, run_dir: Path, upstream_socket: Path) -> str:
    """nginx.conf for `settings`, keeping its pid and temporary files under `run_dir`."""
    return f"""# Written by sagevit_serve.nginx for this server's run; see that module.
{_user()}
daemon off;
worker_processes 1;  # one event loop proxies far more requests a second than a model answers
pid {run_dir}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections {MAX_CONNECTIONS};
}}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {run_dir}/client_body;
    proxy_temp_path {run_dir}/proxy;
    fastcgi_temp_path {run_dir}/fastcgi;
    uwsgi_temp_path {run_dir}/uwsgi;
    scgi_temp_path {run_dir}/scgi;

    client_max_body_size {settings.max_payload_mb}m;
    client_body_buffer_size 1m;  # bodies up to 1 MB stay in memory, larger ones on disk
    client_header_timeout {CLIENT_TIMEOUT_S}s;
    client_body_timeout {CLIENT_TIMEOUT_S}s;
    send_timeout {CLIENT_TIMEOUT_S}s;
    keepalive_timeout 75s;  # longer than SageMaker's front end keeps idle connections

    upstream gunicorn {{
        server unix:{upstream_socket};
    }}
    server {{
        listen {settings.host}:{settings.port} backlog=4096;
        location / {{
            proxy_pass http://gunicorn;
            proxy_set_header Host $host;
            proxy_request_buffering on;  # the whole body first, then gunicorn
            proxy_buffering on;  # the whole answer taken at once: slow readers cost no thread
            proxy_read_timeout {settings.timeout}s;
        }}
{_error_pages(settings)}
    }}
}}
"""
