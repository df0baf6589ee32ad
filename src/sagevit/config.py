"""Hyperparameters: the one place that names them and sets their defaults.

Defaults reproduce the AWS sample notebook this project grew from (a small ViT
that reaches about 60% on CIFAR-10 after 50 epochs). Every field can be set as
`--kebab-case` or `--snake_case`, which is how the SageMaker toolkit and SDK pass
hyperparameters (`--batch-size 256`, values always strings).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A hyperparameter is unknown or has an impossible value."""


def _field(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Hyperparameters:
    # Model (the seed's small ViT, ~0.2M parameters)
    image_size: int = _field(32, "input height and width in pixels")
    patch_size: int = _field(4, "side of each square patch; must divide image_size")
    num_layers: int = _field(4, "number of transformer encoder blocks")
    d_model: int = _field(64, "token width")
    num_heads: int = _field(4, "attention heads per block; must divide d_model")
    mlp_dim: int = _field(128, "hidden width of each block's MLP")
    dropout: float = _field(0.1, "dropout rate after attention and in the MLP")
    num_classes: int = _field(10, "number of output classes")
    # Optimisation (AdamW, as in the seed)
    learning_rate: float = _field(3e-4, "AdamW learning rate")
    weight_decay: float = _field(1e-4, "AdamW decoupled weight decay")
    batch_size: int = _field(256, "global batch size, summed over all devices")
    epochs: int = _field(50, "passes over the training data")
    # Runtime
    seed: int = _field(42, "random seed for weights and shuffling")
    jit_compile: bool = _field(False, "compile the training step with XLA")

    def __post_init__(self) -> None:
        positive = ("image_size", "patch_size", "num_layers", "d_model", "num_heads")
        positive += ("mlp_dim", "num_classes", "batch_size", "epochs")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"--{_flag(name)} must be at least 1, got {getattr(self, name)}")
        if self.num_classes < 2:
            raise ConfigError(f"--num-classes must be at least 2, got {self.num_classes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.learning_rate <= 0:
            raise ConfigError(f"--learning-rate must be positive, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must not be negative, got {self.weight_decay}")

    def model_kwargs(self) -> dict[str, Any]:
        """The subset of fields that `build_vit` takes."""
        names = ("image_size", "patch_size", "num_layers", "d_model", "num_heads", "mlp_dim")
        return {name: getattr(self, name) for name in (*names, "num_classes", "dropout")}

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
            type=_PARSERS[kind],
            default=f.default,
            metavar=kind.__name__.upper(),
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


def parse_hyperparameters(argv: Sequence[str]) -> Hyperparameters:
    """Parse `--key value` pairs into Hyperparameters; unknown keys raise ConfigError."""
    return hyperparameters_from_namespace(make_parser().parse_args(list(argv)))
