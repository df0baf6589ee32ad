"""The three kinds of SageMaker endpoint `make deploy` makes, and what each imposes on the
container: the server's timeout and payload settings follow the mode's own limits.

| Mode | Make | Payload | Invocation | Container |
|---|---|---|---|---|
| real-time | `make deploy` | 6 MB | 60 s | any instance type, GPUs too |
| serverless | `SERVERLESS=memory_mb` | 4 MB | 60 s | no GPU, 1,024-6,144 MB in steps of 1,024, image at most 10 GB |
| async | `ASYNC=s3://output` | 100 MB here (SageMaker: 1 GB, read from S3) | up to 1 h | any instance type; answers land in S3 |

Async inputs over 100 MB get the server's one-line 413: a body is decoded in one
worker's memory, and 100 MB is the most the server's settings take. The SDK's config
objects are made in `sdk_kwargs`, at deploy time: building them imports the SDK, which
looks for a region and credentials.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions

log = logging.getLogger("deploy")

SERVERLESS_MEMORY_MB = tuple(range(1024, 6144 + 1, 1024))
SERVERLESS_MAX_IMAGE_BYTES = 10 * 1024**3
ECR_IMAGE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^:@]+)[:@](.+)$")


@dataclass(frozen=True)
class Mode:
    name: str
    environment: dict[str, str]  # the server's settings (serve/sagevit_serve/settings.py)
    instances: dict[str, Any] = field(default_factory=dict)  # instance_type, initial_instance_count
    serverless: dict[str, int] | None = None  # memory_size_in_mb, max_concurrency
    async_output: str | None = None  # the S3 prefix async answers go to

    def sdk_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the SDK's `Model.deploy` for this mode."""
        kwargs = dict(self.instances)
        if self.serverless is not None:
            from sagemaker.serverless import ServerlessInferenceConfig

            kwargs["serverless_inference_config"] = ServerlessInferenceConfig(**self.serverless)
        if self.async_output is not None:
            from sagemaker.async_inference import AsyncInferenceConfig

            output = self.async_output.rstrip("/")
            kwargs["async_inference_config"] = AsyncInferenceConfig(
                output_path=output,
                failure_path=f"{output}/failures",  # errors beside answers
            )
        return kwargs


def realtime(instance_type: str, instance_count: int) -> Mode:
    return Mode(
        "real-time",
        {
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "60",  # seconds: SageMaker drops a request at 60
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "6",  # real-time invocations carry at most 6 MB
        },
        {"instance_type": instance_type, "initial_instance_count": instance_count},
    )


def serverless(memory_mb: int, max_concurrency: int = 5) -> Mode:
    """SystemExit for a memory size serverless endpoints do not offer."""
    if memory_mb not in SERVERLESS_MEMORY_MB:
        sizes = ", ".join(map(str, SERVERLESS_MEMORY_MB))
        raise SystemExit(f"SERVERLESS={memory_mb}: serverless memory is one of {sizes} MB")
    return Mode(
        "serverless",
        {
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "60",  # serverless invocations time out at 60 s
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "4",  # and carry at most 4 MB
        },
        serverless={"memory_size_in_mb": memory_mb, "max_concurrency": max_concurrency},
    )


def asynchronous(output_path: str, instance_type: str, instance_count: int) -> Mode:
    if not output_path.startswith("s3://"):
        raise SystemExit(f"ASYNC={output_path}: give the S3 prefix answers go to (s3://...)")
    return Mode(
        "async",
        {
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "3600",  # an async invocation may run an hour
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "100",  # the server's most (SageMaker's: 1 GB)
        },
        {"instance_type": instance_type, "initial_instance_count": instance_count},
        async_output=output_path,
    )


def check_serverless_image(session: Any, image_uri: str) -> None:
    """SystemExit if ECR says the image is over serverless's 10 GB; a warning if it cannot tell."""
    match = ECR_IMAGE.match(image_uri)
    if not match:
        log.warning("cannot check the size of %s (not in ECR); serverless takes at most 10 GB", image_uri)  # fmt: skip
        return
    _, region, repository, reference = match.groups()
    image = (
        {"imageDigest": reference} if reference.startswith("sha256:") else {"imageTag": reference}
    )
    try:
        ecr = session.boto_session.client("ecr", region_name=region)
        details = ecr.describe_images(repositoryName=repository, imageIds=[image])["imageDetails"]
    except botocore.exceptions.ClientError as error:
        log.warning("cannot check the size of %s (%s); serverless takes at most 10 GB", image_uri, error)  # fmt: skip
        return
    size = details[0]["imageSizeInBytes"]
    if size > SERVERLESS_MAX_IMAGE_BYTES:
        raise SystemExit(f"{image_uri} is {size / 1024**3:.1f} GB; serverless endpoints take at most 10 GB")  # fmt: skip
