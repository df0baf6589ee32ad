"""`make delete-endpoint`: delete an endpoint, its endpoint config and its model(s), so billing stops.

    python -m scripts.sagemaker.cleanup [--endpoint sagevit]

Endpoint first, then its config, then the models: each on its own, whether or not
the others still exist (a deploy that failed halfway leaves a config and models with
no endpoint, and a crash between two deletes leaves models with no config). The
config is the endpoint's, or else the one `make deploy` names after the endpoint;
the models are the config's, and those `make deploy` named after the endpoint
(`ENDPOINT-<timestamp>`). Throttled calls are retried; what is already gone is
skipped; any other error stops the clean-up with its message. Training jobs, S3 data
and the ECR image are left alone (they cost little or nothing while idle).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import botocore.exceptions

from scripts.sagemaker.aws import (
    PROJECT,
    add_session_arguments,
    boto_session,
    is_missing,
    script_parser,
)

log = logging.getLogger("cleanup")

THROTTLING = {"ThrottlingException", "Throttling", "TooManyRequestsException"}
RETRIES = 6  # throttled calls: waits of 1, 2, 4, 8, 16 s between the tries


def call(
    method: Callable[..., Any], sleep: Callable[[float], None] = time.sleep, **kwargs: Any
) -> Any:
    """`method(**kwargs)`, tried again after throttling, with a doubling wait."""
    for attempt in range(RETRIES):
        try:
            return method(**kwargs)
        except botocore.exceptions.ClientError as error:
            if error.response["Error"]["Code"] not in THROTTLING or attempt == RETRIES - 1:
                raise
            log.info("throttled; trying %s again", method.__name__)
            sleep(2.0**attempt)
    raise AssertionError("unreachable")


def describe(
    method: Callable[..., Any], sleep: Callable[[float], None], **kwargs: Any
) -> dict | None:
    """The description, or None if there is no such thing."""
    try:
        return call(method, sleep, **kwargs)
    except botocore.exceptions.ClientError as error:
        if is_missing(error):
            return None
        raise


def deployed_models(client: Any, endpoint_name: str, sleep: Callable[[float], None]) -> set[str]:
    """Models `make deploy` created for this endpoint: named `ENDPOINT-<timestamp>`."""
    pattern = re.compile(rf"^{re.escape(endpoint_name)}-\d{{4}}-\d\d-\d\d-")
    names, token = set(), None
    while True:
        page = call(client.list_models, sleep, NameContains=endpoint_name, **({"NextToken": token} if token else {}))  # fmt: skip
        names |= {m["ModelName"] for m in page["Models"] if pattern.match(m["ModelName"])}
        token = page.get("NextToken")
        if not token:
            return names


def delete_endpoint(client: Any, endpoint_name: str, sleep: Callable[[float], None] = time.sleep) -> list[str]:  # fmt: skip
    """Delete the endpoint, then its config, then its models, whichever exist; return
    what was deleted. Running it again deletes nothing and succeeds."""
    deleted = []

    def delete(kind: str, method: Callable[..., Any], **name: str) -> None:
        try:
            call(method, sleep, **name)
            deleted.append(f"{kind} {next(iter(name.values()))}")
        except botocore.exceptions.ClientError as error:
            if not is_missing(error):  # deleted meanwhile by someone else: fine
                raise

    endpoint = describe(client.describe_endpoint, sleep, EndpointName=endpoint_name)
    config_name = endpoint["EndpointConfigName"] if endpoint else endpoint_name
    if endpoint:
        delete("endpoint", client.delete_endpoint, EndpointName=endpoint_name)
    config = describe(client.describe_endpoint_config, sleep, EndpointConfigName=config_name)
    models = deployed_models(client, endpoint_name, sleep)
    if config:
        models |= {variant["ModelName"] for variant in config["ProductionVariants"]}
        delete("endpoint config", client.delete_endpoint_config, EndpointConfigName=config_name)
    for model in sorted(models):
        delete("model", client.delete_model, ModelName=model)
    if not deleted:
        log.info("nothing named for endpoint %s to delete", endpoint_name)
    return deleted


def main(argv: Sequence[str] | None = None) -> int:
    parser = script_parser(__doc__)
    add_session_arguments(parser)
    parser.add_argument("--endpoint", default=PROJECT, help="endpoint name")
    args = parser.parse_args(argv)
    client = boto_session(args.region).client("sagemaker")
    for what in delete_endpoint(client, args.endpoint):
        print(f"deleted {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
