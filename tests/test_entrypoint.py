"""The image's ENTRYPOINT (docker/entrypoint.sh) on its own: which job each start runs.

`train` and `serve` are stand-ins on PATH that print their arguments; SAGEMAKER_BASE_DIR
points the script at a folder laid out as /opt/ml. The image itself runs the same
script in test_container (SDK v3's start, with no command) and test_base_image.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ENTRYPOINT = Path(__file__).parents[1] / "docker" / "entrypoint.sh"


@pytest.fixture
def start(tmp_path):
    """start(*args) -> CompletedProcess of the entrypoint, with /opt/ml at tmp_path/opt_ml."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for job in ("train", "serve"):
        (bin_dir / job).write_text(f'#!/bin/sh\necho "{job} $*"\n')
        (bin_dir / job).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "SAGEMAKER_BASE_DIR": str(tmp_path / "opt_ml")}  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True)  # fmt: skip

    return run


def test_train_and_serve_run_with_their_arguments(start):
    assert start("train", "--epochs", "2").stdout == "train --epochs 2\n"
    assert start("serve").stdout == "serve \n"


@pytest.mark.parametrize("config", ["resourceconfig.json", "inputdataconfig.json"])
def test_no_command_with_a_training_config_trains(start, tmp_path, config):
    """SDK v3's ModelTrainer (local mode and real jobs) starts a custom image with no command."""
    folder = tmp_path / "opt_ml" / "input" / "config"
    folder.mkdir(parents=True)
    (folder / config).write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    (tmp_path / "opt_ml" / "model").mkdir()  # SageMaker mounts an empty model folder too
    result = start()
    assert result.returncode == 0 and result.stdout == "train \n"
    assert result.stderr == f"no command given: running 'train', as {tmp_path / 'opt_ml'}'s files say\n"  # fmt: skip


def test_no_command_with_a_model_and_no_training_config_serves(start, tmp_path):
    model = tmp_path / "opt_ml" / "model"
    (model / "1").mkdir(parents=True)
    result = start()
    assert result.returncode == 0 and result.stdout == "serve \n"


@pytest.mark.parametrize("layout", ["nothing", "an empty model folder"])
def test_no_command_and_no_job_files_answer_one_usage_line(start, tmp_path, layout):
    if layout != "nothing":
        (tmp_path / "opt_ml" / "model").mkdir(parents=True)
    result = start()
    assert result.returncode == 64 and result.stdout == ""
    assert result.stderr.startswith("usage: docker run IMAGE train|serve (got: no command, and")
    assert len(result.stderr.splitlines()) == 1


def test_any_other_command_answers_one_usage_line(start):
    result = start("bash", "-c", "id")
    assert result.returncode == 64
    assert result.stderr.startswith("usage: docker run IMAGE train|serve (got: bash -c id)")
