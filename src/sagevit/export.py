"""Write a trained model in the layout that TF Serving and our server both load.

The layout and its names are `sagevit.contract`'s. The numbered folder is TF
Serving's version layout; TF Serving ignores the other files, and our server
reads the metadata file to name classes.
"""

from __future__ import annotations

import json
import logging
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
    """Export `model` (logits) to `model_dir/<version>` as a softmax SavedModel; return its path."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    image_size = int(model.input_shape[1])
    num_classes = int(model.output_shape[-1])
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {num_classes} outputs")

    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(
        input_signature=[tf.TensorSpec((None, image_size, image_size, 3), tf.float32, INPUT_NAME)]
    )
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = model(images, training=False)
        return {OUTPUT_NAME: tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}

    archive.add_endpoint(SIGNATURE, serve)
    saved_model_dir = model_dir / str(version)
    if saved_model_dir.exists():
        shutil.rmtree(saved_model_dir)
    archive.write_out(str(saved_model_dir), verbose=False)

    model.save(model_dir / KERAS_FILE)
    metadata = {
        "format_version": 1,
        "saved_model_version": version,
        "signature": SIGNATURE,
        "input": {"name": INPUT_NAME, "shape": [image_size, image_size, 3], "range": [0, 255]},
        "image_size": image_size,
        "class_names": list(class_names),
        "hyperparameters": hyperparameters,
    }
    (model_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    log.info("exported SavedModel to %s", saved_model_dir)
    return saved_model_dir
