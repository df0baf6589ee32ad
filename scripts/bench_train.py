"""`make bench-train`: accuracy by epoch and training throughput, default recipe vs the seed's.

    python -m scripts.bench_train [--data PATH] [--runs default@5,default@10,seed,ours@seed]

Data: the CIFAR-10 training JPEGs (../shared/data/cifar10-train-jpeg.tar.gz, or
--data / SAGEVIT_CIFAR10), split 45,000 / 5,000 with a fixed seed: the 5,000 are a
validation split carved from the training images, not the CIFAR-10 test set.

Runs, each in a fresh process of its own, one after another on this machine:
  * default@5, default@10: our trainer with the default recipe, --epochs 5 and 10
              (the cosine schedule fits the budget it is given);
  * seed:     the seed notebook's own recipe, written below as the baseline: its
              post-norm ViT, `model.compile(AdamW(3e-4, weight_decay=1e-4))`,
              `model.fit(x, y, batch_size=256)`, no augmentation; 5 epochs;
  * ours@seed: our trainer and input pipeline with the seed's architecture and batch
              size (`--preset seed`), 3 epochs, for images/s against the seed's loop.
`--runs seed,ours@seed` reruns a subset; the others keep their last (timestamped)
result in the JSON. Prints a table and writes bench/results/train.json.
Throughput excludes each run's first epoch (tracing and warm-up).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
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


# name -> (what runs, its arguments): each one runs in a fresh process of its own.
RUNS = {
    "default@5": ("ours", ["--epochs", "5"]),  # the recipe given a 5-epoch budget
    "default@10": ("ours", ["--epochs", "10"]),  # ... and a 10-epoch one
    "seed": ("seed", ["--epochs", "5"]),  # the notebook's own compile/fit loop
    "ours@seed": ("ours", ["--preset", "seed", "--epochs", "3"]),  # our loop, seed model
}


def run_one(kind: str, args: list[str], channel: Path, workdir: Path) -> list[dict]:
    """Run one recipe in this process and return its epochs."""
    if kind == "seed":
        return seed_recipe(channel, int(args[args.index("--epochs") + 1]))
    return our_recipe(channel, workdir, args)


def run_isolated(name: str, channel: Path, workdir: Path) -> list[dict]:
    """Run RUNS[name] in a child process, so no run inherits another's threads or memory."""
    out = workdir / f"{name}.json"
    command = [sys.executable, "-m", "scripts.bench_train", "--child", name]
    command += ["--channel", str(channel), "--workdir", str(workdir)]
    log.info("run %s: %s", name, " ".join(RUNS[name][1]))
    subprocess.run(command, check=True)
    return json.loads(out.read_text())


def targets(report: dict) -> list[dict]:
    """Issue 5's targets, each with its measured value and whether it was hit."""
    runs = report["runs"]

    def accuracy(run: str, epoch: int) -> float | None:
        return next((e["val_accuracy"] for e in runs.get(run, []) if e["epoch"] == epoch), None)

    def seconds(run: str, count: int) -> float:
        return sum(e["seconds"] for e in runs.get(run, [])[:count])

    wall = seconds("default@5", 5) / seconds("seed", 5) if seconds("seed", 5) else None
    rows = [
        ("default, val accuracy at epoch 5 (--epochs 5)", ">= 0.65", accuracy("default@5", 5), lambda v: v >= 0.65),
        ("default, val accuracy at epoch 5 of --epochs 10", "", accuracy("default@10", 5), None),
        ("default, val accuracy at epoch 10 (--epochs 10)", ">= 0.72", accuracy("default@10", 10), lambda v: v >= 0.72),
        ("wall time of 5 epochs, default@5 vs seed", "<= 2x", wall, lambda v: v <= 2.0),
        ("images/s at the seed architecture vs seed", ">= 2x", report["throughput"].get("speedup"), lambda v: v >= 2.0),
    ]  # fmt: skip
    return [
        {"target": target, "goal": goal, "measured": value, "hit": None if check is None or value is None else check(value)}
        for target, goal, value, check in rows
    ]  # fmt: skip


