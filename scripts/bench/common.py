"""What the training benchmarks share: the CIFAR-10 channel, epoch timing, child runs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import keras

from sagevit.contract import TRAIN_FILE
from scripts.prepare_data import prepare

log = logging.getLogger("bench")
DEFAULT_ARCHIVE = Path("../shared/data/cifar10-train-jpeg.tar.gz")


def prepare_cifar10(source: Path, workdir: Path, validation_size: int) -> Path:
    """The CIFAR-10 training JPEGs as a channel: a fixed-seed split, `validation_size`
    held out (a validation split carved from the training images, not the test set)."""
    channel = workdir / "cifar10"
    if not (channel / TRAIN_FILE).is_file():
        prepare(str(source), channel, validation_size=validation_size, seed=0)
    return channel


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of every epoch of a Keras `fit` (validation included, as our trainer's)."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self.started)


def run_child(module: str, name: str, workdir: Path, *args: str) -> Any:
    """Run `python -m module --child name ...` in a fresh process (no run inherits another's
    threads, memory or compiled functions) and return the JSON it wrote."""
    out = workdir / f"{name}.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", module, "--child", name, "--workdir", str(workdir), *args]
    log.info("run %s", name)
    subprocess.run(command, check=True)
    return json.loads(out.read_text())


def write_report(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
