"""A compact custom training loop that runs under any `tf.distribute` strategy.

Keras 3's `Model.fit` fails under `MultiWorkerMirroredStrategy`
(keras-team/keras#20585), so the step is written by hand: `strategy.run` calls
a per-replica step whose loss is scaled by the global batch size, and the Keras
optimizer all-reduces the gradients across replicas.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import tensorflow as tf

from sagevit.platform.watchdog import no_beat
from sagevit.training.budget import TimeBudget
from sagevit.training.checkpoints import Progress, Sums
from sagevit.training.distribute import all_agree
from sagevit.training.ema import averaged_weights
from sagevit.training.epoch_log import format_line

log = logging.getLogger(__name__)


@dataclass
class EpochResult:
    epoch: int  # numbered from 1
    metrics: dict[str, float] = field(default_factory=dict)

    def log_line(self) -> str:
        """The fixed per-epoch line that SageMaker metric_definitions parse."""
        return format_line(self.epoch, self.metrics)

    def record(self) -> dict:
        """As a checkpoint's progress keeps it: {"epoch": n, **metrics}."""
        return {"epoch": self.epoch, **self.metrics}

    @classmethod
    def from_record(cls, record: dict) -> EpochResult:
        return cls(record["epoch"], {k: v for k, v in record.items() if k != "epoch"})


# Why an epoch ended before its last step.
SIGNALLED = "signalled"  # should_stop() turned true on some worker (SIGTERM)
BUDGET_SPENT = "budget spent"  # the time budget ran out


class TrainingStopped(Exception):
    """Training stopped early on request (SIGTERM) after writing a checkpoint."""

    def __init__(self, epoch: int, step: int) -> None:
        super().__init__(f"stopped in epoch {epoch} after {step} step(s)")
        self.epoch = epoch
        self.step = step


