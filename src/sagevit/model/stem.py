"""The hybrid tokenizer: a BatchNorm convolution stem whose last feature map is the tokens.

The original ViT paper's "hybrid" feeds a transformer the feature map of a ResNet
instead of raw patches; on small images the CNN does what a ViT otherwise has to
learn from data (locality, translation invariance), and the transformer mixes the
few tokens that are left globally. Here the stem is `stages` groups of

    3x3 conv -> 2x2 max-pool -> BatchNorm -> GELU -> 3x3 conv -> BatchNorm -> GELU

each halving the grid and doubling the width up to `d_model`: three stages take a
32x32 image to 4x4 = 16 tokens of d_model (widths 64, 128, 256 for d_model 256).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from sagevit.model.layers import PACKAGE, build_in_sequence


def stage_widths(d_model: int, stages: int) -> list[int]:
    """Each stage's channels: doubling, the last d_model (256, 3 -> [64, 128, 256])."""
    widths = [d_model // 2 ** (stages - 1 - i) for i in range(stages)]
    if widths[0] < 1 or any(w * 2 ** (stages - 1 - i) != d_model for i, w in enumerate(widths)):
        raise ValueError(
            f"d_model {d_model} is not divisible by 2^(stages - 1) for {stages} stages"
        )
    return widths


def _conv_bn(width: int, name: str) -> list[layers.Layer]:
    """3x3 conv without bias (BatchNorm's beta is the bias) and its BatchNorm."""
    return [
        layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv"),
        layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn"),
    ]


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConvStem(layers.Layer):
    """(B, H, W, C) pixels -> (B, (H/2^stages) * (W/2^stages), d_model) tokens."""

    def __init__(self, d_model: int, stages: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if stages < 1:
            raise ValueError(f"ConvStem needs at least one stage, got {stages}")
        self.d_model = d_model
        self.stages = stages
        self.groups = []
        for i, width in enumerate(stage_widths(d_model, stages)):
            first_conv, first_bn = _conv_bn(width, f"stage{i}a")
            second_conv, second_bn = _conv_bn(width, f"stage{i}b")
            pool = layers.MaxPooling2D(2, name=f"stage{i}_pool")
            self.groups.append((first_conv, pool, first_bn, second_conv, second_bn))

    @property
    def stride(self) -> int:
        return 2**self.stages

    def build(self, input_shape: tuple) -> None:
        layers_in_order = [layer for group in self.groups for layer in group]
        what = f"ConvStem with {self.stages} stage(s)"
        self.num_tokens = build_in_sequence(layers_in_order, input_shape, self.stride, what)

    def call(self, images: Any, training: bool | None = None) -> Any:
        x = images
        for first_conv, pool, first_bn, second_conv, second_bn in self.groups:
            x = ops.gelu(first_bn(pool(first_conv(x)), training=training))  # (B, h/2, w/2, width)
            x = ops.gelu(second_bn(second_conv(x), training=training))
        return ops.reshape(x, (-1, self.num_tokens, self.d_model))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        tokens = (input_shape[1] // self.stride) * (input_shape[2] // self.stride)
        return (input_shape[0], tokens, self.d_model)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "d_model": self.d_model, "stages": self.stages}
