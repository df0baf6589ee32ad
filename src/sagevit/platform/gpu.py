"""What TensorFlow makes of the GPUs this container was given, and why, asked at start-up.

  * the GPUs given to the container: the /dev/nvidiaN device files the NVIDIA container
    runtime creates (the base image sets NVIDIA_VISIBLE_DEVICES=all with or without a GPU);
  * the GPUs TensorFlow sees, with their compute capability and the cuDNN it loaded;
  * when it sees none of those it was given, why: the first missing or too old library
    (sagevit.platform.cuda_libs).

`python -m sagevit.platform.gpu` prints all of it (`--json` for machines; `--check` exits 1 when a
library TensorFlow uses is missing or too old). `train` refuses to run on the CPU when it was
given GPUs that TensorFlow cannot use (`require_gpus`), unless --allow-cpu.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import tensorflow as tf

from sagevit.errors import GpuUnavailable
from sagevit.platform.cuda_libs import (
    Loaded,
    build_info,
    dotted,
    driver_path,
    load_libraries,
    loaded_cudnn,
    mapped_cuda_files,
)
from sagevit.platform.machine import available_cpus, given_gpus

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Device:
    name: str  # GPU:0
    model: str  # NVIDIA H100 80GB HBM3
    compute_capability: tuple[int, int]


def visible_gpus() -> list[Device]:
    """The GPUs TensorFlow can use (none when a library or the driver is missing)."""
    devices = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        devices.append(
            Device(
                device.name.removeprefix("/physical_device:"),
                details.get("device_name", "unknown GPU"),
                tuple(details.get("compute_capability", (0, 0))),
            )
        )
    return devices


def device_report(given: Sequence[str], gpus: Sequence[Device], cudnn: str, cpus: int) -> list[str]:
    """The lines `train` and `serve` log at start: what TensorFlow runs on, and why."""
    built = build_info()
    head = f"TensorFlow {tf.__version__} (built for CUDA {built['cuda'] or '-'}, cuDNN {built['cudnn'] or '-'})"
    given_text = ", ".join(f"/dev/{name}" for name in given) or "none"
    if not gpus:
        return [f"{head} sees no GPU (GPU devices given: {given_text}); running on {cpus} CPU(s)"]
    lines = [f"{head} sees {len(gpus)} GPU(s) (GPU devices given: {given_text}):"]
    for gpu in gpus:
        major, minor = gpu.compute_capability
        lines.append(
            f"  {gpu.name}  {gpu.model}  compute capability {major}.{minor}  cuDNN {cudnn}"
        )
    return lines


def log_devices(given: Sequence[str]) -> list[Device]:
    """Log what TensorFlow runs on (at the start of `train` and of each `serve` worker)."""
    gpus = visible_gpus()
    for line in device_report(given, gpus, loaded_cudnn() if gpus else "-", available_cpus()):
        log.info("%s", line)
    return gpus


def grow_memory_as_needed() -> None:
    """Let several processes share a GPU: each takes memory as it needs it, not all at once."""
    for device in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(device, True)


def diagnose(driver: str | None, libraries: Sequence[Loaded]) -> str:
    """Why TensorFlow sees no GPU, in a clause: the first missing piece, driver first."""
    if driver is None:
        return (
            "the NVIDIA driver's libcuda.so.1 is not in the container"
            " (start it with the NVIDIA container runtime: docker run --gpus all)"
        )
    if "/stubs/" in driver:
        return f"libcuda.so.1 is CUDA's stub ({driver}), not the NVIDIA driver's (docker run --gpus all)"
    built = build_info()
    for lib in libraries:
        if not lib.used_by_tensorflow:
            continue
        if lib.path is None:
            return f"it cannot load {lib.soname} (it was built for CUDA {built['cuda']} and cuDNN {built['cudnn']})"
        if not lib.compatible:
            return (
                f"{lib.soname} is version {dotted(lib.version)} ({lib.path}),"
                f" not the {dotted(lib.required)} or newer it was built for"
            )
    return "every CUDA library it needs loads, so see TensorFlow's own log lines above"


def require_gpus(
    given: Sequence[str],
    gpus: Sequence[Device],
    allow_cpu: bool,
    reason: Callable[[], str] = lambda: diagnose(driver_path(), load_libraries()),
) -> None:
    """Raise GpuUnavailable when GPUs were given but TensorFlow sees none; with `allow_cpu`
    (train's --allow-cpu, and always for `serve`), log it as a warning instead."""
    if not given or gpus:
        return
    devices = ", ".join(f"/dev/{name}" for name in given)
    message = f"This container was given GPUs ({devices}) but TensorFlow {tf.__version__} sees none: {reason()}"
    if allow_cpu:
        log.warning("%s; running on the CPU instead", message)
        return
    raise GpuUnavailable(f"{message}; pass --allow-cpu True to train on the CPU anyway.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sagevit.platform.gpu", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a library is missing or too old"
    )
    args = parser.parse_args(argv)
    libraries = load_libraries()  # before anything else loads them
    gpus = visible_gpus()
    report = {
        "tensorflow": tf.__version__,
        "build": build_info(),
        "given": given_gpus(),
        "cpus": available_cpus(),
        "gpus": [dataclasses.asdict(gpu) for gpu in gpus],
        "driver": driver_path(),
        "libraries": [
            dict(dataclasses.asdict(lib), compatible=lib.compatible) for lib in libraries
        ],
        "mapped": mapped_cuda_files(),
        "tensorflow_dir": str(Path(tf.__file__).parent),
    }
    if args.json:
        print(json.dumps(report))
    else:
        lines = device_report(
            report["given"], gpus, loaded_cudnn() if gpus else "-", report["cpus"]
        )
        lines += [f"driver: {report['driver'] or 'libcuda.so.1 not found'}"]
        lines += [lib.describe() for lib in libraries]
        print("\n".join(lines))
    failed = [lib for lib in libraries if lib.used_by_tensorflow and not lib.compatible]
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
