"""`make bench-train`: accuracy by epoch and training throughput, default recipe vs the seed's.

    python -m scripts.bench_train [--data PATH] [--default-epochs 10] [--seed-epochs 5]

Data: the CIFAR-10 training JPEGs (../shared/data/cifar10-train-jpeg.tar.gz, or
--data / SAGEVIT_CIFAR10), split 45,000 / 5,000 with a fixed seed: the 5,000 are a
validation split carved from the training images, not the CIFAR-10 test set.

Runs, in this one process, on this machine:
  * default:  our trainer with the default recipe, --default-epochs epochs;
  * seed:     the seed notebook's own recipe, written below as the baseline: its
              post-norm ViT, `model.compile(AdamW(3e-4, weight_decay=1e-4))`,
              `model.fit(x, y, batch_size=256)`, no augmentation;
  * ours@seed: our trainer and input pipeline with the seed's architecture and batch
              size (`--preset seed`), for images/s against the seed's own loop.
Prints a table and writes bench/results/train.json. Throughput excludes each run's
first epoch (tracing and warm-up).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from sagevit.config import parse_hyperparameters
from sagevit.data import TRAIN_FILE, VALIDATION_FILE, load_channel
from sagevit.model import build_vit
from sagevit.train import run
from scripts.prepare_data import prepare

log = logging.getLogger("bench_train")
DEFAULT_ARCHIVE = Path("../shared/data/cifar10-train-jpeg.tar.gz")
SEED_MFLOP_PER_IMAGE = 65  # forward + backward at the seed size (issue 5's count)
CHECKPOINTS = (1, 3, 5, 10)


def prepare_cifar10(source: Path, workdir: Path, validation_size: int) -> Path:
    channel = workdir / "cifar10"
    if not (channel / TRAIN_FILE).is_file():
        prepare(str(source), channel, validation_size=validation_size, seed=0)
    return channel


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs: dict | None = None) -> None:
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        # Keras times validation inside the epoch too; so does our trainer.
        self.seconds.append(time.perf_counter() - self.started)


def seed_recipe(channel: Path, epochs: int) -> list[dict]:
    """The seed notebook's training, as it wrote it: Keras compile/fit on arrays."""
    hp = parse_hyperparameters(["--preset", "seed"])
    keras.utils.set_random_seed(hp.seed)
    train = load_channel(channel, TRAIN_FILE, "train", 32, 10)
    val = load_channel(channel, VALIDATION_FILE, "validation", 32, 10)
    model = build_vit(**hp.model_kwargs())
    model.compile(
        optimizer=keras.optimizers.AdamW(hp.learning_rate, weight_decay=hp.weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    timer = EpochTimer()
    history = model.fit(
        train.images,
        train.labels,
        batch_size=hp.batch_size,
        epochs=epochs,
        validation_data=(val.images, val.labels),
        callbacks=[timer],
        verbose=2,
    )
    return [
        {"epoch": i + 1, "val_accuracy": history.history["val_accuracy"][i], "seconds": seconds}
        for i, seconds in enumerate(timer.seconds)
    ]


def our_recipe(channel: Path, workdir: Path, argv: list[str]) -> list[dict]:
    history = run(parse_hyperparameters(argv), channel, workdir / "model", validation_dir=channel)
    return [{"epoch": r.epoch, **r.metrics} for r in history]


def images_per_second(epochs: list[dict], train_size: int) -> float:
    later = [e["seconds"] for e in epochs[1:]] or [epochs[0]["seconds"]]
    return train_size / float(np.mean(later))


def cpu_peak_gflops() -> float:
    """cores x clock x 64 FP32 FLOP/cycle (two AVX-512 FMA units), where AVX-512 exists."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    mhz = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    per_cycle = 64 if "avx512f" in info else 32
    return (os.cpu_count() or 1) * (np.mean(mhz) if mhz else 2000.0) / 1000 * per_cycle


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("SAGEVIT_CIFAR10", DEFAULT_ARCHIVE))
    )
    parser.add_argument("--default-epochs", type=int, default=10)
    parser.add_argument("--seed-epochs", type=int, default=5)
    parser.add_argument("--throughput-epochs", type=int, default=3)
    parser.add_argument("--validation-size", type=int, default=5000, help="held-out images")
    parser.add_argument("--workdir", type=Path, default=Path("build/bench"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/train.json"))
    args = parser.parse_args(argv)
    if not args.data.exists():
        sys.exit(f"no CIFAR-10 data at {args.data}: pass --data or set SAGEVIT_CIFAR10")

    channel = prepare_cifar10(args.data, args.workdir, args.validation_size)
    train_size = len(load_channel(channel, TRAIN_FILE, "train", 32, 10))
    report: dict = {"train_examples": train_size, "validation_examples": args.validation_size}
    report["default"] = our_recipe(channel, args.workdir, ["--epochs", str(args.default_epochs)])
    report["seed"] = seed_recipe(channel, args.seed_epochs)
    report["ours_at_seed"] = our_recipe(
        channel, args.workdir, ["--preset", "seed", "--epochs", str(args.throughput_epochs)]
    )
    seed_speed = images_per_second(report["seed"], train_size)
    ours_speed = images_per_second(report["ours_at_seed"], train_size)
    peak = cpu_peak_gflops()
    five = min(5, len(report["default"]), len(report["seed"]))
    default_5s = sum(e["seconds"] for e in report["default"][:five])
    seed_5s = sum(e["seconds"] for e in report["seed"][:five])
    report["throughput"] = {
        "seed_images_per_s": seed_speed,
        "ours_at_seed_images_per_s": ours_speed,
        "speedup": ours_speed / seed_speed,
        "ours_gflops": ours_speed * SEED_MFLOP_PER_IMAGE / 1000,
        "seed_gflops": seed_speed * SEED_MFLOP_PER_IMAGE / 1000,
        "cpu_peak_gflops": peak,
    }
    accuracy = {e["epoch"]: e["val_accuracy"] for e in report["default"]}
    report["targets"] = [
        {
            "target": "default, val accuracy at epoch 5",
            "goal": ">= 0.65",
            "measured": accuracy.get(5),
            "hit": (accuracy.get(5) or 0) >= 0.65,
        },
        {
            "target": "default, val accuracy at epoch 10",
            "goal": ">= 0.72",
            "measured": accuracy.get(10),
            "hit": (accuracy.get(10) or 0) >= 0.72,
        },
        {
            "target": f"wall time of {five} epochs vs seed",
            "goal": "<= 2x",
            "measured": default_5s / seed_5s,
            "hit": default_5s <= 2 * seed_5s,
        },
        {
            "target": "images/s at the seed architecture vs seed",
            "goal": ">= 2x",
            "measured": ours_speed / seed_speed,
            "hit": ours_speed >= 2 * seed_speed,
        },
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print(
        f"\n{'epoch':>5} {'default val acc':>16} {'time s':>8} {'seed val acc':>13} {'time s':>8}"
    )
    for epoch in sorted({e["epoch"] for e in report["default"] + report["seed"]}):
        d = next((e for e in report["default"] if e["epoch"] == epoch), None)
        s = next((e for e in report["seed"] if e["epoch"] == epoch), None)
        mark = "*" if epoch in CHECKPOINTS else " "
        print(
            f"{epoch:>4}{mark} {d['val_accuracy'] if d else float('nan'):>16.4f} {d['seconds'] if d else 0:>8.1f}"
            f" {s['val_accuracy'] if s else float('nan'):>13.4f} {s['seconds'] if s else 0:>8.1f}"
        )
    t = report["throughput"]
    print(
        f"\nseed architecture, batch 256: seed loop {t['seed_images_per_s']:.0f} img/s "
        f"({t['seed_gflops']:.1f} GFLOP/s), ours {t['ours_at_seed_images_per_s']:.0f} img/s "
        f"({t['ours_gflops']:.1f} GFLOP/s, {t['ours_gflops'] / peak:.1%} of a {peak:.0f} GFLOP/s peak)"
    )
    for target in report["targets"]:
        measured = target["measured"]
        shown = "n/a" if measured is None else f"{measured:.3f}"
        print(
            f"{target['target']:<48}{target['goal']:<9}{shown:<9}{'yes' if target['hit'] else 'MISSED'}"
        )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
