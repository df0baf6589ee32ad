"""Training-only augmentation, on whole batches inside the tf.data pipeline.

Every op is a TensorFlow op on a (B, H, W, 3) float batch with a per-batch seed,
so augmentation runs in tf.data's threads with no Python per example, and a
fixed seed gives the same stream of augmentations. The exception (AT_DECODE): a record
channel, or a folder too large for its cache, crops each image as it decodes it
(`record_decode.decode_cropped`, `images.decode_cropped`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf

from sagevit.data import CROP_AREA, CROP_ASPECT
from sagevit.data.randaugment import rand_augment, trivial_augment


def crop_flip(images: tf.Tensor, seed: tf.Tensor, pad: int = 4) -> tf.Tensor:
    """Reflect-pad by `pad`, take a random crop of the original size, flip half: (B, H, W, C)."""
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    seeds = tf.random.experimental.stateless_split(seed, 3)
    top = tf.random.stateless_uniform([batch], seeds[0], 0, 2 * pad + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([batch], seeds[1], 0, 2 * pad + 1, dtype=tf.int32)
    flip = tf.random.stateless_uniform([batch], seeds[2]) < 0.5
    rows = top[:, None] + tf.range(height)[None, :]  # (B, H)
    cols = left[:, None] + tf.range(width)[None, :]  # (B, W)
    cols = tf.where(flip[:, None], tf.reverse(cols, axis=[1]), cols)
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)  # (B, H, W + 2p, C)
    return tf.gather(cropped, cols, axis=2, batch_dims=1)  # (B, H, W, C)


def mixup(
    images: tf.Tensor, targets: tf.Tensor, seed: tf.Tensor, alpha: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """Blend each example with another of the batch, weight ~ Beta(alpha, alpha), labels too."""
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 3)
    gamma_a = tf.random.stateless_gamma([batch], seeds[0], alpha)
    gamma_b = tf.random.stateless_gamma([batch], seeds[1], alpha)
    weight = gamma_a / (gamma_a + gamma_b)  # Beta(alpha, alpha), (B,)
    partner = tf.random.experimental.stateless_shuffle(tf.range(batch), seeds[2])
    image_weight = weight[:, None, None, None]
    images = image_weight * images + (1 - image_weight) * tf.gather(images, partner)
    targets = weight[:, None] * targets + (1 - weight[:, None]) * tf.gather(targets, partner)
    return images, targets


def resized_crop_flip(
    images: tf.Tensor, seed: tf.Tensor, scale: tuple[float, float] = (0.8, 1.0)
) -> tf.Tensor:
    """Inception-style random resized crop (area `scale`, aspect CROP_ASPECT) and a flip of
    half, back to the input size: (B, H, W, C)."""
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    seeds = tf.random.experimental.stateless_split(seed, 5)
    area = tf.random.stateless_uniform([batch], seeds[0], *scale)
    ratio = tf.exp(tf.random.stateless_uniform([batch], seeds[1], *map(math.log, CROP_ASPECT)))
    crop_h = tf.minimum(tf.sqrt(area / ratio), 1.0)  # as fractions of the side
    crop_w = tf.minimum(tf.sqrt(area * ratio), 1.0)
    top = tf.random.stateless_uniform([batch], seeds[2]) * (1.0 - crop_h)
    left = tf.random.stateless_uniform([batch], seeds[3]) * (1.0 - crop_w)
    flip = tf.random.stateless_uniform([batch], seeds[4]) < 0.5
    x0, x1 = (
        tf.where(flip, left + crop_w, left),
        tf.where(flip, left, left + crop_w),
    )  # x1 < x0 flips
    boxes = tf.stack([top, x0, top + crop_h, x1], axis=1)  # (B, 4), y0 x0 y1 x1 in [0, 1]
    return tf.image.crop_and_resize(images, boxes, tf.range(batch), tf.stack([height, width]))


def _boxes(shape: tf.Tensor, seed: tf.Tensor, area: tf.Tensor, ratio: tf.Tensor) -> tf.Tensor:
    """A (B, H, W, 1) mask, 1 inside a box per image of `area` (B,) of the image and
    aspect `ratio` (B,), centred uniformly at random and clipped at the borders."""
    batch, height, width = shape[0], shape[1], shape[2]
    box_h = tf.sqrt(area / ratio) * tf.cast(height, tf.float32)
    box_w = tf.sqrt(area * ratio) * tf.cast(width, tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    cy = tf.random.stateless_uniform([batch], seeds[0]) * tf.cast(height, tf.float32)
    cx = tf.random.stateless_uniform([batch], seeds[1]) * tf.cast(width, tf.float32)
    rows = tf.cast(tf.range(height), tf.float32)[None, :] + 0.5  # (1, H) pixel centres
    cols = tf.cast(tf.range(width), tf.float32)[None, :] + 0.5
    in_rows = tf.abs(rows - cy[:, None]) < box_h[:, None] / 2  # (B, H)
    in_cols = tf.abs(cols - cx[:, None]) < box_w[:, None] / 2  # (B, W)
    return tf.cast(in_rows[:, :, None, None] & in_cols[:, None, :, None], tf.float32)


def random_erasing(images: tf.Tensor, seed: tf.Tensor, probability: float = 0.25) -> tf.Tensor:
    """Zhong et al. 2020, as timm's `reprob` with `remode=pixel`: a `probability` share of
    the images get a box (2% to a third of the area, aspect 0.3 to 3.3) of per-pixel noise
    at the pixels' scale (N(127.5, 63.75), clipped to 0-255)."""
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 5)
    area = tf.random.stateless_uniform([batch], seeds[0], 0.02, 1 / 3)
    ratio = tf.exp(tf.random.stateless_uniform([batch], seeds[1], math.log(0.3), math.log(3.3)))
    mask = _boxes(tf.shape(images), seeds[2], area, ratio)
    erase = tf.random.stateless_uniform([batch], seeds[3]) < probability
    mask *= tf.cast(erase, tf.float32)[:, None, None, None]
    noise = tf.clip_by_value(127.5 + 63.75 * tf.random.stateless_normal(tf.shape(images), seeds[4]), 0, 255)  # fmt: skip
    return mask * noise + (1 - mask) * images


