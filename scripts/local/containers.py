"""Drive the image the way SageMaker does: `train` with /opt/ml mounted, `serve` on a port.

Used by the demo, `make train-local` and the container tests. Containers use the
host's network (`--network host`), so the server is reached on 127.0.0.1.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from sagevit.contract import CHECKPOINT_DIR, MODEL_DIR, OPT_ML

# SageMaker names training hosts algo-1, algo-2, ...; the name must resolve in the container.
TRAINING_HOST = "algo-1"


def docker(*args: str, timeout: float | None = None, check: bool = True) -> str:
    """Run a docker command and return its stdout; raise with its stderr if it fails."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def gpu_flags() -> list[str]:
    """`--gpus all` when this machine has an NVIDIA GPU, else nothing."""
    if shutil.which("nvidia-smi") is None:
        return []
    probe = subprocess.run(["nvidia-smi", "-L"], capture_output=True)
    return ["--gpus", "all"] if probe.returncode == 0 else []


def image_exists(image: str) -> bool:
    return (
        subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0
    )


def training_command(
    image: str, opt_ml: Path, checkpoints: Path | None = None, extra_flags: Sequence[str] = ()
) -> list[str]:
    """`docker run IMAGE train` with `opt_ml` as /opt/ml, as SageMaker runs a training job;
    `checkpoints`, if given, is mounted at /opt/ml/checkpoints (what SageMaker syncs to S3);
    `extra_flags` go to `docker run`."""
    mounts = ["-v", f"{opt_ml.resolve()}:{OPT_ML}"]
    if checkpoints is not None:
        checkpoints.mkdir(parents=True, exist_ok=True)
        mounts += ["-v", f"{checkpoints.resolve()}:{CHECKPOINT_DIR}"]
    return [
        "docker", "run", "--network", "host", "--add-host", f"{TRAINING_HOST}:127.0.0.1",
        *mounts, *gpu_flags(), *extra_flags, image, "train",
    ]  # fmt: skip


def run_training(
    image: str,
    opt_ml: Path,
    timeout: float = 1800,
    capture: bool = False,
    checkpoints: Path | None = None,
    extra_flags: Sequence[str] = (),
) -> subprocess.CompletedProcess:
    """Run a training container to the end (removed after). Output streams to our
    terminal unless `capture` is set."""
    command = training_command(image, opt_ml, checkpoints, extra_flags)
    command.insert(2, "--rm")
    return subprocess.run(command, timeout=timeout, capture_output=capture, text=True)


def start_training(image: str, opt_ml: Path, checkpoints: Path | None = None) -> str:
    """Start a training container in the background; return its id (remove it after)."""
    command = training_command(image, opt_ml, checkpoints)
    command.insert(2, "-d")
    return docker(*command[1:]).strip()


def start_serving(
    image: str,
    model_dir: Path,
    port: int,
    workers: int | None = None,
    gpus: bool | None = None,
    extra_flags: Sequence[str] = (),
) -> str:
    """`docker run -d IMAGE serve` on 127.0.0.1:port; return the container id.
    `gpus`: with `--gpus all` (True), without (False), or if this machine has a GPU (None);
    `extra_flags` go to `docker run`."""
    env = ["-e", f"SAGEMAKER_BIND_TO_PORT={port}", "-e", "SAGEVIT_BIND_HOST=127.0.0.1"]
    if workers is not None:
        env += ["-e", f"SAGEMAKER_MODEL_SERVER_WORKERS={workers}"]
    output = docker(
        "run",
        "-d",
        "--network",
        "host",
        *env,
        "-v",
        f"{model_dir.resolve()}:{MODEL_DIR}:ro",
        *(gpu_flags() if gpus is None else ["--gpus", "all"] if gpus else []),
        *extra_flags,
        image,
        "serve",
    )
    return output.strip()


def stop_container(container: str, timeout: int = 30) -> int:
    """`docker stop` (SIGTERM, then SIGKILL after `timeout` s); return the exit code."""
    docker("stop", "--time", str(timeout), container, timeout=timeout + 30)
    return int(docker("inspect", "--format", "{{.State.ExitCode}}", container).strip())


def remove_container(container: str) -> None:
    docker("rm", "--force", container, check=False)
