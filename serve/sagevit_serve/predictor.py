"""Load an exported model directory and run it through its traced serving signature.

The signature has a fixed input spec (B, H, W, 3) float32, so TensorFlow runs one
concrete graph for every request; nothing is retraced and Keras' `predict`
machinery (about 100 ms per call on a small CPU) is never involved.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"


def latest_version(model_dir: str | Path) -> Path:
    """The highest-numbered `model_dir/<N>/` that holds a saved_model.pb (TF Serving's rule)."""
    model_dir = Path(model_dir)
    versions = [
        path
        for path in model_dir.glob("*")
        if path.name.isdigit() and (path / "saved_model.pb").is_file()
    ]
    if not versions:
        if (model_dir / "saved_model.pb").is_file():
            return model_dir  # a bare SavedModel, without a version folder
        raise FileNotFoundError(
            f"no SavedModel version folder (e.g. {model_dir}/1/) in {model_dir}"
        )
    return max(versions, key=lambda path: int(path.name))


@dataclass
class Predictor:
    """Probabilities for batches of 0-255 RGB images of one fixed size."""

    image_size: int
    class_names: tuple[str, ...]
    version: str
    _signature: Any = field(repr=False)
    _keepalive: Any = field(repr=False, default=None)  # the loaded object owns the variables

    @classmethod
    def load(cls, model_dir: str | Path) -> Predictor:
        import tensorflow as tf  # imported here so a worker can set threading first

        version_dir = latest_version(model_dir)
        loaded = tf.saved_model.load(str(version_dir))
        if SIGNATURE not in loaded.signatures:
            raise ValueError(f"{version_dir} has no '{SIGNATURE}' signature")
        signature = loaded.signatures[SIGNATURE]
        (spec,) = signature.structured_input_signature[1].values()
        image_size = int(spec.shape[1])
        output_size = int(next(iter(signature.structured_outputs.values())).shape[-1])

        metadata_file = Path(model_dir) / "metadata.json"
        metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
        class_names = tuple(metadata.get("class_names") or (str(i) for i in range(output_size)))
        predictor = cls(image_size, class_names, version_dir.name, signature, loaded)
        predictor.predict(np.zeros((1, image_size, image_size, 3), np.float32))  # warm up
        log.info(
            "loaded %s: %d classes, %dx%d input",
            version_dir,
            len(class_names),
            image_size,
            image_size,
        )
        return predictor

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) pixels in 0-255 -> (B, classes) float32 probabilities."""
        outputs = self._signature(images=np.asarray(images, dtype=np.float32))
        (probabilities,) = outputs.values()
        return probabilities.numpy()
