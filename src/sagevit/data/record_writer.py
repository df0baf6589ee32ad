"""Write a record channel (`make data FORMAT=tfrecord`): images into shards, and the index.

    index = write_channel(items, folder, "train", class_names, shard_mb=128)

`items` are (where, encoded bytes, label) in the order to store them (shuffle first: the
reader mixes only within a bounded buffer). Every image is checked with the server's
decoder as it is written, so a damaged file stops `make data` with its name, not the
training job hours later. An upright 8-bit RGB or gray JPEG or PNG is stored as it is;
any other kind (EXIF-turned, CMYK, 16-bit, palette or alpha, GIF, BMP) is stored as a PNG
of the pixels the server's decoder gives it at full size, so TensorFlow's decoders, which
know none of these conversions, read the same image.
"""

from __future__ import annotations

import collections
import io
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from sagevit.data import images
from sagevit.data.records import SUFFIX, Index, Shard
from sagevit.errors import DataError

log = logging.getLogger(__name__)

SHARD_MB = 128  # large sequential reads, and enough shards for ShardedByS3Key to split
CHECK_SIZE = 32  # the size every image is test-decoded at (cheap: JPEGs decode at 1/8 scale)


def write_channel(
    items: Iterable[tuple[str, bytes, int]],
    folder: Path,
    name: str,
    class_names: Sequence[str],
    shard_mb: float = SHARD_MB,
    expected: tuple[int, int] | None = None,
) -> Index:
    """Write `items` as folder/name-00000-of-0000N.tfrecord shards of about `shard_mb`
    each, and folder/dataset.json; DataError naming the first bad item.

    With `expected` (the items' count and encoded bytes, known beforehand), the shards
    hold equal counts (one apart), so that hosts given equal numbers of shards get equal
    shares (`sagevit.data.training_data`); else each shard is cut at `shard_mb`."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"{name}-*{SUFFIX}*"):  # an earlier write's: not this dataset
        stale.unlink()
    limit = int(shard_mb * 2**20)
    counts = None
    if expected is not None:
        count, total = expected
        shard_count = max(1, min(count, round(total / limit)))
        counts = [len(range(i, count, shard_count)) for i in range(shard_count)]
    shards = _ShardFiles(folder, name, limit, counts)
    heights, widths, formats = [], [], collections.Counter()
    for where, data, label in items:
        if not 0 <= label < len(class_names):
            raise DataError(f"{where}: label {label} is outside [0, {len(class_names)})")
        stored, height, width = storable(data, where)
        shards.write(example(stored, label, height, width))
        heights.append(height)
        widths.append(width)
        formats["JPEG" if stored[:2] == b"\xff\xd8" else "PNG"] += 1
    if not heights:
        raise DataError(f"no images to write to {folder}")
    sizes = {"height": _summary(heights), "width": _summary(widths)}
    index = Index(tuple(class_names), shards.close(), sizes, dict(formats))
    index.write(folder)
    log.info("wrote %s records in %d shard(s) to %s", f"{index.records:,}", len(index.shards), folder)  # fmt: skip
    return index


def storable(data: bytes, where: str) -> tuple[bytes, int, int]:
    """(the bytes to store, height, width) for one encoded image, checked by decoding it."""
    try:
        header = images.inspect(data)
        images.decode(data, CHECK_SIZE)  # a damaged image fails here
        if header.plain:
            return data, header.height, header.width
        pixels = images.full_size(data)
    except images.ImageError as error:
        raise DataError(f"{where}: {error}") from None
    return png(pixels), *pixels.shape[:2]


def png(pixels: np.ndarray) -> bytes:
    """(H, W, 3) uint8 pixels as PNG bytes (lossless)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def example(encoded: bytes, label: int, height: int, width: int) -> bytes:
    """One serialized tf.train.Example with `records.FEATURES`."""

    def ints(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "image/class/label": ints(label),
        "image/height": ints(height),
        "image/width": ints(width),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


class _ShardFiles:
    """Records into numbered `.part` files of about `limit` bytes (or of `counts[i]`
    records); `close()` names them name-00000-of-0000N.tfrecord once N is known."""

    def __init__(self, folder: Path, name: str, limit: int, counts: list[int] | None) -> None:
        self.folder, self.name, self.limit = folder, name, limit
        self.counts = counts  # records each shard holds, or None: cut at `limit` bytes
        self.parts: list[tuple[Path, int]] = []  # (path, records) of each closed part
        self.writer: tf.io.TFRecordWriter | None = None
        self.records = self.bytes = 0

    def write(self, record: bytes) -> None:
        if self.writer is None:
            self.writer = tf.io.TFRecordWriter(str(self._part(len(self.parts))))
        self.writer.write(record)
        self.records += 1
        self.bytes += len(record) + 16  # a record's framing: length, and two checksums
        if self._full():
            self._finish_part()

    def close(self) -> tuple[Shard, ...]:
        if self.writer is not None:
            self._finish_part()
        count = len(self.parts)
        shards = []
        for number, (part, records) in enumerate(self.parts):
            final = self.folder / f"{self.name}-{number:05d}-of-{count:05d}{SUFFIX}"
            part.replace(final)
            shards.append(Shard(final.name, records, final.stat().st_size))
        return tuple(shards)

    def _full(self) -> bool:
        if self.counts is None:
            return self.bytes >= self.limit
        # More items than expected go to the last shard: never lost, only unbalanced.
        return len(self.parts) < len(self.counts) - 1 and self.records == self.counts[len(self.parts)]  # fmt: skip

    def _part(self, number: int) -> Path:
        return self.folder / f"{self.name}-{number:05d}{SUFFIX}.part"

    def _finish_part(self) -> None:
        self.writer.close()
        self.parts.append((self._part(len(self.parts)), self.records))
        self.writer, self.records, self.bytes = None, 0, 0


def _summary(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "mean": round(sum(values) / len(values), 1), "max": max(values)}
