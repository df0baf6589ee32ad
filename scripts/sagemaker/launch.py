"""`make train`: launch a SageMaker training job on our image with the SDK's generic Estimator.

    python -m scripts.sagemaker.launch --image-uri URI --role ARN [--bucket B] [--epochs 30] \
        [--hyperparameter learning_rate=3e-4 ...] [--spot] [--wait]

Channels: train = s3://BUCKET/sagevit/data/train/ and validation =
s3://BUCKET/sagevit/data/validation/ (what `make data` uploads), unless given;
--pretrained s3://... adds the pretrained channel (docs/finetuning.md).
--input-mode FastFile reads S3 lazily as the trainer reads; --distribution sharded gives
each host its own part of a record channel's shards (ShardedByS3Key), with the index as
the train_index channel (docs/training.md, "Large datasets").
Hyperparameters go to the job exactly as written (the SDK sends every value as a
string); they are parsed here first, with the trainer's own parser, so a typo
fails now instead of after an instance has started. Prints the job name and its
console link; --wait streams the job's logs until it ends.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sagevit.contract import CHECKPOINT_DIR, INDEX_CHANNEL_SUFFIX, INDEX_FILE, TENSORBOARD_DIR
from sagevit.errors import ConfigError
from sagevit.flags import parse_hyperparameters
from sagevit.training.epoch_log import metric_definitions
from scripts.sagemaker.aws import (
    DATA_PREFIX,
    PROJECT,
    JobSpec,
    add_sdk_argument,
    add_session_arguments,
    console_url,
    ecr_registry,
    parse_pairs,
    resolve_role,
    script_parser,
    session_for,
)

log = logging.getLogger("launch")

PIPE_REFUSED = (
    "--input-mode Pipe is refused: the trainer reads channel files (File, or FastFile for"
    " lazy S3 reads of record shards), not the FIFO Pipe mode streams"
)


def job_hyperparameters(pairs: dict[str, str], epochs: int | None) -> dict[str, str]:
    """The job's hyperparameters, checked with the trainer's parser (ConfigError if bad)."""
    hyperparameters = dict(pairs)
    if epochs is not None:
        hyperparameters["epochs"] = str(epochs)
    parse_hyperparameters([item for k, v in hyperparameters.items() for item in (f"--{k}", v)])
    return hyperparameters


def build_estimator(job: JobSpec, sm_session: Any) -> Any:
    """A generic `Estimator(image_uri=...)` (SDK v2) that runs our image's `train`."""
    from sagemaker.debugger import TensorBoardOutputConfig
    from sagemaker.estimator import Estimator

    output_path = job.output_path or f"s3://{sm_session.default_bucket()}/{PROJECT}/output"
    return Estimator(
        image_uri=job.image_uri,
        role=job.role,
        instance_count=job.instance_count,
        instance_type=job.instance_type,
        hyperparameters=job.hyperparameters,
        input_mode=job.input_mode,
        metric_definitions=metric_definitions(),
        output_path=output_path,
        base_job_name=PROJECT,
        sagemaker_session=sm_session,
        use_spot_instances=job.spot,
        max_run=job.max_run,
        # Spot: how long to wait for capacity plus run; SageMaker requires >= max_run.
        max_wait=(job.max_wait or 2 * job.max_run) if job.spot else None,
        checkpoint_s3_uri=job.checkpoint_s3_uri,
        checkpoint_local_path=CHECKPOINT_DIR if job.checkpoint_s3_uri else None,
        tensorboard_output_config=TensorBoardOutputConfig(
            s3_output_path=f"{output_path}/tensorboard", container_local_output_path=TENSORBOARD_DIR
        ),
        tags=[{"Key": k, "Value": v} for k, v in {"project": PROJECT, **job.tags}.items()],
    )


def default_image_uri(session: Any, repository: str, tag: str) -> str:
    """This account's ECR image REPOSITORY:TAG (what `make push` pushed)."""
    return f"{ecr_registry(session.boto_session)}/{repository}:{tag}"


def job_channels(
    bucket: str, train: str | None, validation: str | None, pretrained: str | None = None
) -> dict[str, str]:
    """The input channels: as given, else where `make data` uploads them ('' drops
    validation); `pretrained`, an S3 prefix holding one weights file, if given."""
    channels = {"train": train or f"s3://{bucket}/{DATA_PREFIX}/train/"}
    if validation is None:
        validation = f"s3://{bucket}/{DATA_PREFIX}/validation/"
    if validation:
        channels["validation"] = validation
    if pretrained:
        if not pretrained.startswith("s3://"):
            raise SystemExit(f"--pretrained must be an s3:// prefix, got {pretrained!r}")
        channels["pretrained"] = pretrained
    return channels


def sharded_channels(channels: dict[str, str], s3: Any) -> dict[str, str]:
    """`channels` with the train channel's index as its own channel (train_index, every
    host gets it); SystemExit if the train prefix holds no index: only record shards can
    be split among hosts by file (`make data FORMAT=tfrecord`)."""
    train = channels["train"].rstrip("/") + "/"
    bucket, _, key = train.removeprefix("s3://").partition("/")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{key}{INDEX_FILE}", MaxKeys=1)
    if not listed.get("KeyCount"):
        raise SystemExit(
            f"--distribution sharded needs a record channel: {train} holds no {INDEX_FILE}"
            " (make data FORMAT=tfrecord writes one)"
        )
    return {**channels, f"train{INDEX_CHANNEL_SUFFIX}": f"{train}{INDEX_FILE}"}


