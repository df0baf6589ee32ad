"""The reference tables in docs/ follow the code, so they cannot drift from it."""

import dataclasses
import re
from pathlib import Path

from sagevit.config import PRESETS, Hyperparameters

DOCS = Path(__file__).parents[1] / "docs"
TRAINING = (DOCS / "training.md").read_text()  # the hyperparameter table
SERVING = (DOCS / "serving.md").read_text()  # the server settings table


def test_hyperparameter_table_lists_every_field_with_its_default_and_seed_value():
    rows = {
        name: (default.strip(), seed.strip())
        for name, default, seed in re.findall(
            r"^\| `([a-z-]+)` \|([^|]*)\|([^|]*)\|", TRAINING, flags=re.MULTILINE
        )
    }
    for field in dataclasses.fields(Hyperparameters):
        name = field.name.replace("_", "-")
        assert name in rows, f"docs/training.md lacks hyperparameter {name}"
        assert rows[name][0] == str(field.default), f"docs/training.md default of {name}"
        seed = "seed" if field.name == "preset" else PRESETS["seed"].get(field.name, field.default)
        assert rows[name][1] == str(seed), f"docs/training.md seed value of {name}"


def test_server_settings_table_lists_every_variable():
    source = (Path(__file__).parents[1] / "serve/sagevit_serve/settings.py").read_text()
    for variable in set(re.findall(r'"((?:SM|SAGEMAKER|SAGEVIT)_[A-Z_]+)"', source)):
        assert f"| `{variable}` |" in SERVING, f"docs/serving.md lacks {variable}"
