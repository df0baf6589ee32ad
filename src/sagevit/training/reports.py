"""What a training run leaves besides the model: TensorBoard scalars, a plot, metrics.json.

<tensorboard_dir>/           one event file of per-epoch scalars (SageMaker's
                             TensorBoardOutputConfig syncs /opt/ml/output/tensorboard)
<output_data_dir>/history.png     loss and accuracy per epoch, train and validation
<output_data_dir>/metrics.json    final and best validation figures, and every epoch
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from sagevit.training.loop import EpochResult

log = logging.getLogger(__name__)


class TensorBoardLogger:
    """An `on_epoch_end` callback that writes each epoch's metrics as scalars."""

    def __init__(self, log_dir: str | Path) -> None:
        self.writer = tf.summary.create_file_writer(str(log_dir))

    def __call__(self, result: EpochResult) -> None:
        with self.writer.as_default(step=result.epoch):
            for name, value in result.metrics.items():
                tf.summary.scalar(name, value)
        self.writer.flush()


def metrics_summary(history: Sequence[EpochResult]) -> dict:
    """Final and best figures; validation ones when the run had a validation set."""
    final = history[-1].metrics
    summary: dict = {"epochs": len(history), "final": dict(final), "history": []}
    summary["history"] = [{"epoch": r.epoch, **r.metrics} for r in history]
    key = "val_accuracy" if "val_accuracy" in final else "accuracy"
    best = max(history, key=lambda r: r.metrics[key])
    summary["best"] = {"epoch": best.epoch, **best.metrics}
    summary["total_seconds"] = sum(r.metrics.get("seconds", 0.0) for r in history)
    return summary


def plot_history(history: Sequence[EpochResult], path: str | Path) -> None:
    """Loss and accuracy per epoch, training and (if present) validation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [r.epoch for r in history]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, name in zip(axes, ("loss", "accuracy"), strict=True):
        axis.plot(epochs, [r.metrics[name] for r in history], marker="o", label="train")
        if f"val_{name}" in history[-1].metrics:
            values = [r.metrics[f"val_{name}"] for r in history]
            axis.plot(epochs, values, marker="o", label="validation")
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_reports(history: Sequence[EpochResult], output_data_dir: str | Path) -> None:
    """history.png and metrics.json in `output_data_dir`."""
    folder = Path(output_data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics_summary(history), indent=2) + "\n")
    plot_history(history, folder / "history.png")
    log.info("wrote metrics.json and history.png to %s", folder)
