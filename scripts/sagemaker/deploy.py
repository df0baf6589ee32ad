"""`make deploy`: put a real-time endpoint on a trained model, served by the same image.

    python -m scripts.sagemaker.deploy [--job NAME | --model-data s3://.../model.tar.gz --image-uri URI]
                             [--endpoint sagevit] [--instance-type ml.m5.xlarge]

With --job (or neither: the newest completed `sagevit-*` job) the model
artifact, image and role come from the job. SageMaker starts the container with
`serve`. A real-time endpoint by default; `--serverless MEMORY_MB` or
`--async-output s3://...` make the others, with the server's limits set to the
mode's (scripts/sagemaker/endpoint_modes.py).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scripts.sagemaker.aws import (
    PROJECT,
    add_sdk_argument,
    add_session_arguments,
    console_url,
    describe_endpoint,
    latest_training_job,
    parse_pairs,
    resolve_role,
    script_parser,
    session_for,
)
from scripts.sagemaker.cleanup import delete_endpoint
from scripts.sagemaker.endpoint_modes import (
    Mode,
    asynchronous,
    check_serverless_image,
    realtime,
    serverless,
)

log = logging.getLogger("deploy")


@dataclass(frozen=True)
class ModelSource:
    model_data: str  # s3://.../model.tar.gz
    image_uri: str
    role: str | None


def from_training_job(sagemaker_client: Any, job_name: str) -> ModelSource:
    job = sagemaker_client.describe_training_job(TrainingJobName=job_name)
    if job["TrainingJobStatus"] != "Completed":
        raise SystemExit(f"training job {job_name} is {job['TrainingJobStatus']}, not Completed")
    return ModelSource(
        model_data=job["ModelArtifacts"]["S3ModelArtifacts"],
        image_uri=job["AlgorithmSpecification"]["TrainingImage"],
        role=job["RoleArn"],
    )


def deploy(
    source: ModelSource,
    role: str,
    session: Any,
    endpoint_name: str,
    mode: Mode,
    environment: dict[str, str] | None = None,
    wait: bool = True,
) -> None:
    """Create the model, its endpoint config and the endpoint, in `mode`: the model is named
    `endpoint_name`-<timestamp>, the config after the endpoint."""
    from sagemaker.model import Model
    from sagemaker.utils import name_from_base

    model = Model(
        image_uri=source.image_uri,
        model_data=source.model_data,
        role=role,
        env={**mode.environment, **(environment or {})},
        name=name_from_base(endpoint_name),
        sagemaker_session=session,
    )
    model.deploy(
        endpoint_name=endpoint_name,
        tags=[{"Key": "project", "Value": PROJECT}],
        wait=wait,
        **mode.sdk_kwargs(),
    )


def choose_mode(args: Any) -> Mode:
    """Real-time, serverless or async, from the flags; SystemExit for a mix or a bad value."""
    if args.serverless is not None and args.async_output:
        raise SystemExit("choose one of SERVERLESS= and ASYNC=")
    if args.serverless is not None:
        if args.instance_type:
            raise SystemExit("a serverless endpoint has no instance type (and no GPU): drop it")
        return serverless(args.serverless, args.max_concurrency)
    instance_type = args.instance_type or "ml.m5.xlarge"
    if args.async_output:
        return asynchronous(args.async_output, instance_type, args.instance_count)
    return realtime(instance_type, args.instance_count)


def undo_failed_deploy(client: Any, endpoint_name: str, error: Exception) -> str:
    """Delete what a failed deploy created (model, endpoint config, endpoint); the one
    line to end with: what failed and what was removed, or the command that removes it."""
    log.error("deploy failed: %s", error)
    try:
        removed = delete_endpoint(client, endpoint_name)
    except Exception as cleanup_error:
        return (
            f"deploy failed ({error}), and so did removing what it created ({cleanup_error});"
            f" remove it with: make delete-endpoint ENDPOINT={endpoint_name}"
        )
    return (
        f"deploy failed ({error}); removed {', '.join(removed) or 'nothing (it created nothing)'}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = script_parser(__doc__)
    add_session_arguments(parser)
    parser.add_argument("--job", help="training job name (default: the newest completed one)")
    parser.add_argument("--model-data", help="model.tar.gz S3 URI, instead of a job")
    parser.add_argument("--image-uri", help="serving image (default: the job's)")
    parser.add_argument("--role", help="execution role ARN (default: the job's)")
    parser.add_argument("--endpoint", default=PROJECT, help="endpoint name")
    parser.add_argument("--instance-type", help="default ml.m5.xlarge: 4 vCPUs, no GPU")
    parser.add_argument("--instance-count", type=int, default=1)
    parser.add_argument("--serverless", type=int, metavar="MEMORY_MB", help="a serverless endpoint")
    parser.add_argument("--max-concurrency", type=int, default=5, help="serverless: invocations at once")  # fmt: skip
    parser.add_argument("--async-output", metavar="S3_URI", help="an async endpoint answering there")  # fmt: skip
    parser.add_argument(
        "--env", action="append", metavar="KEY=VALUE", help="more server settings (repeatable)"
    )
    parser.add_argument("--no-wait", action="store_true", help="return before it is InService")
    add_sdk_argument(parser, "Model.deploy", "sagemaker.core resources")
    args = parser.parse_args(argv)

    mode = choose_mode(args)
    session = session_for(args.sdk, args.region, args.bucket)
    client = session.sagemaker_client
    if describe_endpoint(client, args.endpoint) is not None:
        raise SystemExit(
            f"endpoint {args.endpoint} exists: `make delete-endpoint` it or pass ENDPOINT="
        )
    if args.model_data:
        if not args.image_uri:
            raise SystemExit("--model-data needs --image-uri (the image that trained it)")
        source = ModelSource(args.model_data, args.image_uri, None)
    else:
        job = args.job or latest_training_job(client)
        source = from_training_job(client, job)
        if args.image_uri:
            source = ModelSource(source.model_data, args.image_uri, source.role)
        log.info("deploying the model of training job %s", job)
    role = args.role or source.role or resolve_role(None, session)
    if mode.name == "serverless":
        check_serverless_image(session, source.image_uri)
    environment = parse_pairs(args.env, "--env")
    log.info("deploying a %s endpoint %s", mode.name, args.endpoint)
    try:
        if args.sdk == "3":
            from scripts.sagemaker import sdk3

            sdk3.deploy(source.model_data, source.image_uri, role, session.boto_session,
                        args.endpoint, mode, environment, wait=not args.no_wait)  # fmt: skip
        else:
            deploy(source, role, session, args.endpoint, mode, environment, wait=not args.no_wait)
    except Exception as error:
        raise SystemExit(undo_failed_deploy(client, args.endpoint, error)) from None
    print(f"endpoint: {args.endpoint}")
    print(f"console:  {console_url(session.boto_region_name, 'endpoints', args.endpoint)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
