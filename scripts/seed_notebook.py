"""The seed notebook's ViT and training loop, as it wrote them: the benchmarks' baseline.

The notebook built its ViT from Keras's own layers (`MultiHeadAttention`,
`Dropout`, post-norm blocks, a class token) and trained it with `compile` and
`fit` on in-memory arrays: AdamW at a constant 3e-4 (weight decay 1e-4), batch
256, no augmentation. The sizes are `--preset seed`'s, so the architecture is the
one our trainer trains with that preset; only the layers' code differs (ours
draw cheaper dropout masks, see docs/training-speed.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers

from sagevit.config import Hyperparameters
from sagevit.flags import parse_hyperparameters
from sagevit.model.layers import ClassToken, PatchEmbedding, PositionEmbedding

SEED = parse_hyperparameters(["--preset", "seed"])


def notebook_vit(hp: Hyperparameters = SEED) -> keras.Model:
    """(B, 32, 32, 3) pixels 0-255 -> (B, classes) logits, built from stock Keras layers."""
    images = keras.Input((hp.image_size, hp.image_size, 3))
    x = layers.Rescaling(1.0 / 255.0)(images)
    x = PatchEmbedding(hp.patch_size, hp.d_model)(x)  # (B, N, D)
    x = PositionEmbedding()(ClassToken()(x))  # (B, N+1, D)
    x = layers.Dropout(hp.dropout)(x)
    for _ in range(hp.num_layers):  # post-norm blocks, dropout where our EncoderBlock has it
        y = layers.MultiHeadAttention(hp.num_heads, hp.d_model // hp.num_heads, dropout=hp.dropout)(
            x, x
        )
        x = layers.LayerNormalization(epsilon=1e-6)(x + layers.Dropout(hp.dropout)(y))
        y = layers.Dropout(hp.dropout)(layers.Dense(hp.mlp_dim, activation="gelu")(x))
        y = layers.Dropout(hp.dropout)(layers.Dense(hp.d_model)(y))
        x = layers.LayerNormalization(epsilon=1e-6)(x + y)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    logits = layers.Dense(hp.num_classes, dtype="float32")(x[:, 0])
    return keras.Model(images, logits, name="notebook_vit")


def notebook_fit(
    images: np.ndarray,
    labels: np.ndarray,
    epochs: int,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> keras.callbacks.History:
    """The notebook's training: compile (XLA by Keras's default) and fit on arrays."""
    keras.utils.set_random_seed(SEED.seed)
    model = notebook_vit()
    model.compile(
        optimizer=keras.optimizers.AdamW(SEED.learning_rate, weight_decay=SEED.weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model.fit(
        images,
        labels,
        batch_size=SEED.batch_size,
        epochs=epochs,
        validation_data=validation,
        callbacks=list(callbacks),
        verbose=2,
    )
