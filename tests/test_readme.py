"""The README's tables follow the code, so they cannot drift from it."""

import dataclasses
import re
from pathlib import Path

from sagevit.config import PRESETS, Hyperparameters

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_hyperparameter_table_lists_every_field_with_its_default_and_seed_value():
    rows = {
        name: (default.strip(), seed.strip())
        for name, default, seed in re.findall(
            r"^\| `([a-z-]+)` \| ([^|]+) \| ([^|]+) \|", README, flags=re.MULTILINE
        )
    }
    for field in dataclasses.fields(Hyperparameters):
        name = field.name.replace("_", "-")
        assert name in rows, f"README lacks hyperparameter {name}"
        assert rows[name][0] == str(field.default), f"README default of {name}"
        seed = "seed" if field.name == "preset" else PRESETS["seed"].get(field.name, field.default)
        assert rows[name][1] == str(seed), f"README seed value of {name}"


def test_server_settings_table_lists_every_variable():
    source = (Path(__file__).parents[1] / "serve/sagevit_serve/settings.py").read_text()
    for variable in set(re.findall(r'"((?:SM|SAGEMAKER|SAGEVIT)_[A-Z_]+)"', source)):
        assert f"| `{variable}` |" in README, f"README lacks {variable}"
