"""`make deploy`: put a real-time endpoint on a trained model, served by the same image.

    python -m scripts.deploy [--job NAME | --model-data s3://.../model.tar.gz --image-uri URI]
                             [--endpoint sagevit] [--instance-type ml.m5.xlarge]

With --job (or neither: the newest completed `sagevit-*` job) the model
artifact, image and role come from the job. SageMaker starts the container with
`serve`; the environment below sizes gunicorn for the instance.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scripts.aws import (
    PROJECT,
    add_session_arguments,
    console_url,
    describe_endpoint,
    latest_training_job,
    parse_pairs,
    resolve_role,
    sagemaker_session,
    script_parser,
)
from scripts.cleanup import delete_endpoint

log = logging.getLogger("deploy")

# The server's settings (serve/sagevit_serve/settings.py), set to SageMaker's limits.
SERVING_ENVIRONMENT = {
    "SAGEMAKER_MODEL_SERVER_TIMEOUT": "60",  # seconds: SageMaker drops a request at 60
    "SAGEMAKER_MAX_PAYLOAD_IN_MB": "6",  # real-time invocations carry at most 6 MB
}


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
    instance_type: str,
    instance_count: int = 1,
    environment: dict[str, str] | None = None,
    wait: bool = True,
) -> None:
    """Create the model, its endpoint config and the endpoint (all named `endpoint_name`-...)."""
    from sagemaker.model import Model
    from sagemaker.utils import name_from_base

    model = Model(
        image_uri=source.image_uri,
        model_data=source.model_data,
        role=role,
        env={**SERVING_ENVIRONMENT, **(environment or {})},
        name=name_from_base(endpoint_name),
        sagemaker_session=session,
    )
    model.deploy(
        initial_instance_count=instance_count,
        instance_type=instance_type,
        endpoint_name=endpoint_name,
        tags=[{"Key": "project", "Value": PROJECT}],
        wait=wait,
    )


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
    parser.add_argument("--instance-type", default="ml.m5.xlarge", help="4 vCPUs, no GPU")
    parser.add_argument("--instance-count", type=int, default=1)
    parser.add_argument(
        "--env", action="append", metavar="KEY=VALUE", help="more server settings (repeatable)"
    )
    parser.add_argument("--no-wait", action="store_true", help="return before it is InService")
    args = parser.parse_args(argv)

    session = sagemaker_session(args.region, args.bucket)
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
    environment = parse_pairs(args.env, "--env")
    try:
        deploy(source, role, session, args.endpoint, args.instance_type, args.instance_count,
               environment, wait=not args.no_wait)  # fmt: skip
    except Exception as error:
        raise SystemExit(undo_failed_deploy(client, args.endpoint, error)) from None
    print(f"endpoint: {args.endpoint}")
    print(f"console:  {console_url(session.boto_region_name, 'endpoints', args.endpoint)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