def print_report(report: dict, out: Path) -> None:
    runs = report["runs"]
    names = [n for n in RUNS if n in runs and n != "ours@seed"]
    print("\n" + "epoch".rjust(5) + "".join(f"{n + ' acc':>16}{'s':>7}" for n in names))
    for epoch in sorted({e["epoch"] for n in names for e in runs[n]}):
        cells = []
        for n in names:
            e = next((e for e in runs[n] if e["epoch"] == epoch), None)
            cells.append(f"{e['val_accuracy']:>16.4f}{e['seconds']:>7.0f}" if e else " " * 23)
        print(f"{epoch:>4}{'*' if epoch in CHECKPOINTS else ' '}" + "".join(cells))
    t = report["throughput"]
    if t:
        print(
            f"\nseed architecture, batch 256: seed loop {t['seed_images_per_s']:.0f} img/s "
            f"({t['seed_gflops']:.1f} GFLOP/s), ours {t['ours_at_seed_images_per_s']:.0f} img/s "
            f"({t['ours_gflops']:.1f} GFLOP/s, {t['ours_gflops'] / t['cpu_peak_gflops']:.1%} "
            f"of a {t['cpu_peak_gflops']:.0f} GFLOP/s peak)"
        )
    for row in report["targets"]:
        shown = "n/a" if row["measured"] is None else f"{row['measured']:.3f}"
        verdict = {True: "yes", False: "MISSED", None: ""}[row["hit"]]
        print(f"{row['target']:<50}{row['goal']:<9}{shown:<9}{verdict}")
    print(f"\nwrote {out}")


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("SAGEVIT_CIFAR10", DEFAULT_ARCHIVE))
    )
    parser.add_argument(
        "--runs", default=",".join(RUNS), help=f"comma-separated subset of {', '.join(RUNS)}"
    )
    parser.add_argument("--validation-size", type=int, default=5000, help="held-out images")
    parser.add_argument("--workdir", type=Path, default=Path("build/bench"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/train.json"))
    parser.add_argument("--child", choices=list(RUNS), help=argparse.SUPPRESS)
    parser.add_argument("--channel", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # one run, in the process the parent started for it
        kind, run_args = RUNS[args.child]
        epochs = run_one(kind, run_args, args.channel, args.workdir)
        (args.workdir / f"{args.child}.json").write_text(json.dumps(epochs, indent=2))
        return 0

    if not args.data.exists():
        sys.exit(f"no CIFAR-10 data at {args.data}: pass --data or set SAGEVIT_CIFAR10")
    selected = [name.strip() for name in args.runs.split(",") if name.strip()]
    unknown = set(selected) - set(RUNS)
    if unknown:
        sys.exit(f"unknown runs {sorted(unknown)}; choose from {', '.join(RUNS)}")
    channel = prepare_cifar10(args.data, args.workdir, args.validation_size)
    train_size = len(np.load(channel / TRAIN_FILE)["label"])
    # Runs not selected this time keep their last measurement (each is stamped).
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    report: dict = {
        "train_examples": train_size,
        "validation_examples": args.validation_size,
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "runs": previous.get("runs", {}),
        "measured": previous.get("measured", {}),
    }
    for name in selected:
        report["runs"][name] = run_isolated(name, channel, args.workdir)
        report["measured"][name] = time.strftime("%Y-%m-%d %H:%M:%S")

    report["throughput"] = {}
    if "seed" in report["runs"] and "ours@seed" in report["runs"]:
        seed_speed = images_per_second(report["runs"]["seed"], train_size)
        ours_speed = images_per_second(report["runs"]["ours@seed"], train_size)
        report["throughput"] = {
            "seed_images_per_s": seed_speed,
            "ours_at_seed_images_per_s": ours_speed,
            "speedup": ours_speed / seed_speed,
            "ours_gflops": ours_speed * SEED_MFLOP_PER_IMAGE / 1000,
            "seed_gflops": seed_speed * SEED_MFLOP_PER_IMAGE / 1000,
            "cpu_peak_gflops": cpu_peak_gflops(),
        }
    report["targets"] = targets(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
