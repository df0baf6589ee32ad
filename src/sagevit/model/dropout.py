"""Dropout whose masks stay cheap when the training step is XLA-compiled.

Keras's dropout draws its mask with TensorFlow's random-number ops. On CPUs XLA
compiles those into slow code: with them the seed's model trained at 233 images/s
here, without dropout at 354, and even Philox named explicitly cost most of that
gap (docs/training-speed.md). So the mask here comes from a hash instead: each
element's position, mixed with a per-call seed by two rounds of MurmurHash3's
32-bit finaliser, gives 32 uniform bits; plain integer arithmetic that XLA fuses
into the surrounding loops (354 images/s again, dropout on). The masks are not a
cryptographic random stream, only a well-mixed one: every rate is kept to 2**-32,
and neighbouring elements and successive calls are uncorrelated (tests/test_dropout.py).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import layers, ops

PACKAGE = "sagevit"
_GOLDEN = 0x9E3779B9  # 2**32 / golden ratio: spreads the seed's first word


def _mix(x: tf.Tensor) -> tf.Tensor:
    """MurmurHash3's 32-bit finaliser: a bijection of uint32 whose every output bit
    depends on every input bit."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
    x = x * tf.constant(0x85EBCA6B, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 13))
    x = x * tf.constant(0xC2B2AE35, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def check_rate(rate: float) -> float:
    """`rate`, if it is a dropout rate; else a ValueError naming it."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    return rate


def keep_mask(shape: tuple, rate: float, seed: Any) -> tuple[Any, float]:
    """A boolean mask of `shape` that is False with probability `rate` (to 2**-32),
    and the exact probability of True, to rescale the kept values by.

    `shape` may hold symbolic sizes (a batch), up to 2**31 - 1 elements in all (8 GiB
    of float32; int32 positions are 6% faster under XLA here than int64). `seed` is a
    (2,) integer tensor, such as `keras.random.SeedGenerator.next()`: the same seed
    gives the same mask.
    """
    check_rate(rate)
    words = tf.cast(tf.cast(seed, tf.int64), tf.uint32)  # two's complement, then the low 32 bits
    key = _mix(words[0] * tf.constant(_GOLDEN, tf.uint32) + _mix(words[1]))
    dims = tf.stack([tf.cast(size, tf.int32) for size in shape])
    position = tf.cast(tf.reshape(tf.range(tf.reduce_prod(dims)), dims), tf.uint32)
    bits = _mix(_mix(tf.bitwise.bitwise_xor(position, key)) + key)  # (*shape) uniform words
    threshold = min(round(rate * 2**32), 2**32 - 1)
    return bits >= tf.constant(threshold, tf.uint32), 1.0 - threshold / 2**32


def drop(x: Any, rate: float, seed: Any, shape: tuple | None = None) -> Any:
    """Inverted dropout of `x`; `shape` (default: x's) broadcasts one draw over several values."""
    if rate == 0.0:
        return x
    keep, probability = keep_mask(tuple(ops.shape(x)) if shape is None else shape, rate, seed)
    return ops.where(keep, x / ops.cast(probability, x.dtype), ops.zeros_like(x))


@keras.saving.register_keras_serializable(package=PACKAGE)
class Dropout(layers.Layer):
    """`keras.layers.Dropout` with the mask of `drop`: (...) -> (...), unchanged in inference."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = check_rate(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        if not training or self.rate == 0.0:  # no seed drawn: nothing to draw for
            return x
        return drop(x, self.rate, self.seed_generator.next())

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
