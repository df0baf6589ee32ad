"""The reference tables in docs/ follow the code, so they cannot drift from it."""

import dataclasses
import re
from pathlib import Path

from sagevit.config import Hyperparameters, reference_rows

DOCS = Path(__file__).parents[1] / "docs"
TRAINING = (DOCS / "training.md").read_text()  # the hyperparameter table
SERVING = (DOCS / "serving.md").read_text()  # the server settings table


def test_hyperparameter_table_is_the_declarations_row_for_row():
    """Whole rows: flag, default, seed value, values, and the help text itself."""
    rows = [line for line in TRAINING.splitlines() if re.match(r"^\| `[a-z-]+` \|", line)]
    expected = reference_rows()
    assert len(expected) == len(dataclasses.fields(Hyperparameters))
    missing = [row for row in expected if row not in rows]
    assert not missing, "docs/training.md rows differ from sagevit.config:\n" + "\n".join(missing)
    assert rows == expected, "docs/training.md lists the hyperparameters in another order"


def test_server_settings_table_lists_every_variable():
    source = (Path(__file__).parents[1] / "serve/sagevit_serve/settings.py").read_text()
    for variable in set(re.findall(r'"((?:SM|SAGEMAKER|SAGEVIT)_[A-Z_]+)"', source)):
        assert f"| `{variable}` |" in SERVING, f"docs/serving.md lacks {variable}"
