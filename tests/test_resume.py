"""Interrupt and resume real trainer processes: SIGTERM mid-epoch, SIGKILL mid-checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    HANG_LIMIT_S,
    TINY,
    epoch_numbers,
    tiny_flags,
    toolkit_command,
    wait_for,
    write_channel,
)

from scripts.local.sagemaker_layout import write_training_layout

pytestmark = pytest.mark.slow

EPOCHS = 3
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
# Dies with SIGKILL halfway through writing the second checkpoint (the end of epoch 2).
KILL_IN_SECOND_WRITE = """
import os, signal
import numpy as np

_savez, _calls = np.savez, []

def savez(file, *args, **arrays):
    _calls.append(1)
    if len(_calls) == 2:
        file.write(b"PK\\x03\\x04 half a checkpoint")
        file.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return _savez(file, *args, **arrays)

np.savez = savez
"""


@pytest.fixture(scope="module")
def big_channel(tmp_path_factory) -> Path:
    """64 steps an epoch at batch 32: long enough to be interrupted part-way."""
    return write_channel(tmp_path_factory.mktemp("big_channel"), train_count=2048, test_count=64)


def cli(channel: Path, model_dir: Path, checkpoints: Path) -> list[str]:
    args = tiny_flags(epochs=EPOCHS)
    return [sys.executable, "-m", "sagevit.entry", "--train", str(channel), "--validation",
            str(channel), "--model-dir", str(model_dir), "--checkpoint-dir", str(checkpoints), *args]  # fmt: skip


def run_until(
    command: list[str], env: dict, log: Path, line: str, timeout: float = HANG_LIMIT_S
) -> int:
    """Start `command`, send SIGTERM as soon as `line` appears in its output; return its exit code."""
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_for(log, line, process, timeout)
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=HANG_LIMIT_S)


def test_sigterm_in_epoch_2_then_resume(big_channel, tmp_path):
    checkpoints, model_dir = tmp_path / "checkpoints", tmp_path / "model"
    command = cli(big_channel, model_dir, checkpoints)
    code = run_until(command, ENV, tmp_path / "first.log", " epoch=1 loss=")
    first = (tmp_path / "first.log").read_text()
    assert code == 0, first[-3000:]  # the documented status for a honoured SIGTERM
    assert "SIGTERM: stopping after this step" in first
    assert epoch_numbers(first) == [1]
    stopped = max(p.name for p in checkpoints.glob("ckpt-*.npz"))
    assert stopped.startswith("ckpt-0002-") and stopped != "ckpt-0002-000000.npz"  # mid-epoch
    assert not (model_dir / "vit.keras").exists()

    second = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=HANG_LIMIT_S)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-3000:]
    assert f"resuming from {stopped}: epoch 2, step {int(stopped[10:16])}" in output
    assert epoch_numbers(output) == [2, 3]  # none repeated, none skipped
    assert (model_dir / "vit.keras").is_file() and (model_dir / "1/saved_model.pb").is_file()


def test_sigkill_while_writing_a_checkpoint_then_resume(big_channel, tmp_path):
    checkpoints, model_dir = tmp_path / "checkpoints", tmp_path / "model"
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_IN_SECOND_WRITE)
    command = cli(big_channel, model_dir, checkpoints)
    killed = subprocess.run(command, env={**ENV, "PYTHONPATH": str(hook)}, capture_output=True, text=True, timeout=HANG_LIMIT_S)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:] + killed.stderr[-3000:]
    assert epoch_numbers(killed.stdout + killed.stderr) == [1, 2]
    assert [p.name for p in checkpoints.glob("ckpt-*.npz")] == ["ckpt-0002-000000.npz"]
    assert list(checkpoints.glob(".ckpt-0003-*.tmp"))  # the half-written one, never renamed

    resumed = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=HANG_LIMIT_S)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-3000:]
    assert "resuming from ckpt-0002-000000.npz: epoch 2, step 0" in output
    assert epoch_numbers(output) == [2, 3]  # epoch 2 is lost and redone, once
    assert not list(checkpoints.glob("*.tmp"))


def test_toolkit_sigterm_is_stopped_not_failed_and_resumes(big_channel, tmp_path):
    base = write_training_layout(
        tmp_path / "opt_ml",
        {**TINY, "epochs": EPOCHS},
        {"train": big_channel, "validation": big_channel},
    )
    command, env = toolkit_command(base)
    code = run_until(command, env, tmp_path / "first.log", " epoch=1 loss=")
    first = (tmp_path / "first.log").read_text()
    assert code == 0, first[-3000:]
    assert not (base / "output/failure").exists() and not (base / "output/success").exists()
    assert list((base / "checkpoints").glob("ckpt-0002-*.npz"))

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=HANG_LIMIT_S)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-3000:]
    assert "resuming from ckpt-0002-" in output and epoch_numbers(output) == [2, 3]
    assert (base / "output/success").is_file() and (base / "model/vit.keras").is_file()
