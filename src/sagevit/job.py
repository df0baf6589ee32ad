"""The training job, step by step: the place to start reading.

`run()` is the whole job as a sequence of named steps: devices, the folders it writes,
the channels, the compute dtype, `train()` (the model, the optimizer, the loop), export.
It takes plain arguments and reads no environment; the entry points (`sagevit.entry`,
`sagevit.toolkit`) read their inputs and call it. This module and the entry points are the
only ones that read `Hyperparameters`: each step below hands the wings the fields they use.
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from sagevit.config import Hyperparameters
from sagevit.contract import TRAIN_FILE, VALIDATION_FILE
from sagevit.data.channels import InputConfig, load_channel, resolve_class_names
from sagevit.data.holdout import hold_out
from sagevit.data.pipeline import Augmentation
from sagevit.data.training_data import TrainingData, agree_steps
from sagevit.errors import ConfigError
from sagevit.model.pretrained import Checkpoint, find_weights_file, read_checkpoint
from sagevit.platform.gpu import Device, log_devices, require_gpus
from sagevit.platform.machine import given_gpus
from sagevit.platform.outputs import ensure_writable
from sagevit.platform.signals import rearm
from sagevit.platform.watchdog import StallWatchdog, exit_stalled
from sagevit.training.budget import TimeBudget
from sagevit.training.checkpoints import CheckpointDir, Progress
from sagevit.training.distribute import (
    choose_strategy,
    gather_counts,
    is_chief,
    peers_lost,
    worker_count,
)
from sagevit.training.export import export_model
from sagevit.training.loop import EpochResult, Trainer
from sagevit.training.recipe import Recipe, build_model, choose_jit, choose_precision
from sagevit.training.reports import TensorBoardLogger, write_reports

log = logging.getLogger(__name__)

# With a time budget, the budget ends the run; the epochs only need an end that none reaches.
BUDGET_EPOCH_CAP = 1_000_000


def run(
    hp: Hyperparameters,
    train_dir: str | Path,
    model_dir: str | Path,
    validation_dir: str | Path | None = None,
    progress_bar: bool = False,
    output_data_dir: str | Path | None = None,
    tensorboard_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    tf_config: str | None = None,
    on_stall: Callable[[str], None] = exit_stalled,
    dev_dir: str | Path = "/dev",
    pretrained_dir: str | Path | None = None,
    inputs: InputConfig | None = None,
) -> list[EpochResult]:
    """Load the channels, train, and export to `model_dir`; with `output_data_dir`, also
    history.png and metrics.json there, with `tensorboard_dir` per-epoch scalars. Raises
    ConfigError, DataError, or OutputError (checked before training starts).

    `tf_config` (the TF_CONFIG JSON) with several workers trains across hosts; then only
    the chief writes. When loading or training makes no progress for `hp.stall_timeout`
    seconds, `on_stall(message)` runs; it has to end the process. GPU device files in
    `dev_dir` that TensorFlow cannot use raise GpuUnavailable, unless `hp.allow_cpu`.
    With `pretrained_dir` (the pretrained channel), training starts from its weights;
    `inputs`: the channels SageMaker split by host, and their indexes."""
    strategy, gpus = start_devices(hp, tf_config, dev_dir)
    outputs = Outputs(model_dir, output_data_dir, tensorboard_dir, checkpoint_dir)
    outputs = outputs.for_worker(is_chief(strategy))
    seed_everything(hp.seed)
    # The watchdog fails a job stuck reading a channel (a hung network filesystem), or
    # stuck in a collective: every worker may wait for the others from model building
    # on (variable creation broadcasts initial values).
    with StallWatchdog(hp.stall_timeout, on_stall) as watchdog:
        data = load_data(hp, train_dir, validation_dir, watchdog.beat, inputs or InputConfig(), strategy, worker_count(tf_config))  # fmt: skip
        weights = read_checkpoint(find_weights_file(pretrained_dir)) if pretrained_dir else None
        watchdog.beat()
        compute = set_compute(hp, strategy, gpus)
        try:
            with data.damage_named(watchdog.beat):  # a damaged record: one sentence
                model, optimizer, history = train(
                    hp, data, compute, outputs, weights, tf_config, watchdog.beat, should_stop, progress_bar
                )  # fmt: skip
        finally:  # stopped or done: later models in this process start from float32
            keras.mixed_precision.set_global_policy("float32")
        watchdog.beat()
        optimizer.finalize_variable_values(model.trainable_variables)  # --ema: the average
        export_model(model, outputs.model, data.class_names, hp.to_dict(), flip_tta=hp.flip_tta)
    outputs.finish(history)
    return history


def train(
    hp: Hyperparameters,
    data: TrainingData,
    compute: Compute,
    outputs: Outputs,
    weights: Checkpoint | None,
    tf_config: str | None,
    beat: Callable[[], None],
    should_stop: Callable[[], bool] | None,
    progress_bar: bool,
) -> tuple[keras.Model, keras.optimizers.Optimizer, list[EpochResult]]:
    """Build (or restore) the model and optimizer and train them: from `weights` if given,
    from the newest checkpoint in `outputs.checkpoints` if any, within `--time-budget`."""
    checkpoints = CheckpointDir(outputs.checkpoints, hp.keep_checkpoints) if outputs.checkpoints else None  # fmt: skip
    budget = TimeBudget(hp.time_budget) if hp.time_budget else None
    model, optimizer, start = build_model(
        hp.model_kwargs(), recipe_of(hp), compute.strategy, data.steps_per_epoch,
        compute.precision, checkpoints, weights, budget,
    )  # fmt: skip
    start = start or Progress()
    last_epoch = BUDGET_EPOCH_CAP if budget is not None else hp.epochs
    log_start(model, data, compute.strategy)
    if budget is not None:
        budget.resume(start.elapsed)
        log_budget(hp, budget)
    trainer = Trainer(model, optimizer, data.batch_size, compute.strategy, jit_compile=compute.jit_compile,
                      label_smoothing=hp.label_smoothing, steps_per_execution=hp.steps_per_execution)  # fmt: skip
    save = None
    if checkpoints is not None and outputs.chief:  # every worker resumes, only the chief writes
        save = functools.partial(checkpoints.save, model, optimizer)  # (progress) -> None
    augmentation = Augmentation(hp.augment, hp.mixup, hp.cutmix)
    epochs = range(start.epoch, last_epoch + 1)
    batches = data.training_batches(compute.strategy, epochs, start.step, hp.num_classes, hp.seed, augmentation)  # fmt: skip
    with peers_lost(tf_config):
        history = trainer.fit(
            batches, last_epoch, data.steps_per_epoch,
            validation_dataset=data.validation_batches(hp.num_classes), progress_bar=progress_bar,
            on_epoch_end=TensorBoardLogger(outputs.tensorboard) if outputs.tensorboard else None,
            start=start, checkpoint=save, should_stop=should_stop, on_call=beat, budget=budget,
        )  # fmt: skip
    return model, optimizer, history


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and TensorFlow's random seeds. TensorFlow's global seed, taken
    modulo 2**31 - 1, is never 0 (for --seed 0 or 2147483647): under it, tracing the data
    pipeline's shuffle (a tensor seed, from seed and epoch) fails, since TensorFlow's
    `random_seed.get_seed` then compares a symbolic tensor with 0 in Python."""
    keras.utils.set_random_seed(seed)
    if seed % (2**31 - 1) == 0:
        tf.random.set_seed(2**31 - 2)


