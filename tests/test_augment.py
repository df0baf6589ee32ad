import numpy as np
import pytest
import tensorflow as tf
from conftest import seed_vit

from sagevit.data.augment import crop_flip, mixup
from sagevit.data.channels import load_channel
from sagevit.data.pipeline import Augmentation, epoch_batches, evaluation_batches
from sagevit.flags import parse_hyperparameters
from sagevit.job import recipe_of
from sagevit.training.recipe import make_optimizer, make_schedule


def batch(n=6, size=8):
    return tf.reshape(tf.range(n * size * size * 3, dtype=tf.float32), (n, size, size, 3))


def test_crop_flip_keeps_shape_dtype_and_is_seeded():
    images = batch()
    out = crop_flip(images, tf.constant([1, 2]), pad=2)
    assert out.shape == images.shape and out.dtype == images.dtype
    np.testing.assert_array_equal(out, crop_flip(images, tf.constant([1, 2]), pad=2))
    assert not np.array_equal(out, crop_flip(images, tf.constant([3, 4]), pad=2))


def test_crop_flip_moves_pixels_but_invents_none():
    images = batch(n=64)
    out = crop_flip(images, tf.constant([5, 6]), pad=2).numpy()
    for original, augmented in zip(images.numpy(), out, strict=True):
        assert set(np.unique(augmented)) <= set(np.unique(original))  # reflect-padding only
    assert not np.array_equal(out, images.numpy())


def test_mixup_blends_images_and_targets_alike():
    images, targets = batch(4), tf.one_hot([0, 1, 2, 3], 4)
    mixed, mixed_targets = mixup(images, targets, tf.constant([7, 8]), alpha=0.4)
    assert mixed.shape == images.shape and mixed_targets.shape == targets.shape
    np.testing.assert_allclose(mixed_targets.numpy().sum(axis=1), 1.0, atol=1e-6)


def test_augmentation_is_applied_only_in_training(channel):
    split = load_channel(channel, "training.npz", "train", 32, 10)
    plain = np.concatenate([x for x, _ in evaluation_batches(split, 32, num_classes=10)])
    np.testing.assert_array_equal(plain, split.images.astype(np.float32))  # evaluation: untouched
    augmented = epoch_batches(
        split,
        32,
        epoch=1,
        num_classes=10,
        seed=0,
        augmentation=Augmentation("crop_flip", mixup=0.2),
    )
    images, targets = next(iter(augmented))
    assert images.dtype == tf.float32 and images.shape == (32, 32, 32, 3)
    assert targets.numpy().max(axis=1).mean() < 1.0  # mixup softened the one-hot targets
    originals = {image.tobytes() for image in split.images.astype(np.float32)}
    assert not any(image.tobytes() in originals for image in images.numpy())


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.0), (50, 5e-4), (100, 1e-3), (550, 5e-4), (1000, 0.0)],
)
def test_warmup_then_cosine_schedule(step, expected):
    hp = parse_hyperparameters(
        ["--learning-rate", "1e-3", "--epochs", "10", "--warmup-epochs", "1"]
    )
    schedule = make_schedule(recipe_of(hp), steps_per_epoch=100)
    assert float(schedule(step)) == pytest.approx(expected, abs=1e-7)


def test_seed_preset_has_a_constant_rate_and_no_clipping():
    hp = parse_hyperparameters(["--preset", "seed"])
    optimizer = make_optimizer(recipe_of(hp), steps_per_epoch=100, model=seed_vit())
    assert float(optimizer.learning_rate) == pytest.approx(3e-4)
    assert optimizer.global_clipnorm is None


def test_every_augment_config_accepts_has_a_function_and_no_other():
    from sagevit.config import CHOICES
    from sagevit.data import AUGMENTS
    from sagevit.data.augment import AUGMENTATIONS

    assert tuple(AUGMENTATIONS) == AUGMENTS == CHOICES["augment"]
