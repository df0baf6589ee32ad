"""Read a channel: the seed's npz format, a folder of images, or record shards
(`sagevit.data.pipeline` turns what it holds into batches).

A channel folder holds one of:
- `training.npz` and/or `testing.npz`, each with `image` (N, H, W, 3) uint8 and `label`
  (N,) or (N, 1) integers, and optionally `class_names` (num_classes,) strings. The `train`
  channel reads `training.npz`, the `validation` channel `testing.npz`; a channel with a
  single .npz uses it. Read whole into memory.
- `<class>/<image>.jpg|png` folders, decoded as they are read.
- `*.tfrecord` shards and their `dataset.json` index (`sagevit.data.records`), streamed.

Every problem with the data raises DataError with one sentence that says what
is wrong and where, because that sentence becomes SageMaker's FailureReason.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import tensorflow as tf

from sagevit.contract import INDEX_CHANNEL_SUFFIX
from sagevit.data import images
from sagevit.data.augment import with_example_seeds
from sagevit.data.records import RecordSet, is_record_channel, load_records
from sagevit.errors import DataError
from sagevit.platform.npz import NpzError, read_npz
from sagevit.platform.watchdog import no_beat

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# CIFAR-10's label order, used when a 10-class dataset carries no class names.
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


# Decoded images up to this size are cached in memory after the first epoch.
CACHE_LIMIT_BYTES = 4 << 30


@dataclass(frozen=True)
class Split:
    """Examples of one channel: in memory (npz), image files read lazily (folders), or
    record shards streamed (records)."""

    images: np.ndarray | None  # (N, H, W, 3) uint8, or None for image files and records
    labels: np.ndarray | None  # (N,) int32, or None for records
    class_names: tuple[str, ...] | None  # from the data, if it names them
    source: Path
    paths: np.ndarray | None = None  # (N,) image file paths, read by `examples()`
    image_size: int = 32  # the model's: other sizes are resized to it (bilinear)
    records: RecordSet | None = None  # record shards, read by `examples()`
    # SageMaker gave each host its own part of the files (ShardedByS3Key): not split again.
    sharded_by_key: bool = False

    def __len__(self) -> int:
        return len(self.records) if self.records is not None else len(self.labels)

    @property
    def resized(self) -> bool:
        """Whether batches are resized to `image_size` (in-memory images of another size)."""
        return self.images is not None and self.images.shape[1:3] != (self.image_size,) * 2

    def subset(self, indices: np.ndarray) -> Split:
        images = None if self.images is None else self.images[indices]
        paths = None if self.paths is None else self.paths[indices]
        return replace(self, images=images, labels=self.labels[indices], paths=paths)

    def examples(self) -> tf.data.Dataset:
        """(uint8 (H, W, 3), int32) pairs; image files are decoded in parallel, then cached."""
        if self.images is not None:
            return tf.data.Dataset.from_tensor_slices((self.images, self.labels))
        if self.records is not None:
            return self.records.examples(self.image_size)
        dataset = self.decoded(self.files())
        return dataset.cache() if self.cached else dataset

    @property
    def cached(self) -> bool:
        """Whether a folder's decoded images fit CACHE_LIMIT_BYTES, and are kept."""
        return len(self) * self.image_size**2 * 3 <= CACHE_LIMIT_BYTES

    def files(self) -> tf.data.Dataset:
        """A folder's (path, int32 label) pairs."""
        return tf.data.Dataset.from_tensor_slices((self.paths, self.labels))

    def decoded(self, files: tf.data.Dataset, crop_seed: tf.Tensor | None = None) -> tf.data.Dataset:  # fmt: skip
        """(path, label) -> (uint8 (size, size, 3), label): in parallel, each file through
        the server's decoder (sagevit.data.images): the same file gives the same pixels.
        With `crop_seed`, a random resized crop and flip of each (`images.decode_cropped`),
        seeded by (crop_seed, its place in `files`)."""
        size = self.image_size

        def read(path: tf.Tensor, label: tf.Tensor, *seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:  # fmt: skip
            image = tf.numpy_function(read_image_file, [path, size, *seed], tf.uint8, stateful=False)  # fmt: skip
            return tf.ensure_shape(image, (size, size, 3)), label

        if crop_seed is None:
            return files.map(read, num_parallel_calls=tf.data.AUTOTUNE)
        return with_example_seeds(files, crop_seed).map(
            lambda seed, file: read(*file, seed), num_parallel_calls=tf.data.AUTOTUNE
        )


def read_image_file(path: bytes, size: int, crop_seed: np.ndarray | None = None) -> np.ndarray:
    """(size, size, 3) uint8 pixels of one image file, or with a (2,) `crop_seed` a random
    resized crop of it; a damaged file is a DataError."""
    path = os.fsdecode(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        if crop_seed is None:
            return images.decode(data, int(size))
        return images.decode_cropped(data, int(size), crop_seed.tolist())
    except images.ImageError as error:
        raise DataError(f"{path}: {error}") from None


def find_channel_file(channel_dir: str | Path, preferred: str, channel: str) -> Path:
    """The .npz file a channel should read: `preferred` if present, else its only .npz."""
    folder = Path(channel_dir)
    if not folder.is_dir():
        raise DataError(f"the {channel} channel folder {folder} does not exist")
    candidates = sorted(folder.glob("*.npz"))
    if folder / preferred in candidates:
        candidates = [folder / preferred]
    for candidate in candidates:
        if not candidate.is_file():  # stat only: opening a FIFO would block
            raise DataError(f"{candidate} is not a regular file (a folder, FIFO or device?)")
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DataError(f"the {channel} channel {folder} holds no .npz file (expected {preferred})")
    names = ", ".join(p.name for p in candidates)
    raise DataError(
        f"the {channel} channel {folder} has no {preferred} and several .npz files: {names}"
    )


def load_split(
    path: str | Path, image_size: int, num_classes: int, beat: Callable[[], None] = no_beat
) -> Split:
    """Load and check one npz file; raise DataError naming the first problem found."""
    path = Path(path)
    try:
        arrays = read_npz(path, beat)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except NpzError as error:
        raise DataError(str(error)) from None

    for key in ("image", "label"):
        if key not in arrays:
            found = ", ".join(sorted(arrays)) or "nothing"
            raise DataError(f"{path} has no '{key}' array (it holds {found})")
    images, labels = arrays["image"], arrays["label"]

    if images.ndim != 4 or images.shape[3] != 3 or 0 in images.shape[1:3]:
        raise DataError(f"{path}: 'image' has shape {images.shape}, expected (N, height, width, 3)")
    if images.dtype != np.uint8:
        raise DataError(f"{path}: 'image' has dtype {images.dtype}, expected uint8 pixels 0-255")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{path}: 'label' has shape {labels.shape}, expected (N,) or (N, 1)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: 'label' has dtype {labels.dtype}, expected integers")
    if len(labels) != len(images):
        raise DataError(f"{path} has {len(images)} images but {len(labels)} labels")
    if len(labels) == 0:
        raise DataError(f"{path} holds no examples")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise DataError(
            f"{path}: label {bad} is outside [0, {num_classes}) for --num-classes {num_classes}"
        )

    class_names = None
    if "class_names" in arrays:
        class_names = tuple(str(name) for name in arrays["class_names"].reshape(-1))
        if len(class_names) != num_classes:
            raise DataError(
                f"{path} names {len(class_names)} classes but --num-classes is {num_classes}"
            )
    log.info("loaded %d examples from %s", len(labels), path)
    split = Split(images, labels.astype(np.int32), class_names, path, image_size=image_size)
    if split.resized:
        log.info("%s: %dx%d images are resized to %dx%d in the input pipeline", path, *images.shape[1:3], image_size, image_size)  # fmt: skip
    return split


IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # JPEG, PNG


def load_image_folder(
    folder: Path, image_size: int, num_classes: int, beat: Callable[[], None] = no_beat
) -> Split:
    """A `<class>/<image>.jpg|png` tree: class names are the sorted folder names.

    Only the file list is read here (and each file's first bytes, to refuse
    non-images early); pixels are decoded lazily by `Split.examples()`. A name
    that looks like an image but is no regular file (a folder, a FIFO) is a
    DataError, not skipped. `beat()` runs every 1,024 files.
    """
    classes = sorted(path.name for path in folder.iterdir() if path.is_dir())
    if len(classes) != num_classes:
        raise DataError(
            f"{folder} has {len(classes)} class folders ({', '.join(classes) or 'none'}) "
            f"but --num-classes is {num_classes}"
        )
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"the class folder {folder / name} holds no .jpg, .jpeg or .png image")
        for count, path in enumerate(files, 1):
            if not path.is_file():  # stat only: opening a FIFO would block
                raise DataError(f"{path} is not a regular file (a folder, FIFO or device?)")
            if count % 1024 == 0:
                beat()
            with path.open("rb") as handle:
                if not handle.read(8).startswith(IMAGE_SIGNATURES):
                    raise DataError(f"{path} is not a readable JPEG or PNG image")
        paths += [str(path) for path in files]
        labels += [label] * len(files)
    log.info("found %d images of %d classes in %s", len(paths), len(classes), folder)
    return Split(
        None, np.array(labels, np.int32), tuple(classes), folder, np.array(paths), image_size
    )


@dataclass(frozen=True)
class InputConfig:
    """What SageMaker's inputdataconfig.json says of the channels that the reader needs."""

    sharded_by_key: frozenset[str] = frozenset()  # channels with ShardedByS3Key
    index_dirs: dict[str, str] = field(default_factory=dict)  # channel -> its index channel

    @classmethod
    def from_sagemaker(cls, input_data_config: dict, channel_dirs: dict[str, str]) -> InputConfig:  # fmt: skip
        """From inputdataconfig.json's contents and the channel folders; DataError for a
        Pipe-mode channel (a FIFO this reader cannot stream: use File or FastFile)."""
        for name, config in input_data_config.items():
            if config.get("TrainingInputMode") == "Pipe":
                raise DataError(f"the {name} channel is in Pipe mode, which this image does not read: use File or FastFile (make train INPUT_MODE=FastFile)")  # fmt: skip
        sharded = frozenset(
            name for name, config in input_data_config.items()
            if config.get("S3DistributionType") == "ShardedByS3Key"
        )  # fmt: skip
        indexes = {
            name[: -len(INDEX_CHANNEL_SUFFIX)]: path
            for name, path in channel_dirs.items() if name.endswith(INDEX_CHANNEL_SUFFIX)
        }  # fmt: skip
        return cls(sharded, indexes)


def load_channel(
    channel_dir: str | Path,
    preferred: str,
    channel: str,
    image_size: int,
    num_classes: int,
    beat: Callable[[], None] = no_beat,
    inputs: InputConfig | None = None,
) -> Split:
    """A channel's examples: its record shards, its npz file, or, if it holds neither,
    its class folders. `beat()` runs as loading makes progress (a watchdog's heartbeat)."""
    folder = Path(channel_dir)
    inputs = inputs or InputConfig()
    sharded = channel in inputs.sharded_by_key
    if folder.is_dir() and is_record_channel(folder):
        index_dir = inputs.index_dirs.get(channel)
        records, index = load_records(folder, channel, num_classes, sharded, index_dir and Path(index_dir))  # fmt: skip
        return Split(None, None, index.class_names, folder, image_size=image_size, records=records, sharded_by_key=sharded)  # fmt: skip
    if folder.is_dir() and not any(folder.glob("*.npz")) and any(p.is_dir() for p in folder.iterdir()):  # fmt: skip
        split = load_image_folder(folder, image_size, num_classes, beat)
    else:
        split = load_split(find_channel_file(channel_dir, preferred, channel), image_size, num_classes, beat)  # fmt: skip
    return replace(split, sharded_by_key=sharded)


def resolve_class_names(num_classes: int, *splits: Split | None) -> tuple[str, ...]:
    """Class names from the data if it has them, else CIFAR-10's for 10 classes, else numbers."""
    for split in splits:
        if split is not None and split.class_names is not None:
            return split.class_names
    if num_classes == len(CIFAR10_CLASSES):
        return CIFAR10_CLASSES
    return tuple(str(i) for i in range(num_classes))
