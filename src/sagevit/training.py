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

from sagevit.epoch_log import format_line

log = logging.getLogger(__name__)


@dataclass
class EpochResult:
    epoch: int  # numbered from 1
    metrics: dict[str, float] = field(default_factory=dict)

    def log_line(self) -> str:
        """The fixed per-epoch line that SageMaker metric_definitions parse."""
        return format_line(self.epoch, self.metrics)


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
        self.steps_per_execution = steps_per_execution
        self.optimizer = optimizer
        self.global_batch_size = global_batch_size
        self.strategy = strategy or tf.distribute.get_strategy()
        self._train = self._distributed(self._train_step, jit_compile)
        self._evaluate = self._distributed(self._eval_step, jit_compile)

    def _sums(self, logits: tf.Tensor, targets: tf.Tensor, smoothing: float = 0.0) -> tuple:
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
            per_example, correct, count = self._sums(logits, labels, self.label_smoothing)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)
            scaled = self.optimizer.scale_loss(loss)  # loss scaling for float16; else unchanged
        variables = self.model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return tf.reduce_sum(per_example), correct, count

    def _eval_step(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, ...]:
        per_example, correct, count = self._sums(self.model(images, training=False), labels)
        return tf.reduce_sum(per_example), correct, count

    def _distributed(self, step: Callable, jit_compile: bool) -> Callable:
        """Wrap a per-replica step: run it on every replica for up to `steps` batches of an
        iterator in one call into TensorFlow, and return the summed outputs and the batches run.
        """
        replica_step = tf.function(step, jit_compile=jit_compile)
        reduce = self.strategy.reduce

        @tf.function
        def run(iterator: tf.distribute.DistributedIterator, steps: tf.Tensor) -> tuple:
            totals = (tf.constant(0.0), tf.constant(0.0), tf.constant(0.0))
            done = tf.constant(0)
            for _ in tf.range(steps):
                batch = iterator.get_next_as_optional()
                if not batch.has_value():
                    break
                sums = self.strategy.run(replica_step, args=batch.get_value())
                totals = tuple(
                    total + reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                    for total, value in zip(totals, sums, strict=True)
                )
                done += 1
            return (*totals, done)

        return run

    def _run_epoch(
        self,
        dataset: tf.distribute.DistributedDataset,
        step: Callable,
        progress: keras.utils.Progbar | None,
    ) -> dict[str, float]:
        iterator = iter(dataset)
        chunk = tf.constant(self.steps_per_execution)
        loss_sum, correct, count, steps = 0.0, 0.0, 0.0, 0
        while True:
            batch_loss, batch_correct, batch_count, done = step(iterator, chunk)
            loss_sum += batch_loss
            correct += batch_correct
            count += batch_count
            steps += int(done)
            if progress is not None and int(done):
                values = [("loss", float(loss_sum / count)), ("accuracy", float(correct / count))]
                progress.update(steps, values, finalize=False)
            if int(done) < self.steps_per_execution:  # the iterator ran dry
                break
        if progress is not None:
            progress.update(steps, finalize=True)  # end the bar's line before the epoch line
        count = float(count)
        if count == 0:
            raise ValueError("an epoch saw no batches: the dataset is smaller than one batch")
        return {"loss": float(loss_sum) / count, "accuracy": float(correct) / count}

    def fit(
        self,
        train_dataset: tf.data.Dataset,
        epochs: int,
        validation_dataset: tf.data.Dataset | None = None,
        steps_per_epoch: int | None = None,
        progress_bar: bool = False,
        on_epoch_end: Callable[[EpochResult], None] | None = None,
    ) -> list[EpochResult]:
        """Train for `epochs` epochs, logging one `epoch=N ...` line after each."""
        train_dist = self.strategy.experimental_distribute_dataset(train_dataset)
        val_dist = None
        if validation_dataset is not None:
            val_dist = self.strategy.experimental_distribute_dataset(validation_dataset)
        history = []
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            progress = None
            if progress_bar:
                progress = keras.utils.Progbar(
                    steps_per_epoch, stateful_metrics=["loss", "accuracy"]
                )
            metrics = self._run_epoch(train_dist, self._train, progress)
            if val_dist is not None:
                val = self._run_epoch(val_dist, self._evaluate, None)
                metrics.update({f"val_{name}": value for name, value in val.items()})
            metrics["seconds"] = time.perf_counter() - started
            result = EpochResult(epoch, metrics)
            log.info(result.log_line())
            history.append(result)
            if on_epoch_end is not None:
                on_epoch_end(result)
        return history
