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
from sagevit.training.checkpoints import Progress
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
        iterator: tf.distribute.DistributedIterator,
        steps: int | None,
        progress: keras.utils.Progbar | None = None,
        state: Progress | None = None,
        check: Callable[[], str | None] | None = None,
        on_call: Callable[[], None] = no_beat,
    ) -> tuple[list[float], int, str | None]:
        """Train for `steps` steps of the iterator (None: until it runs dry).

        Returns ([loss sum, correct, count], steps done, why it ended early or None).
        `state` carries the sums and steps of an epoch resumed part-way; `on_call()` runs
        and `check()` (SIGNALLED, BUDGET_SPENT or None) is asked after every call into
        TensorFlow.
        """
        sums = list(state.sums) if state else [0.0, 0.0, 0.0]
        done_steps = state.step if state else 0
        while steps is None or done_steps < steps:
            chunk = self.steps_per_execution
            if steps is not None:
                chunk = min(chunk, steps - done_steps)
            *batch_sums, done = self._train(iterator, tf.constant(chunk))
            done = int(done)
            on_call()
            sums = [total + float(value) for total, value in zip(sums, batch_sums, strict=True)]
            done_steps += done
            if progress is not None and done:
                values = [("loss", sums[0] / sums[2]), ("accuracy", sums[1] / sums[2])]
                progress.update(done_steps, values, finalize=False)
            if done < chunk:  # the iterator ran dry
                break
            reason = check() if check is not None else None
            if reason is not None:
                return sums, done_steps, reason
        if progress is not None:
            progress.update(done_steps, finalize=True)  # end the bar's line before the epoch line
        if sums[2] == 0:
            raise ValueError("an epoch saw no batches: the dataset is smaller than one batch")
        return sums, done_steps, None

    def _evaluate(
        self, dataset: tf.data.Dataset, on_call: Callable[[], None] = no_beat
    ) -> list[float]:
        """[loss sum, correct, count] over a plain dataset (a fresh iterator a pass)."""
        sums = [tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)]
        for images, labels in dataset:
            sums = [a + b for a, b in zip(sums, self._eval_batch(images, labels), strict=True)]
            on_call()
        return [float(x) for x in sums]

    @staticmethod
    def _metrics(sums: list[float]) -> dict[str, float]:
        return {"loss": sums[0] / sums[2], "accuracy": sums[1] / sums[2]}

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
            metrics = self._metrics(self._evaluate(dataset, on_call))
        if budget is not None:
            budget.reserve = budget.elapsed() - started
        return {f"val_{name}": value for name, value in metrics.items()}

    def fit(
        self,
        train_data: tf.distribute.DistributedDataset | tf.data.Dataset,
        epochs: int,
        validation_dataset: tf.data.Dataset | None = None,
        steps_per_epoch: int | None = None,
        progress_bar: bool = False,
        on_epoch_end: Callable[[EpochResult], None] | None = None,
        start: Progress | None = None,
        checkpoint: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_call: Callable[[], None] = no_beat,
        budget: TimeBudget | None = None,
    ) -> list[EpochResult]:
        """Train until `epochs`, logging one `epoch=N ...` line after each.

        With `steps_per_epoch`, `train_data` (distributed) holds the batches of every
        epoch from `start` on (`sagevit.data.channels.training_batches`) as one stream that is
        iterated once, `steps_per_epoch` steps an epoch: the pipeline is built once and
        keeps prefetching across epoch boundaries. Without, `train_data` is a plain
        dataset, distributed and iterated to its end once an epoch. `start` resumes
        from a checkpoint's progress.
        `checkpoint(progress)` is called after every epoch and when `should_stop()`
        turns true on any worker, after which fit raises TrainingStopped.
        `on_call()` runs after every call into TensorFlow that trains or evaluates.
        With `budget`, training ends when it is spent, mid-epoch if need be (that epoch
        is validated and logged), however many of `epochs` are left.
        """
        state = start or Progress()
        history = [EpochResult(h["epoch"], {k: v for k, v in h.items() if k != "epoch"}) for h in state.history]  # fmt: skip
        whole_run = None
        if steps_per_epoch is not None:  # one stream of every epoch's batches
            whole_run = iter(train_data)
        check = self._checks(should_stop, budget)
        if budget is not None:
            budget.start()  # compiling the first step counts
        for epoch in range(state.epoch, epochs + 1):
            started = time.perf_counter()
            if whole_run is None:
                dataset = train_data.skip(state.step)
                iterator, steps = iter(self.strategy.experimental_distribute_dataset(dataset)), None
            else:
                iterator, steps = whole_run, steps_per_epoch
            progress = None
            if progress_bar:
                progress = keras.utils.Progbar(
                    steps_per_epoch, stateful_metrics=["loss", "accuracy"]
                )
            sums, done, ended = self._run_epoch(iterator, steps, progress, state, check, on_call)
            spent = budget.elapsed() if budget is not None else 0.0
            if ended == SIGNALLED:
                state = Progress(epoch, done, sums, state.history, spent)
                if checkpoint is not None:
                    checkpoint(state)
                raise TrainingStopped(epoch, done)
            metrics = self._metrics(sums)
            if validation_dataset is not None:
                metrics.update(self._validate(validation_dataset, on_call, budget))
            metrics["seconds"] = time.perf_counter() - started
            result = EpochResult(epoch, metrics)
            log.info(result.log_line())
            history.append(result)
            state = Progress(
                epoch + 1, 0, [0.0, 0.0, 0.0], [*state.history, {"epoch": epoch, **metrics}],
                budget.elapsed() if budget is not None else 0.0,
            )  # fmt: skip
            if checkpoint is not None:
                checkpoint(state)
            if on_epoch_end is not None:
                on_epoch_end(result)
            if budget is not None and (ended or check() == BUDGET_SPENT):
                budget.report(epoch - 1 + done / (steps or done), epoch)
                break
        return history
