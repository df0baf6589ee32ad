"""The trainer run by the real sagemaker-training toolkit, laid out as SageMaker lays out /opt/ml."""

import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, run_toolkit, write_image_tree

from sagevit.training.epoch_log import metric_definitions
from scripts.local.sagemaker_layout import write_training_layout

pytestmark = pytest.mark.slow


def test_toolkit_trains_and_writes_the_model(toolkit_run):
    base, result = toolkit_run
    assert result.returncode == 0, result.stdout + result.stderr
    hyperparameters = json.loads((base / "input/config/hyperparameters.json").read_text())
    assert all(isinstance(v, str) for v in hyperparameters.values())  # as SageMaker writes them
    assert (base / "model/1/saved_model.pb").is_file()
    metadata = json.loads((base / "model/metadata.json").read_text())
    assert metadata["hyperparameters"]["epochs"] == 2
    assert metadata["hyperparameters"]["jit_compile"] == "true"
    assert metadata["class_names"][0] == "circle"
    assert (base / "output/success").is_file()
    assert (base / "output/data/metrics.json").is_file()
    assert (base / "output/data/history.png").is_file()
    assert list((base / "output/tensorboard").glob("events.out.tfevents.*"))
    epoch_lines = [line for line in result.stdout.splitlines() if " epoch=" in line]
    assert len(epoch_lines) == 2 and " epoch=2 " in epoch_lines[-1]


def test_metric_definitions_parse_the_trainers_real_output(toolkit_run):
    """What `make train` gives SageMaker finds every metric in every epoch line, and only there."""
    base, result = toolkit_run
    history = json.loads((base / "output/data/metrics.json").read_text())["history"]
    lines = result.stdout.splitlines()
    for definition in metric_definitions():
        found = [m.group(1) for m in map(re.compile(definition["Regex"]).search, lines) if m]
        expected = [epoch[definition["Name"]] for epoch in history]
        assert [float(value) for value in found] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        ("labels", "label 99 is outside [0, 10) for --num-classes 10"),
        ("hyperparameter", "unknown hyperparameter(s): --learning-rat 0.1"),
        ("no-file", "holds no .npz file (expected training.npz)"),
    ],
)
def test_broken_job_fails_with_a_readable_failure_file(tmp_path, breakage, reason):
    data = tmp_path / "data"
    data.mkdir()
    labels = np.full(16, 99 if breakage == "labels" else 1)
    if breakage != "no-file":
        np.savez(data / "training.npz", image=np.zeros((16, 32, 32, 3), np.uint8), label=labels)
    hyperparameters = {**TINY, "learning-rat": "0.1"} if breakage == "hyperparameter" else TINY
    base = write_training_layout(tmp_path / "opt_ml", hyperparameters, {"train": data})
    result = run_toolkit(base)
    assert result.returncode != 0
    failure = (base / "output/failure").read_text()
    assert reason in failure
    assert "Traceback" not in failure and len(failure) < 1024  # SageMaker's FailureReason limit
    assert not (base / "model/1").exists()


def test_a_stuck_data_read_fails_the_job_instead_of_hanging(tmp_path):
    """The stall watchdog ends a job whose training hangs (here on a file that never
    answers) with SageMaker's failure file, long before max_run would."""
    data = write_image_tree(tmp_path / "data", sizes=[(32, 32)] * 16)
    hyperparameters = {**TINY, "num-classes": 2, "batch-size": 8, "stall-timeout": 10}
    base = write_training_layout(tmp_path / "opt_ml", hyperparameters, {"train": data})
    started = time.monotonic()
    hang = {  # tests/hanging_reads.py: reading dog/0.png never returns
        "SAGEMAKER_TRAINING_MODULE": "hanging_reads:toolkit",
        "SAGEVIT_TEST_HANG": "0.png",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path]),
    }
    result = run_toolkit(base, env=hang)
    print(f"\nthe toolkit exited {time.monotonic() - started:.0f} s after it started")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    failure = (base / "output/failure").read_text()
    assert "no training step finished in" in failure and "(--stall-timeout 10)" in failure
    assert not (base / "output/success").exists() and not (base / "model/1").exists()
