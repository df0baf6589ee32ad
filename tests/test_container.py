"""The image itself, driven exactly as SageMaker drives it (slow; needs Docker).

The image is built on the stand-in TensorFlow base by `make build-standin`
(or taken from SAGEVIT_TEST_IMAGE), exactly as CI builds it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import hostile_clients
import numpy as np
import pytest
from conftest import TINY, epoch_numbers, in_process_probabilities, run_make, write_channel

from scripts.local.containers import (
    TRAINING_HOST,
    docker,
    remove_container,
    run_training,
    start_serving,
    start_training,
    stop_container,
)
from scripts.local.sagemaker_layout import write_training_layout
from scripts.local.server_process import (
    curl_invocations,
    free_port,
    post_json,
    request,
    wait_until_ready,
)
from scripts.sagemaker.evaluate import evaluate, load_test_set, model_dir_predictor

pytestmark = [pytest.mark.slow, pytest.mark.docker]

# Bounds on a hung container only, ten times what a slow day takes: how fast the server
# starts and stops is measured by benchmarks, and its limits are the code's (test_settings).
START_LIMIT_S = 600  # from `docker run ... serve` to the first /ping 200
STOP_LIMIT_S = 300  # `docker stop`: SIGTERM, then SIGKILL (exit 137) after this
TENSORFLOW_DISTRIBUTIONS = {"tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tf-nightly"}  # fmt: skip


@pytest.fixture(scope="module")
def trained(image, channel, tmp_path_factory):
    """(opt_ml folder, completed `docker run IMAGE train`) for a two-epoch job."""
    opt_ml = write_training_layout(
        tmp_path_factory.mktemp("container_opt_ml"),
        {**TINY, "epochs": 2},
        {"train": channel, "validation": channel},
        host=TRAINING_HOST,
    )
    return opt_ml, run_training(image, opt_ml, timeout=900, capture=True)


@pytest.fixture(scope="module")
def serving(image, trained):
    """(base url, model dir, seconds until /ping answered 200) for a served container."""
    opt_ml, result = trained
    assert result.returncode == 0, result.stdout + result.stderr
    port = free_port()
    started = time.monotonic()
    container = start_serving(image, opt_ml / "model", port)  # default workers: one per CPU
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, timeout=START_LIMIT_S)
        yield url, opt_ml / "model", time.monotonic() - started, container
    finally:
        remove_container(container)


def test_image_has_exactly_one_tensorflow(image):
    packages = json.loads(
        docker(
            "run", "--rm", "--entrypoint", "python3", image, "-m", "pip", "list", "--format", "json"
        )
    )
    names = [p["name"].lower() for p in packages]
    assert [n for n in names if n in TENSORFLOW_DISTRIBUTIONS] == ["tensorflow"]
    assert names.count("keras") == 1


def test_train_writes_the_model_and_metric_lines(trained):
    opt_ml, result = trained
    assert result.returncode == 0, result.stdout + result.stderr
    assert (opt_ml / "model/1/saved_model.pb").is_file()
    assert (opt_ml / "model/vit.keras").is_file()
    metadata = json.loads((opt_ml / "model/metadata.json").read_text())
    assert metadata["image_size"] == 32 and len(metadata["class_names"]) == 10
    epochs = [line for line in result.stdout.splitlines() if " epoch=" in line]
    assert len(epochs) == 2 and " epoch=2 " in epochs[-1] and "val_accuracy=" in epochs[-1]
    assert (opt_ml / "output/success").is_file()


def test_broken_channel_fails_with_the_reason_in_the_failure_file(image, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    np.savez(
        data / "training.npz", image=np.zeros((8, 32, 32, 3), np.uint8), label=np.arange(8)[:5]
    )
    opt_ml = write_training_layout(tmp_path / "opt_ml", TINY, {"train": data}, host=TRAINING_HOST)
    result = run_training(image, opt_ml, timeout=600, capture=True)
    assert result.returncode != 0
    failure = (opt_ml / "output/failure").read_text()
    assert "has 8 images but 5 labels" in failure and "Traceback" not in failure


def test_ping_answers_200_once_the_model_is_loaded(serving):
    url, _, seconds, _ = serving
    print(f"\n/ping answered 200 {seconds:.1f} s after docker run ... serve")
    assert request(f"{url}/ping") == (200, b"")


def test_each_worker_logs_the_devices_tensorflow_sees(serving):
    logs = subprocess.run(["docker", "logs", serving[3]], capture_output=True, text=True)
    device_lines = re.findall(
        r"TensorFlow 2\.21\.0 \(built for CUDA 12\.5\.1, cuDNN 9\) sees no GPU"
        r" \(GPU devices given: none\); running on (\d+) CPU",
        logs.stdout + logs.stderr,
    )
    assert device_lines and all(int(cpus) >= 1 for cpus in device_lines)


def test_curl_invocations_returns_probabilities_equal_to_in_process(serving, images, tmp_path):
    url, model_dir, _, _ = serving
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"instances": images.tolist()}))
    predictions = np.array(curl_invocations(url, request, "application/json")["predictions"])
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, atol=1e-5)

    in_process = in_process_probabilities(model_dir, images)
    np.testing.assert_allclose(predictions, in_process, atol=1e-5)
    assert predictions.argmax(axis=1).tolist() == in_process.argmax(axis=1).tolist()


def test_make_predict_against_the_container_equals_in_process(serving, channel, tmp_path):
    url, model_dir, _, _ = serving
    out = tmp_path / "evaluation"
    test_data = channel / "testing.npz"
    result = run_make(
        "predict",
        f"URL={url}",
        f"TEST_DATA={test_data}",
        f"EVAL_DIR={out}",
        guard_log=tmp_path / "guard.log",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    served = json.loads((out / "evaluation.json").read_text())

    images, labels, names = load_test_set(test_data)
    local = evaluate(model_dir_predictor(model_dir), images, labels, names)
    assert served["accuracy"] == local.accuracy
    assert served["confusion"] == local.confusion.tolist()
    assert f"accuracy {local.accuracy:.4f} on {len(labels)} images" in result.stdout
    assert (out / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "per_class.csv").read_text().splitlines()[0] == "class,support,recall,precision"


def test_in_the_container_nginx_fronts_the_workers(serving, images):
    """The design where it runs: a 7 MB body gets a readable 413, and 40 stalled clients
    leave /ping and a real request answering before nginx would have dropped them."""
    url, _, _, _ = serving
    port = int(url.rsplit(":", 1)[1])
    status, answer = hostile_clients.post(port, hostile_clients.OVERSIZED)
    assert status == 413 and "over the 6 MB limit" in json.loads(answer)["error"]
    stalled = hostile_clients.stall(port, 40)
    try:
        started = time.monotonic()
        assert request(f"{url}/ping", timeout=hostile_clients.ANSWER_WITHIN_S)[0] == 200
        assert post_json(f"{url}/invocations", [images[0].tolist()])[0] == 200
        assert time.monotonic() - started < hostile_clients.ANSWER_WITHIN_S
    finally:
        for sock in stalled:
            sock.close()


def test_docker_stop_ends_the_server_cleanly(serving):
    _, _, _, container = serving
    started = time.monotonic()
    exit_code = stop_container(container, timeout=STOP_LIMIT_S)
    print(f"\nthe server exited {time.monotonic() - started:.1f} s after docker stop")
    assert exit_code == 0  # gunicorn's graceful shutdown, not SIGKILL's 137


def test_docker_stop_checkpoints_and_a_rerun_resumes(image, tmp_path):
    """SIGTERM from `docker stop` in epoch 2, /opt/ml/checkpoints mounted, then a rerun."""
    channel = write_channel(tmp_path / "channel", train_count=2048, test_count=64)
    opt_ml = write_training_layout(
        tmp_path / "opt_ml",
        {**TINY, "epochs": 3},
        {"train": channel, "validation": channel},
        host=TRAINING_HOST,
    )
    checkpoints = tmp_path / "checkpoints"
    container = start_training(image, opt_ml, checkpoints)
    try:
        deadline = time.monotonic() + 600
        while " epoch=1 loss=" not in docker("logs", container):
            assert time.monotonic() < deadline, docker("logs", container)[-3000:]
            time.sleep(0.2)
        exit_code = stop_container(container, timeout=STOP_LIMIT_S)
        logs = docker("logs", container)
    finally:
        remove_container(container)
    assert exit_code == 0, logs[-3000:]  # stopped, not failed
    assert not (opt_ml / "output/failure").exists() and not (opt_ml / "output/success").exists()
    assert list(checkpoints.glob("ckpt-0002-*.npz")), logs[-3000:]

    result = run_training(image, opt_ml, timeout=900, capture=True, checkpoints=checkpoints)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "resuming from ckpt-0002-" in result.stdout
    assert epoch_numbers(result.stdout) == [2, 3]
    assert (opt_ml / "output/success").is_file() and (opt_ml / "model/vit.keras").is_file()


def test_fine_tuning_in_the_image_from_a_pretrained_channel(image, channel, tmp_path):
    """Published-layout weights (timm safetensors, 8x8 images) in the `pretrained` channel,
    32x32 data resized to the model's 16x16 in the pipeline, positions interpolated."""
    from test_pretrained import ARCH, fine_tune_flags

    from scripts.local.synthetic_weights import timm_state, write

    weights = tmp_path / "weights"
    write(weights / "model.safetensors", timm_state(np.random.default_rng(0), **ARCH))
    flags = fine_tune_flags(**{"num-classes": 10, "batch-size": 32})
    hyperparameters = {k.removeprefix("--"): v for k, v in zip(flags[::2], flags[1::2], strict=True)}  # fmt: skip
    channels = {"train": channel, "pretrained": weights}
    opt_ml = write_training_layout(tmp_path / "opt_ml", hyperparameters, channels, host=TRAINING_HOST)  # fmt: skip
    result = run_training(image, opt_ml, timeout=600, capture=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "interpolating position embeddings from 8x8 images" in result.stdout
    assert "loaded timm ViT: 2 blocks of width 8" in result.stdout
    assert json.loads((opt_ml / "model/metadata.json").read_text())["image_size"] == 16


def test_an_unreachable_hub_handle_fails_with_one_sentence(image, channel, tmp_path):
    hyperparameters = {**TINY, "pretrained": "hf-hub:google/vit-base-patch16-224-in21k"}
    opt_ml = write_training_layout(tmp_path / "opt_ml", hyperparameters, {"train": channel}, host=TRAINING_HOST)  # fmt: skip
    nowhere = ["-e", "HF_ENDPOINT=http://127.0.0.1:9"]  # offline, whatever this machine can reach
    result = run_training(image, opt_ml, timeout=600, capture=True, extra_flags=nowhere)
    assert result.returncode != 0
    failure = (opt_ml / "output/failure").read_text()
    assert "could not download hf-hub:google/vit-base-patch16-224-in21k" in failure
    assert "needs the weights in the pretrained channel instead" in failure
    assert "Traceback" not in failure
