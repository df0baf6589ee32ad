"""Hyperparameters from the command line: argparse over `sagevit.config`'s declarations.

Every field can be set as `--kebab-case` or `--snake_case`, which is how the SageMaker
toolkit and SDK pass hyperparameters (`--batch-size 256`, values always strings, booleans
as `True`/`False`). `--preset NAME` sets the defaults; explicit flags win. Errors raise
`ConfigError` naming the option, never exit the process.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Sequence

from sagevit.config import CHOICES, PRESETS, Hyperparameters, flag
from sagevit.errors import ConfigError


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


# Fields parsed by something other than their type's parser.
SWITCHES = ("jit_compile",)


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
        flags = dict.fromkeys([f"--{flag(f.name)}", f"--{f.name}"])  # dedupe, keep order
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