def cutmix(
    images: tf.Tensor, targets: tf.Tensor, seed: tf.Tensor, alpha: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """Yun et al. 2019: paste a box of another example of the batch into each, its area
    1 - lambda, lambda ~ Beta(alpha, alpha); labels weighted by the area actually pasted."""
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 4)
    gamma_a = tf.random.stateless_gamma([batch], seeds[0], alpha)
    gamma_b = tf.random.stateless_gamma([batch], seeds[1], alpha)
    kept = gamma_a / (gamma_a + gamma_b)  # Beta(alpha, alpha), (B,)
    mask = _boxes(tf.shape(images), seeds[2], 1.0 - kept, tf.ones_like(kept))  # square boxes
    partner = tf.random.experimental.stateless_shuffle(tf.range(batch), seeds[3])
    images = (1 - mask) * images + mask * tf.gather(images, partner)
    pasted = tf.reduce_mean(mask, axis=[1, 2, 3])[:, None]  # (B, 1), after clipping
    return images, (1 - pasted) * targets + pasted * tf.gather(targets, partner)


def rand_augment_batch(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """timm's recipe: a random resized crop and flip, RandAugment, random erasing."""
    crop, operations, erasing = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    images = resized_crop_flip(images, crop)
    images = rand_augment(tf.clip_by_value(images, 0, 255), operations)
    return random_erasing(images, erasing)


def trivial_augment_batch(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """TrivialAugment's CIFAR recipe, less its cutout: the 4-pixel crop and flip, then one
    random operation per image."""
    crop, operation = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    return trivial_augment(tf.clip_by_value(crop_flip(images, crop), 0, 255), operation)


# `--augment NAME`: each name's pixel operations on a (B, H, W, 3) batch, given a (2,) seed.
# Adding one: its function here, and its name in `sagevit.data.AUGMENTS` (what config takes).
AUGMENTATIONS: dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "none": lambda images, seed: images,
    "crop_flip": crop_flip,
    "inception_crop": lambda images, seed: resized_crop_flip(images, seed, CROP_AREA),
    "rand_augment": rand_augment_batch,
    "trivial_augment": trivial_augment_batch,
}
# What a record channel (or an uncached folder) does per image as it decodes, from the
# full-size image, instead of on the batch: one resize instead of two (a JPEG record
# decodes only the crop's window); docs/training.md, "Large datasets".
AT_DECODE = frozenset({"inception_crop"})


def with_example_seeds(examples: tf.data.Dataset, seed: tf.Tensor | int) -> tf.data.Dataset:
    """Each element x of `examples` as (its (2,) int64 stateless seed, x): the seed is
    (`seed`, x's place in the stream), so the same epoch seed gives the same draw per place,
    the seed an AT_DECODE augmentation takes."""
    first = tf.cast(seed, tf.int64)
    return examples.enumerate().map(lambda number, x: (tf.stack([first, number]), x))


def augment_batch(
    images: tf.Tensor,
    targets: tf.Tensor,
    seed: tf.Tensor,
    augment: str,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
) -> tuple[tf.Tensor, tf.Tensor]:
    """One training batch's augmentation: `augment`'s pixel operations, then mixup or
    cutmix (with both, each batch takes one of them, evenly, as timm's switch does).
    `seed` is (4,): the first two for the pixels, the last two for the mixing."""
    pixels, mixing = seed[:2], seed[2:]
    images = AUGMENTATIONS[augment](images, pixels)
    if mixup_alpha > 0 and cutmix_alpha > 0:
        choice, mixing = tf.unstack(tf.random.experimental.stateless_split(mixing, 2))
        return tf.cond(
            tf.random.stateless_uniform([], choice) < 0.5,
            lambda: cutmix(images, targets, mixing, cutmix_alpha),
            lambda: mixup(images, targets, mixing, mixup_alpha),
        )
    if mixup_alpha > 0:
        return mixup(images, targets, mixing, mixup_alpha)
    if cutmix_alpha > 0:
        return cutmix(images, targets, mixing, cutmix_alpha)
    return images, targets
