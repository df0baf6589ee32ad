"""`--validation-split`: a validation split held out of a training channel.

In-memory and folder channels hold out a fixed-seed shuffle's last share of their
examples (`held_out_indices`, which `make data` uses too); record channels hold out the
same part of every shard (`records.HoldOut`), since their examples are never listed.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from sagevit.data.channels import Split
from sagevit.data.records import HoldOut
from sagevit.errors import DataError


def held_out_indices(total: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) indices: a fixed-seed shuffle of `total`, the last `count` held out."""
    order = np.random.default_rng(seed).permutation(total)
    return order[:-count], order[-count:]


def hold_out(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """(train, validation): a fixed-seed shuffle, the last `fraction` held out."""
    count = round(len(split) * fraction)
    if not 0 < count < len(split):
        raise DataError(
            f"--validation-split {fraction} of {len(split)} examples leaves an empty side"
        )
    if split.records is not None:
        return _hold_out_records(split, fraction)
    kept, held = held_out_indices(len(split), count, seed)
    return split.subset(kept), split.subset(held)


def _hold_out_records(split: Split, fraction: float) -> tuple[Split, Split]:
    """A record channel's (train, validation): a `fraction` of every shard (HoldOut)."""
    if split.sharded_by_key:
        raise DataError(
            f"--validation-split cannot hold out records of the ShardedByS3Key channel {split.source}:"
            " each host would validate on a different part; give a validation channel"
            " (make data FORMAT=tfrecord writes one)"
        )
    train, validation = (
        replace(split, records=replace(split.records, hold_out=HoldOut(fraction, held)))
        for held in (False, True)
    )
    if not len(validation):
        raise DataError(f"--validation-split {fraction} holds out no record of the {len(split.records.shards)} shard(s) of {split.source} (each shard gives floor(records x fraction))")  # fmt: skip
    return train, validation
