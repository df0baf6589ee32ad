"""One worker of a loopback cluster that reads a ShardedByS3Key-shaped record channel
through the trainer's own pipeline and writes which records it saw in each epoch.

    TF_CONFIG=... python sharded_pipeline.py CHANNEL INDEX_DIR OUT.json BATCH EPOCHS

Each record's image carries its number in its first pixel (red + 256 * green).
Used by tests/test_records_scale.py.
"""

from __future__ import annotations

import functools
import json
import os
import sys

from sagevit.data.channels import InputConfig, load_channel
from sagevit.data.pipeline import Augmentation
from sagevit.data.training_data import TrainingData, agree_steps
from sagevit.training.distribute import choose_strategy, gather_counts

SIZE = 8


def main(channel: str, index_dir: str, out: str, batch: int, epochs: int) -> None:
    strategy = choose_strategy(os.environ["TF_CONFIG"])
    inputs = InputConfig(frozenset({"train"}), {"train": index_dir})
    split = load_channel(channel, "training.npz", "train", SIZE, 2, inputs=inputs)
    steps = agree_steps(split, batch, 2, functools.partial(gather_counts, strategy))
    data = TrainingData(split, None, ("a", "b"), batch, steps)
    stream = iter(data.training_batches(strategy, range(1, epochs + 1), 0, 2, 0, Augmentation()))
    seen = []
    for _ in range(epochs):
        numbers = []
        for _ in range(steps):
            images, _ = next(stream)
            for local in strategy.experimental_local_results(images):
                pixels = local.numpy()[:, 0, 0, :]
                numbers += [int(r) + 256 * int(g) for r, g, _ in pixels]
        seen.append(numbers)
    with open(out, "w") as handle:
        json.dump({"steps": steps, "local": len(split), "epochs": seen}, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
