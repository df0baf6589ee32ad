"""`make bench-accuracy`: validation accuracy by epoch, the default recipe against the seed's.

    python -m scripts.bench_accuracy [--data PATH] [--runs default@5,default@10,seed]

Data: the CIFAR-10 training JPEGs (../shared/data/cifar10-train-jpeg.tar.gz, or
--data / SAGEVIT_CIFAR10), split 45,000 / 5,000 with a fixed seed: the 5,000 are a
validation split carved from the training images, not the CIFAR-10 test set.

Runs, each in a fresh process of its own, one after another on this machine:
  * default@5, default@10: our trainer with the default recipe, --epochs 5 and 10
    (the cosine schedule fits the budget it is given);
  * default@30: the default recipe at its own length (not run unless named);
  * seed: the seed notebook's own recipe (scripts/seed_notebook.py), 5 epochs.
`--runs seed` reruns a subset; the others keep their last (timestamped) result in the
JSON. Our runs checkpoint every epoch under the workdir, and an interrupted one resumes
when run again. Prints a table and writes bench/results/accuracy.json. Training speed is
`make bench-train`'s job (scripts/bench_train.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from sagevit.config import parse_hyperparameters
from sagevit.contract import TRAIN_FILE, VALIDATION_FILE
from sagevit.data import load_channel
from sagevit.train import run
from scripts.bench_common import (
    DEFAULT_ARCHIVE,
    EpochTimer,
    prepare_cifar10,
    run_child,
    write_report,
)
from scripts.seed_notebook import notebook_fit

# name -> our trainer's arguments, or None for the seed notebook's compile/fit (5 epochs)
RUNS: dict[str, list[str] | None] = {
    "default@5": ["--epochs", "5"],  # the recipe given a 5-epoch budget
    "default@10": ["--epochs", "10"],  # ... and a 10-epoch one
    "seed": None,
    "default@30": ["--epochs", "30"],  # the default length: hours on 2 cores
}
SELECTED = ("default@5", "default@10", "seed")
CHECKPOINTS = (1, 3, 5, 10, 20, 30)


def seed_recipe(channel: Path, epochs: int = 5) -> list[dict]:
    """The seed notebook's training, as it wrote it: Keras compile/fit on arrays."""
    train = load_channel(channel, TRAIN_FILE, "train", 32, 10)
    val = load_channel(channel, VALIDATION_FILE, "validation", 32, 10)
    timer = EpochTimer()
    history = notebook_fit(train.images, train.labels, epochs, (val.images, val.labels), [timer])
    return [
        {"epoch": i + 1, "val_accuracy": history.history["val_accuracy"][i], "seconds": seconds}
        for i, seconds in enumerate(timer.seconds)
    ]


def our_recipe(channel: Path, workdir: Path, name: str, argv: list[str]) -> list[dict]:
    """Our trainer, checkpointing every epoch: a run cut short (a closed laptop, a session
    limit) resumes where it stopped when the same command runs again. Its checkpoints go
    once it finishes, so the next measurement starts afresh. Each epoch's `seconds` is
    its own, so the wall time of a resumed run is still the sum over its epochs."""
    checkpoints = workdir / f"{name}-checkpoints"
    hp = parse_hyperparameters(argv)
    history = run(hp, channel, workdir / "model", channel, checkpoint_dir=checkpoints)
    shutil.rmtree(checkpoints)
    return [{"epoch": r.epoch, **r.metrics} for r in history]


def targets(runs: dict) -> list[dict]:
    """Issue 5's accuracy targets, each with its measured value and whether it was hit."""

    def accuracy(run: str, epoch: int) -> float | None:
        return next((e["val_accuracy"] for e in runs.get(run, []) if e["epoch"] == epoch), None)

    def seconds(run: str, count: int) -> float:
        return sum(e["seconds"] for e in runs.get(run, [])[:count])

    wall = seconds("default@5", 5) / seconds("seed", 5) if seconds("seed", 5) else None
    rows = [
        ("default, val accuracy at epoch 5 (--epochs 5)", ">= 0.65", accuracy("default@5", 5), lambda v: v >= 0.65),
        ("default, val accuracy at epoch 10 (--epochs 10)", ">= 0.72", accuracy("default@10", 10), lambda v: v >= 0.72),
        ("wall time of 5 epochs, default@5 vs seed", "<= 2x", wall, lambda v: v <= 2.0),
    ]  # fmt: skip
    return [
        {"target": target, "goal": goal, "measured": value, "hit": None if value is None else check(value)}
        for target, goal, value, check in rows
    ]  # fmt: skip


def print_report(report: dict, out: Path) -> None:
    runs = report["runs"]
    names = [n for n in RUNS if n in runs]
    print("\n" + "epoch".rjust(5) + "".join(f"{n + ' acc':>16}{'s':>7}" for n in names))
    for epoch in sorted({e["epoch"] for n in names for e in runs[n]}):
        cells = []
        for n in names:
            e = next((e for e in runs[n] if e["epoch"] == epoch), None)
            cells.append(f"{e['val_accuracy']:>16.4f}{e['seconds']:>7.0f}" if e else " " * 23)
        print(f"{epoch:>4}{'*' if epoch in CHECKPOINTS else ' '}" + "".join(cells))
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
        "--runs", default=",".join(SELECTED), help=f"comma-separated subset of {', '.join(RUNS)}"
    )
    parser.add_argument("--validation-size", type=int, default=5000, help="held-out images")
    parser.add_argument("--workdir", type=Path, default=Path("build/bench"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/accuracy.json"))
    parser.add_argument("--child", choices=list(RUNS), help=argparse.SUPPRESS)
    parser.add_argument("--channel", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # one run, in the process the parent started for it
        ours = RUNS[args.child]
        epochs = seed_recipe(args.channel) if ours is None else our_recipe(args.channel, args.workdir, args.child, ours)  # fmt: skip
        (args.workdir / f"{args.child}.json").write_text(json.dumps(epochs, indent=2))
        return 0

    if not args.data.exists():
        sys.exit(f"no CIFAR-10 data at {args.data}: pass --data or set SAGEVIT_CIFAR10")
    selected = [name.strip() for name in args.runs.split(",") if name.strip()]
    unknown = set(selected) - set(RUNS)
    if unknown:
        sys.exit(f"unknown runs {sorted(unknown)}; choose from {', '.join(RUNS)}")
    channel = prepare_cifar10(args.data, args.workdir, args.validation_size)
    # Runs not selected this time keep their last measurement (each is stamped).
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    report: dict = {
        "validation_examples": args.validation_size,
        "runs": previous.get("runs", {}),
        "measured": previous.get("measured", {}),
    }
    for name in selected:
        module = "scripts.bench_accuracy"
        report["runs"][name] = run_child(module, name, args.workdir, "--channel", str(channel))
        report["measured"][name] = time.strftime("%Y-%m-%d %H:%M:%S")
    report["targets"] = targets(report["runs"])
    write_report(report, args.out)
    print_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
