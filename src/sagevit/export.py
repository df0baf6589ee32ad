"""Write a trained model in the layout that TF Serving and our server both load.

The layout and its names are `sagevit.contract`'s. The numbered folder is TF
Serving's version layout; TF Serving ignores the other files, and our server
reads the metadata file to name classes. The folder is replaced whole, atomically.
"""

from __future__ import annotations

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

log = logging.getLogger(__name__)


def export_model(
    model: keras.Model,
    model_dir: str | Path,
    class_names: Sequence[str],
    hyperparameters: dict[str, Any],
    version: int = 1,
) -> Path:
    """Export `model` (logits) as a softmax SavedModel in `model_dir/<version>`, with the
    Keras file and the metadata beside it; return the SavedModel's path.

    `model_dir` appears whole or not at all: everything is written into a staging folder
    beside it, which then takes its place by rename (`_swap_in`). A kill at any moment
    leaves the previous contents or the new ones, never a mix or a part.
    """
    model_dir = Path(model_dir).resolve()  # a name to put the staging folder beside
    image_size = int(model.input_shape[1])
    num_classes = int(model.output_shape[-1])
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {num_classes} outputs")
    staging = _fresh_sibling(model_dir, "export")
    _write_saved_model(model, staging / str(version), image_size)
    model.save(staging / KERAS_FILE)
    metadata = {
        "format_version": 1,
        "saved_model_version": version,
        "signature": SIGNATURE,
        "input": {"name": INPUT_NAME, "shape": [image_size, image_size, 3], "range": [0, 255]},
        "image_size": image_size,
        "class_names": list(class_names),
        "hyperparameters": hyperparameters,
    }
    (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    _swap_in(staging, model_dir)
    log.info("exported SavedModel to %s", model_dir / str(version))
    return model_dir / str(version)


def _write_saved_model(model: keras.Model, path: Path, image_size: int) -> None:
    """The serving signature: float32 (B, H, W, 3) pixels 0-255 -> softmax probabilities."""
    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(
        input_signature=[tf.TensorSpec((None, image_size, image_size, 3), tf.float32, INPUT_NAME)]
    )
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = model(images, training=False)
        return {OUTPUT_NAME: tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}

    archive.add_endpoint(SIGNATURE, serve)
    archive.write_out(str(path), verbose=False)


def _fresh_sibling(model_dir: Path, kind: str) -> Path:
    """An empty `.NAME.KIND-PID` folder beside `model_dir` (same filesystem: renames are
    atomic), after removing what killed exports of this folder left behind."""
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    for leftover in model_dir.parent.glob(f".{model_dir.name}.*-[0-9]*"):
        shutil.rmtree(leftover, ignore_errors=True)
    sibling = model_dir.with_name(f".{model_dir.name}.{kind}-{os.getpid()}")
    sibling.mkdir()
    return sibling


def _swap_in(staging: Path, model_dir: Path) -> None:
    """Make `staging` the contents of `model_dir`. Old contents are renamed aside first,
    then the staging folder renamed in: in between, `model_dir` is absent, not partial."""
    if model_dir.is_mount():  # a mount point cannot be renamed: fill it, metadata last
        for old in model_dir.iterdir():
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
        entries = sorted(staging.iterdir(), key=lambda entry: entry.name == METADATA_FILE)
        for entry in entries:
            os.replace(entry, model_dir / entry.name)
        staging.rmdir()
        return
    aside = None
    if model_dir.exists():
        aside = model_dir.with_name(f".{model_dir.name}.old-{os.getpid()}")
        os.replace(model_dir, aside)
    os.replace(staging, model_dir)
    _fsync_dir(model_dir.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _fsync_dir(directory: Path) -> None:
    """Make renames in `directory` durable."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
