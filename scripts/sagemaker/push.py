"""`make push`: tag a local image and push it to ECR, or to any registry given.

    python -m scripts.sagemaker.push --image sagevit:latest --repository sagevit --tag latest
    python -m scripts.sagemaker.push --image sagevit:latest --registry 127.0.0.1:5000 --repository sagevit

Without --registry: creates the ECR repository if it is missing, logs Docker in
with a token from ECR's GetAuthorizationToken (what `aws ecr get-login-password`
prints), then tags and pushes. With --registry, only tags and pushes.
Prints the pushed image URI last.
"""

from __future__ import annotations

import base64
import logging
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from scripts.sagemaker.aws import PROJECT, boto_session, script_parser

log = logging.getLogger("push")


def ensure_repository(ecr: Any, name: str) -> str:
    """Create the ECR repository unless it exists; return its URI."""
    try:
        repository = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except ecr.exceptions.RepositoryNotFoundException:
        log.info("creating ECR repository %s", name)
        repository = ecr.create_repository(
            repositoryName=name, imageScanningConfiguration={"scanOnPush": True}
        )["repository"]
    return repository["repositoryUri"]


def ecr_credentials(ecr: Any) -> tuple[str, str, str]:
    """(registry host, user, password) for `docker login`, from GetAuthorizationToken."""
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    host = data["proxyEndpoint"].removeprefix("https://").removeprefix("http://")
    return host, user, password


def docker(*args: str, stdin: str | None = None) -> None:
    log.info("docker %s", " ".join(args))
    subprocess.run(["docker", *args], input=stdin, text=True, check=True)


def push(image: str, registry: str, repository: str, tag: str) -> str:
    """Tag `image` as registry/repository:tag, push it, and return that URI."""
    uri = f"{registry}/{repository}:{tag}"
    docker("tag", image, uri)
    docker("push", uri)
    return uri


def main(argv: Sequence[str] | None = None) -> int:
    parser = script_parser(__doc__)
    parser.add_argument("--image", default=f"{PROJECT}:latest", help="local image to push")
    parser.add_argument("--registry", help="host[:port] of any registry; skips the ECR steps")
    parser.add_argument("--repository", default=PROJECT, help="repository name")
    parser.add_argument("--tag", default="latest", help="tag to push")
    parser.add_argument("--region", help="AWS region for ECR (default: your AWS config's)")
    args = parser.parse_args(argv)

    registry = args.registry
    if registry is None:
        session = boto_session(args.region)
        ecr = session.client("ecr")
        ensure_repository(ecr, args.repository)
        registry, user, password = ecr_credentials(ecr)
        docker("login", "--username", user, "--password-stdin", registry, stdin=password)
    print(push(args.image, registry, args.repository, args.tag))
    return 0


if __name__ == "__main__":
    sys.exit(main())
