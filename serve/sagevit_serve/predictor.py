"""Load an exported model directory and run it as a compiled function on fixed batch shapes.

The SavedModel's `serving_default` signature is wrapped in one `tf.function` with a
fixed input spec, XLA-compiled. Every batch is padded up to one of BATCH_BUCKETS
(larger ones are cut into chunks of the largest bucket), so XLA compiles a
bounded set of shapes, all at load time: no request ever traces or compiles, and
Keras' `predict` machinery (its per-call overhead) is never used. What this saves is
measured in docs/benchmarks.md (`make bench-serve`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sagevit.contract import METADATA_FILE, SIGNATURE

log = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def bucket_for(count: int) -> int:
    """The smallest bucket that holds `count` images (the largest, for bigger batches)."""
    return next((size for size in BATCH_BUCKETS if size >= count), BATCH_BUCKETS[-1])


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


def read_class_names(metadata_file: Path, output_size: int) -> tuple[str, ...]:
    """The class names metadata.json gives, checked against the model's outputs; without
    the file, the class numbers. A mismatch is a broken model folder: ValueError."""
    if not metadata_file.is_file():
        return tuple(str(i) for i in range(output_size))
    try:
        names = json.loads(metadata_file.read_text()).get("class_names")
    except (ValueError, AttributeError) as error:
        raise ValueError(f"{metadata_file} is not a JSON object ({error})") from None
    if names is None:
        return tuple(str(i) for i in range(output_size))
    if not isinstance(names, list) or len(names) != output_size:
        count = len(names) if isinstance(names, list) else "no list of"
        raise ValueError(
            f"{metadata_file} names {count} classes but the model outputs {output_size}"
        )
    return tuple(str(name) for name in names)


@dataclass
class Predictor:
    """Probabilities for batches of 0-255 RGB images of one fixed size."""

    image_size: int
    class_names: tuple[str, ...]
    version: str
    _signature: Any = field(repr=False)
    _keepalive: Any = field(repr=False, default=None)  # the loaded object owns the variables

    @classmethod
    def load(cls, model_dir: str | Path, jit_compile: bool = True) -> Predictor:
        import tensorflow as tf  # imported here so a worker can set threading first

        version_dir = latest_version(model_dir)
        loaded = tf.saved_model.load(str(version_dir))
        if SIGNATURE not in loaded.signatures:
            raise ValueError(f"{version_dir} has no '{SIGNATURE}' signature")
        signature = loaded.signatures[SIGNATURE]
        (spec,) = signature.structured_input_signature[1].values()
        (output_name,) = signature.structured_outputs
        image_size = int(spec.shape[1])
        output_size = int(signature.structured_outputs[output_name].shape[-1])

        @tf.function(
            input_signature=[tf.TensorSpec((None, image_size, image_size, 3), tf.float32)],
            jit_compile=jit_compile,
            autograph=False,
        )
        def probabilities(images: tf.Tensor) -> tf.Tensor:
            return signature(**{spec.name: images})[output_name]

        class_names = read_class_names(Path(model_dir) / METADATA_FILE, output_size)
        compiled = probabilities.get_concrete_function()  # calls skip tf.function's dispatch
        predictor = cls(image_size, class_names, version_dir.name, compiled, loaded)
        for size in BATCH_BUCKETS:  # compile every shape now, not on a request
            predictor.predict(np.zeros((size, image_size, image_size, 3), np.float32))
        log.info(
            "loaded %s: %d classes, %dx%d input, batch buckets %s, XLA %s",
            version_dir, len(class_names), image_size, image_size, BATCH_BUCKETS, jit_compile,
        )  # fmt: skip
        return predictor

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) pixels in 0-255 -> (B, classes) float32 probabilities."""
        images = np.asarray(images, dtype=np.float32)
        largest = BATCH_BUCKETS[-1]
        outputs = []
        for start in range(0, len(images), largest):
            chunk = images[start : start + largest]
            padded_size = bucket_for(len(chunk))
            if padded_size != len(chunk):
                padding = np.zeros((padded_size - len(chunk), *chunk.shape[1:]), np.float32)
                chunk_in = np.concatenate([chunk, padding])
            else:
                chunk_in = chunk
            outputs.append(self._signature(chunk_in).numpy()[: len(chunk)])
        return np.concatenate(outputs)
