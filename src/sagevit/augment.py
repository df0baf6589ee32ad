"""Training-only augmentation, on whole batches inside the tf.data pipeline.

Every op is a TensorFlow op on a (B, H, W, 3) float batch with a per-batch seed,
so augmentation runs in tf.data's threads with no Python per example, and a
fixed seed gives the same stream of augmentations.
"""

from __future__ import annotations

import tensorflow as tf


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
