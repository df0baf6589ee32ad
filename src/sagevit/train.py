"""Train the ViT on the seed's npz channels and export it for serving.

Two ways in:
  * `sagevit-train --train DIR [--validation DIR] --model-dir DIR [--epochs 1 ...]`
    during development (paths default to SageMaker's SM_CHANNEL_* variables);
  * the SageMaker toolkit's `train` command, through `sagevit.toolkit:main`.
Both end in `run()`, which takes plain arguments and reads no environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import tensorflow as tf

from sagevit.checkpoints import CheckpointDir
from sagevit.config import (
    ConfigError,
    Hyperparameters,
    hyperparameters_from_namespace,
    make_parser,
    parse_with_preset,
)
from sagevit.data import (
    TRAIN_FILE,
    VALIDATION_FILE,
    DataError,
    hold_out,
    load_channel,
    make_dataset,
    resolve_class_names,
)
from sagevit.distribute import (
    PEER_ERRORS,
    WorkerLost,
    choose_strategy,
    is_chief,
    pipeline_batches,
    tf_config,
    worker_count,
)
from sagevit.export import export_model
from sagevit.gpu import GpuUnavailable, log_devices, require_gpus
from sagevit.machine import given_gpus
from sagevit.recipe import build_model, choose_jit, choose_precision
from sagevit.reports import TensorBoardLogger, write_reports
from sagevit.signals import StopOnSigterm, rearm
from sagevit.training import EpochResult, Trainer, TrainingStopped
from sagevit.watchdog import StallWatchdog, exit_stalled

log = logging.getLogger("sagevit.train")  # not __name__: `python -m sagevit.train` is __main__


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
) -> list[EpochResult]:
    """Load the channels, train, and export to `model_dir`. Raises ConfigError or DataError.

    With `output_data_dir`, also write history.png and metrics.json there; with
    `tensorboard_dir`, per-epoch TensorBoard scalars. With `checkpoint_dir`, resume
    from its newest readable checkpoint and write one after every epoch; when
    `should_stop()` turns true, write one and raise TrainingStopped (no export).
    `tf_config` (the TF_CONFIG JSON) with several workers trains across hosts; then
    only the chief writes the model, reports and checkpoints. When no training step
    finishes for `hp.stall_timeout` seconds (from model building to export; loading
    the channels is not watched), `on_stall(message)` runs; it has to end the process.
    GPU device files in `dev_dir` that TensorFlow cannot use raise GpuUnavailable, unless
    `hp.allow_cpu`.
    """
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
    chief = is_chief(strategy)
    if not chief:  # workers other than the chief write only to scratch space
        scratch = Path(tempfile.mkdtemp(prefix="sagevit-worker-"))
        model_dir, output_data_dir, tensorboard_dir = scratch / "model", None, None
    keras.utils.set_random_seed(hp.seed)
    args = (hp.image_size, hp.num_classes)
    train_split = load_channel(train_dir, TRAIN_FILE, "train", *args)
    val_split = None
    if validation_dir is not None:
        val_split = load_channel(validation_dir, VALIDATION_FILE, "validation", *args)
    elif hp.validation_split > 0:
        train_split, val_split = hold_out(train_split, hp.validation_split, hp.seed)
    class_names = resolve_class_names(hp.num_classes, train_split, val_split)

    batch_size = hp.batch_size
    if batch_size > len(train_split):
        batch_size = len(train_split)
        log.warning(
            "batch size %d > %d training examples; using %d", hp.batch_size, batch_size, batch_size
        )
    steps_per_epoch = len(train_split) // batch_size
    examples = train_split.examples()  # one pipeline (and cache) for every epoch

    def train_data(first_epoch: int, skip_steps: int) -> tf.distribute.DistributedDataset:
        """Every remaining epoch as one stream of batches, iterated once (see Trainer.fit)."""

        def batches(shard: tf.data.Dataset, per_replica: int, per_step: int) -> tf.data.Dataset:
            def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
                data = make_dataset(train_split, per_replica, True, hp.num_classes, hp.seed,
                                    hp.augment, hp.mixup, epoch, examples=shard)  # fmt: skip
                return data.take(steps_per_epoch * per_step)  # as many steps on every worker

            epochs = tf.data.Dataset.range(first_epoch, hp.epochs + 1)
            return epochs.flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)

        return strategy.distribute_datasets_from_function(  # one pipeline per worker
            lambda context: pipeline_batches(context, examples, batches, batch_size, skip_steps)
        )

    val_data = None
    if val_split is not None:  # every worker evaluates all of it, on its own
        val_data = make_dataset(val_split, batch_size, False, hp.num_classes)

    precision = choose_precision(hp.mixed_precision, [gpu.compute_capability for gpu in gpus])
    jit_compile = choose_jit(hp.jit_compile, bool(gpus), hp.tokenizer)
    keras.mixed_precision.set_global_policy(
        "float32" if precision == "float32" else f"mixed_{precision}"
    )
    log.info("compute dtype %s, XLA %s", precision, "on" if jit_compile else "off")

    # From here on every worker may wait for the others in a collective (variable
    # creation broadcasts initial values): the watchdog fails a job stuck on one.
    with StallWatchdog(hp.stall_timeout, on_stall) as watchdog:
        checkpoints = CheckpointDir(checkpoint_dir, hp.keep_checkpoints) if checkpoint_dir else None
        model, optimizer, start = build_model(hp, strategy, steps_per_epoch, precision, checkpoints)
        log.info(
            "training %s (%d parameters) on %d examples, validating on %d, %d replica(s),"
            " weights on %s",
            model.name,
            model.count_params(),
            len(train_split),
            0 if val_split is None else len(val_split),
            strategy.num_replicas_in_sync,
            model.trainable_variables[0].value.device,  # where the training step runs
        )
        trainer = Trainer(
            model,
            optimizer,
            batch_size,
            strategy,
            jit_compile=jit_compile,
            label_smoothing=hp.label_smoothing,
            steps_per_execution=hp.steps_per_execution,
        )
        try:
            history = trainer.fit(
                train_data,
                hp.epochs,
                validation_dataset=val_data,
                steps_per_epoch=steps_per_epoch,
                progress_bar=progress_bar,
                on_epoch_end=TensorBoardLogger(tensorboard_dir) if tensorboard_dir else None,
                start=start,
                checkpoint=(lambda progress: checkpoints.save(model, optimizer, progress))
                if checkpoints and chief
                else None,
                should_stop=should_stop,
                on_call=watchdog.beat,
            )
        except PEER_ERRORS as error:
            if worker_count(tf_config) == 1:
                raise
            message = str(error).strip().splitlines()[0]
            raise WorkerLost(
                f"lost another training host ({type(error).__name__}): {message}"
            ) from None
        watchdog.beat()
        keras.mixed_precision.set_global_policy("float32")  # later models in this process
        export_model(model, model_dir, class_names, hp.to_dict())
    if output_data_dir is not None:
        write_reports(history, output_data_dir)
    if not chief:
        shutil.rmtree(scratch, ignore_errors=True)
    return history


def configure_logging(level: int = logging.INFO) -> None:
    """Send this package's logs to stdout, one plain line each (entry points only)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package = logging.getLogger("sagevit")
    package.handlers[:] = [handler]
    package.setLevel(level)
    package.propagate = False


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("Train the ViT on npz channels and export a SavedModel.")
    paths = parser.add_argument_group("paths (default to SageMaker's environment variables)")
    env = os.environ.get
    paths.add_argument("--train", default=env("SM_CHANNEL_TRAIN"), help="train channel folder")
    paths.add_argument(
        "--validation", default=env("SM_CHANNEL_VALIDATION"), help="validation channel folder"
    )
    paths.add_argument(
        "--model-dir",
        "--model_dir",
        dest="model_dir",
        default=env("SM_MODEL_DIR", "/opt/ml/model"),
        help="where the model is written",
    )
    paths.add_argument(
        "--output-data-dir",
        "--output_data_dir",
        dest="output_data_dir",
        default=env("SM_OUTPUT_DATA_DIR"),
        help="where history.png and metrics.json go",
    )
    paths.add_argument(
        "--checkpoint-dir",
        "--checkpoint_dir",
        dest="checkpoint_dir",
        default=None,
        help="resume from and write checkpoints here (the toolkit uses /opt/ml/checkpoints)",
    )
    paths.add_argument(
        "--tensorboard-dir",
        "--tensorboard_dir",
        dest="tensorboard_dir",
        default=None,
        help="where TensorBoard event files go",
    )
    return parser


