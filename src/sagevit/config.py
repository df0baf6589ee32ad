"""Hyperparameters: the one place that names them and sets their defaults.

The field defaults are the project's default recipe (a hybrid ViT: a BatchNorm conv
stem, two transformer blocks); `--preset fast` is a small one for a budget of a minute,
`--preset v1` the default before it (a CCT-style stem, four blocks). `--preset seed` swaps in
the AWS sample notebook this project grew from (a post-norm ViT with patch
tokens and a class token, AdamW at a constant 3e-4, no augmentation: about 60%
on CIFAR-10 after 50 epochs); `--preset vit-ti16|vit-s16|vit-b16` the published
ViTs at 224x224 with a fine-tuning recipe. Explicit flags still override a preset. Every
field can be set as `--kebab-case` or `--snake_case`, which is how the SageMaker
toolkit and SDK pass hyperparameters (`--batch-size 256`, values always strings).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sagevit.errors import ConfigError
from sagevit.presets import PRESETS


def _field(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def parse_switch(text: str) -> str:
    """auto, or a boolean in any of the toolkit's spellings, normalised to true/false."""
    lowered = str(text).strip().lower()
    if lowered == "auto":
        return "auto"
    try:
        return "true" if parse_bool(lowered) else "false"
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected auto or True/False/true/false/1/0, got {text!r}"
        ) from None


# The choices of the string-valued fields.
CHOICES = {
    "preset": tuple(PRESETS),
    "tokenizer": ("patch", "conv", "hybrid"),
    "pooling": ("class_token", "sequence"),
    "norm": ("pre", "post"),
    "pixel_scale": ("unit", "symmetric", "imagenet"),
    "augment": ("none", "crop_flip", "rand_augment"),
    "schedule": ("cosine", "constant"),
    "jit_compile": ("auto", "true", "false"),
    "mixed_precision": ("auto", "float32", "bfloat16", "float16"),
}
# Every numeric field's range, written as in maths: "[" includes the end, "(" leaves it
# out. NaN and infinities are in no range. The upper ends only keep out the absurd (a
# typo, an overflow): nothing near them trains on any machine.
BOUNDS = {
    "image_size": "[1, 8192]",
    "patch_size": "[1, 8192]",
    "conv_layers": "[1, 8]",
    "num_layers": "[1, 256]",
    "d_model": "[1, 16384]",
    "num_heads": "[1, 1024]",
    "mlp_dim": "[1, 65536]",
    "dropout": "[0, 1)",
    "num_classes": "[2, 100000]",
    "stochastic_depth": "[0, 1)",
    "learning_rate": "(0, 10]",
    "layer_decay": "(0, 1]",
    "weight_decay": "[0, 10]",
    "batch_size": "[1, 1048576]",
    "epochs": "[1, 1000000]",
    "warmup_epochs": "[0, 1000000]",
    "label_smoothing": "[0, 1)",
    "grad_clip": "[0, 1000000]",
    "ema": "[0, 1)",
    "mixup": "[0, 1000]",
    "cutmix": "[0, 1000]",
    "validation_split": "[0, 1)",
    "steps_per_execution": "[1, 100000]",
    "seed": "[0, 2147483647]",
    "keep_checkpoints": "[1, 100000]",
    "stall_timeout": "[0, 31536000]",
    "time_budget": "[0, 31536000]",
}


def within(value: float, interval: str) -> bool:
    """Whether `value` lies in `interval`, such as "[0, 1)"; never for NaN or infinities."""
    low, high = (float(end) for end in interval[1:-1].split(","))
    if not math.isfinite(value):
        return False
    above = low <= value if interval[0] == "[" else low < value
    below = value <= high if interval[-1] == "]" else value < high
    return above and below


# How --pretrained names a model on the Hugging Face Hub (timm's spelling).
HUB_PREFIX = "hf-hub:"

# Fields parsed by something other than their type's parser.
SWITCHES = ("jit_compile",)


