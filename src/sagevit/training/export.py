"""Write a trained model in the layout that TF Serving and our server both load.

The layout and its names are `sagevit.contract`'s. The numbered folder is TF
Serving's version layout; TF Serving ignores the other files, and our server
reads the metadata file to name classes. The folder is replaced whole, atomically,
whether it is a plain folder or a mount of its own (as SageMaker and its SDKs'
local modes mount /opt/ml/model).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from sagevit.contract import INPUT_NAME, KERAS_FILE, METADATA_FILE, OUTPUT_NAME, SIGNATURE
from sagevit.platform.outputs import ensure_writable, is_mount_point, unwritable

log = logging.getLogger(__name__)


def export_model(
    model: keras.Model,
    model_dir: str | Path,
    class_names: Sequence[str],
    hyperparameters: dict[str, Any],
    version: int = 1,
    flip_tta: bool = False,
) -> Path:
    """Export `model` (logits) as a softmax SavedModel in `model_dir/<version>`, with the
    Keras file and the metadata beside it; return the SavedModel's path. With `flip_tta`
    the SavedModel answers the mean of each image's and its mirror image's softmax.

    `model_dir` never holds a part of a model: everything is written into a staging
    folder first. A plain folder then takes the staging folder's place by rename
    (`_swap_in`); a mount point, which cannot be renamed, is staged inside and filled
    metadata last (`_fill_in_place`). Raises OutputError if `model_dir` is unwritable.
    """
    model_dir = Path(model_dir).resolve()
    image_size = int(model.input_shape[1])
    num_classes = int(model.output_shape[-1])
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {num_classes} outputs")
    ensure_writable(model_dir, "the model")
    try:
        _remove_leftovers(model_dir)
        in_place = is_mount_point(model_dir)
        staging = _fresh_staging(model_dir, inside=in_place)
        _write_saved_model(model, staging / str(version), image_size, flip_tta)
        model.save(staging / KERAS_FILE)
        metadata = {
            "format_version": 1,
            "saved_model_version": version,
            "signature": SIGNATURE,
            "input": {"name": INPUT_NAME, "shape": [image_size, image_size, 3], "range": [0, 255]},
            "image_size": image_size,
            "flip_tta": flip_tta,
            "class_names": list(class_names),
            "hyperparameters": hyperparameters,
        }
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        if in_place:
            _fill_in_place(staging, model_dir)
        else:
            _swap_in(staging, model_dir)
    except OSError as error:
        raise unwritable(model_dir, "the model", error) from error
    log.info("exported SavedModel to %s", model_dir / str(version))
    return model_dir / str(version)


def _write_saved_model(model: keras.Model, path: Path, image_size: int, flip_tta: bool) -> None:
    """The serving signature: float32 (B, H, W, 3) pixels 0-255 -> softmax probabilities;
    with `flip_tta`, the mean over each image and its mirror (one model call of 2B)."""
    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(
        input_signature=[tf.TensorSpec((None, image_size, image_size, 3), tf.float32, INPUT_NAME)]
    )
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        if flip_tta:
            both = tf.concat([images, tf.reverse(images, axis=[2])], axis=0)  # (2B, H, W, 3)
            probabilities = tf.nn.softmax(tf.cast(model(both, training=False), tf.float32))
            plain, mirrored = tf.split(probabilities, 2, axis=0)
            return {OUTPUT_NAME: (plain + mirrored) / 2}
        logits = model(images, training=False)
        return {OUTPUT_NAME: tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}

    archive.add_endpoint(SIGNATURE, serve)
    archive.write_out(str(path), verbose=False)


def _remove_leftovers(model_dir: Path) -> None:
    """Remove what killed exports left inside `model_dir` or beside it."""
    for leftover in [*model_dir.glob(".export-[0-9]*"), *model_dir.parent.glob(f".{model_dir.name}.*-[0-9]*")]:  # fmt: skip
        shutil.rmtree(leftover, ignore_errors=True)


def _fresh_staging(model_dir: Path, inside: bool) -> Path:
    """An empty staging folder inside `model_dir` (`.export-PID`) or beside it (`.NAME.export-PID`)."""
    name = ".export" if inside else f".{model_dir.name}.export"
    staging = (model_dir if inside else model_dir.parent) / f"{name}-{os.getpid()}"
    staging.mkdir(parents=True)
    return staging


def _swap_in(staging: Path, model_dir: Path) -> None:
    """Make `staging` (beside it) the contents of `model_dir` by renames: the old contents
    aside, then the staging folder in; in between, `model_dir` is absent, not partial.
    A mount point that `is_mount_point` missed refuses the first rename (EBUSY, or EXDEV
    across filesystems): then the staging folder is copied inside and filled in place."""
    aside = None
    if model_dir.exists():
        aside = model_dir.with_name(f".{model_dir.name}.old-{os.getpid()}")
        try:
            os.replace(model_dir, aside)
        except OSError as error:
            if error.errno not in (errno.EBUSY, errno.EXDEV):
                raise
            log.info("%s cannot be renamed (%s): filling it in place", model_dir, error.strerror)
            inside = _fresh_staging(model_dir, inside=True)
            shutil.copytree(staging, inside, dirs_exist_ok=True)
            shutil.rmtree(staging)
            _fill_in_place(inside, model_dir)
            return
    os.replace(staging, model_dir)
    _fsync_dir(model_dir.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _fill_in_place(staging: Path, model_dir: Path) -> None:
    """Make `staging` (inside it) the contents of `model_dir`, a folder that cannot be
    renamed. The old metadata goes first and the new metadata comes last, each entry
    moves in by a rename within the mount, and the SavedModel folder moves whole: a
    kill leaves the old model, the new one, or no metadata (no model), never a mix."""
    (model_dir / METADATA_FILE).unlink(missing_ok=True)
    _fsync_dir(model_dir)
    for old in model_dir.iterdir():
        if old == staging:
            continue
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    for entry in sorted(staging.iterdir(), key=lambda entry: entry.name == METADATA_FILE):
        os.replace(entry, model_dir / entry.name)
    staging.rmdir()
    _fsync_dir(model_dir)


def _fsync_dir(directory: Path) -> None:
    """Make renames in `directory` durable."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
