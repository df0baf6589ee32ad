"""The ViT's building blocks, one Keras layer per block.

Shapes use B = batch, H/W = image side, P = patch side, N = (H/P)*(W/P) patches,
D = d_model. Every layer keeps its constructor arguments and returns them from
`get_config()`, and is registered so that `keras.models.load_model` finds it.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from sagevit.model.dropout import PACKAGE, Dropout, drop


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


def _uniform(fans: int) -> keras.initializers.Initializer:
    """Glorot uniform for a kernel whose fan-in plus fan-out is `fans`."""
    limit = (6.0 / fans) ** 0.5
    return keras.initializers.RandomUniform(-limit, limit)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SelfAttention(layers.Layer):
    """Multi-head self-attention: (B, L, D) -> (B, L, D), with K = D / heads per head.

    One projection makes queries, keys and values together; `dropout` drops
    attention weights while training. Same maths as `keras.layers.MultiHeadAttention`
    on (x, x), but its dropout mask is `sagevit.model.dropout`'s, cheap under XLA.
    """

    def __init__(self, num_heads: int, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.dropout = dropout
        self.seed_generator = keras.random.SeedGenerator()

    def build(self, input_shape: tuple) -> None:
        _, length, d_model = input_shape
        if length is None:
            raise ValueError(f"SelfAttention needs a fixed length, got shape {input_shape}")
        if d_model % self.num_heads:
            raise ValueError(
                f"d_model {d_model} is not divisible by the number of heads {self.num_heads}"
            )
        # Keras's MultiHeadAttention draws its query, key, value and output kernels each
        # as a D x D Glorot uniform; a (D, 3D) Dense alone would draw from a narrower range,
        # and the recipe would start (and train) differently.
        self.qkv = layers.Dense(3 * d_model, kernel_initializer=_uniform(2 * d_model), name="qkv")
        self.qkv.build(input_shape)
        self.output_projection = layers.Dense(d_model, name="output")  # D x D Glorot already
        self.output_projection.build(input_shape)

    def call(self, x: Any, training: bool | None = None) -> Any:
        _, length, d_model = x.shape
        heads, width = self.num_heads, d_model // self.num_heads
        qkv = ops.reshape(self.qkv(x), (-1, length, 3, heads, width))  # (B, L, 3, heads, K)
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))  # (3, B, heads, L, K)
        queries, keys, values = ops.unstack(qkv, 3, axis=0)  # not qkv[i]: its gradient is dense
        queries = queries * width**-0.5
        scores = ops.matmul(queries, ops.swapaxes(keys, -1, -2))  # (B, heads, L, L)
        weights = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), x.dtype)
        if training and self.dropout > 0.0:
            weights = drop(weights, self.dropout, self.seed_generator.next())
        mixed = ops.matmul(weights, values)  # (B, heads, L, K)
        mixed = ops.reshape(ops.transpose(mixed, (0, 2, 1, 3)), (-1, length, d_model))
        return self.output_projection(mixed)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_heads": self.num_heads, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package=PACKAGE)
class EncoderBlock(layers.Layer):
    """Transformer block: (B, L, D) -> (B, L, D).

    Pre-norm (default): x + Attention(LN(x)), then x + MLP(LN(x)).
    Post-norm (the seed's): LN(x + Attention(x)), then LN(x + MLP(x)).
    `stochastic_depth` drops each residual branch for a whole example with that
    probability during training (and rescales the kept ones).
    """

    def __init__(
        self,
        num_heads: int,
        mlp_dim: int,
        dropout: float = 0.0,
        norm_first: bool = True,
        stochastic_depth: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.dropout = dropout
        self.norm_first = norm_first
        self.stochastic_depth = stochastic_depth
        self.seed_generator = keras.random.SeedGenerator()

    def build(self, input_shape: tuple) -> None:
        self.attention_norm = layers.LayerNormalization(epsilon=1e-6, name="attention_norm")
        self.attention = SelfAttention(self.num_heads, self.dropout, name="attention")
        self.mlp_norm = layers.LayerNormalization(epsilon=1e-6, name="mlp_norm")
        self.mlp_hidden = layers.Dense(self.mlp_dim, activation="gelu", name="mlp_hidden")
        self.mlp_output = layers.Dense(input_shape[-1], name="mlp_output")
        self.drop = Dropout(self.dropout)

        self.attention_norm.build(input_shape)
        self.attention.build(input_shape)
        self.mlp_norm.build(input_shape)
        self.mlp_hidden.build(input_shape)
        self.mlp_output.build((*input_shape[:-1], self.mlp_dim))

    def _drop_path(self, branch: Any, training: bool | None) -> Any:
        if not training or self.stochastic_depth == 0.0:
            return branch
        shape = (ops.shape(branch)[0], 1, 1)  # one decision per example
        return drop(branch, self.stochastic_depth, self.seed_generator.next(), shape)

    def _attend(self, x: Any, training: bool | None) -> Any:
        y = self.attention(x, training=training)
        return self._drop_path(self.drop(y, training=training), training)

    def _mlp(self, x: Any, training: bool | None) -> Any:
        y = self.mlp_output(self.drop(self.mlp_hidden(x), training=training))
        return self._drop_path(self.drop(y, training=training), training)

    def call(self, x: Any, training: bool | None = None) -> Any:
        if self.norm_first:
            x = x + self._attend(self.attention_norm(x), training)
            return x + self._mlp(self.mlp_norm(x), training)
        x = self.attention_norm(x + self._attend(x, training))
        return self.mlp_norm(x + self._mlp(x, training))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "dropout": self.dropout,
            "norm_first": self.norm_first,
            "stochastic_depth": self.stochastic_depth,
        }


def build_in_sequence(
    stages: list[layers.Layer], input_shape: tuple, stride: int, what: str
) -> int:
    """Build conv stages one after another on (B, H, W, C) images whose sides `stride`
    must divide; return the tokens left, (H / stride) * (W / stride)."""
    _, height, width, _ = input_shape
    if height is None or width is None or height % stride or width % stride:
        raise ValueError(f"{what} needs a size divisible by {stride}, got {height}x{width}")
    shape = input_shape
    for stage in stages:
        stage.build(shape)
        shape = stage.compute_output_shape(shape)
    return (height // stride) * (width // stride)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConvTokenizer(layers.Layer):
    """Compact-Transformer-style tokens from a small conv stem: (B, H, W, C) -> (B, N, D).

    `conv_layers` stages of 3x3 conv + ReLU + 3x3/2 max-pool (`hidden` channels, the last
    `d_model`), each halving the grid: two (the default) give N = (H/4)*(W/4), as 4x4
    patches do, one gives CCT-x/3x1's (H/2)*(W/2). Each token sees overlapping
    neighbourhoods: the locality a ViT otherwise has to learn from data.
    """

    def __init__(self, d_model: int, hidden: int = 64, conv_layers: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if conv_layers < 1:
            raise ValueError(f"ConvTokenizer needs at least one conv layer, got {conv_layers}")
        self.d_model = d_model
        self.hidden = hidden
        self.conv_layers = conv_layers
        self.stages = []
        for i in range(conv_layers):
            width = d_model if i == conv_layers - 1 else hidden
            self.stages += [
                layers.Conv2D(width, 3, padding="same", use_bias=False, activation="relu"),
                layers.MaxPooling2D(3, strides=2, padding="same"),
            ]

    @property
    def stride(self) -> int:
        return 2**self.conv_layers

    def build(self, input_shape: tuple) -> None:
        what = f"ConvTokenizer with {self.conv_layers} conv layer(s)"
        self.num_tokens = build_in_sequence(self.stages, input_shape, self.stride, what)

    def call(self, images: Any) -> Any:
        x = images
        for stage in self.stages:
            x = stage(x)
        return ops.reshape(x, (-1, self.num_tokens, self.d_model))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        tokens = (input_shape[1] // self.stride) * (input_shape[2] // self.stride)
        return (input_shape[0], tokens, self.d_model)

    def get_config(self) -> dict[str, Any]:
        config = {"d_model": self.d_model, "hidden": self.hidden, "conv_layers": self.conv_layers}
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SequencePooling(layers.Layer):
    """Attention-weighted average of all tokens, in place of a class token: (B, L, D) -> (B, D)."""

    def build(self, input_shape: tuple) -> None:
        self.score = layers.Dense(1, name="score")
        self.score.build(input_shape)

    def call(self, tokens: Any) -> Any:
        weights = ops.softmax(self.score(tokens), axis=1)  # (B, L, 1)
        return ops.sum(weights * tokens, axis=1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], input_shape[2])