@dataclass(frozen=True)
class Hyperparameters:
    preset: str = _field(
        "default",
        "default (this project's recipe), fast, v1 (the old default), seed (the notebook's),"
        " cct-7-3x1 (a published recipe for GPUs) or vit-ti16, vit-s16, vit-b16 (fine-tuning)",
    )
    # Model
    image_size: int = _field(32, "input height and width in pixels")
    patch_size: int = _field(
        4, "side of each square patch (patch tokenizer); must divide image_size"
    )
    num_layers: int = _field(2, "number of transformer encoder blocks")
    d_model: int = _field(256, "token width")
    num_heads: int = _field(4, "attention heads per block; must divide d_model")
    mlp_dim: int = _field(512, "hidden width of each block's MLP")
    dropout: float = _field(0.0, "dropout rate after attention and in the MLP")
    num_classes: int = _field(10, "number of output classes")
    tokenizer: str = _field(
        "hybrid",
        "patch (strided conv, ViT), conv (3x3 conv stem, CCT) or hybrid (BatchNorm conv stem)",
    )
    conv_layers: int = _field(
        3, "conv and hybrid tokenizer stages, each halving the grid (hybrid: doubling the width)"
    )
    pooling: str = _field("sequence", "class_token (ViT) or sequence (attention-weighted mean)")
    norm: str = _field("pre", "pre (LayerNorm before each branch) or post (after, the seed's)")
    stochastic_depth: float = _field(0.1, "drop rate of the last block's branches (less before)")
    pixel_scale: str = _field(
        "unit",
        "input scaling: unit (0-1), symmetric (-1 to 1: Google's and timm's ViTs),"
        " imagenet (ImageNet mean and std: DeiT); a pretrained model needs its own",
    )
    # Fine-tuning (docs/finetuning.md): weights come from the `pretrained` channel
    pretrained: str = _field(
        "",
        "without a pretrained channel, download this hub handle (hf-hub:ORG/NAME; needs internet)",
    )
    freeze_backbone: bool = _field(False, "train only the new head (linear probe)")
    layer_decay: float = _field(
        1.0, "layer-wise learning-rate decay: block i of L learns at rate x decay^(L-i); 1: off"
    )
    # Optimisation: AdamW, linear warmup then cosine decay
    learning_rate: float = _field(2e-3, "AdamW peak learning rate")
    weight_decay: float = _field(
        0.05, "AdamW decoupled weight decay (not on norms, biases, embeddings)"
    )
    batch_size: int = _field(128, "global batch size, summed over all devices")
    epochs: int = _field(30, "passes over the training data")
    schedule: str = _field("cosine", "cosine (decay to 0 after warmup) or constant")
    warmup_epochs: float = _field(1.0, "epochs of linear warmup from 0 to the peak rate")
    time_budget: float = _field(
        0.0,
        "seconds of training (compilation and validation in, loading and export out) that the"
        " schedule spans; the run ends when they are spent, however many epochs that is"
        " (--epochs then only sets warmup's share: warmup-epochs / epochs); 0: off",
    )
    label_smoothing: float = _field(0.1, "weight of the uniform distribution in the targets")
    grad_clip: float = _field(1.0, "clip gradients to this global norm; 0 turns it off")
    ema: float = _field(
        0.0,
        "momentum of an exponential moving average of the weights, which validation and the"
        " exported model use instead of the last step's (e.g. 0.995); 0 turns it off",
    )
    # Data
    augment: str = _field(
        "crop_flip",
        "none; crop_flip: 4-pixel pad, random crop, flip; rand_augment: random resized crop,"
        " flip, RandAugment (2 ops, magnitude 9, std 0.5), random erasing 0.25 (timm's)",
    )
    mixup: float = _field(0.0, "mixup Beta(alpha, alpha) parameter; 0 turns it off")
    cutmix: float = _field(
        0.0, "cutmix Beta(alpha, alpha) parameter; 0: off; with mixup, each batch takes one"
    )
    validation_split: float = _field(
        0.0, "without a validation channel, hold out this fraction of train (fixed seed)"
    )
    # Serving
    flip_tta: bool = _field(
        True,
        "export a model that serves the mean of each image's and its mirror's probabilities"
        " (horizontal-flip test-time augmentation: +1.1 points measured, twice the serving compute)",
    )
    # Runtime
    steps_per_execution: int = _field(
        1, "training steps per call into TensorFlow; raise it on GPUs to hide Python overhead"
    )
    seed: int = _field(42, "random seed for weights, shuffling and augmentation")
    keep_checkpoints: int = _field(3, "checkpoints kept in the checkpoint folder (newest)")
    stall_timeout: int = _field(
        1800,
        "fail the job after this many seconds without a finished step (a stuck worker); 0: never",
    )
    jit_compile: str = _field(
        "auto",
        "XLA-compile the training step: auto (on GPUs; on CPUs with the patch tokenizer), true, false",
    )
    mixed_precision: str = _field(
        "auto",
        "auto (bfloat16 on GPUs that have it, float16 on older ones, float32 on CPU), or one",
    )
    allow_cpu: bool = _field(
        False,
        "train on the CPU even when the container was given GPUs that TensorFlow cannot use",
    )

    def __post_init__(self) -> None:
        for name, interval in BOUNDS.items():
            value = getattr(self, name)
            if not within(value, interval):
                shown = f"{float(value):g}" if abs(value) > 1e12 else value  # not 300 digits
                raise ConfigError(f"--{_flag(name)} must be in {interval}, got {shown}")
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigError(
                    f"--{_flag(name)} must be one of {', '.join(choices)}, got {getattr(self, name)!r}"
                )
        if self.time_budget and self.schedule == "cosine" and self.warmup_epochs >= self.epochs:
            raise ConfigError(
                f"--warmup-epochs {self.warmup_epochs:g} must be below --epochs {self.epochs}"
                " with a --time-budget: warmup takes their share of the budget"
            )
        if self.pretrained and not self.pretrained.startswith(HUB_PREFIX):
            raise ConfigError(
                f"--pretrained must be a hub handle {HUB_PREFIX}ORG/NAME, got {self.pretrained!r}"
                " (weights in a folder or on S3 go in the pretrained channel)"
            )

    def model_kwargs(self) -> dict[str, Any]:
        """The arguments `build_vit` takes."""
        names = ("image_size", "patch_size", "num_layers", "d_model", "num_heads", "mlp_dim")
        names += (
            "num_classes",
            "dropout",
            "tokenizer",
            "conv_layers",
            "pooling",
            "stochastic_depth",
        )
        names += ("pixel_scale",)
        return {name: getattr(self, name) for name in names} | {"norm_first": self.norm == "pre"}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def parse_bool(text: str) -> bool:
    """Accept the spellings the SageMaker SDK and toolkit send: True/False, true/false, 1/0."""
    lowered = str(text).strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected True/False/true/false/1/0, got {text!r}")


