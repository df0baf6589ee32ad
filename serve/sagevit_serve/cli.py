"""The `serve` command that SageMaker runs: `docker run IMAGE serve`.

It checks every setting first (a bad one ends it with one line, exit status 1), then runs
two processes and stays between them and SageMaker's signals:

    client -> nginx on 0.0.0.0:8080 (nginx.py) -> unix socket -> gunicorn workers (gunicorn_conf.py)

SIGTERM (SageMaker stopping the container) reaches both: nginx finishes its open requests
(SIGQUIT) and gunicorn its in-flight ones. If either process ends on its own, the other is
stopped and `serve` exits with the first one's status (gunicorn's is 3 when a model
cannot load), so the container stops with its reason in the log.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from sagevit_serve import nginx, settings


def _start(run_dir: Path, config: settings.Settings) -> tuple[subprocess.Popen, subprocess.Popen]:
    upstream = run_dir / "gunicorn.sock"
    (run_dir / "nginx.conf").write_text(nginx.render(config, run_dir, upstream))
    gunicorn = subprocess.Popen([
        sys.executable, "-m", "gunicorn", "--config", "python:sagevit_serve.gunicorn_conf",
        "--bind", f"unix:{upstream}", "sagevit_serve.wsgi:app",
    ])  # fmt: skip
    proxy = subprocess.Popen(["nginx", "-p", str(run_dir), "-c", str(run_dir / "nginx.conf")])
    return gunicorn, proxy


def _stop(gunicorn: subprocess.Popen, proxy: subprocess.Popen) -> None:
    """Graceful for both: nginx on SIGQUIT, gunicorn on SIGTERM."""
    for process, stop_signal in ((proxy, signal.SIGQUIT), (gunicorn, signal.SIGTERM)):
        if process.poll() is None:
            process.send_signal(stop_signal)


def main() -> None:
    try:
        config = settings.from_environ()
    except ValueError as error:
        sys.exit(f"serve: {error}")
    if shutil.which("nginx") is None:
        sys.exit("serve: nginx is not installed (apt-get install nginx); it fronts gunicorn")
    run_dir = Path(tempfile.mkdtemp(prefix="sagevit-serve-"))
    run_dir.chmod(0o711)  # nginx's workers (user nobody) reach the socket and temp folders
    gunicorn, proxy = _start(run_dir, config)
    asked_to_stop = []

    def on_signal(number: int, _frame: object) -> None:
        asked_to_stop.append(number)
        _stop(gunicorn, proxy)

    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, on_signal)
    first_pid, status = os.wait()  # whichever ends first: on a signal, or failing alone
    first = gunicorn if first_pid == gunicorn.pid else proxy
    first.returncode = os.waitstatus_to_exitcode(status)
    _stop(gunicorn, proxy)
    gunicorn.wait()
    proxy.wait()
    shutil.rmtree(run_dir, ignore_errors=True)
    code = first.returncode
    if code < 0:  # killed by a signal: the shell's convention
        code = 128 - code
    sys.exit(0 if asked_to_stop and code in (0, 128 + signal.SIGTERM) else code)


if __name__ == "__main__":
    main()
