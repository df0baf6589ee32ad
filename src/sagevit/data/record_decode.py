"""A record's image bytes -> the model's pixels, in TensorFlow's C++ decoders.

Two ways, both at the model's size, uint8 (size, size, 3):

- `decode`: the whole image, as the server sees it. A JPEG is decoded with
  dct_method="INTEGER_ACCURATE", which gives the same pixels as the server's decoder
  (`sagevit.data.images`); the default does not (up to 5 levels off). Images that need
  resizing are resized by tf.image.resize (bilinear, antialiased, after the same
  reduced-scale JPEG decode Pillow's draft picks): within 2 levels of Pillow's
  resampling, not equal to it (tests/test_records.py).
- `decode_cropped`: Inception's random resized crop and a flip, done as the image
  decodes (`--augment inception_crop` on a record channel). A JPEG decodes only the
  crop's window (`decode_and_crop_jpeg`), so the crop costs less than decoding the whole
  image; a batch-level crop after decoding would cost as much again (docs/training.md,
  "Large datasets").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import tensorflow as tf

from sagevit.data import CROP_AREA, CROP_ASPECT

# Pillow's draft: the largest of these JPEG scale denominators that keeps both sides >= size.
JPEG_RATIOS = (8, 4, 2, 1)


@dataclass(frozen=True)
class Stored:
    """What the index says a channel's images are, which decides the decoding graph: each
    tf.cond or tf.switch_case costs a function call an image (a 32x32 JPEG decodes 4x
    slower through all of them), so the graph holds only the branches the channel needs."""

    formats: frozenset[str] = frozenset({"JPEG", "PNG"})
    smallest: tuple[int, int] = (1, 1)  # (height, width), the least of each
    largest: tuple[int, int] = (1 << 30, 1 << 30)  # and the greatest

    @classmethod
    def of(cls, image_sizes: dict[str, dict[str, float]], formats: dict[str, int]) -> Stored:
        """From an index's `image_sizes` and `formats` (records per format)."""
        kinds = frozenset(formats) or cls.formats
        if "height" not in image_sizes or "width" not in image_sizes:
            return cls(kinds)
        height, width = image_sizes["height"], image_sizes["width"]
        return cls(kinds, (int(height["min"]), int(width["min"])), (int(height["max"]), int(width["max"])))  # fmt: skip


def decode(data: tf.Tensor, size: int, stored: Stored = Stored()) -> tf.Tensor:
    """JPEG or PNG bytes -> uint8 (size, size, 3): the server decoder's pixels where no
    resize is needed, within 2 levels of them where one is."""
    reduced = min(stored.largest) >= 2 * size  # some JPEG may decode at a reduced scale
    if stored.formats == {"PNG"}:
        image = tf.io.decode_png(data, channels=3)
    elif stored.formats == {"JPEG"}:
        image = _jpeg(data, size) if reduced else _decode_jpeg(data, 1)
    else:
        jpeg = functools.partial(_jpeg if reduced else _decode_jpeg, data, size if reduced else 1)
        image = tf.cond(tf.io.is_jpeg(data), jpeg, lambda: tf.io.decode_png(data, channels=3))
    if stored.smallest == stored.largest == (size, size):
        return tf.ensure_shape(image, (size, size, 3))
    return _resized(image, size)


def decode_cropped(data: tf.Tensor, size: int, seed: tf.Tensor, stored: Stored = Stored()) -> tf.Tensor:  # fmt: skip
    """JPEG or PNG bytes -> a random crop of CROP_AREA of the image at an aspect within
    CROP_ASPECT (tf.image's Inception sampler; the whole image if 10 tries fail), resized
    to uint8 (size, size, 3), flipped left-right for half of the seeds. `seed` is (2,)."""
    box, flip = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    jpeg_only = stored.formats == {"JPEG"}
    if jpeg_only:  # the header gives the size: decode only the window
        shape = tf.io.extract_jpeg_shape(data)
    else:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        shape = tf.shape(image)
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, tf.zeros([1, 0, 4]), box, min_object_covered=0.0, aspect_ratio_range=CROP_ASPECT,
        area_range=CROP_AREA, max_attempts=10, use_image_if_no_bounding_boxes=True,
    )  # fmt: skip
    if jpeg_only:
        window = tf.stack([begin[0], begin[1], extent[0], extent[1]])
        crop = tf.io.decode_and_crop_jpeg(data, window, channels=3, dct_method="INTEGER_ACCURATE")
    else:
        crop = tf.slice(image, begin, extent)
    return tf.image.stateless_random_flip_left_right(_resized(crop, size), flip)


def _resized(image: tf.Tensor, size: int) -> tf.Tensor:
    """uint8 (H, W, 3) -> uint8 (size, size, 3), bilinear and antialiased, rounded."""
    image.set_shape((None, None, 3))
    pixels = tf.image.resize(image, (size, size), antialias=True)  # the model's size: exact
    return tf.ensure_shape(tf.cast(tf.round(tf.clip_by_value(pixels, 0.0, 255.0)), tf.uint8), (size, size, 3))  # fmt: skip


def _jpeg(data: tf.Tensor, size: int) -> tf.Tensor:
    """A JPEG decoded at the smallest scale that keeps both sides >= size, as Pillow's
    draft picks it (the largest of 1/8, 1/4, 1/2 with min(width, height) // size above it)."""
    height, width = tf.unstack(tf.io.extract_jpeg_shape(data)[:2])
    scale = tf.minimum(width // size, height // size)
    branch = tf.reduce_sum(tf.cast(scale < tf.constant(JPEG_RATIOS, tf.int32), tf.int32))
    decoders = [functools.partial(_decode_jpeg, data, ratio) for ratio in JPEG_RATIOS]
    return tf.switch_case(tf.minimum(branch, len(JPEG_RATIOS) - 1), decoders)


def _decode_jpeg(data: tf.Tensor, ratio: int) -> tf.Tensor:
    return tf.io.decode_jpeg(data, channels=3, ratio=ratio, dct_method="INTEGER_ACCURATE")
