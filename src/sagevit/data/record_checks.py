"""Which record is damaged: one sentence, after the stream has failed.

TensorFlow's reader and decoders report damage without saying where: "corrupted record
at 14476", "Invalid JPEG data". Telling the user which shard and which record costs
nothing while training goes well, since it is looked for only after the stream failed.
`find_damage` reads the worker's shards one by one the fast way, and the one that fails
record by record. That costs at most one epoch's reading and decoding of this worker's
data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import tensorflow as tf

from sagevit.data.record_decode import decode
from sagevit.data.records import FEATURES, RecordSet, Shard
from sagevit.platform.watchdog import no_beat

log = logging.getLogger(__name__)


def find_damage(records: RecordSet, size: int, beat: Callable[[], None] = no_beat) -> str | None:
    """The first damaged record of `records` as one sentence naming its shard and number,
    or None if every record reads, decodes and has a label in range."""
    log.info("looking for the damaged record in %d shard(s)", len(records.shards))
    for shard in records.shards:
        one = RecordSet((shard,), records.num_classes, records.stored)
        try:
            count = int(one.examples(size).reduce(0, lambda count, _: count + 1))
        except tf.errors.OpError:
            return _first_damaged(shard, size, records)
        if count != shard.records:
            return f"{shard.path} holds {count:,} records but the index says {shard.records:,}"
        beat()
    return None


def _first_damaged(shard: Shard, size: int, records: RecordSet) -> str | None:
    """The shard's first bad record, found by reading one record at a time."""
    num_classes = records.num_classes
    reader = iter(tf.data.TFRecordDataset(shard.path))
    number = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return None
        except tf.errors.OpError:
            return f"shard {shard.path}: record {number} is corrupted or cut off (its length or checksum does not match)"  # fmt: skip
        try:
            example = tf.io.parse_single_example(record, FEATURES)
        except tf.errors.OpError:
            return f"shard {shard.path}: record {number} is not an image Example (it lacks or mistypes one of {', '.join(FEATURES)})"  # fmt: skip
        label = int(example["image/class/label"])
        if not 0 <= label < num_classes:
            return f"shard {shard.path}: record {number} has label {label}, outside [0, {num_classes}) for --num-classes {num_classes}"  # fmt: skip
        try:
            decode(example["image/encoded"], size, records.stored)
        except tf.errors.OpError:
            return f"shard {shard.path}: record {number} holds an image that cannot be decoded (not an intact JPEG or PNG)"  # fmt: skip
        number += 1
