"""The training entry point that the sagemaker-training toolkit imports.

The image sets `SAGEMAKER_TRAINING_MODULE=sagevit.toolkit:main`, so the toolkit's
`train` command calls `main()` in its own process (no user script to download).
The toolkit has already read /opt/ml/input/config; we take the channels, model
directory and hyperparameters from its Environment, turn the hyperparameters
back into `--key value` arguments, parse them exactly as the CLI does, and end
in `sagevit.entry.launch` as the CLI does.

A bad hyperparameter or bad data is raised as the toolkit's ClientError, which
it writes verbatim to /opt/ml/output/failure (SageMaker's FailureReason) before
exiting non-zero.
"""

from __future__ import annotations

import logging
import os
import sys

from sagemaker_training import environment, errors, files, mapping

from sagevit.contract import CHECKPOINT_DIR
from sagevit.data.channels import InputConfig
from sagevit.entry import JobPaths, cluster_config, configure_logging, launch
from sagevit.errors import USER_ERRORS, DataError
from sagevit.flags import parse_hyperparameters
from sagevit.model.pretrained import HUB_ENDPOINT
from sagevit.platform.watchdog import exit_stalled
from sagevit.training.loop import TrainingStopped


def main() -> None:
    configure_logging()
    env = environment.Environment()
    channels = env.channel_input_dirs
    try:
        if "train" not in channels:
            names = ", ".join(sorted(channels)) or "none"
            raise DataError(f"the job has no 'train' input channel (channels given: {names})")
        paths = JobPaths(
            train=channels["train"],
            model=env.model_dir,
            validation=channels.get("validation"),
            output_data=env.output_data_dir,
            # Where SageMaker's TensorBoardOutputConfig syncs from (its default local path).
            tensorboard=os.path.join(env.output_dir, "tensorboard"),
            checkpoints=checkpoint_dir(),
            pretrained=channels.get("pretrained"),
            inputs=InputConfig.from_sagemaker(env.input_data_config, channels),
        )
        hp = parse_hyperparameters(mapping.to_cmd_args(env.hyperparameters))
        tf_config = cluster_config(env.hosts, env.current_host, os.environ.get("TF_CONFIG"))
        hub = os.environ.get("HF_ENDPOINT", HUB_ENDPOINT)  # Hugging Face's own variable
        launch(hp, paths, tf_config, on_stall=fail_stalled, hub_endpoint=hub)
    except USER_ERRORS as error:
        raise errors.ClientError(str(error)) from None
    except TrainingStopped as stopped:
        # Exit 0 with neither a success nor a failure file: SageMaker, which sent the
        # SIGTERM, records the job as Stopped (or Interrupted, for spot), not Failed.
        logging.getLogger(__name__).warning("%s; a restarted job resumes from it", stopped)
        sys.exit(0)  # the toolkit's own `finally` exits 0 without writing the success file


def fail_stalled(message: str) -> None:
    """A stuck job ends from the watchdog's thread, where the toolkit's own error
    handling never runs: write SageMaker's FailureReason first, then exit 1."""
    try:
        files.write_failure_file(message)
    finally:
        exit_stalled(message)


def checkpoint_dir() -> str:
    """/opt/ml/checkpoints (SageMaker syncs it with checkpoint_s3_uri), or SAGEVIT_CHECKPOINT_DIR.

    Under SAGEMAKER_BASE_DIR (local runs and tests) it is BASE/checkpoints.
    """
    base = os.environ.get("SAGEMAKER_BASE_DIR")
    default = CHECKPOINT_DIR if base is None else os.path.join(base, "checkpoints")
    return os.environ.get("SAGEVIT_CHECKPOINT_DIR", default)
