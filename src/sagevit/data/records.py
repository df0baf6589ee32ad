"""Record channels: many images in a few large TFRecord files, streamed by tf.data.

A record channel is a folder (an S3 prefix) that holds

    dataset.json                         the index (INDEX_FILE): class names, records and
                                         bytes of every shard, image sizes
    train-00000-of-00004.tfrecord ...    tf.train.Example records, about SHARD_MB each

`make data FORMAT=tfrecord` writes them (`sagevit.data.record_writer`). The trainer
streams them (`RecordSet.examples`) and never holds them whole: the shards are read in
parallel and interleaved, and TensorFlow's own decoders turn each image into the model's
size in C++, outside the GIL. Before the first step only the folder is listed and the
index is read. No shard is opened, so start-up does not grow with the data.

Each record holds (FEATURES) an encoded image, as a file would hold it, and its label.
`sagevit.data.record_decode` turns it into pixels: the server's pixels, or a random
resized crop done as the image decodes (`--augment inception_crop`).

A damaged record stops the job with one sentence that names the shard and the record
number (`sagevit.data.record_checks`), never a smaller dataset.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import tensorflow as tf

from sagevit.contract import INDEX_CHANNEL_SUFFIX, INDEX_FILE
from sagevit.data.augment import with_example_seeds
from sagevit.data.record_decode import Stored, decode, decode_cropped
from sagevit.errors import DataError

log = logging.getLogger(__name__)

SUFFIX = ".tfrecord"
FORMAT = "sagevit.records/1"  # the index's "format": what this reader understands
FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),  # JPEG or PNG bytes
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),  # 0 .. classes - 1
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
}
CYCLE_LENGTH = 8  # shards read at once: parallel reads, and mixing across shards
# Records held for shuffling, beyond the shard order's shuffle: at most this many, and at
# most this many MB of decoded images, so that memory and the time to the first batch stay
# flat whatever the size of the channel (`make data` writes records in a shuffled order).
SHUFFLE_RECORDS = 10_000
SHUFFLE_MB = 256


@dataclass(frozen=True)
class Shard:
    path: str
    records: int
    bytes: int


@dataclass(frozen=True)
class Index:
    """dataset.json: what a record channel holds, without opening a shard."""

    class_names: tuple[str, ...]
    shards: tuple[Shard, ...]  # paths relative to the index's folder
    image_sizes: dict[str, dict[str, float]]  # {"height": {"min", "mean", "max"}, "width": ...}
    formats: dict[str, int] = field(default_factory=dict)  # {"JPEG": records, "PNG": records}

    @property
    def records(self) -> int:
        return sum(shard.records for shard in self.shards)

    def write(self, folder: Path) -> Path:
        body = {
            "format": FORMAT,
            "class_names": list(self.class_names),
            "records": self.records,
            "shards": [vars(shard) for shard in self.shards],
            "image_sizes": self.image_sizes,
            "formats": self.formats,
        }
        path = folder / INDEX_FILE
        path.write_text(json.dumps(body, indent=1) + "\n")
        return path

    @classmethod
    def read(cls, path: Path) -> Index:
        """The index at `path`; DataError naming what is missing or malformed."""
        try:
            body = json.loads(path.read_text())
            if body.get("format") != FORMAT:
                raise DataError(f"{path} is not a {FORMAT} index (its format is {body.get('format')!r})")  # fmt: skip
            shards = tuple(Shard(str(s["path"]), int(s["records"]), int(s["bytes"])) for s in body["shards"])  # fmt: skip
            sizes, formats = dict(body.get("image_sizes", {})), dict(body.get("formats", {}))
            return cls(tuple(map(str, body["class_names"])), shards, sizes, formats)
        except FileNotFoundError:
            raise DataError(f"{path} does not exist") from None
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise DataError(f"{path} is not a readable index ({type(error).__name__}: {error})") from None  # fmt: skip


@dataclass(frozen=True)
class HoldOut:
    """`--validation-split` of a record channel: record n of each shard is held out when
    floor((n + 1) * fraction) > floor(n * fraction), which is floor(records * fraction) of
    every shard, the same ones every epoch, spread through it. `make data` wrote the
    records in a shuffled order, so that is a random sample without a seed."""

    fraction: float
    held: bool  # True: the held-out records (validation); False: the others (train)

    def count(self, records: int) -> int:
        held = math.floor(records * self.fraction)
        return held if self.held else records - held

    def keeps(self, number: tf.Tensor) -> tf.Tensor:
        n = tf.cast(number, tf.float64)
        held = tf.floor((n + 1) * self.fraction) > tf.floor(n * self.fraction)
        return held if self.held else tf.logical_not(held)


@dataclass(frozen=True)
class RecordSet:
    """The shards one worker reads, and how to stream their examples."""

    shards: tuple[Shard, ...]  # absolute paths
    num_classes: int  # labels must be below it
    stored: Stored = Stored()  # the images' formats and sizes, from the index
    every: int = 1  # with fewer shards than workers: keep every `every`-th record,
    first: int = 0  # from record `first` (see `share`)
    hold_out: HoldOut | None = None  # a part of every shard only (`--validation-split`)

    def __len__(self) -> int:
        counts = [shard.records if self.hold_out is None else self.hold_out.count(shard.records) for shard in self.shards]  # fmt: skip
        return len(range(self.first, sum(counts), self.every))

    def share(self, workers: int, worker: int) -> RecordSet:
        """What worker `worker` of `workers` reads: every workers-th shard from its own
        number; with fewer shards than workers, every workers-th record of all of them."""
        if len(self.shards) < workers:
            return replace(self, every=workers, first=worker)
        return replace(self, shards=self.shards[worker::workers])

    def examples(self, size: int, seed: tf.Tensor | int | None = None, crop: bool = False) -> tf.data.Dataset:  # fmt: skip
        """(uint8 (size, size, 3), int32 label) pairs, the shards read CYCLE_LENGTH at a time
        and interleaved: in a fixed order without a seed; with one, the shards in an order
        fixed by it and the records shuffled within a bounded buffer (SHUFFLE_RECORDS,
        SHUFFLE_MB), so memory stays flat whatever the size. `crop`: each image a random
        resized crop and flip (`decode_cropped`), seeded by (seed, its place in the order)."""
        if crop and seed is None:
            raise ValueError("crop=True needs a seed: the crops follow it")
        paths = tf.data.Dataset.from_tensor_slices([shard.path for shard in self.shards])
        if seed is not None:
            paths = paths.shuffle(len(self.shards), seed=seed, reshuffle_each_iteration=False)
        records = paths.interleave(
            self._read,
            cycle_length=min(CYCLE_LENGTH, len(self.shards)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        if self.every > 1:
            records = records.shard(self.every, self.first)
        if seed is not None:
            buffer = max(1, min(len(self), SHUFFLE_RECORDS, (SHUFFLE_MB << 20) // (size * size * 3)))  # fmt: skip
            records = records.shuffle(buffer, seed=seed, reshuffle_each_iteration=False)
        if crop:
            records = with_example_seeds(records, seed)

        def parsed(*element: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:  # ([crop seed,] record)
            *crop_seed, record = element
            return parse(record, size, self.num_classes, self.stored, *crop_seed)

        return records.map(parsed, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def _read(self, path: tf.Tensor) -> tf.data.Dataset:
        """One shard's records (those `hold_out` keeps)."""
        records = tf.data.TFRecordDataset(path)
        if self.hold_out is None:
            return records
        kept = records.enumerate().filter(lambda number, _: self.hold_out.keeps(number))
        return kept.map(lambda _, record: record)


