"""`make bench-train`: training speed, our loop against the seed notebook's own `fit`.

    python -m scripts.bench.train [--data PATH] [--images 12800] [--rounds 2] [--epochs 2]

Three runs, each in a fresh process, alternating (seed, ours@seed, default, seed, ...)
for --rounds rounds, so that this machine's drifting speed reaches every run alike:
  * seed: the seed notebook's Keras compile + fit, stock Keras layers
    (scripts/seed_notebook.py);
  * ours@seed: our trainer at the seed's architecture and batch 256 (`--preset seed`);
  * default: our trainer with the default recipe (batch 64, conv stem, augmentation).
Each trains on the first --images CIFAR-10 training images (../shared/data, or --data /
SAGEVIT_CIFAR10), without validation. A run's speed is images per second over its
epochs after the first (the first traces and compiles); its figure is the median over
the rounds. `--ours "--jit-compile false"` passes flags to our runs. Prints a table and
the ratios and writes bench/results/train.json, with GFLOP/s against the CPU's peak.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sagevit.config import Hyperparameters
from sagevit.contract import TRAIN_FILE
from sagevit.flags import parse_hyperparameters
from sagevit.job import run
from sagevit.model.stem import stage_widths
from scripts.bench.common import (
    DEFAULT_ARCHIVE,
    EpochTimer,
    prepare_cifar10,
    run_child,
    write_report,
)
from scripts.seed_notebook import notebook_fit

RUNS = {"seed": None, "ours@seed": ["--preset", "seed"], "default": []}  # None: notebook's fit


def tokenizer_flops(hp: Hyperparameters) -> tuple[float, int]:
    """Multiply-adds x 2 of one image's tokenizer, and the tokens it makes."""
    side, d = hp.image_size, hp.d_model
    if hp.tokenizer == "patch":
        tokens = (side // hp.patch_size) ** 2
        return tokens * (hp.patch_size**2 * 3) * d * 2, tokens
    flops, channels = 0.0, 3
    if hp.tokenizer == "conv":  # a 3x3 conv a stage, then a max-pool (64 hidden, the last d)
        for i in range(hp.conv_layers):
            width = d if i == hp.conv_layers - 1 else 64
            flops += (side >> i) ** 2 * 9 * channels * width * 2
            channels = width
    else:  # hybrid: a stage's first 3x3 conv before its pool, the second after it
        for i, width in enumerate(stage_widths(d, hp.conv_layers)):
            flops += (side >> i) ** 2 * 9 * channels * width * 2
            flops += (side >> (i + 1)) ** 2 * 9 * width * width * 2
            channels = width
    return flops, (side >> hp.conv_layers) ** 2


def forward_flops(hp: Hyperparameters) -> float:
    """Multiply-adds x 2 of one image's forward pass (matrix products and convolutions)."""
    d, heads = hp.d_model, hp.num_heads
    flops, tokens = tokenizer_flops(hp)
    length = tokens + (hp.pooling == "class_token")
    per_block = length * d * 4 * d * 2  # queries, keys, values, output projection
    per_block += 2 * heads * length**2 * (d // heads) * 2  # scores, weighted values
    per_block += 2 * length * d * hp.mlp_dim * 2  # the MLP
    return flops + hp.num_layers * per_block + d * hp.num_classes * 2


def cpu_peak_gflops() -> dict[str, float]:
    """The nominal peak (cores x clock x FP32 FLOP a cycle: 32 with AVX2 FMA, 64 with
    AVX-512) and what a large float32 matrix product reaches here (NumPy)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    mhz = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    per_cycle = 64 if "avx512f" in info else 32
    nominal = (os.cpu_count() or 1) * (float(np.mean(mhz)) if mhz else 2000.0) / 1000 * per_cycle
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    started = time.perf_counter()
    for _ in range(5):
        a @ a
    matmul = 5 * 2 * 2048**3 / (time.perf_counter() - started) / 1e9
    return {"nominal": nominal, "matmul": matmul}


def subset_channel(source: Path, workdir: Path, images: int) -> Path:
    """A channel holding the first `images` training examples of `source`."""
    channel = workdir / f"cifar10-first-{images}"
    if not (channel / TRAIN_FILE).is_file():
        data = np.load(source / TRAIN_FILE)
        channel.mkdir(parents=True, exist_ok=True)
        np.savez(
            channel / TRAIN_FILE,
            image=data["image"][:images],
            label=data["label"][:images],
            class_names=data["class_names"],
        )
    return channel


def child(name: str, channel: Path, workdir: Path, epochs: int, ours: list[str]) -> list[float]:
    """Train one run in this process; return its epochs' wall seconds."""
    if RUNS[name] is None:
        data = np.load(channel / TRAIN_FILE)
        timer = EpochTimer()
        notebook_fit(data["image"], data["label"], epochs, callbacks=[timer])
        return timer.seconds
    hp = parse_hyperparameters([*RUNS[name], *ours, "--epochs", str(epochs)])
    return [r.metrics["seconds"] for r in run(hp, channel, workdir / "model")]


def summarise(rounds: dict[str, list[list[float]]], images: int, peak: dict) -> dict:
    """Per run: images/s of every round (epochs after the first), their median, GFLOP/s."""
    seed = parse_hyperparameters(["--preset", "seed"])
    hps = {"seed": seed, "ours@seed": seed, "default": parse_hyperparameters([])}
    runs = {}
    for name, seconds in rounds.items():
        speeds = [images / statistics.median(s[1:] or s) for s in seconds]
        gflops = statistics.median(speeds) * 3 * forward_flops(hps[name]) / 1e9  # 3: + backward
        runs[name] = {"images_per_s": speeds, "median": statistics.median(speeds),
                      "gflops": gflops, "of_peak": gflops / peak["nominal"],
                      "of_matmul": gflops / peak["matmul"]}  # fmt: skip
    ratios = {f"{name} / seed": runs[name]["median"] / runs["seed"]["median"] for name in runs if name != "seed" and "seed" in runs}  # fmt: skip
    return {"runs": runs, "ratios": ratios}


def print_report(report: dict, out: Path) -> None:
    peak = report["cpu_peak_gflops"]
    print(
        f"\n{'run':<12}{'images/s by round':<26}{'median':>8}{'GFLOP/s':>9}{'of peak':>9}{'of matmul':>11}"
    )
    for name, r in report["runs"].items():
        rounds = ", ".join(f"{s:.0f}" for s in r["images_per_s"])
        print(f"{name:<12}{rounds:<26}{r['median']:>8.0f}{r['gflops']:>9.1f}{r['of_peak']:>9.1%}{r['of_matmul']:>11.1%}")  # fmt: skip
    for ratio, value in report["ratios"].items():
        print(f"{ratio:<20}{value:.2f}x")
    print(f"peak: {peak['nominal']:.0f} GFLOP/s nominal, {peak['matmul']:.0f} by a NumPy matmul")
    print(f"wrote {out}")


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(os.environ.get("SAGEVIT_CIFAR10", DEFAULT_ARCHIVE))
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--images", type=int, default=12800, help="training images a run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (median)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs a run; the first not timed")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"subset of {', '.join(RUNS)}")
    parser.add_argument("--ours", default="", help="extra flags for our runs, one string")
    parser.add_argument("--workdir", type=Path, default=Path("build/bench"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/train.json"))
    parser.add_argument("--child", choices=list(RUNS), help=argparse.SUPPRESS)
    parser.add_argument("--channel", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    ours = shlex.split(args.ours)

    if args.child:  # one run, in the process the parent started for it
        seconds = child(args.child, args.channel, args.workdir, args.epochs, ours)
        (args.workdir / f"{args.child}.json").write_text(json.dumps(seconds))
        return 0

    if not args.data.exists():
        sys.exit(f"no CIFAR-10 data at {args.data}: pass --data or set SAGEVIT_CIFAR10")
    selected = [name.strip() for name in args.runs.split(",") if name.strip()]
    if set(selected) - set(RUNS) or args.rounds < 1 or args.epochs < 2:
        sys.exit(f"--runs takes {', '.join(RUNS)}; --rounds >= 1; --epochs >= 2")
    full = prepare_cifar10(args.data, args.workdir, validation_size=5000)
    channel = subset_channel(full, args.workdir, args.images)
    flags = ["--channel", str(channel), "--epochs", str(args.epochs), f"--ours={args.ours}"]
    rounds: dict[str, list[list[float]]] = {name: [] for name in selected}
    for _ in range(args.rounds):
        for name in selected:
            rounds[name].append(run_child("scripts.bench.train", name, args.workdir, *flags))
    peak = cpu_peak_gflops()
    report = {
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "images": args.images,
        "epochs": args.epochs,
        "ours_flags": ours,
        "cpu_peak_gflops": peak,
        **summarise(rounds, args.images, peak),
    }
    write_report(report, args.out)
    print_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
