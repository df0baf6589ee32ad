"""Assemble the Vision Transformer from the blocks in `layers.py`.

The model takes raw 0-255 pixels (any real dtype) and returns class logits, so a
client never has to know how the model normalises its input.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from sagevit.model import BLOCK_PREFIX, NORMS, PIXEL_SCALES, POOLINGS, TOKENIZERS
from sagevit.model.dropout import Dropout
from sagevit.model.layers import (
    ClassToken,
    ConvTokenizer,
    EncoderBlock,
    PatchEmbedding,
    PositionEmbedding,
    SequencePooling,
)
from sagevit.model.stem import ConvStem


def count_blocks(model: keras.Model) -> int:
    """How many encoder blocks a model built by `build_vit` has."""
    return sum(layer.name.startswith(BLOCK_PREFIX) for layer in model.layers)


def build_vit(
    *,
    image_size: int,
    patch_size: int,
    num_layers: int,
    d_model: int,
    num_heads: int,
    mlp_dim: int,
    num_classes: int,
    dropout: float,
    norm: str,
    tokenizer: str,
    conv_layers: int,
    pooling: str,
    stochastic_depth: float,
    pixel_scale: str,
    name: str = "vit",
) -> keras.Model:
    """Build a ViT: (B, image_size, image_size, 3) pixels in 0-255 -> (B, num_classes) logits.

    No defaults here: `Hyperparameters.model_kwargs()` gives every argument (the
    recipe's values, or a preset's); `sagevit.config` documents each one.

    norm: "pre" (LayerNorm before each branch, as ViTs since) or "post" (after each
        residual sum, as the original Transformer and the seed notebook).
    tokenizer: "patch" (strided convolution, the original ViT) or "conv" (a small
        convolutional stem, as in Compact Convolutional Transformers, of `conv_layers`
        stages that each halve the grid) or "hybrid" (a BatchNorm conv stem of
        `conv_layers` two-conv stages, `sagevit.model.stem`, as the ViT paper's hybrids).
    pooling: "class_token" (the original ViT) or "sequence" (attention-weighted mean).
    stochastic_depth: the drop rate of the last block; earlier blocks drop less, linearly.
    pixel_scale: how pixels are scaled first (`scale_pixels`); pretrained weights
        expect the scaling they were trained with.
    """
    check_options(tokenizer, pooling, norm, pixel_scale, image_size, patch_size, d_model, num_heads)

    images = keras.Input((image_size, image_size, 3), name="images")
    x = scale_pixels(pixel_scale)(images)  # 0-255 -> what the weights expect
    x = make_tokenizer(tokenizer, patch_size, d_model, conv_layers)(x)  # (B, N, D)
    if pooling == "class_token":
        x = ClassToken(name="class_token")(x)  # (B, N+1, D)
    x = PositionEmbedding(name="position_embedding")(x)
    x = Dropout(dropout, name="embedding_dropout")(x)
    for i in range(num_layers):
        rate = stochastic_depth * i / max(num_layers - 1, 1)
        block = EncoderBlock(num_heads, mlp_dim, dropout, norm == "pre", rate, name=f"{BLOCK_PREFIX}{i}")  # fmt: skip
        x = block(x)
    x = layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    if pooling == "class_token":
        x = x[:, 0]  # the class token's state, (B, D)
    else:
        x = SequencePooling(name="sequence_pooling")(x)  # (B, D)
    logits = layers.Dense(num_classes, name="head", dtype="float32")(x)  # (B, num_classes)
    return keras.Model(images, logits, name=name)


def check_options(
    tokenizer: str, pooling: str, norm: str, pixel_scale: str,
    image_size: int, patch_size: int, d_model: int, num_heads: int,
) -> None:  # fmt: skip
    """ValueError naming the value, for a choice that does not exist or shapes that do not fit."""
    options = {"tokenizer": (tokenizer, TOKENIZERS), "pooling": (pooling, POOLINGS),
               "norm": (norm, NORMS), "pixel_scale": (pixel_scale, PIXEL_SCALES)}  # fmt: skip
    for option, (value, choices) in options.items():
        if value not in choices:
            raise ValueError(f"{option} must be one of {choices}, got {value!r}")
    if tokenizer == "patch" and image_size % patch_size:
        raise ValueError(f"image size {image_size} is not divisible by patch size {patch_size}")
    if d_model % num_heads:
        raise ValueError(f"d_model {d_model} is not divisible by the number of heads {num_heads}")


def make_tokenizer(tokenizer: str, patch_size: int, d_model: int, conv_layers: int) -> layers.Layer:
    """(B, H, W, 3) scaled pixels -> (B, N, d_model) tokens, by `tokenizer`'s name."""
    if tokenizer == "patch":
        return PatchEmbedding(patch_size, d_model, name="patch_embedding")
    if tokenizer == "conv":
        return ConvTokenizer(d_model, conv_layers=conv_layers, name="conv_tokenizer")
    return ConvStem(d_model, stages=conv_layers, name="conv_stem")


# ImageNet's per-channel mean and standard deviation, of pixels scaled to 0-1.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def scale_pixels(pixel_scale: str) -> layers.Layer:
    """The model's first layer: 0-255 pixels to unit (0-1), symmetric (-1 to 1, as
    Google's and timm's ViT checkpoints expect) or imagenet (mean 0, std 1 per channel
    over ImageNet, as DeiT's do)."""
    if pixel_scale == "unit":
        return layers.Rescaling(1.0 / 255.0, name="rescale")
    if pixel_scale == "symmetric":
        return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")
    mean = [255.0 * m for m in IMAGENET_MEAN]
    variance = [(255.0 * s) ** 2 for s in IMAGENET_STD]
    return layers.Normalization(mean=mean, variance=variance, name="rescale")


def load_model(path: str | Path) -> keras.Model:
    """Load a `vit.keras` file; importing this module has registered the custom layers."""
    return keras.models.load_model(path)
