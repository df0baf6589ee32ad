"""Prepare training data in the seed's channel format: training.npz + testing.npz.

    python scripts/prepare_data.py --source cifar10 --out data/cifar10      # download (connected machine)
    python scripts/prepare_data.py --source PATH.tar.gz --out data/cifar10  # train/<class>/*.jpg archive
    python scripts/prepare_data.py --source PATH/ --out data/mine           # <class>/*.jpg|png folder
    python scripts/prepare_data.py --source synthetic --out data/shapes     # generated, offline

For an archive or folder, testing.npz is a validation split carved from the
images (the last --validation-size after a fixed-seed shuffle), not a test set.

With --upload, the files go to S3 where `make train` looks for its channels:
s3://BUCKET/sagevit/data/train/training.npz and .../validation/testing.npz
(BUCKET: --bucket, or SageMaker's default bucket for the account and region).
"""

from __future__ import annotations

import logging
import sys
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from sagevit.contract import CHANNEL_FILES, TRAIN_FILE, VALIDATION_FILE
from sagevit.data.channels import IMAGE_SUFFIXES, held_out_indices
from sagevit.data.images import ImageError
from sagevit.data.images import decode as decode_image
from scripts.local.synthetic_shapes import make_shapes, write_npz
from scripts.sagemaker.aws import (
    DATA_PREFIX,
    add_session_arguments,
    sagemaker_session,
    script_parser,
    upload,
)

log = logging.getLogger("prepare_data")


def _labelled_files(source: Path) -> Iterator[tuple[Path, bytes]]:
    """(path, encoded bytes) for each image in a tar archive or a folder tree."""
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
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


def prepare(
    source: str,
    out: Path,
    image_size: int = 32,
    validation_size: int = 5000,
    count: int = 12000,
    seed: int = 0,
) -> Path:
    """Write out/training.npz and out/testing.npz from `source`; return `out`."""
    from sagevit.data.channels import CIFAR10_CLASSES

    out.mkdir(parents=True, exist_ok=True)
    if source == "synthetic":
        images, labels, classes = make_shapes(count, image_size, seed)
        train, test = split(images, labels, min(validation_size, count // 5), seed)
    elif source == "cifar10":
        train, test = load_cifar10()
        classes = CIFAR10_CLASSES
    else:
        images, labels, classes = read_image_tree(Path(source), image_size)
        train, test = split(images, labels, validation_size, seed)
    write_npz(str(out / TRAIN_FILE), *train, classes)
    write_npz(str(out / VALIDATION_FILE), *test, classes)
    log.info("wrote %d training and %d testing examples to %s", len(train[1]), len(test[1]), out)
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
    parser.add_argument("--upload", action="store_true", help="upload the channels to S3")
    add_session_arguments(parser)
    args = parser.parse_args(argv)
    prepare(args.source, args.out, args.image_size, args.validation_size, args.count, args.seed)
    if args.upload:
        upload_channels(args.out, args.region, args.bucket)
    return 0


def upload_channels(folder: Path, region: str | None, bucket: str | None) -> str:
    """Upload training.npz and testing.npz as the train and validation channels."""
    session = sagemaker_session(region, bucket)
    prefix = f"s3://{session.default_bucket()}/{DATA_PREFIX}"
    for channel, name in CHANNEL_FILES.items():
        upload(session.boto_session, folder / name, f"{prefix}/{channel}/{name}")
    print(f"channels uploaded under {prefix}/")
    return prefix


if __name__ == "__main__":
    sys.exit(main())
