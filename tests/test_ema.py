"""--ema: validation and export see the moving average of the weights, training the weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import seed_vit

from sagevit.flags import parse_hyperparameters
from sagevit.job import recipe_of
from sagevit.training.ema import averaged_weights
from sagevit.training.recipe import make_optimizer


def two_steps(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> list[list[np.ndarray]]:
    """Two optimizer steps; the trainable weights after each."""
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    after = []
    for _ in range(2):
        with tf.GradientTape() as tape:
            loss = keras.ops.mean(model(images, training=True) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        after.append([v.numpy() for v in model.trainable_variables])
    return after


def tiny(ema: float, loss_scale: bool = False) -> tuple[keras.Model, keras.optimizers.Optimizer]:
    hp = parse_hyperparameters(["--preset", "seed", "--ema", str(ema), "--learning-rate", "0.01"])
    model = seed_vit(num_layers=1, d_model=32, num_heads=2, mlp_dim=64)
    optimizer = make_optimizer(recipe_of(hp), steps_per_epoch=10, model=model)
    if loss_scale:  # what float16 training wraps it in
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    return model, optimizer


@pytest.mark.parametrize("loss_scale", [False, True], ids=["adamw", "loss-scaled"])
def test_the_block_holds_the_average_and_gives_the_trained_weights_back(loss_scale):
    model, optimizer = tiny(ema=0.5, loss_scale=loss_scale)
    first, second = two_steps(model, optimizer)
    with averaged_weights(model, optimizer):
        # The first step copies the weights, the second averages: 0.5 * w1 + 0.5 * w2.
        for variable, a, b in zip(model.trainable_variables, first, second, strict=True):
            np.testing.assert_allclose(variable.numpy(), 0.5 * a + 0.5 * b, rtol=1e-6, atol=1e-7)
    for variable, trained in zip(model.trainable_variables, second, strict=True):
        np.testing.assert_array_equal(variable.numpy(), trained)


def test_without_ema_nothing_changes():
    model, optimizer = tiny(ema=0.0)
    _, second = two_steps(model, optimizer)
    with averaged_weights(model, optimizer):
        for variable, trained in zip(model.trainable_variables, second, strict=True):
            np.testing.assert_array_equal(variable.numpy(), trained)


def test_ema_is_a_momentum_below_one():
    from sagevit.errors import ConfigError

    with pytest.raises(ConfigError, match="ema"):
        parse_hyperparameters(["--ema", "1"])
