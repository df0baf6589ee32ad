"""Checkpoints: what a resume needs, written atomically, the newest `keep` kept.

A checkpoint is one file, `ckpt-EEEE-SSSSSS.npz`: the epoch in progress (from 1)
and the training steps already done in it (0 at an epoch boundary), zero-padded to
at least those widths and wider when they need it (epoch 12345 is `ckpt-12345-...`);
the newest is the one with the highest (epoch, step), whatever the widths. It holds

  * every model variable (weights, and the random-seed states of dropout and
    stochastic depth) and optimizer variable, the iteration count included
    (which is where the learning-rate schedule stands);
  * the progress: epoch, step, the running sums of the epoch in progress, the
    metrics of the finished epochs (so reports cover the whole run), and the seconds
    of a time budget spent so far.

It is written under a temporary name in the same folder, flushed and fsync'd,
then renamed over: a kill during the write leaves a `.tmp` file that is ignored
(and removed next time), never a newest checkpoint that cannot be read.
"""

from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

log = logging.getLogger(__name__)

NAME = re.compile(r"^ckpt-(\d+)-(\d+)\.npz$")


class CheckpointError(ValueError):
    """A checkpoint cannot be read, or does not fit this model."""


@dataclass
class Sums:
    """An epoch's running totals (or a validation pass's), that its metrics divide from."""

    loss: float = 0.0  # the per-example losses, summed
    correct: float = 0.0  # examples whose top class is the target's
    count: float = 0.0  # examples seen

    def __add__(self, other: Sums) -> Sums:
        return Sums(self.loss + other.loss, self.correct + other.correct, self.count + other.count)

    def metrics(self) -> dict[str, float]:
        return {"loss": self.loss / self.count, "accuracy": self.correct / self.count}


@dataclass
class Progress:
    epoch: int = 1  # the epoch in progress, numbered from 1
    step: int = 0  # training steps already done in it
    sums: Sums = field(default_factory=Sums)  # of the steps done in it
    history: list[dict] = field(default_factory=list)  # {"epoch": n, **metrics} per finished epoch
    elapsed: float = 0.0  # seconds of a time budget spent (`sagevit.training.budget`); 0 without

    def __post_init__(self) -> None:
        if isinstance(self.sums, dict):  # as a checkpoint's JSON holds it
            self.sums = Sums(**self.sums)


def _variables(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> list[Any]:
    """Model state (weights and the dropout / stochastic-depth seed states), then optimizer's."""
    return [*model.variables, *optimizer.variables]


class CheckpointDir:
    """A folder of checkpoints for one run (SageMaker syncs /opt/ml/checkpoints to S3)."""

    def __init__(self, directory: str | Path, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep

    def checkpoints(self) -> list[Path]:
        """Completed checkpoints, newest first."""
        if not self.directory.is_dir():
            return []
        found = {p: NAME.match(p.name) for p in self.directory.iterdir()}
        newest_first = sorted(
            (p for p, match in found.items() if match),
            key=lambda p: tuple(int(n) for n in found[p].groups()),  # (epoch, step)
            reverse=True,
        )
        return newest_first

    def save(
        self, model: keras.Model, optimizer: keras.optimizers.Optimizer, progress: Progress
    ) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"ckpt-{progress.epoch:04d}-{progress.step:06d}.npz"
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        arrays = {
            f"v{i}": np.asarray(v.numpy()) for i, v in enumerate(_variables(model, optimizer))
        }
        with open(temporary, "wb") as file:
            np.savez(file, progress=np.array(json.dumps(asdict(progress))), **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)  # atomic on POSIX: the old name or the new file, whole
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)  # make the rename itself durable
        finally:
            os.close(directory)
        for old in self.checkpoints()[self.keep :]:
            old.unlink(missing_ok=True)
        log.info("checkpoint %s written (epoch %d, step %d)", path, progress.epoch, progress.step)
        return path

    def restore(self, model: keras.Model, optimizer: keras.optimizers.Optimizer) -> Progress | None:
        """Load the newest readable checkpoint into the model and optimizer; None if none.

        An unreadable one is skipped with a warning naming it; one that does not fit
        the model (another architecture) raises CheckpointError.
        """
        for stale in self.directory.glob(".ckpt-*.tmp") if self.directory.is_dir() else []:
            stale.unlink(missing_ok=True)  # a write that was killed
        for path in self.checkpoints():
            try:
                progress, arrays = self._read(path)
            except CheckpointError as error:
                log.warning("checkpoint %s is unreadable (%s); trying the one before", path, error)
                continue
            self._assign(path, arrays, model, optimizer)
            log.info(
                "resuming from %s: epoch %d, step %d", path.name, progress.epoch, progress.step
            )
            return progress
        return None

    @staticmethod
    def _read(path: Path) -> tuple[Progress, list[np.ndarray]]:
        try:
            with np.load(path, allow_pickle=False) as npz:
                progress = Progress(**json.loads(str(npz["progress"])))
                count = len(npz.files) - 1
                arrays = [npz[f"v{i}"] for i in range(count)]
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
            raise CheckpointError(f"{type(error).__name__}: {error}") from None
        return progress, arrays

    @staticmethod
    def _assign(path: Path, arrays: list[np.ndarray], model: keras.Model, optimizer: Any) -> None:
        optimizer.build(model.trainable_variables)  # its slots exist before the first step
        variables = _variables(model, optimizer)
        shapes = [tuple(v.shape) for v in variables]
        if [a.shape for a in arrays] != shapes:
            raise CheckpointError(
                f"{path} holds {len(arrays)} arrays that do not fit this model and optimizer"
                f" ({len(shapes)} variables): was it written with other hyperparameters?"
                " Pass another --checkpoint-dir or remove it"
            )
        for variable, value in zip(variables, arrays, strict=True):
            variable.assign(value)
