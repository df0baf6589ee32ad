"""Hyperparameters: the one place that names them, with their defaults, help and ranges.

Each field is declared once (`_field`: default, help, range or choices, whether the model
builder takes it); argparse (`sagevit.flags`), validation, `model_kwargs` and the table in
docs/training.md (`reference_rows`, held to it by a test) all come from that declaration.
The choices live with the wings that own them (`sagevit.model.TOKENIZERS`,
`sagevit.data.AUGMENTS`, ...); this module imports no TensorFlow.

The field defaults are the project's default recipe (a hybrid ViT: a BatchNorm conv
stem, two transformer blocks). The presets (`sagevit.presets`) override them by name:
`fast` for a budget of a minute, `v1` the default before the hybrid, `seed` the AWS
sample notebook this project grew from (about 60% on CIFAR-10 after 50 epochs),
`cct-7-3x1` a published recipe for GPUs, `vit-ti16|vit-s16|vit-b16` the published ViTs
at 224x224 with a fine-tuning recipe.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from sagevit.data import AUGMENTS
from sagevit.errors import ConfigError
from sagevit.model import HUB_PREFIX, NORMS, PIXEL_SCALES, POOLINGS, TOKENIZERS
from sagevit.presets import PRESETS
from sagevit.training import JIT_SETTINGS, PRECISIONS, SCHEDULES

# A field's range, written as in maths: "[" includes the end, "(" leaves it out. NaN and
# infinities are in no range. The upper ends only keep out the absurd (a typo, an
# overflow): nothing near them trains on any machine.
ANY_SIZE = "[1, 8192]"
RATE = "[0, 1)"  # dropout, smoothing, momentum: a fraction below 1
COUNT = "[1, 1000000]"
MIXING = "[0, 1000]"  # a Beta(alpha, alpha) parameter; 0 is off


def _field(
    default: Any,
    help: str,
    *,
    bounds: str | None = None,
    choices: tuple[str, ...] | None = None,
    group: str | None = None,
) -> Any:
    """One hyperparameter, declared once: its default, its help (also its row in
    docs/training.md), its range or choices, and the group of arguments it belongs to:
    "model" (`build_vit`'s) or "recipe" (`sagevit.training.recipe.Recipe`'s)."""
    metadata = {"help": help, "bounds": bounds, "choices": choices, "group": group}
    return field(default=default, metadata=metadata)


def within(value: float, interval: str) -> bool:
    """Whether `value` lies in `interval`, such as "[0, 1)"; never for NaN or infinities."""
    low, high = (float(end) for end in interval[1:-1].split(","))
    if not math.isfinite(value):
        return False
    above = low <= value if interval[0] == "[" else low < value
    below = value <= high if interval[-1] == "]" else value < high
    return above and below


@dataclass(frozen=True)
class Hyperparameters:
    preset: str = _field(
        "default",
        "default (this project's recipe), fast (a small hybrid for a budget of a minute),"
        " v1 (the default before the hybrid), seed (the notebook's), cct-7-3x1 (CCT-7/3x1's"
        " published 300-epoch recipe, for GPUs), or vit-ti16, vit-s16, vit-b16 (the published"
        " ViTs at 224 with a fine-tuning recipe: docs/finetuning.md)",
        choices=tuple(PRESETS),
    )
    # Model: every field marked group="model" is an argument of `build_vit`
    image_size: int = _field(32, "input height and width in pixels", bounds=ANY_SIZE, group="model")
    patch_size: int = _field(
        4,
        "side of each square patch (patch tokenizer); must divide image_size",
        bounds=ANY_SIZE,
        group="model",
    )
    num_layers: int = _field(
        2, "number of transformer encoder blocks", bounds="[1, 256]", group="model"
    )
    d_model: int = _field(256, "token width", bounds="[1, 16384]", group="model")
    num_heads: int = _field(
        4, "attention heads per block; must divide d_model", bounds="[1, 1024]", group="model"
    )
    mlp_dim: int = _field(
        512, "hidden width of each block's MLP", bounds="[1, 65536]", group="model"
    )
    dropout: float = _field(
        0.0, "dropout rate after attention and in the MLP", bounds=RATE, group="model"
    )
    num_classes: int = _field(10, "number of output classes", bounds="[2, 100000]", group="model")
    tokenizer: str = _field(
        "hybrid",
        "patch (strided conv, ViT), conv (3x3 conv stem, CCT) or hybrid (BatchNorm conv stem)",
        choices=TOKENIZERS,
        group="model",
    )
    conv_layers: int = _field(
        3,
        "conv and hybrid tokenizer stages, each halving the grid (hybrid: doubling the width)",
        bounds="[1, 8]",
        group="model",
    )
    pooling: str = _field(
        "sequence",
        "class_token (ViT) or sequence (attention-weighted mean)",
        choices=POOLINGS,
        group="model",
    )
    norm: str = _field(
        "pre",
        "pre (LayerNorm before each branch) or post (after, the seed's)",
        choices=NORMS,
        group="model",
    )
    stochastic_depth: float = _field(
        0.1, "drop rate of the last block's branches (less before)", bounds=RATE, group="model"
    )
    pixel_scale: str = _field(
        "unit",
        "input scaling: unit (0-1), symmetric (-1 to 1: Google's and timm's ViTs),"
        " imagenet (ImageNet mean and std: DeiT); a pretrained model needs its own",
        choices=PIXEL_SCALES,
        group="model",
    )
    # Fine-tuning (docs/finetuning.md): weights come from the `pretrained` channel
    pretrained: str = _field(
        "",
        f"without a pretrained channel, download this hub handle ({HUB_PREFIX}ORG/NAME;"
        " needs internet)",
    )
    freeze_backbone: bool = _field(False, "train only the new head (linear probe)", group="recipe")
    layer_decay: float = _field(
        1.0,
        "layer-wise learning-rate decay: block i of L learns at rate x decay^(L-i); 1: off",
        bounds="(0, 1]",
        group="recipe",
    )
    # Optimisation: AdamW, linear warmup then cosine decay
    learning_rate: float = _field(
        2e-3, "AdamW peak learning rate", bounds="(0, 10]", group="recipe"
    )
    weight_decay: float = _field(
        0.05,
        "AdamW decoupled weight decay (not on norms, biases, embeddings)",
        bounds="[0, 10]",
        group="recipe",
    )
    batch_size: int = _field(
        128, "global batch size, summed over all devices", bounds="[1, 1048576]"
    )
    epochs: int = _field(30, "passes over the training data", bounds=COUNT, group="recipe")
    schedule: str = _field(
        "cosine", "cosine (decay to 0 after warmup) or constant", choices=SCHEDULES, group="recipe"
    )
    warmup_epochs: float = _field(
        1.0,
        "epochs of linear warmup from 0 to the peak rate",
        bounds="[0, 1000000]",
        group="recipe",
    )
    time_budget: float = _field(
        0.0,
        "seconds of training (compilation and validation in, loading and export out) that the"
        " schedule spans; the run ends when they are spent, however many epochs that is"
        " (--epochs then only sets warmup's share: warmup-epochs / epochs); 0: off",
        bounds="[0, 31536000]",
    )
    label_smoothing: float = _field(
        0.1, "weight of the uniform distribution in the targets", bounds=RATE
    )
    grad_clip: float = _field(
        1.0,
        "clip gradients to this global norm; 0 turns it off",
        bounds="[0, 1000000]",
        group="recipe",
    )
    ema: float = _field(
        0.0,
        "momentum of an exponential moving average of the weights, which validation and the"
        " exported model use instead of the last step's (e.g. 0.995); 0 turns it off",
        bounds=RATE,
        group="recipe",
    )
    # Data
    augment: str = _field(
        "crop_flip",
        "none; crop_flip: 4-pixel pad, random crop, flip; inception_crop: random resized crop"
        " (8-100% of the area, aspect 3/4-4/3) and flip, as records decode; rand_augment: random"
        " resized crop, flip, RandAugment (2 ops, magnitude 9, std 0.5), random erasing 0.25 (timm's);"
        " trivial_augment: crop_flip, then TrivialAugment (1 op, magnitude uniform over 0-10)",
        choices=AUGMENTS,
    )
    mixup: float = _field(0.0, "mixup Beta(alpha, alpha) parameter; 0 turns it off", bounds=MIXING)
    cutmix: float = _field(
        0.0,
        "cutmix Beta(alpha, alpha) parameter; 0: off; with mixup, each batch takes one",
        bounds=MIXING,
    )
    validation_split: float = _field(
        0.0,
        "without a validation channel, hold out this fraction of train (fixed seed; of a record"
        " channel, the same part of every shard)",
        bounds=RATE,
    )
    # Serving
    flip_tta: bool = _field(
        True,
        "export a model that serves the mean of each image's and its mirror's probabilities"
        " (horizontal-flip test-time augmentation: +1.1 points measured, twice the serving compute)",
    )
    # Runtime
    steps_per_execution: int = _field(
        1,
        "training steps per call into TensorFlow; raise it on GPUs to hide Python overhead",
        bounds="[1, 100000]",
    )
    seed: int = _field(
        42, "random seed for weights, shuffling and augmentation", bounds="[0, 2147483647]"
    )
    keep_checkpoints: int = _field(
        3, "checkpoints kept in the checkpoint folder (newest)", bounds="[1, 100000]"
    )
    stall_timeout: int = _field(
        1800,
        "fail the job after this many seconds without a finished step (a stuck worker); 0: never",
        bounds="[0, 31536000]",
    )
    jit_compile: str = _field(
        "auto",
        "XLA-compile the training step: auto (on GPUs; on CPUs with the patch tokenizer), true, false",
        choices=JIT_SETTINGS,
    )
    mixed_precision: str = _field(
        "auto",
        "auto (bfloat16 on GPUs that have it, float16 on older ones, float32 on CPU), or one",
        choices=PRECISIONS,
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
                raise ConfigError(f"--{flag(name)} must be in {interval}, got {shown}")
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigError(
                    f"--{flag(name)} must be one of {', '.join(choices)}, got {getattr(self, name)!r}"
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

    def group(self, name: str) -> dict[str, Any]:
        """The fields declared in group `name`, by name: one function's arguments."""
        return {f.name: getattr(self, f.name) for f in FIELDS if f.metadata["group"] == name}

    def model_kwargs(self) -> dict[str, Any]:
        """The arguments `build_vit` takes: the fields in group "model"."""
        return self.group("model")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = dataclasses.fields(Hyperparameters)
# Derived from the declarations: the string fields' choices, the numeric fields' ranges.
CHOICES = {f.name: f.metadata["choices"] for f in FIELDS if f.metadata["choices"]}
BOUNDS = {f.name: f.metadata["bounds"] for f in FIELDS if f.metadata["bounds"]}


def reference_rows() -> list[str]:
    """docs/training.md's hyperparameter table, one row per field, from the declarations:
    flag, default, the seed preset's value, the values it takes, what it does."""
    rows = []
    for f in FIELDS:
        seed = "seed" if f.name == "preset" else PRESETS["seed"].get(f.name, f.default)
        values = f.metadata["bounds"] or ", ".join(f.metadata["choices"] or ())
        values = values or ("True, False" if isinstance(f.default, bool) else "text")
        rows.append(
            f"| `{flag(f.name)}` | {f.default} | {seed} | {values} | {f.metadata['help']} |"
        )
    return rows


def flag(name: str) -> str:
    """A field's command-line spelling, after the `--`: `batch_size` is `batch-size`."""
    return name.replace("_", "-")
