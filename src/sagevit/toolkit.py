"""The training entry point that the sagemaker-training toolkit imports.

The image sets `SAGEMAKER_TRAINING_MODULE=sagevit.toolkit:main`, so the toolkit's
`train` command calls `main()` in its own process (no user script to download).
The toolkit has already read /opt/ml/input/config; we take the channels, model
directory and hyperparameters from its Environment, turn the hyperparameters
back into `--key value` arguments and parse them exactly as the CLI does.

A bad hyperparameter or bad data is raised as the toolkit's ClientError, which
it writes verbatim to /opt/ml/output/failure (SageMaker's FailureReason) before
exiting non-zero.
"""

from __future__ import annotations

import os
import sys

from sagemaker_training import environment, errors, mapping

from sagevit.config import ConfigError, parse_hyperparameters
from sagevit.data import DataError
from sagevit.train import configure_logging, run


def main() -> None:
    configure_logging()
    env = environment.Environment()
    channels = env.channel_input_dirs
    try:
        if "train" not in channels:
            names = ", ".join(sorted(channels)) or "none"
            raise DataError(f"the job has no 'train' input channel (channels given: {names})")
        hp = parse_hyperparameters(mapping.to_cmd_args(env.hyperparameters))
        run(
            hp,
            train_dir=channels["train"],
            model_dir=env.model_dir,
            validation_dir=channels.get("validation"),
            progress_bar=sys.stdout.isatty(),
            output_data_dir=env.output_data_dir,
            # Where SageMaker's TensorBoardOutputConfig syncs from (its default local path).
            tensorboard_dir=os.path.join(env.output_dir, "tensorboard"),
        )
    except (ConfigError, DataError) as error:
        raise errors.ClientError(str(error)) from None
