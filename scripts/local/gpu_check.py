"""`make gpu-check`: prove on a GPU machine that the image trains and serves on the GPU.

Needs an NVIDIA GPU, Docker and the NVIDIA container runtime (`docker run --gpus all`).

    python -m scripts.local.gpu_check --image sagevit:gpu      # after `make build BASE_IMAGE=...`

1. In the image with --gpus all, `python -m sagevit.platform.gpu --check --json`: TensorFlow sees a GPU
   and every CUDA library it loads has the version it was built for.
2. One epoch of the generated shapes with --gpus all, precision and XLA on `auto`: the log
   must show a GPU in the device table, a 16-bit compute dtype, XLA on, and the weights (so
   the training step) on the GPU.
3. The model served twice, with and without --gpus all: the same images get the same
   probabilities within --atol (bfloat16 on the GPU against float32 on the CPU).

Each check prints PASS or FAIL with its reason; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sagevit.contract import METADATA_FILE, VALIDATION_FILE
from scripts.local.containers import (
    TRAINING_HOST,
    docker,
    remove_container,
    run_training,
    start_serving,
    stop_container,
)
from scripts.local.sagemaker_layout import write_training_layout
from scripts.local.server_process import free_port, post_json, wait_until_ready
from scripts.prepare_data import prepare

log = logging.getLogger("gpu-check")

GPU_FLAGS = ("--gpus", "all")
ONE_EPOCH = {"epochs": 1, "batch-size": 256, "mixed-precision": "auto", "jit-compile": "auto"}


def report_problems(report: dict) -> list[str]:
    """What `python -m sagevit.platform.gpu --json` says is wrong with the GPU setup."""
    problems = [] if report["gpus"] else ["TensorFlow sees no GPU"]
    for lib in report["libraries"]:
        if lib["used_by_tensorflow"] and not lib["compatible"]:
            found = ".".join(map(str, lib["version"])) if lib["version"] else "missing"
            wanted = ".".join(map(str, lib["required"] or ()))
            problems.append(f"{lib['soname']}: {found}, TensorFlow wants {wanted}")
    return problems


def training_problems(log_text: str) -> list[str]:
    """What the training log says is not on the GPU."""
    checks = {
        r"sees [1-9]\d* GPU": "the device table lists no GPU",
        r"compute dtype (bfloat16|float16), XLA on": "mixed precision or XLA is off",
        r"weights on \S*device:GPU:\d": "the weights (and the training step) are not on a GPU",
        r"epoch=1\b": "no epoch finished",
    }
    return [problem for pattern, problem in checks.items() if not re.search(pattern, log_text)]


def prediction_problems(on_gpu: np.ndarray, on_cpu: np.ndarray, atol: float) -> list[str]:
    """Whether the GPU and CPU servers agree on every probability, within atol."""
    if on_gpu.shape != on_cpu.shape:
        return [f"shapes differ: {on_gpu.shape} on the GPU, {on_cpu.shape} on the CPU"]
    worst = float(np.abs(on_gpu - on_cpu).max())
    return [] if worst <= atol else [f"probabilities differ by up to {worst:.4f} > {atol}"]


def device_report(image: str) -> dict:
    output = docker(
        "run",
        "--rm",
        *GPU_FLAGS,
        "--entrypoint",
        "python",
        image,
        "-m",
        "sagevit.platform.gpu",
        "--json",
    )
    return json.loads(output.strip().splitlines()[-1])


def train_one_epoch(image: str, workdir: Path) -> tuple[Path, str, Path]:
    """(model folder, training log, channel) after one epoch on the GPU."""
    channel = prepare("synthetic", workdir / "data", count=10000, validation_size=1000)
    opt_ml = workdir / "opt_ml"
    write_training_layout(opt_ml, ONE_EPOCH, {"train": channel}, host=TRAINING_HOST)
    result = run_training(image, opt_ml, capture=True)  # --gpus all: this machine has a GPU
    return opt_ml / "model", result.stdout + result.stderr, channel


def served_probabilities(image: str, model_dir: Path, pixels: np.ndarray, gpus: bool) -> np.ndarray:
    port = free_port()
    container = start_serving(image, model_dir, port, workers=1, gpus=gpus)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, timeout=300)
        status, body = post_json(f"{url}/invocations", {"instances": pixels.tolist()})
        if status != 200:
            raise RuntimeError(f"/invocations answered {status}: {body}")
        return np.asarray(body["predictions"], dtype=np.float64)
    finally:
        stop_container(container)
        remove_container(container)


def run_checks(image: str, workdir: Path, atol: float) -> dict[str, list[str]]:
    results = {"CUDA libraries and devices": report_problems(device_report(image))}
    model_dir, training_log, channel = train_one_epoch(image, workdir)
    (workdir / "train.log").write_text(training_log)
    results["training on the GPU"] = training_problems(training_log)
    if not (model_dir / METADATA_FILE).is_file():
        results["serving: GPU equals CPU"] = ["training wrote no model"]
        return results
    with np.load(channel / VALIDATION_FILE, allow_pickle=False) as npz:
        pixels = npz["image"][:32]
    on_gpu = served_probabilities(image, model_dir, pixels, gpus=True)
    on_cpu = served_probabilities(image, model_dir, pixels, gpus=False)
    results["serving: GPU equals CPU"] = prediction_problems(on_gpu, on_cpu, atol)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", required=True, help="the image built on the real base")
    parser.add_argument("--workdir", type=Path, default=Path("build/gpu-check"))
    parser.add_argument("--atol", type=float, default=0.02, help="largest probability difference")
    args = parser.parse_args(argv)
    results = run_checks(args.image, args.workdir, args.atol)
    for name, problems in results.items():
        print(
            f"{'PASS' if not problems else 'FAIL'}  {name}"
            + "".join(f"\n      {p}" for p in problems)
        )
    print(f"training log: {args.workdir / 'train.log'}")
    return 1 if any(results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