class Trainer:
    """Owns the model, optimizer and compiled steps for one training run."""

    def __init__(
        self,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        global_batch_size: int,
        strategy: tf.distribute.Strategy | None = None,
        jit_compile: bool = False,
        label_smoothing: float = 0.0,
        steps_per_execution: int = 1,
    ) -> None:
        self.model = model
        self.label_smoothing = label_smoothing
        if strategy is not None and strategy.num_replicas_in_sync > 1 and steps_per_execution > 1:
            log.warning("steps_per_execution %d is 1 with several replicas", steps_per_execution)
            steps_per_execution = 1
        self.steps_per_execution = steps_per_execution
        self.optimizer = optimizer
        self.global_batch_size = global_batch_size
        self.strategy = strategy or tf.distribute.get_strategy()
        self._train = self._distributed(self._train_step, jit_compile)
        # Evaluation runs on this process's copy of the model, outside the strategy: no
        # collectives, so every worker can evaluate the whole set on its own.
        self._eval_batch = tf.function(self._eval_step, jit_compile=jit_compile)

    def _score(self, logits: tf.Tensor, targets: tf.Tensor, smoothing: float = 0.0) -> tuple:
        """Per-example cross-entropy against (smoothed) soft targets, correct count, count."""
        logits = tf.cast(logits, tf.float32)
        classes = tf.cast(tf.shape(targets)[-1], tf.float32)
        smoothed = targets * (1.0 - smoothing) + smoothing / classes
        per_example = tf.nn.softmax_cross_entropy_with_logits(smoothed, logits)
        correct = tf.equal(tf.argmax(logits, axis=-1), tf.argmax(targets, axis=-1))
        count = tf.cast(tf.shape(targets)[0], tf.float32)
        return per_example, tf.reduce_sum(tf.cast(correct, tf.float32)), count

    def _train_step(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, ...]:
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)  # (B, C)
            per_example, correct, count = self._score(logits, labels, self.label_smoothing)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)
            scaled = self.optimizer.scale_loss(loss)  # loss scaling for float16; else unchanged
        variables = self.model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return tf.reduce_sum(per_example), correct, count

    def _eval_step(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, ...]:
        per_example, correct, count = self._score(self.model(images, training=False), labels)
        return tf.reduce_sum(per_example), correct, count

    def _distributed(self, step: Callable, jit_compile: bool) -> Callable:
        """Wrap a per-replica step: run it on every replica for up to `steps` batches of an
        iterator in one call into TensorFlow, and return the summed outputs and the batches run.
        """
        replica_step = tf.function(step, jit_compile=jit_compile)
        if self.strategy.num_replicas_in_sync > 1:
            return self._one_step_per_call(replica_step)

        @tf.function
        def run(iterator: tf.distribute.DistributedIterator, steps: tf.Tensor) -> tuple:
            totals = (tf.constant(0.0), tf.constant(0.0), tf.constant(0.0))
            done = tf.constant(0)
            for _ in tf.range(steps):
                batch = iterator.get_next_as_optional()
                if not batch.has_value():
                    break
                sums = self._summed(replica_step, batch.get_value())
                totals = tuple(total + value for total, value in zip(totals, sums, strict=True))
                done += 1
            return (*totals, done)

        return run

    def _summed(self, replica_step: Callable, batch: tuple) -> tuple[tf.Tensor, ...]:
        """Run one distributed batch on every replica; each output summed over the replicas."""
        outputs = self.strategy.run(replica_step, args=batch)
        return tuple(
            self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in outputs
        )

    def _one_step_per_call(self, replica_step: Callable) -> Callable:
        """The same contract, one step a call: with several replicas the optimizer joins
        them with a merge_call, which cannot run inside the loop's conditionals."""

        @tf.function
        def one_step(batch: tuple) -> tuple:
            return self._summed(replica_step, batch)

        def run(iterator: tf.distribute.DistributedIterator, steps: tf.Tensor) -> tuple:
            batch = next(iterator, None)
            return (0.0, 0.0, 0.0, 0) if batch is None else (*one_step(batch), 1)

        return run

    def _run_epoch(
        self,
        stream: tf.distribute.DistributedIterator,
        steps: int,
        state: Progress,
        check: Callable[[], str | None] | None = None,
        on_call: Callable[[], None] = no_beat,
        progress_bar: bool = False,
    ) -> tuple[Sums, int, str | None]:
        """Train for the rest of an epoch's `steps` steps of the stream (`state` carries
        the sums and steps of an epoch resumed part-way).

        Returns (the epoch's sums, steps done, why it ended early or None). `on_call()`
        runs and `check()` (SIGNALLED, BUDGET_SPENT or None) is asked after every call
        into TensorFlow.
        """
        bar = keras.utils.Progbar(steps, stateful_metrics=["loss", "accuracy"]) if progress_bar else None  # fmt: skip
        sums, done_steps = state.sums, state.step
        while done_steps < steps:
            chunk = min(self.steps_per_execution, steps - done_steps)
            loss, correct, count, done = self._train(stream, tf.constant(chunk))
            done = int(done)
            on_call()
            sums += Sums(float(loss), float(correct), float(count))
            done_steps += done
            if bar is not None and done:
                bar.update(done_steps, list(sums.metrics().items()), finalize=False)
            if done < chunk:  # the stream ran dry
                break
            reason = check() if check is not None else None
            if reason is not None:
                return sums, done_steps, reason
        if bar is not None:
            bar.update(done_steps, finalize=True)  # end the bar's line before the epoch line
        if sums.count == 0:
            raise ValueError("an epoch saw no batches: the dataset is smaller than one batch")
        return sums, done_steps, None

    def _evaluate(self, dataset: tf.data.Dataset, on_call: Callable[[], None] = no_beat) -> Sums:
        """The sums over a plain dataset (a fresh iterator a pass)."""
        totals = [tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)]
        for images, labels in dataset:
            totals = [a + b for a, b in zip(totals, self._eval_batch(images, labels), strict=True)]
            on_call()
        return Sums(*(float(total) for total in totals))

    def _checks(
        self, should_stop: Callable[[], bool] | None, budget: TimeBudget | None
    ) -> Callable[[], str | None] | None:
        """What `_run_epoch` asks after every call: SIGNALLED once `should_stop()` is true
        on any worker, BUDGET_SPENT once the budget is; every worker gets the same answer
        at the same step, and the budget's fraction their mean clock."""
        if should_stop is None and budget is None:
            return None
        agree = all_agree(self.strategy)

        def check() -> str | None:
            asked = should_stop() if should_stop is not None else False
            asked, spent = agree(asked, budget.elapsed() if budget is not None else 0.0)
            if budget is not None:
                budget.spend(spent)
            if asked:
                return SIGNALLED
            return BUDGET_SPENT if budget is not None and budget.exhausted else None

        return check

    def _validate(
        self, dataset: tf.data.Dataset, on_call: Callable[[], None], budget: TimeBudget | None
    ) -> dict[str, float]:
        """val_loss and val_accuracy; the pass's time is what a budget keeps back for the last."""
        started = budget.elapsed() if budget is not None else 0.0
        with averaged_weights(self.model, self.optimizer):
            metrics = self._evaluate(dataset, on_call).metrics()
        if budget is not None:
            budget.reserve = budget.elapsed() - started
        return {f"val_{name}": value for name, value in metrics.items()}

    def fit(
        self,
        batches: tf.distribute.DistributedDataset,
        epochs: int,
        steps_per_epoch: int,
        validation_dataset: tf.data.Dataset | None = None,
        progress_bar: bool = False,
        on_epoch_end: Callable[[EpochResult], None] | None = None,
        start: Progress | None = None,
        checkpoint: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_call: Callable[[], None] = no_beat,
        budget: TimeBudget | None = None,
    ) -> list[EpochResult]:
        """Train until `epochs`, logging one `epoch=N ...` line after each.

        `batches` holds every epoch's batches from `start` on as one stream
        (`sagevit.data.pipeline.training_batches`), `steps_per_epoch` steps an epoch.
        `checkpoint(progress)` runs after every epoch, and when `should_stop()` turns
        true on any worker; fit then raises TrainingStopped. `on_call()` runs after every
        call into TensorFlow. With `budget`, training ends when it is spent, mid-epoch if
        need be (that epoch is validated and logged), however many epochs are left.
        """
        state = start or Progress()
        history = [EpochResult.from_record(record) for record in state.history]
        stream, check = iter(batches), self._checks(should_stop, budget)
        if budget is not None:
            budget.start()  # compiling the first step counts
        for epoch in range(state.epoch, epochs + 1):
            started = time.perf_counter()
            sums, done, ended = self._run_epoch(stream, steps_per_epoch, state, check, on_call, progress_bar)  # fmt: skip
            if ended == SIGNALLED:  # a checkpoint where it stands, then stop
                raise _stopped(Progress(epoch, done, sums, state.history, _spent(budget)), checkpoint)  # fmt: skip
            result = EpochResult(epoch, sums.metrics())
            if validation_dataset is not None:
                result.metrics |= self._validate(validation_dataset, on_call, budget)
            result.metrics["seconds"] = time.perf_counter() - started
            log.info(result.log_line())
            history.append(result)
            state = Progress(epoch + 1, history=[*state.history, result.record()], elapsed=_spent(budget))  # fmt: skip
            if checkpoint is not None:
                checkpoint(state)
            if on_epoch_end is not None:
                on_epoch_end(result)
            if budget is not None and (ended or check() == BUDGET_SPENT):
                budget.report(epoch - 1 + done / steps_per_epoch, epoch)
                break
        return history


def _stopped(progress: Progress, checkpoint: Callable[[Progress], None] | None) -> TrainingStopped:
    """Write `progress` as a checkpoint (when checkpointing) and say where training stopped."""
    if checkpoint is not None:
        checkpoint(progress)
    return TrainingStopped(progress.epoch, progress.step)


def _spent(budget: TimeBudget | None) -> float:
    """The budget's seconds spent so far, for a checkpoint's progress; 0 without one."""
    return budget.elapsed() if budget is not None else 0.0
