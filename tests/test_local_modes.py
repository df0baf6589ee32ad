"""The image under each SDK's local mode and mount layout, and started as each SDK starts it.

Both SDKs' local modes mount /opt/ml/model, /opt/ml/output, /opt/ml/output/data and
/opt/ml/input as volumes of their own (another filesystem than the container's);
SDK v3 starts a custom image with no command; ModelBuilder serves it with `serve`
and a read-write model mount, and checks it with a POST to /invocations. Slow; Docker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import TELEMETRY_OPT_OUT, TINY, guarded_env

from scripts.local.containers import TRAINING_HOST, docker, remove_container, run_training
from scripts.local.sagemaker_layout import write_training_layout
from scripts.local.server_process import free_port, post_json, wait_until_ready

pytestmark = [pytest.mark.slow, pytest.mark.docker]

LOCAL_MODE = Path(__file__).with_name("local_mode.py")
MODEL_FILES = {"1/saved_model.pb", "vit.keras", "metadata.json"}


def model_files(tarball: Path) -> set[str]:
    with tarfile.open(tarball) as archive:
        return {name.removeprefix("./") for name in archive.getnames()}


@pytest.mark.parametrize("sdk", ["2", "3"])
def test_each_sdks_local_mode_trains_the_image_and_keeps_the_model(image, channel, tmp_path, sdk, request):  # fmt: skip
    """The SDK's own local training (its estimator or ModelTrainer, its files and mounts),
    with only `docker compose up` turned into `docker run --network host` (tests/local_mode.py)."""
    python = sys.executable if sdk == "2" else request.getfixturevalue("sdk3_python")
    guard = tmp_path / "guard.log"
    (tmp_path / "sagemaker.yaml").write_text(TELEMETRY_OPT_OUT)
    env = guarded_env(guard, AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
                      SAGEMAKER_USER_CONFIG_OVERRIDE=str(tmp_path / "sagemaker.yaml"),
                      AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_EC2_METADATA_DISABLED="true")  # fmt: skip
    hyperparameters = json.dumps({key: str(value) for key, value in TINY.items()})
    command = [str(python), str(LOCAL_MODE), sdk, image, str(channel), str(tmp_path / "root"), hyperparameters]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert not (guard.exists() and guard.read_text()), guard.read_text()
    if sdk == "3":  # no command: the entrypoint read /opt/ml/input/config
        assert "no command given: running 'train'" in output
    assert "Invalid cross-device link" not in output and "exported SavedModel" in output
    (tarball,) = (tmp_path / "root").rglob("model.tar.gz")
    assert model_files(tarball) >= MODEL_FILES
    assert not [name for name in model_files(tarball) if name.startswith(".")]  # no staging left


def opt_ml_layout(tmp_path: Path, channel: Path) -> Path:
    return write_training_layout(tmp_path / "opt_ml", {**TINY}, {"train": channel}, host=TRAINING_HOST)  # fmt: skip


def test_a_model_folder_bind_mounted_from_the_same_filesystem_gets_the_model(image, channel, tmp_path):  # fmt: skip
    """/opt/ml/model on its own mount from the same filesystem as /opt/ml: invisible to
    Path.is_mount(), and a rename of it is EBUSY; export fills it in place."""
    opt_ml = opt_ml_layout(tmp_path, channel)
    (opt_ml / "model").mkdir(exist_ok=True)
    mount = ["-v", f"{opt_ml / 'model'}:/opt/ml/model"]
    result = run_training(image, opt_ml, timeout=900, capture=True, extra_flags=mount)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert {p.name for p in (opt_ml / "model").iterdir()} == {"1", "vit.keras", "metadata.json"}


def test_a_read_only_model_folder_fails_in_one_sentence_before_training(image, channel, tmp_path):
    opt_ml = opt_ml_layout(tmp_path, channel)
    (opt_ml / "model").mkdir(exist_ok=True)
    mount = ["-v", f"{opt_ml / 'model'}:/opt/ml/model:ro"]
    result = run_training(image, opt_ml, timeout=900, capture=True, extra_flags=mount)
    assert result.returncode != 0
    failure = (opt_ml / "output" / "failure").read_text()
    assert failure.strip() == (
        "cannot write the model to /opt/ml/model: Read-only file system;"
        " mount it read-write, with space"
    )
    assert " epoch=1 " not in result.stdout + result.stderr  # it failed before training


def start_detached(image: str, model_dir: Path, port: int, *command: str, env: dict) -> str:
    flags = [flag for key, value in env.items() for flag in ("-e", f"{key}={value}")]
    return docker("run", "-d", "--network", "host", "-e", f"SAGEMAKER_BIND_TO_PORT={port}",
                  "-e", "SAGEVIT_BIND_HOST=127.0.0.1", *flags, "-v", f"{model_dir}:/opt/ml/model",
                  image, *command).strip()  # fmt: skip


@pytest.mark.parametrize("how", ["no command", "as ModelBuilder starts it"])
def test_the_image_serves_a_mounted_model_started_either_way(image, model_dir, images, how):
    """No command and a model in /opt/ml/model: serve. ModelBuilder (v3, TORCHSERVE, the
    server it offers a custom image) runs `serve` with the model read-write and these
    variables, then deep-pings: a POST of its sample input to /invocations."""
    port = free_port()
    env = {} if how == "no command" else {
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code", "SAGEMAKER_PROGRAM": "inference.py",
        "LOCAL_PYTHON": "3.12.0"}  # fmt: skip
    command = () if how == "no command" else ("serve",)
    container = start_detached(image, model_dir, port, *command, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, timeout=600)
        status, body = post_json(f"{url}/invocations", {"instances": images[:1].tolist()})
        assert status == 200 and len(body["predictions"][0]) == 10
        logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
        if how == "no command":
            assert "no command given: running 'serve'" in logs.stdout + logs.stderr
    finally:
        remove_container(container)
