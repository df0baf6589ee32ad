"""The `serve` command that SageMaker runs: `docker run IMAGE serve`.

It checks every setting first (a bad one ends it with one line, exit status 1), then
replaces itself with gunicorn (so gunicorn receives SageMaker's SIGTERM directly).
"""

import os
import sys

from sagevit_serve import settings


def main() -> None:
    try:
        settings.from_environ()  # gunicorn_conf reads them again; a bad one stops here
    except ValueError as error:
        sys.exit(f"serve: {error}")
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:sagevit_serve.gunicorn_conf",
        "sagevit_serve.wsgi:app",
    ]
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main()
