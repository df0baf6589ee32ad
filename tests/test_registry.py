"""`make push REGISTRY=127.0.0.1:PORT` against a real registry (Debian's docker-registry)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request

import pytest
from conftest import run_make

from scripts.local.containers import docker
from scripts.local.server_process import free_port, wait_until_ready

pytestmark = [pytest.mark.slow, pytest.mark.docker]

REGISTRY_CONFIG = """\
version: 0.1
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: 127.0.0.1:{port}
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """host:port of a docker-registry serving on 127.0.0.1 from a temporary folder."""
    if shutil.which("docker-registry") is None:
        pytest.fail("docker-registry is not installed: scripts/local/docker_up.sh installs it")
    folder = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = folder / "config.yml"
    config.write_text(REGISTRY_CONFIG.format(root=folder / "storage", port=port))
    server = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", timeout=30, process=server, path="/v2/")
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def small_image(tmp_path_factory):
    """A one-layer image built from scratch: `make push` does the same for any image, and
    pushing the 8 GB project image would cost CI minutes of layer compression."""
    folder = tmp_path_factory.mktemp("small_image")
    (folder / "Dockerfile").write_text("FROM scratch\nCOPY payload /payload\n")
    (folder / "payload").write_bytes(os.urandom(1 << 20))
    docker("build", "--network", "host", "-q", "-t", "sagevit-ci:small", str(folder))
    yield "sagevit-ci:small"
    docker("rmi", "sagevit-ci:small", check=False)


def test_make_push_to_a_registry_and_pull_it_back(small_image, registry, tmp_path):
    image = small_image
    pushed = f"{registry}/sagevit-ci:push-test"
    pushing = ("REPOSITORY=sagevit-ci", "TAG=push-test", f"IMAGE={image}")
    result = run_make(
        "push", f"REGISTRY={registry}", *pushing, guard_log=tmp_path / "guard.log", timeout=1200
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == pushed
    assert not (tmp_path / "guard.log").exists()

    with urllib.request.urlopen(f"http://{registry}/v2/sagevit-ci/tags/list") as response:
        assert json.loads(response.read())["tags"] == ["push-test"]
    original = docker("image", "inspect", "--format", "{{.Id}}", image).strip()
    docker("rmi", pushed)  # drop the local tag, so the image must come from the registry
    docker("pull", pushed)
    assert docker("image", "inspect", "--format", "{{.Id}}", pushed).strip() == original
    docker("rmi", pushed)
