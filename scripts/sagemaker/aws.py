"""What the SageMaker scripts share: sessions, the defaults they discover, names and links.

Every client here is made by boto3, so the standard AWS_ENDPOINT_URL (and
AWS_ENDPOINT_URL_<SERVICE>) variables aim them all elsewhere: the tests point
them at a moto server on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions

log = logging.getLogger("aws")

PROJECT = "sagevit"  # base job name, default repository and endpoint, tag value
DATA_PREFIX = f"{PROJECT}/data"  # s3://BUCKET/sagevit/data/{train,validation}/
SDKS = (
    "2",
    "3",
)  # SageMaker Python SDK majors: v2 (Estimator, the default) and v3 (scripts.sagemaker.sdk3)


@dataclass(frozen=True)
class JobSpec:
    """The training job `make train` and `make tune` ask for, whichever SDK sends it
    (scripts.sagemaker.launch.build_estimator for v2, scripts.sagemaker.sdk3.model_trainer for v3)."""

    image_uri: str
    role: str
    hyperparameters: dict[str, str]  # strings, as SageMaker passes them on
    instance_type: str
    instance_count: int = 1
    output_path: str | None = None  # default: s3://BUCKET/sagevit/output
    spot: bool = False
    max_run: int = 24 * 3600  # seconds of training
    max_wait: int | None = None  # spot: seconds of waiting plus training (default 2 x max_run)
    checkpoint_s3_uri: str | None = None  # synced with /opt/ml/checkpoints
    tags: dict[str, str] = field(default_factory=dict)  # besides project=sagevit
    input_mode: str = "File"  # or FastFile: S3 read lazily, as the trainer reads (never Pipe)
    sharded: frozenset[str] = frozenset()  # channels SageMaker splits by host (ShardedByS3Key)

    def distribution(self, channel: str) -> str:
        """The channel's S3DataDistributionType."""
        return "ShardedByS3Key" if channel in self.sharded else "FullyReplicated"


def script_parser(doc: str | None) -> argparse.ArgumentParser:
    """Each script's start: plain log lines on stderr and a parser showing its docstring."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_session_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", help="AWS region (default: your AWS config's)")
    parser.add_argument(
        "--bucket", help="S3 bucket (default: the SageMaker default, sagemaker-REGION-ACCOUNT)"
    )


def boto_session(region: str | None = None) -> boto3.Session:
    session = boto3.Session(region_name=region)
    if session.region_name is None:
        raise SystemExit("no AWS region: pass --region / AWS_REGION=, or set one in ~/.aws/config")
    return session


def sagemaker_session(region: str | None = None, bucket: str | None = None) -> Any:
    """A SageMaker SDK v2 session; its default bucket is created on first use if missing."""
    import sagemaker  # slow to import: only the scripts that talk to SageMaker need it

    return sagemaker.Session(boto_session=boto_session(region), default_bucket=bucket)


def add_sdk_argument(parser: argparse.ArgumentParser, v2: str, v3: str) -> None:
    """`--sdk 2|3`: which SDK sends the requests; `v2` and `v3` say through what."""
    parser.add_argument("--sdk", choices=SDKS, default="2", help=f"SageMaker SDK: v2 {v2}, v3 {v3}")  # fmt: skip


def session_for(sdk: str, region: str | None, bucket: str | None) -> Any:
    """`sagemaker_session` for SDK v2, scripts.sagemaker.sdk3.session for v3: both answer
    `.sagemaker_client`, `.boto_session`, `.default_bucket()` and `.boto_region_name`."""
    if sdk == "3":
        from scripts.sagemaker import sdk3

        return sdk3.session(boto_session(region), bucket)
    return sagemaker_session(region, bucket)


def timestamped(base: str, limit: int = 63) -> str:
    """`base`-YYYY-MM-DD-HH-MM-SS-mmm, as both SDKs name jobs, with `base` cut so that the
    name fits in `limit` characters (SageMaker's 63; 32 for a tuning job)."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(now)) + f"-{int(now * 1000) % 1000:03d}"
    return f"{base[: limit - len(stamp) - 1]}-{stamp}"


def account_id(session: boto3.Session) -> str:
    return session.client("sts").get_caller_identity()["Account"]


def ecr_registry(session: boto3.Session) -> str:
    """This account's ECR registry host, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com."""
    return f"{account_id(session)}.dkr.ecr.{session.region_name}.amazonaws.com"


def resolve_role(role: str | None, sm_session: Any) -> str:
    """The execution role: as given, else the notebook's own role when run inside SageMaker."""
    if role:
        return role
    try:
        from sagemaker import get_execution_role  # SDK v2
    except ImportError:
        from sagemaker.core.helper.session_helper import get_execution_role  # SDK v3

    try:
        return get_execution_role(sm_session)
    except ValueError:
        raise SystemExit(
            "no execution role: pass ROLE=arn:aws:iam::ACCOUNT:role/NAME (see docs/sagemaker.md)"
        ) from None


def parse_pairs(items: list[str] | None, what: str) -> dict[str, str]:
    """["key=value", ...] -> {"key": "value"}; values stay strings, as SageMaker sends them."""
    pairs = {}
    for item in items or []:
        for word in item.split():
            key, sep, value = word.partition("=")
            if not sep or not key:
                raise SystemExit(f"{what} must look like key=value, got {word!r}")
            pairs[key] = value
    return pairs


def console_url(region: str, kind: str, name: str) -> str:
    """A link to a job or endpoint in the SageMaker console (kind: jobs, endpoints)."""
    return f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/{kind}/{name}"


def latest_training_job(sagemaker_client: Any, name_contains: str = PROJECT) -> str:
    """The newest completed training job whose name contains `name_contains`."""
    jobs = sagemaker_client.list_training_jobs(
        NameContains=name_contains,
        StatusEquals="Completed",
        SortBy="CreationTime",
        SortOrder="Descending",
    )["TrainingJobSummaries"]
    if not jobs:
        raise SystemExit(f"no completed training job named like {name_contains!r}: pass JOB=")
    # The page is newest first already; max() keeps it right where a server ignores SortBy.
    return max(jobs, key=lambda job: job["CreationTime"])["TrainingJobName"]


def is_missing(error: botocore.exceptions.ClientError) -> bool:
    """SageMaker's answer for a name that does not exist: a ValidationException that says
    "Could not find ..." (other ValidationExceptions are real errors)."""
    details = error.response["Error"]
    return details["Code"] == "ValidationException" and "could not find" in details.get("Message", "").lower()  # fmt: skip


def describe_endpoint(sagemaker_client: Any, name: str) -> dict | None:
    """DescribeEndpoint's answer, or None if there is no such endpoint."""
    try:
        return sagemaker_client.describe_endpoint(EndpointName=name)
    except botocore.exceptions.ClientError as error:
        if is_missing(error):
            return None
        raise


def upload(session: boto3.Session, path: Path, uri: str) -> None:
    """Upload one file to an s3:// URI, drawing a progress bar on stderr."""
    from tqdm import tqdm

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    size = path.stat().st_size
    with tqdm(total=size, unit="B", unit_scale=True, desc=f"{path.name} -> {uri}") as bar:
        session.client("s3").upload_file(str(path), bucket, key, Callback=bar.update)
