"""RandAugment (Cubuk et al. 2020) as timm's `rand-m9-mstd0.5` spells it, and
TrivialAugment (Müller & Hutter 2021), per image.

Each image gets `num_ops` operations drawn uniformly from OPS, each at a magnitude
drawn from N(magnitude, magnitude_std) on timm's 0-10 scale, with a random sign
where an operation has a direction. TrivialAugment: one operation per image, at a
magnitude uniform over the scale. Each operation runs on the images that drew it
(`tf.dynamic_partition`), so an image costs one operation, not all of them.

Why not `keras.layers.RandAugment`: it draws one list of operations for the whole
batch (every image of a batch gets the same ones) from a stateful generator, so it
cannot take the per-batch stateless seeds that make our augmentation stream the
same in every process and after a resume. Equalize (a per-image histogram) is left
out: it has no batched TensorFlow op.

Images are float (B, H, W, 3) in 0-255.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf

# ITU-R 601 luma weights, as PIL's convert("L"). A tuple, not a tf.constant: a tensor built at
# import would start TensorFlow's context before MultiWorkerMirroredStrategy can configure it.
GRAY = (0.299, 0.587, 0.114)
FILL = 128.0  # what affine operations bring in at the borders (timm's grey)


def _blend(degenerate: tf.Tensor, images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """PIL ImageEnhance: degenerate + factor (B,) x (images - degenerate), clipped."""
    return tf.clip_by_value(
        degenerate + factor[:, None, None, None] * (images - degenerate), 0, 255
    )


def _gray(images: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(images * tf.constant(GRAY), axis=-1, keepdims=True)  # (B, H, W, 1)


def _affine(images: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
    """Each output pixel (x, y) samples the input at (a0 x + a1 y + a2, b0 x + b1 y + b2):
    `rows` (B, 6) holds a0 a1 a2 b0 b1 b2."""
    transforms = tf.concat([rows, tf.zeros_like(rows[:, :2])], axis=1)  # (B, 8), no projection
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=FILL,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def _rotate(images: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    angle = v * 30.0 * math.pi / 180.0  # up to 30 degrees
    cy, cx = (tf.cast(tf.shape(images)[1], tf.float32) - 1) / 2, (tf.cast(tf.shape(images)[2], tf.float32) - 1) / 2  # fmt: skip
    cos, sin = tf.cos(angle), tf.sin(angle)
    rows = tf.stack([cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy], 1)
    return _affine(images, rows)


def _shear(images: tf.Tensor, v: tf.Tensor, axis: int) -> tf.Tensor:
    one, zero, shear = tf.ones_like(v), tf.zeros_like(v), v * 0.3
    rows = [one, shear, zero, zero, one, zero] if axis == 1 else [one, zero, zero, shear, one, zero]
    return _affine(images, tf.stack(rows, 1))


def _translate(images: tf.Tensor, v: tf.Tensor, axis: int) -> tf.Tensor:
    one, zero = tf.ones_like(v), tf.zeros_like(v)
    shift = v * 0.45 * tf.cast(tf.shape(images)[2 if axis == 1 else 1], tf.float32)
    rows = [one, zero, shift, zero, one, zero] if axis == 1 else [one, zero, zero, zero, one, shift]
    return _affine(images, tf.stack(rows, 1))


def _auto_contrast(images: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    low = tf.reduce_min(images, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(images, axis=[1, 2], keepdims=True)
    scale = tf.where(high > low, 255.0 / tf.maximum(high - low, 1e-3), 1.0)
    return tf.where(high > low, (images - low) * scale, images)


def _solarize(images: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    threshold = 256.0 - tf.abs(v)[:, None, None, None] * 256.0
    return tf.where(images >= threshold, 255.0 - images, images)


def _posterize(images: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    step = tf.pow(2.0, tf.round(tf.abs(v) * 4.0))[:, None, None, None]  # keep 8 - 4|v| bits
    return tf.floor(images / step) * step


def _sharpness(images: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0  # PIL SMOOTH
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], padding="SAME")
    return _blend(smooth, images, 1.0 + 0.9 * v)


# name -> f(images (B, H, W, 3), v (B,) signed magnitude in [-1, 1]) -> images
OPS: dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "identity": lambda images, v: images,
    "auto_contrast": _auto_contrast,
    "rotate": _rotate,
    "solarize": _solarize,
    "color": lambda images, v: _blend(_gray(images), images, 1.0 + 0.9 * v),
    "posterize": _posterize,
    "contrast": lambda images, v: _blend(
        tf.reduce_mean(_gray(images), axis=[1, 2, 3], keepdims=True), images, 1.0 + 0.9 * v
    ),
    "brightness": lambda images, v: _blend(tf.zeros_like(images), images, 1.0 + 0.9 * v),
    "sharpness": _sharpness,
    "shear_x": lambda images, v: _shear(images, v, 1),
    "shear_y": lambda images, v: _shear(images, v, 0),
    "translate_x": lambda images, v: _translate(images, v, 1),
    "translate_y": lambda images, v: _translate(images, v, 0),
}


def rand_augment(
    images: tf.Tensor,
    seed: tf.Tensor,
    num_ops: int = 2,
    magnitude: float = 9.0,
    magnitude_std: float = 0.5,
) -> tf.Tensor:
    """`num_ops` random operations per image, magnitudes ~ N(magnitude, std) of 10: (B, H, W, 3)."""
    batch = tf.shape(images)[0]
    for seed_i in tf.unstack(tf.random.experimental.stateless_split(seed, num_ops)):
        seeds = tf.random.experimental.stateless_split(seed_i, 3)
        strength = magnitude + magnitude_std * tf.random.stateless_normal([batch], seeds[1])
        images = one_operation(images, seeds[0], seeds[2], strength)
    return images


def trivial_augment(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """TrivialAugment (Müller & Hutter 2021) over RandAugment's operations and ranges (the
    paper's "TA (RA)"): one operation per image at a magnitude uniform over 0-10."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    strength = tf.random.stateless_uniform([tf.shape(images)[0]], seeds[1], 0.0, 10.0)
    return one_operation(images, seeds[0], seeds[2], strength)


def one_operation(
    images: tf.Tensor, choice_seed: tf.Tensor, sign_seed: tf.Tensor, strength: tf.Tensor
) -> tf.Tensor:
    """Each image through one operation of OPS, drawn uniformly, at its (B,) `strength` of 10
    with a random sign. Each operation runs only on the images that drew it."""
    batch = tf.shape(images)[0]
    chosen = tf.random.stateless_uniform([batch], choice_seed, 0, len(OPS), dtype=tf.int32)
    sign = tf.where(tf.random.stateless_uniform([batch], sign_seed) < 0.5, -1.0, 1.0)
    v = sign * tf.clip_by_value(strength, 0.0, 10.0) / 10.0  # (B,) in [-1, 1]
    places, groups, group_vs = (tf.dynamic_partition(x, chosen, len(OPS)) for x in (tf.range(batch), images, v))  # fmt: skip
    outs = [op(*args) for op, *args in zip(OPS.values(), groups, group_vs, strict=True)]
    return tf.ensure_shape(tf.dynamic_stitch(places, outs), images.shape)