def recipe_of(hp: Hyperparameters) -> Recipe:
    """The optimisation fields of `hp` (the fields `sagevit.config` puts in group "recipe")."""
    return Recipe(**hp.group("recipe"))


@dataclass(frozen=True)
class Outputs:
    """The folders a run writes. A worker other than the chief writes its model to scratch
    space and no reports: two hosts writing one S3 prefix would race."""

    model: str | Path
    reports: str | Path | None = None  # history.png, metrics.json
    tensorboard: str | Path | None = None
    checkpoints: str | Path | None = None  # every worker reads them; only the chief writes
    chief: bool = True
    scratch: Path | None = None  # a non-chief's model folder's parent, removed at the end

    def for_worker(self, chief: bool) -> Outputs:
        """These outputs for this worker, each checked writable: fail in the first second,
        not after training (OutputError, one sentence for the failure file)."""
        outputs = self
        if not chief:
            scratch = Path(tempfile.mkdtemp(prefix="sagevit-worker-"))
            outputs = Outputs(scratch / "model", None, None, self.checkpoints, False, scratch)
        folders = {"the model": outputs.model, "the reports": outputs.reports,
                   "TensorBoard logs": outputs.tensorboard, "checkpoints": outputs.checkpoints}  # fmt: skip
        for what, folder in folders.items():
            if folder is not None:
                ensure_writable(folder, what)
        return outputs

    def finish(self, history: list[EpochResult]) -> None:
        """Write the reports (the chief); remove the scratch space (the others)."""
        if self.reports is not None:
            write_reports(history, self.reports)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def start_devices(
    hp: Hyperparameters, tf_config: str | None, dev_dir: str | Path
) -> tuple[tf.distribute.Strategy, list[Device]]:
    """The strategy, and the GPUs TensorFlow can use (GpuUnavailable if it was given others)."""
    # First: MultiWorkerMirroredStrategy must exist before TensorFlow starts its runtime.
    strategy = choose_strategy(tf_config)
    rearm()  # TensorFlow's coordination service may have taken SIGTERM over
    given = given_gpus(dev_dir)
    gpus = log_devices(given)
    require_gpus(given, gpus, hp.allow_cpu)
    if hp.batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(
            f"--batch-size {hp.batch_size} must be divisible by the"
            f" {strategy.num_replicas_in_sync} replicas (it is the global batch)"
        )
    return strategy, gpus


