"""Prepare training data: the seed's channel format (training.npz + testing.npz), or
record channels (train/ and validation/, each TFRecord shards and a dataset.json index).

    python -m scripts.prepare_data --source cifar10 --out data/cifar10      # download (connected machine)
    python -m scripts.prepare_data --source PATH.tar.gz --out data/cifar10  # train/<class>/*.jpg archive
    python -m scripts.prepare_data --source PATH/ --out data/mine           # <class>/*.jpg|png folder
    python -m scripts.prepare_data --source PATH.npz --out data/mine        # the seed's npz
    python -m scripts.prepare_data --source synthetic --out data/shapes     # generated, offline
    python -m scripts.prepare_data --source PATH/ --out data/mine --format tfrecord [--shard-mb 128]

For an archive, a folder or an npz file, the validation split is carved from the images
(the last --validation-size after a fixed-seed shuffle), not a test set. The npz format
decodes every image to --image-size; records keep the encoded images as they are (they
are decoded, at the model's size, while training), written in the shuffled order.

With --upload, the files go to S3 where `make train` looks for its channels:
s3://BUCKET/sagevit/data/train/ and .../validation/ (training.npz and testing.npz, or the
shards and their index), BUCKET: --bucket, or SageMaker's default bucket for the account
and region.
"""

from __future__ import annotations

import logging
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from sagevit.contract import CHANNEL_FILES, TRAIN_FILE, VALIDATION_FILE
from sagevit.data.channels import IMAGE_SUFFIXES
from sagevit.data.holdout import held_out_indices
from sagevit.data.images import ImageError
from sagevit.data.images import decode as decode_image
from sagevit.data.record_writer import SHARD_MB, png, write_channel
from sagevit.errors import DataError
from sagevit.platform.npz import read_npz
from scripts.local.synthetic_shapes import make_shapes, write_npz
from scripts.sagemaker.aws import (
    DATA_PREFIX,
    add_session_arguments,
    sagemaker_session,
    script_parser,
    upload,
)

log = logging.getLogger("prepare_data")


def _image_paths(folder: Path) -> list[Path]:
    return [path for path in sorted(folder.rglob("*")) if path.suffix.lower() in IMAGE_SUFFIXES]


def _labelled_files(source: Path) -> Iterator[tuple[Path, bytes]]:
    """(path, encoded bytes) for each image in a tar archive or a folder tree."""
    if source.is_dir():
        for path in _image_paths(source):
            yield path, path.read_bytes()
        return
    with tarfile.open(source) as archive:
        for member in archive:
            if member.isfile() and Path(member.name).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(member.name), archive.extractfile(member).read()