def _parse_int(text: str) -> int:
    # The toolkit JSON-decodes then re-stringifies, so 64 may arrive as "64.0".
    number = float(text)
    if not number.is_integer():
        raise ValueError(text)
    return int(number)


_parse_int.__name__ = "int"  # argparse names the type in its error messages
_PARSERS = {int: _parse_int, float: float, bool: parse_bool, str: str}


class _RaisingParser(argparse.ArgumentParser):
    """An ArgumentParser that raises ConfigError instead of exiting the process."""

    def error(self, message: str) -> None:  # type: ignore[override]
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):  # name it the way a SageMaker user thinks of it
            message = f"unknown hyperparameter(s): {message[len(prefix) :]}"
        raise ConfigError(message)


def add_hyperparameter_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one `--kebab-case` / `--snake_case` option per Hyperparameters field."""
    group = parser.add_argument_group("hyperparameters")
    types = typing.get_type_hints(Hyperparameters)
    for f in dataclasses.fields(Hyperparameters):
        kind = types[f.name]
        flags = dict.fromkeys([f"--{_flag(f.name)}", f"--{f.name}"])  # dedupe, keep order
        group.add_argument(
            *flags,
            dest=f.name,
            type=parse_switch if f.name in SWITCHES else _PARSERS[kind],
            default=f.default,
            metavar="|".join(CHOICES[f.name]) if f.name in CHOICES else kind.__name__.upper(),
            help=f"{f.metadata['help']} (default: {f.default})",
        )


def hyperparameters_from_namespace(args: argparse.Namespace) -> Hyperparameters:
    names = [f.name for f in dataclasses.fields(Hyperparameters)]
    return Hyperparameters(**{name: getattr(args, name) for name in names})


def make_parser(description: str | None = None) -> argparse.ArgumentParser:
    """A parser whose errors raise ConfigError naming the offending option."""
    parser = _RaisingParser(description=description, allow_abbrev=False)
    add_hyperparameter_arguments(parser)
    return parser


def _attach_dashed_values(argv: Sequence[str]) -> list[str]:
    """`--key -1e-4` as `--key=-1e-4`: argparse takes a value that starts with "-" (and is
    not a plain integer or decimal) for another option. Every option here takes one value."""
    joined: list[str] = []
    for item in argv:
        previous = joined[-1] if joined else ""
        if item.startswith("-") and not item.startswith("--") and previous.startswith("--") and "=" not in previous:  # fmt: skip
            joined[-1] = f"{previous}={item}"
        else:
            joined.append(item)
    return joined


def parse_with_preset(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse `argv`, with the defaults of the preset it names; explicit flags win."""
    argv = _attach_dashed_values(argv)
    known, _ = parser.parse_known_args(argv)
    if known.preset not in PRESETS:
        raise ConfigError(f"--preset must be one of {', '.join(PRESETS)}, got {known.preset!r}")
    parser.set_defaults(**PRESETS[known.preset])
    return parser.parse_args(argv)


def parse_hyperparameters(argv: Sequence[str]) -> Hyperparameters:
    """Parse `--key value` pairs into Hyperparameters; unknown keys raise ConfigError."""
    return hyperparameters_from_namespace(parse_with_preset(make_parser(), argv))