def parse(
    record: tf.Tensor,
    size: int,
    num_classes: int,
    stored: Stored,
    crop_seed: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """One serialized Example -> (uint8 (size, size, 3) pixels, int32 label): the whole
    image, or with a (2,) `crop_seed` a random resized crop of it and a flip."""
    example = tf.io.parse_single_example(record, FEATURES)
    label = tf.cast(example["image/class/label"], tf.int32)
    tf.debugging.assert_less(label, num_classes, "a record's label is out of range")
    tf.debugging.assert_non_negative(label, "a record's label is out of range")
    data = example["image/encoded"]
    if crop_seed is None:
        return decode(data, size, stored), label
    return decode_cropped(data, size, crop_seed, stored), label


def is_record_channel(folder: Path) -> bool:
    """Whether a channel folder holds record shards or an index (listing it, opening nothing)."""
    return any(path.suffix == SUFFIX or path.name == INDEX_FILE for path in folder.iterdir())


def load_records(
    folder: Path,
    channel: str,
    num_classes: int,
    sharded_by_key: bool = False,
    index_dir: Path | None = None,
) -> tuple[RecordSet, Index]:
    """The channel's shards, checked against its index without opening one: every shard
    the index names is here (or, on a ShardedByS3Key channel, the part SageMaker gave this
    host), at its indexed size (a shorter one was cut off), none is empty, none is extra.

    The index is the channel's own dataset.json, else `index_dir`'s: ShardedByS3Key
    gives each file under a prefix to one host, so the index travels as a channel of its
    own, `<channel>_index` (INDEX_CHANNEL_SUFFIX; what `make train DISTRIBUTION=sharded` sets up)."""
    index_path = folder / INDEX_FILE
    if not index_path.is_file() and index_dir is not None:
        index_path = Path(index_dir) / INDEX_FILE
    if not index_path.is_file():
        raise DataError(
            f"the {channel} channel {folder} holds {SUFFIX} shards but no {INDEX_FILE} index"
            f" (make data FORMAT=tfrecord writes one; a ShardedByS3Key channel takes it from"
            f" the {channel}{INDEX_CHANNEL_SUFFIX} channel)"
        )
    index = Index.read(index_path)
    if len(index.class_names) != num_classes:
        raise DataError(f"{index_path} names {len(index.class_names)} classes but --num-classes is {num_classes}")  # fmt: skip
    indexed = {shard.path: shard for shard in index.shards}
    present = sorted(path.name for path in folder.iterdir() if path.suffix == SUFFIX)
    extra = [name for name in present if name not in indexed]
    if extra:
        raise DataError(f"{folder / extra[0]} is not in {index_path} (a shard of another dataset?)")  # fmt: skip
    missing = [name for name in indexed if name not in present]
    if missing and not sharded_by_key:
        raise DataError(f"{index_path} lists {missing[0]} but the {channel} channel has no such shard ({len(missing)} missing)")  # fmt: skip
    if not present:
        raise DataError(
            f"the {channel} channel {folder} got none of the {len(indexed)} shards on this host"
            " (ShardedByS3Key needs at least as many shards as hosts)"
        )
    shards = [_checked(folder / name, indexed[name]) for name in present]
    log.info("%s channel: %s records in %d shard(s) of %d", channel, f"{sum(s.records for s in shards):,}", len(shards), len(index.shards))  # fmt: skip
    return RecordSet(tuple(shards), num_classes, Stored.of(index.image_sizes, index.formats)), index


def _checked(path: Path, shard: Shard) -> Shard:
    """The shard at `path`, if a stat agrees with its index entry."""
    if not path.is_file():  # stat only: opening a FIFO would block
        raise DataError(f"{path} is not a regular file (a folder, FIFO or device?)")
    size = path.stat().st_size
    if shard.records == 0 or size == 0:
        raise DataError(f"{path} is an empty shard (the index says {shard.records} records)")
    if size != shard.bytes:
        cut = (
            "truncated (an interrupted copy?)" if size < shard.bytes else "not the shard it indexes"
        )
        raise DataError(f"{path} is {size:,} bytes but the index says {shard.bytes:,}: {cut}")
    return Shard(str(path), shard.records, shard.bytes)
