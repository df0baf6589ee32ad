"""The nginx configuration `serve` writes: limits from the settings, JSON error pages."""

import json
import re
import shutil
import subprocess

from sagevit_serve import nginx
from sagevit_serve.settings import from_environ

SETTINGS = from_environ(
    {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "7", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "45",
     "SAGEMAKER_BIND_TO_PORT": "9090", "SAGEVIT_BIND_HOST": "127.0.0.1"},
    cpus=2, gpu_files=[],
)  # fmt: skip


def test_limits_come_from_the_settings(tmp_path):
    conf = nginx.render(SETTINGS, tmp_path, tmp_path / "g.sock")
    assert "client_max_body_size 7m;" in conf
    assert "proxy_read_timeout 45s;" in conf
    assert "listen 127.0.0.1:9090" in conf
    assert f"server unix:{tmp_path}/g.sock;" in conf
    assert "proxy_request_buffering on;" in conf


def test_every_error_page_is_one_line_of_json(tmp_path):
    conf = nginx.render(SETTINGS, tmp_path, tmp_path / "g.sock")
    pages = re.findall(r"return (\d+) '(.*)\\n';", conf)
    assert {int(status) for status, _ in pages} == {400, 413, 414, 502, 504}
    for _, body in pages:
        assert "\n" not in body and json.loads(body)["error"]
    assert "over the 7 MB limit" in conf and "within 45 s" in conf


def test_nginx_accepts_the_configuration(tmp_path):
    assert shutil.which("nginx"), "serve needs nginx: apt-get install nginx"
    (tmp_path / "nginx.conf").write_text(nginx.render(SETTINGS, tmp_path, tmp_path / "g.sock"))
    check = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
