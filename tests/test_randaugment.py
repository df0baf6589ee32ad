"""The CCT recipe's augmentation (RandAugment, random resized crop, random erasing, cutmix)
and TrivialAugment."""

import numpy as np
import pytest
import tensorflow as tf

from sagevit.data.augment import augment_batch, cutmix, mixup, random_erasing, resized_crop_flip
from sagevit.data.randaugment import OPS, one_operation, rand_augment, trivial_augment

SEED = tf.constant([3, 4])


def photos(n: int = 8, size: int = 16) -> tf.Tensor:
    """Smooth random images in 0-255: (n, size, size, 3)."""
    rng = np.random.default_rng(0)
    small = rng.uniform(0, 255, (n, 4, 4, 3)).astype("float32")
    return tf.round(tf.image.resize(small, (size, size)))  # whole numbers, as decoded pixels


@pytest.mark.parametrize("name", list(OPS))
def test_every_operation_keeps_shape_and_range_and_is_the_identity_at_magnitude_zero(name):
    images = photos()
    zero = tf.zeros([8])
    out = OPS[name](images, tf.fill([8], 0.9))
    assert out.shape == images.shape and out.dtype == tf.float32
    assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 255.0 + 1e-3
    if name not in ("auto_contrast", "solarize"):  # these have no magnitude-0 identity
        np.testing.assert_allclose(OPS[name](images, zero), images, atol=1e-3)
    if name != "identity":
        assert not np.allclose(out, images, atol=1.0), f"{name} at 0.9 changed nothing"


def test_translate_and_rotate_move_pixels_the_way_they_say():
    image = np.zeros((1, 10, 10, 3), "float32")
    image[0, 5, 2] = 255.0  # one bright pixel, row 5, column 2
    half = tf.constant([2 / 4.5])  # 0.45 x 10 x v = 2 pixels
    moved = OPS["translate_x"](tf.constant(image), half).numpy()
    assert moved[0, 5, 0, 0] == 255.0  # output x samples input x + 2: shifted left
    turned = OPS["rotate"](tf.constant(image), tf.constant([3.0])).numpy()  # 90 degrees
    assert np.unravel_index(turned[0, ..., 0].argmax(), (10, 10)) != (5, 2)


def test_rand_augment_is_seeded_and_draws_per_image():
    images = tf.repeat(photos(1), 64, axis=0)  # 64 copies of one image
    out = rand_augment(images, SEED)
    np.testing.assert_array_equal(out, rand_augment(images, SEED))
    assert not np.array_equal(out, rand_augment(images, tf.constant([5, 6])))
    distinct = {np.round(image, 2).tobytes() for image in out.numpy()}
    assert len(distinct) > 32  # copies of one image got different operations


def test_one_operation_runs_each_images_draw_on_that_image_alone():
    images = photos(64)
    choice, sign = tf.constant([7, 8]), tf.constant([9, 10])
    out = one_operation(images, choice, sign, tf.fill([64], 9.0)).numpy()
    chosen = tf.random.stateless_uniform([64], choice, 0, len(OPS), dtype=tf.int32).numpy()
    v = np.where(tf.random.stateless_uniform([64], sign).numpy() < 0.5, -0.9, 0.9)
    assert len(set(chosen)) == len(OPS)  # every operation has images, and none is skipped
    operations = list(OPS.values())
    for i in range(64):
        alone = operations[chosen[i]](images[i : i + 1], tf.constant([v[i]], tf.float32))
        np.testing.assert_allclose(out[i], alone[0], atol=1e-3, err_msg=list(OPS)[chosen[i]])


def test_trivial_augment_is_seeded_one_operation_per_image_at_any_strength():
    images = tf.repeat(photos(1), 64, axis=0)
    out = trivial_augment(images, SEED)
    np.testing.assert_array_equal(out, trivial_augment(images, SEED))
    assert not np.array_equal(out, trivial_augment(images, tf.constant([5, 6])))
    changes = np.abs(out.numpy() - images.numpy()).mean(axis=(1, 2, 3))
    assert len({np.round(c, 3) for c in changes}) > 32  # operations and strengths per image
    assert trivial_augment(photos(1), SEED).shape == (1, 16, 16, 3)  # most operations get none