def read_image_tree(
    source: Path, image_size: int
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Decode every `<class>/<file>` image under a folder or in an archive."""
    images, names = [], []
    for path, data in _labelled_files(source):
        try:
            images.append(decode_image(data, image_size))
        except ImageError as error:
            raise SystemExit(f"{source}: {path}: {error}") from None
        names.append(path.parent.name)
    if not images:
        raise SystemExit(f"no .jpg/.png images found in {source}")
    classes = tuple(sorted(set(names)))
    labels = np.array([classes.index(name) for name in names], dtype=np.int64)
    log.info("read %d images of %d classes from %s", len(images), len(classes), source)
    return np.stack(images), labels, classes


def split(
    images: np.ndarray, labels: np.ndarray, validation_size: int, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Shuffle with a fixed seed; the last `validation_size` examples are held out."""
    train, held_out = held_out_indices(len(labels), validation_size, seed)
    return (images[train], labels[train]), (images[held_out], labels[held_out])


def load_cifar10() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    return (x_train, y_train[:, 0]), (x_test, y_test[:, 0])


def in_memory(source: str, image_size: int, validation_size: int, count: int, seed: int):
    """((train images, labels), (validation images, labels), class names) of a source
    that is decoded whole: cifar10, synthetic, an npz file, or an image folder/archive."""
    from sagevit.data.channels import CIFAR10_CLASSES, load_split

    if source == "synthetic":
        images, labels, classes = make_shapes(count, image_size, seed)
        return (*split(images, labels, min(validation_size, count // 5), seed), classes)
    if source == "cifar10":
        return (*load_cifar10(), CIFAR10_CLASSES)
    if source.endswith(".npz"):
        arrays = read_npz(Path(source))
        if "class_names" in arrays:
            classes = tuple(str(name) for name in arrays["class_names"].reshape(-1))
        else:  # numbered: as many classes as the largest label needs (one if unreadable)
            labels = arrays.get("label")
            top = int(labels.max()) if labels is not None and labels.size and labels.dtype.kind in "iu" else 0  # fmt: skip
            classes = tuple(str(n) for n in range(top + 1))
        checked = load_split(source, image_size, len(classes))  # the channel reader's checks
        return (*split(checked.images, checked.labels, validation_size, seed), classes)
    images, labels, classes = read_image_tree(Path(source), image_size)
    return (*split(images, labels, validation_size, seed), classes)


def prepare(
    source: str,
    out: Path,
    image_size: int = 32,
    validation_size: int = 5000,
    count: int = 12000,
    seed: int = 0,
) -> Path:
    """Write out/training.npz and out/testing.npz from `source`; return `out`."""
    out.mkdir(parents=True, exist_ok=True)
    train, test, classes = in_memory(source, image_size, validation_size, count, seed)
    write_npz(str(out / TRAIN_FILE), *train, classes)
    write_npz(str(out / VALIDATION_FILE), *test, classes)
    log.info("wrote %d training and %d testing examples to %s", len(train[1]), len(test[1]), out)
    return out


def prepare_records(
    source: str,
    out: Path,
    image_size: int = 32,
    validation_size: int = 5000,
    count: int = 12000,
    seed: int = 0,
    shard_mb: float = SHARD_MB,
) -> Path:
    """Write out/train/ and out/validation/ as record channels from `source`; return `out`.
    A folder or an archive (unpacked to a scratch folder first) keeps its encoded files;
    in-memory sources (cifar10, synthetic, npz) are stored as PNG."""
    if source in ("cifar10", "synthetic") or source.endswith(".npz"):
        train, test, classes = in_memory(source, image_size, validation_size, count, seed)
        channels = {"train": list(_encoded(*train)), "validation": list(_encoded(*test))}
        sizes = {name: (len(items), sum(len(item[1]) for item in items)) for name, items in channels.items()}  # fmt: skip
        return _write_records(channels, out, classes, shard_mb, sizes)
    with tempfile.TemporaryDirectory(prefix="sagevit-unpacked-") as scratch:
        folder = Path(source)
        if not folder.is_dir():
            folder = _unpacked(folder, Path(scratch))
        paths = _image_paths(folder)
        if not paths:
            raise SystemExit(f"no .jpg/.png images found in {source}")
        classes = tuple(sorted({path.parent.name for path in paths}))
        kept, held = held_out_indices(len(paths), validation_size, seed)

        def files(indices: np.ndarray) -> Iterator[tuple[str, bytes, int]]:
            for i in indices:  # the shuffled order: the reader mixes only within a buffer
                path = paths[i]
                yield str(path.relative_to(folder)), path.read_bytes(), classes.index(path.parent.name)  # fmt: skip

        def sizes(indices: np.ndarray) -> tuple[int, int]:  # a stat each, no read
            return len(indices), sum(paths[i].stat().st_size for i in indices)

        channels = {"train": files(kept), "validation": files(held)}
        expected = {"train": sizes(kept), "validation": sizes(held)}
        return _write_records(channels, out, classes, shard_mb, expected)


def _encoded(images: np.ndarray, labels: np.ndarray) -> Iterator[tuple[str, bytes, int]]:
    for number, (image, label) in enumerate(zip(images, labels, strict=True)):
        yield f"image {number}", png(image), int(label)


def _unpacked(archive: Path, scratch: Path) -> Path:
    """The archive's images, unpacked under `scratch` (records are written in a shuffled
    order, which a compressed archive cannot be read in)."""
    with tarfile.open(archive) as tar:
        members = [m for m in tar if m.isfile() and Path(m.name).suffix.lower() in IMAGE_SUFFIXES]
        tar.extractall(scratch, members=members, filter="data")
    return scratch


def _write_records(
    channels: dict, out: Path, classes: Sequence[str], shard_mb: float, expected: dict
) -> Path:
    """Each channel's items as record shards of equal counts (`expected`: count, bytes)."""
    for channel, items in channels.items():
        write_channel(items, out / channel, channel, classes, shard_mb, expected[channel])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = script_parser(__doc__)
    parser.add_argument(
        "--source", required=True, help="cifar10, synthetic, or a folder/archive path"
    )
    parser.add_argument("--out", required=True, type=Path, help="output channel folder")
    parser.add_argument("--image-size", type=int, default=32, help="resize images to this side")
    parser.add_argument("--validation-size", type=int, default=5000, help="held-out examples")
    parser.add_argument("--count", type=int, default=12000, help="examples, for synthetic")
    parser.add_argument("--seed", type=int, default=0, help="shuffle and generation seed")
    parser.add_argument("--format", choices=("npz", "tfrecord"), default="npz", help="the channels' format")  # fmt: skip
    parser.add_argument("--shard-mb", type=float, default=SHARD_MB, help="records: about this many MB a shard")  # fmt: skip
    parser.add_argument("--upload", action="store_true", help="upload the channels to S3")
    add_session_arguments(parser)
    args = parser.parse_args(argv)
    common = (args.source, args.out, args.image_size, args.validation_size, args.count, args.seed)
    try:
        if args.format == "tfrecord":
            prepare_records(*common, shard_mb=args.shard_mb)
        else:
            prepare(*common)
    except DataError as error:
        raise SystemExit(str(error)) from None
    if args.upload:
        upload_channels(args.out, args.region, args.bucket)
    return 0


def upload_channels(folder: Path, region: str | None, bucket: str | None) -> str:
    """Upload the channels under s3://BUCKET/sagevit/data/: training.npz and testing.npz as
    train and validation, or the record channels' folders (each under one prefix, which
    ShardedByS3Key can split among hosts)."""
    session = sagemaker_session(region, bucket)
    prefix = f"s3://{session.default_bucket()}/{DATA_PREFIX}"
    for channel, name in CHANNEL_FILES.items():
        files = sorted((folder / channel).iterdir()) if (folder / channel).is_dir() else [folder / name]  # fmt: skip
        for path in files:
            upload(session.boto_session, path, f"{prefix}/{channel}/{path.name}")
    print(f"channels uploaded under {prefix}/")
    return prefix


if __name__ == "__main__":
    sys.exit(main())
