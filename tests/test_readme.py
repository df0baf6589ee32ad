"""The README's tables follow the code, so they cannot drift from it."""

import dataclasses
import re
from pathlib import Path

from sagevit.config import Hyperparameters

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_hyperparameter_table_lists_every_field_with_its_default():
    rows = dict(re.findall(r"^\| `([a-z-]+)` \| ([^|]+) \|", README, flags=re.MULTILINE))
    for field in dataclasses.fields(Hyperparameters):
        name = field.name.replace("_", "-")
        assert name in rows, f"README lacks hyperparameter {name}"
        assert rows[name].strip() == str(field.default), f"README default of {name}"


def test_server_settings_table_lists_every_variable():
    source = (Path(__file__).parents[1] / "serve/sagevit_serve/settings.py").read_text()
    for variable in set(re.findall(r'"((?:SM|SAGEMAKER|SAGEVIT)_[A-Z_]+)"', source)):
        assert f"| `{variable}` |" in README, f"README lacks {variable}"
