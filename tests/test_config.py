import pytest

from sagevit.config import Hyperparameters
from sagevit.errors import ConfigError
from sagevit.flags import parse_hyperparameters

SEED_ARGS = [
    "--image-size",
    "32",
    "--patch-size",
    "4",
    "--num-layers",
    "4",
    "--d-model",
    "64",
    "--num-heads",
    "4",
    "--mlp-dim",
    "128",
    "--learning-rate",
    "3e-4",
    "--weight-decay",
    "1e-4",
    "--batch-size",
    "256",
    "--epochs",
    "50",
]


def test_seed_preset_is_the_seed_notebook():
    hp = parse_hyperparameters(["--preset", "seed"])
    assert parse_hyperparameters(["--preset", "seed", *SEED_ARGS]) == hp
    assert (hp.image_size, hp.patch_size, hp.num_layers, hp.d_model) == (32, 4, 4, 64)
    assert (hp.num_heads, hp.mlp_dim, hp.batch_size, hp.epochs) == (4, 128, 256, 50)
    assert (hp.learning_rate, hp.weight_decay) == (3e-4, 1e-4)
    assert (hp.tokenizer, hp.pooling, hp.norm, hp.augment, hp.schedule) == (
        "patch", "class_token", "post", "none", "constant",
    )  # fmt: skip
    assert hp.label_smoothing == hp.grad_clip == hp.stochastic_depth == hp.mixup == 0


def test_no_flags_give_the_default_recipe_and_flags_beat_presets():
    assert parse_hyperparameters([]) == Hyperparameters()
    assert Hyperparameters().augment == "crop_flip" and Hyperparameters().schedule == "cosine"
    hp = parse_hyperparameters(["--preset", "seed", "--batch-size", "64", "--augment", "crop_flip"])
    assert (hp.batch_size, hp.augment, hp.norm) == (64, "crop_flip", "post")


def test_underscore_and_kebab_spellings_are_the_same_option():
    kebab = parse_hyperparameters(["--batch-size", "32", "--learning-rate", "0.001"])
    snake = parse_hyperparameters(["--batch_size", "32", "--learning_rate", "0.001"])
    assert kebab == snake
    assert kebab.batch_size == 32 and kebab.learning_rate == 0.001


@pytest.mark.parametrize(
    ("text", "expected"),
    [("True", "true"), ("true", "true"), ("1", "true"), ("False", "false"), ("false", "false"),
     ("0", "false"), ("auto", "auto"), ("AUTO", "auto")],
)  # fmt: skip
def test_booleans_accept_what_the_toolkit_and_sdk_send(text, expected):
    assert parse_hyperparameters(["--jit-compile", text]).jit_compile == expected


def test_toolkit_restringified_numbers_parse():
    # The toolkit JSON-decodes "64" -> 64 and "3e-4" -> 0.0003, then str()s them again.
    hp = parse_hyperparameters(["--d_model", "64.0", "--learning_rate", "0.0003"])
    assert hp.d_model == 64 and hp.learning_rate == 0.0003


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--epochz", "3"], "--epochz"),
        (["--epochs", "three"], "--epochs"),
        (["--epochs", "2.5"], "--epochs"),
        (["--jit-compile", "yes"], "--jit-compile"),
        (["--learning-rate", "fast"], "--learning-rate"),
        (["--epochs", "0"], "--epochs"),
        (["--dropout", "1.5"], "--dropout"),
        (["--num-classes", "1"], "--num-classes"),
        (["--batch-size"], "--batch-size"),
        (["--tokenizer", "pixels"], "--tokenizer"),
        (["--preset", "best"], "--preset"),
        (["--label-smoothing", "1"], "--label-smoothing"),
        (["--grad-clip", "-1"], "--grad-clip"),
        (["--mixed-precision", "int8"], "--mixed-precision"),
    ],
)
def test_unknown_or_malformed_values_fail_naming_the_option(argv, named):
    with pytest.raises(ConfigError, match=named):
        parse_hyperparameters(argv)


def test_model_kwargs_feed_build_vit():
    import inspect

    from sagevit.model.vit import build_vit

    kwargs = Hyperparameters().model_kwargs()
    assert kwargs["d_model"] == 256 and kwargs["num_classes"] == 10 and kwargs["norm"] == "pre"
    assert "learning_rate" not in kwargs
    # Every argument build_vit requires, and nothing else: the fields declared model=True.
    assert set(kwargs) == set(inspect.signature(build_vit).parameters) - {"name"}


@pytest.mark.parametrize(
    ("setting", "capabilities", "expected"),
    [("auto", [], "float32"), ("auto", [(8, 0)], "bfloat16"), ("auto", [(9, 0), (9, 0)], "bfloat16"),
     ("auto", [(7, 0)], "float16"), ("auto", [(8, 6), (7, 5)], "float16"), ("float32", [(9, 0)], "float32")],
)  # fmt: skip
def test_precision_is_chosen_from_the_gpus(setting, capabilities, expected):
    from sagevit.training.recipe import choose_precision

    assert choose_precision(setting, capabilities) == expected


@pytest.mark.parametrize(
    ("flag", "value", "sentence"),
    [
        ("learning-rate", "nan", "--learning-rate must be in (0, 10], got nan"),
        ("weight-decay", "nan", "--weight-decay must be in [0, 10], got nan"),
        ("grad-clip", "nan", "--grad-clip must be in [0, 1000000], got nan"),
        ("mixup", "nan", "--mixup must be in [0, 1000], got nan"),
        ("warmup-epochs", "inf", "--warmup-epochs must be in [0, 1000000], got inf"),
        ("learning-rate", "-inf", "--learning-rate must be in (0, 10], got -inf"),
        ("image-size", "1e300", "--image-size must be in [1, 8192], got 1e+300"),
        ("num-layers", "1e9", "--num-layers must be in [1, 256], got 1000000000"),
        ("weight-decay", "-1e-4", "--weight-decay must be in [0, 10], got -0.0001"),
        ("dropout", "1", "--dropout must be in [0, 1), got 1.0"),
        ("seed", "-1", "--seed must be in [0, 2147483647], got -1"),
    ],
)
def test_non_finite_and_absurd_numbers_are_refused_with_one_sentence(flag, value, sentence):
    with pytest.raises(ConfigError) as error:
        parse_hyperparameters([f"--{flag}", value])
    assert str(error.value) == sentence


def test_every_numeric_hyperparameter_has_bounds_and_the_presets_are_inside_them():
    import dataclasses
    import typing

    from sagevit.config import BOUNDS, PRESETS, Hyperparameters

    types = typing.get_type_hints(Hyperparameters)
    numeric = {f.name for f in dataclasses.fields(Hyperparameters) if types[f.name] in (int, float)}
    assert numeric == set(BOUNDS)
    for preset in PRESETS:
        parse_hyperparameters(["--preset", preset])  # raises if a preset were out of range


def test_a_launch_with_a_nan_hyperparameter_fails_before_any_aws_call():
    from scripts.sagemaker.launch import job_hyperparameters

    with pytest.raises(ConfigError, match="--learning-rate must be in"):
        job_hyperparameters({"learning_rate": "nan"}, epochs=None)
