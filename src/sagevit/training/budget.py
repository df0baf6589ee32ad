"""A training time budget (`--time-budget SECONDS`): the schedule spans it; the run ends with it.

SageMaker bills by the second and this machine's seconds drift from day to day, so a budget
in seconds is a steadier contract than a number of epochs. With one, the learning rate
follows the fraction of the budget spent, not the step count: linear warmup over the
recipe's share (`warmup_epochs / epochs` of the budget), then cosine to 0 exactly when
the budget ends, however many steps this machine manages.

The training loop sets that fraction before every call into TensorFlow (`TimeBudget.spend`),
from the mean of every worker's clock, so all replicas apply the same rate. The budget
counts training wall time from the first step: compilation and validation are in it,
loading the data and exporting are not. A run resumed from a checkpoint (a spot
interruption) goes on with what is left (`Progress.elapsed`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import keras
import tensorflow as tf

log = logging.getLogger(__name__)


class TimeBudget:
    """Seconds of training, `spent` of them already (by the run this one resumes)."""

    def __init__(
        self, seconds: float, spent: float = 0.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not seconds > 0:
            raise ValueError(f"a time budget must be above 0 seconds, got {seconds}")
        self.seconds = float(seconds)
        self._clock = clock
        self._spent_before = float(spent)
        self._started: float | None = None
        self.spent = float(spent)  # agreed by every worker, as of the last `spend`
        self.reserve = 0.0  # seconds kept back for the validation after the last step
        # Read by BudgetSchedule inside the training step; never trained, never mirrored.
        self.fraction = tf.Variable(
            min(spent / self.seconds, 1.0), trainable=False, dtype=tf.float32, name="budget"
        )

    def resume(self, spent: float) -> None:
        """Continue a run that had already spent `spent` seconds."""
        self._spent_before = self.spent = float(spent)
        self.fraction.assign(min(spent / self.seconds, 1.0))

    def start(self) -> None:
        """The first step is about to run: the clock starts."""
        self._started = self._clock()

    def elapsed(self) -> float:
        """Seconds spent by this worker's clock: earlier runs' and this one's."""
        if self._started is None:
            return self._spent_before
        return self._spent_before + self._clock() - self._started

    def spend(self, agreed: float) -> None:
        """Set the seconds spent (the workers' agreed figure) and the schedule's fraction."""
        self.spent = agreed
        self.fraction.assign(min(agreed / self.seconds, 1.0))

    @property
    def exhausted(self) -> bool:
        """Whether training must stop now, to leave `reserve` for the last validation."""
        return self.spent + self.reserve >= self.seconds

    def report(self, epochs: float, last_epoch: int) -> None:
        """Log what the budget bought: `epochs` of training, up to `last_epoch`."""
        log.info(
            "the time budget of %.0f s is spent (%.0f s): it bought %.2f epochs (to epoch %d)",
            self.seconds, self.spent, epochs, last_epoch,
        )  # fmt: skip


class BudgetSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`peak` x linear warmup over the first `warmup` of the budget, then cosine to 0.

    The step the optimizer passes is ignored: the rate is a function of `fraction`, the
    share of the budget spent (a scalar variable that `TimeBudget.spend` sets). Not
    serializable: the optimizer lives in checkpoints as variables, never as a config.
    """

    def __init__(self, peak: float, warmup: float, fraction: tf.Variable) -> None:
        if not 0.0 <= warmup < 1.0:
            raise ValueError(f"the warmup share of a time budget must be in [0, 1), got {warmup}")
        self.peak = peak
        self.warmup = warmup
        self.fraction = fraction

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        spent = tf.cast(self.fraction, tf.float32)
        if self.warmup > 0:
            warming = self.peak * spent / self.warmup
        else:
            warming = tf.constant(self.peak, tf.float32)
        decayed = tf.clip_by_value((spent - self.warmup) / (1.0 - self.warmup), 0.0, 1.0)
        cosine = self.peak * 0.5 * (1.0 + tf.cos(math.pi * decayed))
        return tf.where(spent < self.warmup, warming, cosine)
