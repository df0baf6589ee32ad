"""The ways into training: what both entry points share, and the `sagevit-train` command.

  * `sagevit-train --train DIR [--validation DIR] --model-dir DIR [--epochs 1 ...]`
    (`main` below) during development; paths default to SageMaker's SM_* variables;
  * the SageMaker toolkit's `train` command, through `sagevit.toolkit:main`.

Both read their inputs (only entry points read the environment, TF_CONFIG included)
and end in `launch()`, which runs `sagevit.job.run` as a job.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sagevit.config import Hyperparameters
from sagevit.contract import CHECKPOINT_DIR, MODEL_DIR
from sagevit.data.channels import InputConfig
from sagevit.errors import BAD_INPUT, USER_ERRORS, ConfigError, DataError
from sagevit.flags import hyperparameters_from_namespace, make_parser, parse_with_preset
from sagevit.job import run
from sagevit.model.pretrained import HUB_ENDPOINT, download
from sagevit.platform.signals import StopOnSigterm
from sagevit.platform.watchdog import exit_stalled
from sagevit.training.distribute import tf_config
from sagevit.training.loop import EpochResult, TrainingStopped

log = logging.getLogger("sagevit.entry")  # not __name__: `python -m sagevit.entry` is __main__


@dataclass(frozen=True)
class JobPaths:
    """Where a training job reads and writes; the entry points fill it in."""

    train: str | Path
    model: str | Path
    validation: str | Path | None = None
    output_data: str | Path | None = None
    tensorboard: str | Path | None = None
    checkpoints: str | Path | None = None
    pretrained: str | Path | None = None  # the pretrained channel
    inputs: InputConfig | None = None  # channels split by host, and their indexes


def launch(
    hp: Hyperparameters,
    paths: JobPaths,
    tf_config: str | None = None,
    on_stall: Callable[[str], None] = exit_stalled,
    hub_endpoint: str = HUB_ENDPOINT,
) -> list[EpochResult]:
    """`run()` as a job: SIGTERM asks for a checkpoint and a stop (TrainingStopped).
    `--pretrained HANDLE` without a pretrained channel downloads the weights first."""
    pretrained = paths.pretrained
    if hp.pretrained and pretrained is not None:
        raise ConfigError(
            f"--pretrained {hp.pretrained} and a pretrained channel both name weights: give one"
        )
    if hp.pretrained:
        pretrained = download(hp.pretrained, tempfile.mkdtemp(prefix="sagevit-hub-"), hub_endpoint).parent  # fmt: skip
    with StopOnSigterm() as stop:
        return run(
            hp,
            paths.train,
            paths.model,
            paths.validation,
            progress_bar=sys.stdout.isatty(),
            output_data_dir=paths.output_data,
            tensorboard_dir=paths.tensorboard,
            checkpoint_dir=paths.checkpoints,
            should_stop=stop,
            tf_config=tf_config,
            on_stall=on_stall,
            pretrained_dir=pretrained,
            inputs=paths.inputs,
        )


def configure_logging(level: int = logging.INFO) -> None:
    """Send this package's logs to stdout, one plain line each (entry points only)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package = logging.getLogger("sagevit")
    package.handlers[:] = [handler]
    package.setLevel(level)
    package.propagate = False


def cluster_config(hosts: Sequence[str], current_host: str, given: str | None = None) -> str | None:
    """The run's TF_CONFIG JSON: `given` (the TF_CONFIG variable) if set, else one made from
    SageMaker's host list when there are several hosts; None for one host."""
    if given:
        return given
    if len(hosts) > 1:
        made = json.dumps(tf_config(hosts, current_host))
        log.info("%d hosts: TF_CONFIG=%s", len(hosts), made)
        return made
    return None


def sagemaker_inputs(environ: Mapping[str, str]) -> InputConfig:
    """The channels' input config from the toolkit's SM_INPUT_DATA_CONFIG and SM_CHANNEL_*
    variables (none outside SageMaker: every channel FullyReplicated)."""
    config = json.loads(environ.get("SM_INPUT_DATA_CONFIG") or "{}")
    channels = {name: environ[f"SM_CHANNEL_{name.upper()}"] for name in config if f"SM_CHANNEL_{name.upper()}" in environ}  # fmt: skip
    return InputConfig.from_sagemaker(config, channels)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("Train the ViT on npz channels and export a SavedModel.")
    paths = parser.add_argument_group("paths (default to SageMaker's environment variables)")
    env = os.environ.get

    def path(*flags: str, default: str | None, help: str) -> None:
        dest = flags[0].lstrip("-").replace("-", "_")
        paths.add_argument(*flags, dest=dest, default=default, help=help)

    path("--train", default=env("SM_CHANNEL_TRAIN"), help="train channel folder")
    path("--validation", default=env("SM_CHANNEL_VALIDATION"), help="validation channel folder")
    path("--pretrained-dir", "--pretrained_dir", default=env("SM_CHANNEL_PRETRAINED"), help="pretrained channel folder: one .safetensors or .npz weights file")  # fmt: skip
    path("--model-dir", "--model_dir", default=env("SM_MODEL_DIR", MODEL_DIR), help="where the model is written")  # fmt: skip
    path("--output-data-dir", "--output_data_dir", default=env("SM_OUTPUT_DATA_DIR"), help="where history.png and metrics.json go")  # fmt: skip
    path("--checkpoint-dir", "--checkpoint_dir", default=None, help=f"resume from and write checkpoints here (the toolkit uses {CHECKPOINT_DIR})")  # fmt: skip
    path("--tensorboard-dir", "--tensorboard_dir", default=None, help="where TensorBoard event files go")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The `sagevit-train` command: 0 done or stopped, 2 bad input, 1 any other job error."""
    configure_logging()
    try:
        args = parse_with_preset(build_parser(), sys.argv[1:] if argv is None else argv)
        if args.train is None:
            raise DataError("no train channel: pass --train DIR or set SM_CHANNEL_TRAIN")
        paths = JobPaths(args.train, args.model_dir, args.validation, args.output_data_dir,
                         args.tensorboard_dir, args.checkpoint_dir, args.pretrained_dir,
                         sagemaker_inputs(os.environ))  # fmt: skip
        hosts = json.loads(os.environ.get("SM_HOSTS", "[]"))
        tf_config_json = cluster_config(hosts, os.environ.get("SM_CURRENT_HOST", ""), os.environ.get("TF_CONFIG"))  # fmt: skip
        hub = os.environ.get("HF_ENDPOINT", HUB_ENDPOINT)  # Hugging Face's own variable
        launch(hyperparameters_from_namespace(args), paths, tf_config_json, hub_endpoint=hub)
    except USER_ERRORS as error:
        log.error("%s", error)
        return 2 if isinstance(error, BAD_INPUT) else 1
    except TrainingStopped as stopped:
        log.warning("%s; run the same command again to resume", stopped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
