"""Our dropout masks and self-attention: the same maths as Keras's, cheaper under XLA."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from sagevit.model.dropout import Dropout, drop, keep_mask
from sagevit.model.layers import SelfAttention

SEED = tf.constant([7, 11])


@pytest.mark.parametrize("rate", [0.1, 0.5])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_masks_drop_the_rate_and_keep_the_mean(rate, jit_compile):
    x = tf.ones((64, 65, 129))
    dropped = tf.function(lambda x: drop(x, rate, SEED), jit_compile=jit_compile)(x).numpy()
    assert dropped.shape == x.shape
    zeros = float(np.mean(dropped == 0.0))
    assert zeros == pytest.approx(rate, abs=0.005)
    assert float(dropped.mean()) == pytest.approx(1.0, abs=0.01)  # inverted: kept values scaled
    kept = dropped[dropped != 0.0]
    _, probability = keep_mask((1, 2), rate, SEED)
    np.testing.assert_allclose(kept, 1.0 / probability)
    assert probability == pytest.approx(1.0 - rate, abs=2**-32)


def test_masks_are_uncorrelated_between_neighbours_and_between_calls():
    """A hash, not a random stream: check what dropout needs of it."""
    first = keep_mask((1000, 1000), 0.5, tf.constant([1, 2]))[0].numpy().astype(float)
    second = keep_mask((1000, 1000), 0.5, tf.constant([1, 3]))[0].numpy().astype(float)
    other = keep_mask((1000, 1000), 0.5, tf.constant([2, 2]))[0].numpy().astype(float)
    flat = first.ravel()
    for lag in (1, 2, 1000):  # neighbours along a row, and the same column a row below
        assert abs(np.corrcoef(flat[:-lag], flat[lag:])[0, 1]) < 0.005
    for later in (second, other):  # the next step's seed, another layer's seed
        assert abs(np.corrcoef(flat, later.ravel())[0, 1]) < 0.005
    rows = first.mean(axis=1)  # every row drops about half, none all or nothing
    assert rows.min() > 0.4 and rows.max() < 0.6
    again = keep_mask((1000, 1000), 0.5, tf.constant([1, 2]))[0].numpy()
    np.testing.assert_array_equal(again, first.astype(bool))  # a seed gives one mask
    symbolic = tf.function(lambda n: keep_mask((n, 1000), 0.5, tf.constant([1, 2]))[0])
    np.testing.assert_array_equal(symbolic(tf.constant(1000)), again)


def test_one_draw_broadcasts_over_a_noise_shape():
    x = tf.ones((256, 5, 3))
    dropped = drop(x, 0.5, SEED, shape=(256, 1, 1)).numpy()
    per_example = dropped.reshape(256, -1)
    assert ((per_example == 0).all(axis=1) | (per_example == 2.0).all(axis=1)).all()


def test_bad_rates_raise_value_errors_naming_them():
    with pytest.raises(ValueError, match=re.escape("dropout rate must be in [0, 1), got 1.0")):
        Dropout(1.0)
    with pytest.raises(ValueError, match=re.escape("got -0.1")):
        keep_mask((2, 2), -0.1, SEED)


def test_dropout_layer_is_the_identity_in_inference_and_round_trips():
    layer = Dropout(0.3, seed=5)
    x = tf.random.normal((4, 8))
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer(x, training=False), x)
    assert float(np.mean(layer(tf.ones((100, 100)), training=True).numpy() == 0)) > 0.2
    clone = Dropout.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_self_attention_computes_what_keras_multi_head_attention_does():
    x = tf.random.normal((3, 9, 16), seed=1)
    keras_layer = keras.layers.MultiHeadAttention(4, 4)
    expected = keras_layer(x, x)
    ours = SelfAttention(4)
    ours.build(x.shape)
    q, k, v, o = (keras_layer._query_dense, keras_layer._key_dense, keras_layer._value_dense,
                  keras_layer._output_dense)  # fmt: skip
    ours.qkv.set_weights(
        [
            np.concatenate([d.kernel.numpy().reshape(16, 16) for d in (q, k, v)], axis=1),
            np.concatenate([d.bias.numpy().reshape(16) for d in (q, k, v)]),
        ]
    )
    ours.output_projection.set_weights([o.kernel.numpy().reshape(16, 16), o.bias.numpy()])
    np.testing.assert_allclose(ours(x), expected, atol=1e-5)
    assert ours.count_params() == keras_layer.count_params()


def test_self_attention_drops_attention_weights_only_while_training():
    layer = SelfAttention(2, dropout=0.5)
    x = tf.random.normal((2, 5, 8))
    np.testing.assert_array_equal(layer(x), layer(x, training=False))
    assert not np.allclose(layer(x, training=True), layer(x))
    clone = SelfAttention.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_self_attention_starts_from_the_weight_scale_keras_uses():
    keras.utils.set_random_seed(0)
    keras_layer = keras.layers.MultiHeadAttention(4, 16)
    keras_layer.build((None, 65, 64), (None, 65, 64))
    ours = SelfAttention(4)
    ours.build((None, 65, 64))
    query = keras_layer._query_dense.kernel.numpy()
    output = keras_layer._output_dense.kernel.numpy()
    assert np.abs(ours.qkv.kernel.numpy()).max() == pytest.approx(np.abs(query).max(), rel=0.02)
    assert np.abs(ours.output_projection.kernel.numpy()).max() == pytest.approx(
        np.abs(output).max(), rel=0.02
    )