def start_with_sdk2(job: JobSpec, sm_session: Any, channels: dict[str, str], wait: bool) -> str:
    """`Estimator.fit` (SDK v2); with spot, checkpoints default to .../checkpoints/JOB."""
    from sagemaker.inputs import TrainingInput
    from sagemaker.utils import name_from_base

    job_name = name_from_base(PROJECT)
    if job.spot and not job.checkpoint_s3_uri:
        bucket = sm_session.default_bucket()
        job = replace(job, checkpoint_s3_uri=f"s3://{bucket}/{PROJECT}/checkpoints/{job_name}")
    estimator = build_estimator(job, sm_session)
    inputs = {
        name: TrainingInput(uri, distribution=job.distribution(name), input_mode=job.input_mode)
        for name, uri in channels.items()
    }
    estimator.fit(inputs, job_name=job_name, wait=wait, logs="All" if wait else "None")
    return job_name


def start_with_sdk3(job: JobSpec, sm_session: Any, channels: dict[str, str], wait: bool) -> str:
    """`ModelTrainer.train` (SDK v3), which names the job itself; with spot, checkpoints
    default to v3's own per-job prefix (s3://BUCKET/sagevit/JOB/checkpoints)."""
    from scripts.sagemaker import sdk3

    trainer = sdk3.model_trainer(job, sm_session, checkpoints=job.spot or bool(job.checkpoint_s3_uri))  # fmt: skip
    return sdk3.train(trainer, channels, wait, job)


def add_channel_arguments(parser: argparse.ArgumentParser) -> None:
    """The channels, and how they reach the container."""
    parser.add_argument("--train", help="train channel S3 URI")
    parser.add_argument("--validation", help="validation channel S3 URI ('' for none)")
    parser.add_argument(
        "--pretrained", help="pretrained channel S3 URI: one .safetensors or .npz weights file"
    )
    parser.add_argument("--input-mode", default="File", choices=("File", "FastFile", "Pipe"), help="how channels reach the container (Pipe is refused)")  # fmt: skip
    parser.add_argument("--distribution", default="replicated", choices=("replicated", "sharded"), help="sharded: each host gets part of the train shards")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = script_parser(__doc__)
    add_session_arguments(parser)
    parser.add_argument("--image-uri", help="image to train with (default: ECR REPOSITORY:TAG)")
    parser.add_argument("--repository", default=PROJECT, help="ECR repository, for the default")
    parser.add_argument("--tag", default="latest", help="image tag, for the default")
    parser.add_argument("--role", help="SageMaker execution role ARN")
    parser.add_argument("--instance-type", default="ml.g5.xlarge", help="one A10G GPU")
    parser.add_argument("--instance-count", type=int, default=1, help="hosts")
    parser.add_argument("--epochs", type=int, help="the epochs hyperparameter")
    parser.add_argument(
        "--hyperparameter",
        action="append",
        metavar="KEY=VALUE",
        help="any trainer hyperparameter, e.g. learning_rate=3e-4 (repeatable)",
    )
    add_channel_arguments(parser)
    parser.add_argument("--spot", action="store_true", help="managed spot training")
    parser.add_argument("--max-run", type=int, default=24 * 3600, help="seconds of training")
    parser.add_argument("--max-wait", type=int, help="spot: seconds of waiting + training")
    parser.add_argument(
        "--checkpoint-s3-uri", help="default with --spot: s3://BUCKET/sagevit/checkpoints/JOB"
    )
    parser.add_argument("--tag-resource", action="append", metavar="KEY=VALUE", help="job tags")
    parser.add_argument("--wait", action="store_true", help="stream the job's logs until it ends")
    add_sdk_argument(parser, "Estimator", "ModelTrainer")
    args = parser.parse_args(argv)
    if args.input_mode == "Pipe":
        raise SystemExit(PIPE_REFUSED)

    try:
        hyperparameters = job_hyperparameters(
            parse_pairs(args.hyperparameter, "--hyperparameter"), args.epochs
        )
    except ConfigError as error:
        raise SystemExit(f"bad hyperparameter: {error}") from None
    session = session_for(args.sdk, args.region, args.bucket)
    image_uri = args.image_uri or default_image_uri(session, args.repository, args.tag)
    job = JobSpec(
        image_uri=image_uri,
        role=resolve_role(args.role, session),
        hyperparameters=hyperparameters,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        spot=args.spot,
        max_run=args.max_run,
        max_wait=args.max_wait,
        checkpoint_s3_uri=args.checkpoint_s3_uri,
        tags=parse_pairs(args.tag_resource, "--tag-resource"),
        input_mode=args.input_mode,
        sharded=frozenset({"train"} if args.distribution == "sharded" else ()),
    )
    channels = job_channels(session.default_bucket(), args.train, args.validation, args.pretrained)
    if job.sharded:
        channels = sharded_channels(channels, session.boto_session.client("s3"))
    log.info("launching a job with %s on %s (SDK v%s)", image_uri, args.instance_type, args.sdk)
    start = start_with_sdk3 if args.sdk == "3" else start_with_sdk2
    job_name = start(job, session, channels, args.wait)
    region = session.boto_region_name
    print(f"training job: {job_name}")
    print(f"console:      {console_url(region, 'jobs', job_name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
