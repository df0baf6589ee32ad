"""The `serve` command that SageMaker runs: `docker run IMAGE serve`.

It replaces itself with gunicorn (so gunicorn receives SageMaker's SIGTERM directly).
"""

import os
import sys


def main() -> None:
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