def test_resized_crop_flip_crops_within_the_image_and_flips_half():
    ramp = tf.tile(tf.range(16, dtype=tf.float32)[None, None, :, None], [200, 16, 1, 3])  # x
    out = resized_crop_flip(ramp * 10.0, SEED).numpy()[..., 0]
    assert out.shape == (200, 16, 16)
    assert out.min() >= 0.0 and out.max() <= 150.0 + 1e-3  # nothing from outside the image
    flipped = out[:, :, 0].mean(axis=1) > out[:, :, -1].mean(axis=1)  # the ramp runs backwards
    assert 0.35 < flipped.mean() < 0.65
    np.testing.assert_array_equal(out, resized_crop_flip(ramp * 10.0, SEED).numpy()[..., 0])


def test_random_erasing_erases_the_share_it_is_given():
    images = tf.fill([200, 16, 16, 3], 10.0)
    np.testing.assert_array_equal(random_erasing(images, SEED, probability=0.0), images)
    erased = random_erasing(images, SEED, probability=1.0).numpy()
    changed = (erased != 10.0).any(axis=-1).mean(axis=(1, 2))  # share of each image erased
    assert (changed > 0).all() and (changed <= 1 / 3 + 0.1).all()
    some = (random_erasing(images, SEED, probability=0.25).numpy() != 10.0).any(axis=(1, 2, 3))
    assert 0.1 < some.mean() < 0.4


def test_cutmix_labels_weigh_the_area_pasted():
    images = tf.concat([tf.zeros([4, 8, 8, 3]), tf.fill([4, 8, 8, 3], 255.0)], axis=0)
    targets = tf.one_hot([0, 0, 0, 0, 1, 1, 1, 1], 2)
    mixed, mixed_targets = cutmix(images, targets, SEED, alpha=1.0)
    mixed, mixed_targets = mixed.numpy(), mixed_targets.numpy()
    np.testing.assert_allclose(mixed_targets.sum(axis=1), 1.0, atol=1e-6)
    assert set(np.unique(mixed)) <= {0.0, 255.0}  # pasted, never blended
    bright = (mixed[..., 0] == 255.0).mean(axis=(1, 2))  # share of class 1's pixels
    np.testing.assert_allclose(mixed_targets[:, 1], bright, atol=1e-6)


def test_mixing_takes_mixup_or_cutmix_per_batch_and_keeps_mixups_stream():
    images, targets = photos(), tf.one_hot(np.arange(8) % 4, 4)
    seed = tf.constant([1, 2, 3, 4])
    alone, _ = augment_batch(images, targets, seed, "none", mixup_alpha=0.4)
    np.testing.assert_array_equal(alone, mixup(images, targets, seed[2:], 0.4)[0])
    kinds = set()
    for i in range(12):
        out, _ = augment_batch(images, targets, tf.constant([1, 2, i, 5]), "none", 0.4, 1.0)
        blended = np.any(~np.isin(out.numpy(), images.numpy()))  # mixup invents pixel values
        kinds.add("mixup" if blended else "cutmix")
    assert kinds == {"mixup", "cutmix"}


@pytest.mark.parametrize("augment", ["rand_augment", "trivial_augment"])
def test_the_recipe_runs_in_the_pipeline_and_stays_in_range(augment):
    images, targets = photos(16, 32), tf.one_hot(np.arange(16) % 10, 10)
    out, mixed = augment_batch(images, targets, tf.constant([1, 2, 3, 4]), augment, 0.8, 1.0)
    assert out.shape == images.shape
    assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 255.0 + 1e-3
    np.testing.assert_allclose(mixed.numpy().sum(axis=1), 1.0, atol=1e-6)
