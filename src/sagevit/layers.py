"""The ViT's building blocks, one Keras layer per block.

Shapes use B = batch, H/W = image side, P = patch side, N = (H/P)*(W/P) patches,
D = d_model. Every layer keeps its constructor arguments and returns them from
`get_config()`, and is registered so that `keras.models.load_model` finds it.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

PACKAGE = "sagevit"


@keras.saving.register_keras_serializable(package=PACKAGE)
class PatchEmbedding(layers.Layer):
    """Cut the image into P×P patches and project each to D: (B, H, W, C) -> (B, N, D)."""

    def __init__(self, patch_size: int, d_model: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.patch_size = patch_size
        self.d_model = d_model
        # A strided convolution is a linear projection of non-overlapping patches.
        self.projection = layers.Conv2D(
            d_model, kernel_size=patch_size, strides=patch_size, name="projection"
        )

    def build(self, input_shape: tuple) -> None:
        _, height, width, _ = input_shape
        if height is None or width is None:
            raise ValueError(f"PatchEmbedding needs a fixed image size, got shape {input_shape}")
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"image size {height}x{width} is not divisible by patch size {self.patch_size}"
            )
        self.projection.build(input_shape)
        self.num_patches = (height // self.patch_size) * (width // self.patch_size)

    def call(self, images: Any) -> Any:
        patches = self.projection(images)  # (B, H/P, W/P, D)
        return ops.reshape(patches, (-1, self.num_patches, self.d_model))  # (B, N, D)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        height, width = input_shape[1], input_shape[2]
        num_patches = (height // self.patch_size) * (width // self.patch_size)
        return (input_shape[0], num_patches, self.d_model)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "patch_size": self.patch_size, "d_model": self.d_model}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClassToken(layers.Layer):
    """Prepend one learned token whose final state feeds the head: (B, N, D) -> (B, N+1, D)."""

    def build(self, input_shape: tuple) -> None:
        self.token = self.add_weight(
            shape=(1, 1, input_shape[-1]), initializer="zeros", name="token"
        )

    def call(self, tokens: Any) -> Any:
        batch = ops.shape(tokens)[0]
        token = ops.broadcast_to(ops.cast(self.token, tokens.dtype), (batch, 1, tokens.shape[-1]))
        return ops.concatenate([token, tokens], axis=1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        length = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], length, input_shape[2])


@keras.saving.register_keras_serializable(package=PACKAGE)
class PositionEmbedding(layers.Layer):
    """Add a learned embedding per sequence position: (B, L, D) -> (B, L, D)."""

    def build(self, input_shape: tuple) -> None:
        _, length, width = input_shape
        if length is None:
            raise ValueError(f"PositionEmbedding needs a fixed length, got shape {input_shape}")
        self.position = self.add_weight(
            shape=(1, length, width),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="position",
        )

    def call(self, tokens: Any) -> Any:
        return tokens + ops.cast(self.position, tokens.dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class EncoderBlock(layers.Layer):
    """Pre-norm transformer block: x + Attention(LN(x)), then x + MLP(LN(x)). (B, L, D) -> same."""

    def __init__(self, num_heads: int, mlp_dim: int, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.dropout = dropout

    def build(self, input_shape: tuple) -> None:
        d_model = input_shape[-1]
        if d_model % self.num_heads:
            raise ValueError(
                f"d_model {d_model} is not divisible by the number of heads {self.num_heads}"
            )
        self.attention_norm = layers.LayerNormalization(epsilon=1e-6, name="attention_norm")
        self.attention = layers.MultiHeadAttention(
            self.num_heads,
            key_dim=d_model // self.num_heads,
            dropout=self.dropout,
            name="attention",
        )
        self.mlp_norm = layers.LayerNormalization(epsilon=1e-6, name="mlp_norm")
        self.mlp_hidden = layers.Dense(self.mlp_dim, activation="gelu", name="mlp_hidden")
        self.mlp_output = layers.Dense(d_model, name="mlp_output")
        self.drop = layers.Dropout(self.dropout)

        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.mlp_norm.build(input_shape)
        self.mlp_hidden.build(input_shape)
        self.mlp_output.build((*input_shape[:-1], self.mlp_dim))

    def call(self, x: Any, training: bool | None = None) -> Any:
        y = self.attention_norm(x)
        y = self.attention(y, y, training=training)
        x = x + self.drop(y, training=training)
        y = self.mlp_hidden(self.mlp_norm(x))
        y = self.mlp_output(self.drop(y, training=training))
        return x + self.drop(y, training=training)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "dropout": self.dropout,
        }
