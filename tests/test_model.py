import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import seed_vit

from sagevit.dropout import Dropout
from sagevit.export import export_model
from sagevit.layers import (
    ClassToken,
    EncoderBlock,
    PatchEmbedding,
    PositionEmbedding,
    SelfAttention,
)
from sagevit.model import build_vit

# The seed notebook's ViT: image 32, patch 4, 4 layers, d_model 64, 4 heads, mlp 128.
SEED_PARAMETERS = 142_026


def test_seed_configuration_parameter_count(seed_hyperparameters):
    model = build_vit(**seed_hyperparameters.model_kwargs())
    assert model.count_params() == SEED_PARAMETERS


def test_output_is_logits_per_class(images):
    model = seed_vit(num_layers=1, num_classes=7)
    logits = model(images.astype("float32"))
    assert logits.shape == (len(images), 7)
    assert logits.dtype == "float32"
    # Logits, not probabilities: rows do not sum to 1.
    assert not np.allclose(np.sum(np.asarray(logits), axis=1), 1.0)


def test_rescaling_is_inside_the_model():
    model = seed_vit(num_layers=1)
    assert model.get_layer("rescale").scale == pytest.approx(1 / 255)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 30, "patch_size": 4}, "image size 30 is not divisible by patch size 4"),
        ({"d_model": 66, "num_heads": 4}, "d_model 66 is not divisible by the number of heads 4"),
    ],
)
def test_impossible_shapes_raise_value_error_with_the_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        seed_vit(**kwargs)


def test_layers_check_shapes_themselves():
    with pytest.raises(ValueError, match="image size 30x30 is not divisible by patch size 4"):
        PatchEmbedding(4, 16)(keras.Input((30, 30, 3)))
    with pytest.raises(ValueError, match="d_model 10 is not divisible by the number of heads 4"):
        EncoderBlock(4, 32)(keras.Input((5, 10)))


@pytest.mark.parametrize(
    "layer",
    [
        PatchEmbedding(4, 16),
        ClassToken(),
        PositionEmbedding(),
        EncoderBlock(2, 32, dropout=0.2),
        SelfAttention(2, dropout=0.1),
        Dropout(0.2),
    ],
)
def test_layers_round_trip_through_their_config(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert keras.saving.get_registered_object(f"sagevit>{type(layer).__name__}") is type(layer)


def test_save_load_gives_identical_predictions(tmp_path, images):
    model = seed_vit(num_layers=2)
    path = tmp_path / "vit.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    x = images.astype("float32")
    np.testing.assert_array_equal(model(x), restored(x))


def test_exported_saved_model_serves_softmax_of_the_logits(tmp_path, images):
    model = seed_vit(num_layers=1, num_classes=3)
    export_model(model, tmp_path, ["a", "b", "c"], {"epochs": 1})
    loaded = tf.saved_model.load(str(tmp_path / "1"))
    x = images.astype("float32")
    probabilities = loaded.signatures["serving_default"](images=tf.constant(x))["probabilities"]
    np.testing.assert_allclose(probabilities, tf.nn.softmax(model(x)), atol=1e-6)
    assert (tmp_path / "metadata.json").is_file() and (tmp_path / "vit.keras").is_file()
