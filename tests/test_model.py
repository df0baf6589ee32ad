import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import seed_vit

from sagevit.flags import parse_hyperparameters
from sagevit.model.dropout import Dropout
from sagevit.model.layers import (
    ClassToken,
    ConvTokenizer,
    EncoderBlock,
    PatchEmbedding,
    PositionEmbedding,
    SelfAttention,
)
from sagevit.model.stem import ConvStem, stage_widths
from sagevit.model.vit import build_vit
from sagevit.training.export import export_model

# The seed notebook's ViT: image 32, patch 4, 4 layers, d_model 64, 4 heads, mlp 128.
SEED_PARAMETERS = 142_026


def test_seed_configuration_parameter_count(seed_hyperparameters):
    model = build_vit(**seed_hyperparameters.model_kwargs())
    assert model.count_params() == SEED_PARAMETERS


# Every preset's parameter count: a changed default is a decision, not an accident.
PRESET_PARAMETERS = {
    "default": 2_209_739,
    "fast": 424_555,
    "v1": 177_419,
    "seed": SEED_PARAMETERS,
    "cct-7-3x1": 3_765_515,  # Hassani et al. 2021: CCT-7/3x1, 3.76M
}


@pytest.mark.parametrize(("preset", "parameters"), PRESET_PARAMETERS.items())
def test_each_presets_parameter_count(preset, parameters):
    hp = parse_hyperparameters(["--preset", preset])
    assert build_vit(**hp.model_kwargs()).count_params() == parameters


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


def test_the_conv_tokenizer_halves_the_grid_once_per_layer():
    for conv_layers, tokens in ((1, 256), (2, 64), (3, 16)):
        out = ConvTokenizer(16, conv_layers=conv_layers)(keras.Input((32, 32, 3)))
        assert tuple(out.shape) == (None, tokens, 16)
    with pytest.raises(ValueError, match=r"3 conv layer\(s\) needs a size divisible by 8, got 36x36"):  # fmt: skip
        ConvTokenizer(16, conv_layers=3)(keras.Input((36, 36, 3)))
    with pytest.raises(ValueError, match="at least one conv layer, got 0"):
        ConvTokenizer(16, conv_layers=0)


def test_the_hybrid_stem_halves_the_grid_and_doubles_the_width_each_stage():
    assert stage_widths(256, 3) == [64, 128, 256]
    assert stage_widths(96, 1) == [96]
    stem = ConvStem(256, stages=3)
    out = stem(keras.Input((32, 32, 3)))
    assert tuple(out.shape) == (None, 16, 256)  # 32 / 2^3 = 4, 4x4 tokens
    kernels = [w.shape for w in stem.weights if w.name == "kernel"]
    assert kernels == [(3, 3, 3, 64), (3, 3, 64, 64), (3, 3, 64, 128), (3, 3, 128, 128),
                       (3, 3, 128, 256), (3, 3, 256, 256)]  # fmt: skip
    with pytest.raises(
        ValueError, match="d_model 100 is not divisible by 2\\^\\(stages - 1\\) for 4"
    ):
        ConvStem(100, stages=4)
    with pytest.raises(ValueError, match=r"2 stage\(s\) needs a size divisible by 4, got 30x30"):
        ConvStem(64, stages=2)(keras.Input((30, 30, 3)))
    with pytest.raises(ValueError, match="at least one stage, got 0"):
        ConvStem(64, stages=0)


def test_the_hybrid_stem_normalises_by_batch_in_training_and_by_running_stats_after():
    stem = ConvStem(8, stages=1)
    x = np.random.default_rng(0).uniform(0, 1, (4, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(stem(x, training=False), stem(x, training=False))
    before = [np.array(v) for v in stem.non_trainable_weights]
    stem(x, training=True)  # updates the moving mean and variance
    after = [np.array(v) for v in stem.non_trainable_weights]
    assert len(after) == 4  # two BatchNorms, a moving mean and variance each
    assert all(not np.allclose(b, a) for b, a in zip(before, after, strict=True))
    assert not np.allclose(stem(x, training=True), stem(x, training=False))


def test_one_conv_layer_seven_blocks_of_256_is_cct_7_3x1():
    """Hassani et al. 2021 (Compact Convolutional Transformers), CCT-7/3x1: 3.76M parameters."""
    model = seed_vit(
        tokenizer="conv", conv_layers=1, pooling="sequence", norm="pre",
        num_layers=7, d_model=256, num_heads=4, mlp_dim=512, dropout=0.0,
    )  # fmt: skip
    assert model.count_params() == 3_765_515


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
        ConvTokenizer(16, conv_layers=1),
        ConvStem(32, stages=2),
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
