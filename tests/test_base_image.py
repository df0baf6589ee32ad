"""The real base's traps, on the stand-in that replays its recipe, and the image built on it
(slow; needs Docker).

The stand-in must be as harsh as tensorflow/tensorflow:2.21.0-gpu: a test here fails if it
ever turns kinder. The image must get past every trap: dependencies beside apt's packages,
the CUDA libraries TensorFlow was built for, and a one-sentence failure when it was given a
GPU that TensorFlow cannot use.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from conftest import ROOT, TINY

from scripts.local.containers import (
    TRAINING_HOST,
    docker,
    remove_container,
    run_training,
    start_serving,
)
from scripts.local.sagemaker_layout import write_training_layout
from scripts.local.server_process import free_port, wait_until_ready

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def docker_up(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "scripts/local/docker_up.sh", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def standin() -> str:
    result = docker_up("--standin")
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout.strip().splitlines()[-1]


def in_container(image: str, script: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "host", "--entrypoint", "bash", *flags, image, "-c", script],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_standin_has_the_real_bases_python_traps(standin):
    result = in_container(
        standin,
        "set -e; readlink -f /usr/bin/python3; command -v pip;"
        " test -f /usr/lib/python3/dist-packages/blinker-1.4.egg-info && echo distutils-blinker;"
        " python3 -c 'import sys; print(\"/usr/lib/python3/dist-packages\" in sys.path)';"
        " ls /usr/lib/python3*/EXTERNALLY-MANAGED 2>/dev/null || echo no-marker;"
        " dpkg -s software-properties-common build-essential curl unzip pkg-config | grep -c '^Status: install ok';"
        " python3 -m pip install --no-deps 'blinker>=1.9' 2>&1 || true",
    )
    lines = result.stdout.splitlines()
    assert lines[:6] == [
        "/usr/bin/python3.11", "/usr/local/bin/pip", "distutils-blinker", "True", "no-marker", "5",
    ]  # fmt: skip
    assert "Cannot uninstall blinker 1.4" in result.stdout
    assert "distutils installed project" in result.stdout


def test_standin_has_cuda_12_3_in_the_linker_cache_and_no_cudnn_9(standin):
    result = in_container(
        standin, "ldconfig -p | grep -E 'libcu(blas|solver|dnn)\\.so'; echo $NVIDIA_VISIBLE_DEVICES"
    )
    assert (
        "libcublas.so.12 (libc6,x86-64) => /usr/local/cuda/targets/x86_64-linux/lib/libcublas.so.12"
        in result.stdout
    )
    assert "libcusolver.so.11" in result.stdout and "libcudnn.so.9" not in result.stdout
    assert result.stdout.splitlines()[-1] == "all"  # set whether or not a GPU was given


def test_build_falls_back_to_the_standin_in_one_line_when_the_base_cannot_be_pulled(standin):
    result = docker_up("--base", "127.0.0.1:9/no-such/tensorflow:2.21.0-gpu")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == standin
    said = [line for line in result.stderr.splitlines() if "cannot pull" in line]
    assert len(said) == 1 and "building on the stand-in" in said[0]
    present = docker_up("--base", standin)  # an image this machine has is used as it is
    assert (
        present.stdout.strip().splitlines()[-1] == standin and "cannot pull" not in present.stderr
    )


def test_image_loads_the_cuda_libraries_tensorflow_was_built_for(image):
    report = json.loads(
        docker(
            "run", "--rm", "--entrypoint", "python", image, "-m", "sagevit.platform.gpu", "--json"
        ).splitlines()[-1]
    )
    wheels = report["tensorflow_dir"].rsplit("/", 1)[0] + "/nvidia/"
    assert report["build"] == {"cuda": "12.5.1", "cudnn": "9"}
    for lib in report["libraries"]:
        assert lib["compatible"], lib
        assert lib["path"].startswith(wheels), lib
    assert {lib["name"] for lib in report["libraries"]} >= {
        "cudart", "cublas", "cublasLt", "cufft", "cusparse", "cusolver", "curand", "cudnn", "nccl",
    }  # fmt: skip
    # Nothing, dependencies included, comes from the base's CUDA 12.3.
    assert report["mapped"] and all(path.startswith(wheels) for path in report["mapped"])


def test_image_installs_beside_apt_packages_and_uses_the_bases_tensorflow(image):
    result = in_container(
        image,
        "python -c 'import blinker, flask, tensorflow as tf; print(blinker.__file__, tf.__file__)';"
        " test -f /usr/lib/python3/dist-packages/blinker-1.4.egg-info && echo apt-blinker-intact",
    )
    blinker, tensorflow = result.stdout.splitlines()[0].split()
    assert blinker.startswith("/opt/venv/") and tensorflow.startswith("/usr/local/lib/python3.11/")
    assert result.stdout.splitlines()[1] == "apt-blinker-intact"


@pytest.fixture(scope="module")
def gpu_job(image, channel, tmp_path_factory):
    """A training job given a GPU device file (/dev/null as /dev/nvidia0): TensorFlow sees no GPU."""

    def train(**extra: object) -> tuple[subprocess.CompletedProcess, str]:
        opt_ml = write_training_layout(
            tmp_path_factory.mktemp("gpu_job"), {**TINY, **extra}, {"train": channel},
            host=TRAINING_HOST,
        )  # fmt: skip
        command = ["--device", "/dev/null:/dev/nvidia0"]
        result = run_training(image, opt_ml, timeout=900, capture=True, extra_flags=command)
        failure = opt_ml / "output" / "failure"
        return result, failure.read_text() if failure.is_file() else ""

    return train


def test_train_given_a_gpu_tensorflow_cannot_use_fails_in_one_sentence(gpu_job):
    result, failure = gpu_job()
    assert result.returncode != 0
    assert failure.startswith(
        "This container was given GPUs (/dev/nvidia0) but TensorFlow 2.21.0 sees none:"
    )
    assert "libcuda.so.1 is not in the container" in failure
    assert failure.rstrip().endswith("pass --allow-cpu True to train on the CPU anyway.")
    assert "sees no GPU (GPU devices given: /dev/nvidia0)" in result.stdout + result.stderr


def test_train_given_a_gpu_runs_on_the_cpu_with_allow_cpu(gpu_job):
    result, failure = gpu_job(**{"allow-cpu": True})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert failure == ""
    assert (
        "sees none: the NVIDIA driver's libcuda.so.1 is not in the container (start it with the NVIDIA container runtime: docker run --gpus all); running on the CPU instead"
        in result.stdout + result.stderr
    )


def test_serve_given_a_gpu_runs_one_worker_pinned_to_it_and_warns(image, model_dir):
    port = free_port()
    fake_gpu = ["--device", "/dev/null:/dev/nvidia0"]
    container = start_serving(image, model_dir, port, extra_flags=fake_gpu)  # default workers
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", timeout=120)
        logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
    finally:
        remove_container(container)
    text = logs.stdout + logs.stderr
    assert len(re.findall(r"Booting worker with pid", text)) == 1  # one per GPU given
    assert re.search(r"worker \d+ uses GPU 0", text)
    assert "This container was given GPUs (/dev/nvidia0) but TensorFlow 2.21.0 sees none" in text
    assert "running on the CPU instead" in text


@pytest.mark.parametrize("command", [[], ["bash"], ["python", "-c", "print(1)"]])
def test_image_answers_anything_but_train_or_serve_with_one_usage_line(image, command):
    result = subprocess.run(
        ["docker", "run", "--rm", image, *command], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 64
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("usage: docker run IMAGE train|serve")


def test_image_lets_sagemaker_choose_the_port(image):
    """SageMaker sends SAGEMAKER_BIND_TO_PORT (which every serving test sets) only with this label."""
    labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", image))
    assert labels["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