def load_data(
    hp: Hyperparameters,
    train_dir: str | Path,
    validation_dir: str | Path | None,
    beat: Callable[[], None],
    inputs: InputConfig,
    strategy: tf.distribute.Strategy,
    workers: int,
) -> TrainingData:
    """The channels' examples; without a validation channel, `--validation-split` of train.
    `beat()` as reading makes progress."""
    size = (hp.image_size, hp.num_classes)
    train = load_channel(train_dir, TRAIN_FILE, "train", *size, beat, inputs)
    validation = None
    if validation_dir is not None:
        validation = load_channel(validation_dir, VALIDATION_FILE, "validation", *size, beat, inputs)  # fmt: skip
    elif hp.validation_split > 0:
        train, validation = hold_out(train, hp.validation_split, hp.seed)
    batch_size = min(hp.batch_size, len(train))
    if batch_size < hp.batch_size:
        log.warning("batch size %d > %d training examples; using %d", hp.batch_size, batch_size, batch_size)  # fmt: skip
    class_names = resolve_class_names(hp.num_classes, train, validation)
    steps = agree_steps(train, batch_size, workers, functools.partial(gather_counts, strategy))
    return TrainingData(train, validation, class_names, batch_size, steps)


@dataclass(frozen=True)
class Compute:
    """Where and how the steps run."""

    strategy: tf.distribute.Strategy
    precision: str  # the compute dtype: float32, bfloat16 or float16
    jit_compile: bool  # whether XLA compiles the training step


def set_compute(hp: Hyperparameters, strategy: tf.distribute.Strategy, gpus: list[Device]) -> Compute:  # fmt: skip
    """The compute dtype and XLA for these GPUs (or none), Keras's global policy set to match."""
    precision = choose_precision(hp.mixed_precision, [gpu.compute_capability for gpu in gpus])
    jit_compile = choose_jit(hp.jit_compile, bool(gpus), hp.tokenizer)
    policy = "float32" if precision == "float32" else f"mixed_{precision}"
    keras.mixed_precision.set_global_policy(policy)
    log.info("compute dtype %s, XLA %s", precision, "on" if jit_compile else "off")
    return Compute(strategy, precision, jit_compile)


def log_start(model: keras.Model, data: TrainingData, strategy: tf.distribute.Strategy) -> None:
    validating = 0 if data.validation is None else len(data.validation)
    log.info(
        "training %s (%d parameters) on %d examples, validating on %d, %d replica(s), weights on %s",
        model.name, model.count_params(), len(data.train), validating,
        strategy.num_replicas_in_sync,
        model.trainable_variables[0].value.device,  # where the training step runs
    )  # fmt: skip


def log_budget(hp: Hyperparameters, budget: TimeBudget) -> None:
    left = budget.seconds - budget.spent
    warmup = hp.warmup_epochs / hp.epochs if hp.schedule == "cosine" else 0.0
    log.info(
        "time budget %.0f s (%.0f s left): %s; the run ends when it is spent, whatever --epochs",
        budget.seconds, left,
        f"warmup over its first {warmup:.1%}, then cosine to 0" if hp.schedule == "cosine"
        else "a constant learning rate",
    )  # fmt: skip