def cluster_config(hosts: Sequence[str], current_host: str) -> str | None:
    """TF_CONFIG for the run (entry points only): as set, or made from SageMaker's host
    list when there are several hosts, and exported, since the strategy reads it too."""
    if not os.environ.get("TF_CONFIG") and len(hosts) > 1:
        os.environ["TF_CONFIG"] = json.dumps(tf_config(hosts, current_host))
        log.info("%d hosts: TF_CONFIG=%s", len(hosts), os.environ["TF_CONFIG"])
    return os.environ.get("TF_CONFIG")


def main(argv: Sequence[str] | None = None) -> int:
    """The `sagevit-train` command."""
    configure_logging()
    try:
        args = parse_with_preset(build_parser(), sys.argv[1:] if argv is None else argv)
        if args.train is None:
            raise DataError("no train channel: pass --train DIR or set SM_CHANNEL_TRAIN")
        hp = hyperparameters_from_namespace(args)
        with StopOnSigterm() as stop:
            run(
                hp,
                args.train,
                args.model_dir,
                args.validation,
                progress_bar=sys.stdout.isatty(),
                output_data_dir=args.output_data_dir,
                tensorboard_dir=args.tensorboard_dir,
                checkpoint_dir=args.checkpoint_dir,
                should_stop=stop,
                tf_config=cluster_config(json.loads(os.environ.get("SM_HOSTS", "[]")),
                                         os.environ.get("SM_CURRENT_HOST", "")),
            )  # fmt: skip
    except (ConfigError, DataError) as error:
        log.error("%s", error)
        return 2
    except GpuUnavailable as error:
        log.error("%s", error)
        return 1
    except TrainingStopped as stopped:
        log.warning("%s; run the same command again to resume", stopped)
        return 0
    except WorkerLost as error:
        log.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
