"""`make bench-finetune`: what fine-tuning a pretrained ViT costs on this machine.

    python -m scripts.bench.finetune [--steps 4] [--requests 20] [--workdir build/bench/finetune]

No public weights are reachable here, so every figure is of random weights in the
published layouts (scripts/local/synthetic_weights.py); speed does not depend on the values.
  1. Conversion: read a timm-layout ViT-Ti/16 and ViT-B/16 safetensors file and load it
     into our model (tensor renaming, layouts, the head replaced), in seconds.
  2. Fine-tuning throughput: `--preset vit-ti16` from that checkpoint on 32x32 images
     resized to 224x224 in the pipeline, batch 64, for two epochs of --steps steps; the
     figure is the second epoch's images/s (the first traces and compiles).
  3. Serving: the exported model behind the Flask app (in process, no gunicorn or
     nginx), one 32x32 JPEG and one 224x224 JSON image a request: body size and latency.
Prints a table and writes bench/results/finetune.json.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np

from sagevit.contract import TRAIN_FILE
from sagevit.flags import parse_hyperparameters
from sagevit.job import run
from sagevit.model.pretrained import load_pretrained, read_checkpoint
from sagevit.model.vit import build_vit
from scripts.bench.common import write_report
from scripts.local.synthetic_weights import write_preset

log = logging.getLogger("bench_finetune")


def conversion(workdir: Path, preset: str) -> dict[str, float]:
    """Seconds to read a timm-layout checkpoint of `preset` and load it into the model."""
    path = workdir / f"{preset}-timm.safetensors"
    if not path.exists():
        write_preset(path, preset, "timm")
    hp = parse_hyperparameters(["--preset", preset, "--num-classes", "10"])
    model = build_vit(**hp.model_kwargs())
    started = time.perf_counter()
    checkpoint = read_checkpoint(path)
    read = time.perf_counter() - started
    load_pretrained(model, checkpoint)
    total = time.perf_counter() - started
    return {"file_mb": path.stat().st_size / 1e6, "read_s": read, "convert_load_s": total - read}


def fine_tuning(workdir: Path, steps: int) -> dict[str, float]:
    """Images/s of the second of two epochs of ViT-Ti/16 fine-tuning at 224x224."""
    hp = parse_hyperparameters(["--preset", "vit-ti16", "--epochs", "2"])
    channel = workdir / "channel"
    rng = np.random.default_rng(0)
    count = hp.batch_size * steps
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)  # CIFAR-sized
    channel.mkdir(exist_ok=True)
    np.savez(channel / TRAIN_FILE, image=images, label=rng.integers(0, 10, count))
    pretrained = workdir / "pretrained"
    pretrained.mkdir(exist_ok=True)
    (pretrained / "model.safetensors").unlink(missing_ok=True)
    (pretrained / "model.safetensors").symlink_to((workdir / "vit-ti16-timm.safetensors").resolve())
    history = run(hp, channel, workdir / "model", pretrained_dir=pretrained)
    seconds = [epoch.metrics["seconds"] for epoch in history]
    return {"batch_size": hp.batch_size, "steps": steps, "first_epoch_s": seconds[0],
            "images_per_s": count / seconds[1]}  # fmt: skip


def serving(model_dir: Path, requests: int) -> dict[str, dict[str, float]]:
    """Body bytes, status and median latency (ms) of one image a request, JPEG and JSON
    (a 32x32 JSON array is refused with a 400 by a 224x224 model: its size is the point)."""
    from PIL import Image

    from sagevit_serve.app import create_app
    from sagevit_serve.predictor import Predictor

    client = create_app(Predictor.load(model_dir)).test_client()
    rng = np.random.default_rng(1)
    small = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    jpeg = io.BytesIO()
    small.save(jpeg, "JPEG", quality=95)
    pixels = np.asarray(small.resize((224, 224), Image.Resampling.BILINEAR)).tolist()
    bodies = {
        "jpeg 32x32": (jpeg.getvalue(), "image/jpeg"),
        "json 224x224": (json.dumps({"instances": [pixels]}).encode(), "application/json"),
        "json 32x32": (
            json.dumps({"instances": [np.asarray(small).tolist()]}).encode(),
            "application/json",
        ),
    }
    results = {}
    for name, (body, kind) in bodies.items():
        latencies, status = [], 0
        for _ in range(requests + 2):  # the first two warm up
            started = time.perf_counter()
            status = client.post("/invocations", data=body, content_type=kind).status_code
            latencies.append((time.perf_counter() - started) * 1000)
        median = statistics.median(latencies[2:])
        results[name] = {"bytes": len(body), "status": status, "median_ms": median}
    return results


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="training steps an epoch")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=Path("build/bench/finetune"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/finetune.json"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    report = {"conversion": {p: conversion(args.workdir, p) for p in ("vit-ti16", "vit-b16")}}
    report["fine_tuning_vit_ti16_224"] = fine_tuning(args.workdir, args.steps)
    report["serving_vit_ti16_224"] = serving(args.workdir / "model", args.requests)
    write_report(report, args.out)
    print_table(report)


def print_table(report: dict) -> None:
    print(f"\n{'conversion (timm safetensors)':<32}{'MB':>8}{'read s':>9}{'load s':>9}")
    for preset, row in report["conversion"].items():
        print(f"{preset:<32}{row['file_mb']:>8.0f}{row['read_s']:>9.2f}{row['convert_load_s']:>9.2f}")  # fmt: skip
    tune = report["fine_tuning_vit_ti16_224"]
    print(f"\nViT-Ti/16 fine-tuning at 224x224, batch {tune['batch_size']}: "
          f"{tune['images_per_s']:.1f} images/s (first epoch, with compiling: {tune['first_epoch_s']:.0f} s)")  # fmt: skip
    print(f"\n{'one request (ViT-Ti/16 224)':<32}{'bytes':>10}{'status':>8}{'median ms':>11}")
    for name, row in report["serving_vit_ti16_224"].items():
        print(f"{name:<32}{row['bytes']:>10,}{row['status']:>8}{row['median_ms']:>11.1f}")


if __name__ == "__main__":
    main()
