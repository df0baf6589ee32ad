"""The trainer's per-epoch log line and the SageMaker metric definitions that parse it.

One line per epoch, for people and for SageMaker's metric scraper alike:

    epoch=3 loss=1.4590 accuracy=0.5577 val_loss=1.1116 val_accuracy=0.6134 seconds=114.0812

Kept free of TensorFlow so the launch scripts can import it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping

# The metrics SageMaker charts for a job (CloudWatch names equal the trainer's).
METRIC_NAMES = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")
_NUMBER = r"([-+]?(?:[0-9]*\.)?[0-9]+(?:[eE][-+]?[0-9]+)?|nan|inf)"


def format_line(epoch: int, metrics: Mapping[str, float]) -> str:
    """`epoch=N name=value ...`, values with four decimals."""
    fields = " ".join(f"{name}={value:.4f}" for name, value in metrics.items())
    return f"epoch={epoch} {fields}"


def metric_definitions() -> list[dict[str, str]]:
    """SageMaker `metric_definitions`: one regex per metric, anchored so that `loss`
    does not match inside `val_loss` (`\\b` fails between `_` and `l`)."""
    return [{"Name": name, "Regex": rf"\bepoch=\d+ .*\b{name}={_NUMBER}"} for name in METRIC_NAMES]
