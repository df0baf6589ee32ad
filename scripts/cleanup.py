"""`make delete-endpoint`: delete an endpoint, its endpoint config and its model(s), so billing stops.

    python -m scripts.cleanup [--endpoint sagevit]

Training jobs, S3 data and the ECR image are left alone (they cost little or
nothing while idle). Deleting what is already gone is not an error.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from scripts.aws import (
    PROJECT,
    add_session_arguments,
    boto_session,
    describe_endpoint,
    script_parser,
)

log = logging.getLogger("cleanup")


def delete_endpoint(sagemaker_client: Any, endpoint_name: str) -> list[str]:
    """Delete the endpoint, then its config, then the config's models; return what went."""
    deleted = []
    endpoint = describe_endpoint(sagemaker_client, endpoint_name)
    if endpoint is None:
        log.info("no endpoint %s", endpoint_name)
        return deleted
    config_name = endpoint["EndpointConfigName"]
    sagemaker_client.delete_endpoint(EndpointName=endpoint_name)
    deleted.append(f"endpoint {endpoint_name}")
    try:
        config = sagemaker_client.describe_endpoint_config(EndpointConfigName=config_name)
    except sagemaker_client.exceptions.ClientError:
        log.info("endpoint config %s is already gone", config_name)
        return deleted
    sagemaker_client.delete_endpoint_config(EndpointConfigName=config_name)
    deleted.append(f"endpoint config {config_name}")
    for variant in config["ProductionVariants"]:
        sagemaker_client.delete_model(ModelName=variant["ModelName"])
        deleted.append(f"model {variant['ModelName']}")
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
