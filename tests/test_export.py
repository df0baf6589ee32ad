"""The model directory appears whole or not at all, even when the exporter is killed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_LIMIT_S, seed_vit

from sagevit.export import export_model

# Exports once (whole), then dies by SIGKILL halfway through writing the second export's
# Keras file, after its SavedModel was written: the moment a partial model would be left.
KILLED_EXPORT = """
import os, signal, sys
import keras
from conftest import seed_vit
from sagevit.export import export_model

model_dir, first = sys.argv[1], sys.argv[2] == "yes"
model = seed_vit(num_layers=1, num_classes=3)
if first:
    export_model(model, model_dir, ["a", "b", "c"], {"run": 1})

def save_half_then_die(self, path, *args, **kwargs):
    with open(path, "wb") as half:
        half.write(b"PK half a Keras file")
    os.kill(os.getpid(), signal.SIGKILL)

keras.Model.save = save_half_then_die
export_model(model, model_dir, ["a", "b", "c"], {"run": 2})
"""


def killed_export(model_dir: Path, export_first: bool) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    flag = "yes" if export_first else "no"
    command = [sys.executable, "-c", KILLED_EXPORT, str(model_dir), flag]
    result = subprocess.run(command, env=env, capture_output=True, timeout=HANG_LIMIT_S)
    assert result.returncode == -9, result.stderr.decode()[-2000:]


def contents(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.slow
def test_a_kill_mid_export_leaves_the_previous_model_whole(tmp_path):
    model_dir = tmp_path / "model"
    killed_export(model_dir, export_first=True)
    metadata = json.loads((model_dir / "metadata.json").read_text())
    assert metadata["hyperparameters"] == {"run": 1}  # the first export, untouched
    assert {"1", "1/saved_model.pb", "vit.keras", "metadata.json"} <= contents(model_dir)
    assert (model_dir / "vit.keras").read_bytes()[:4] == b"PK\x03\x04"  # a whole zip, not half


@pytest.mark.slow
def test_a_kill_mid_first_export_leaves_no_model_and_the_next_export_cleans_up(tmp_path):
    model_dir = tmp_path / "model"
    killed_export(model_dir, export_first=False)
    assert not model_dir.exists()  # nothing that `make deploy MODEL_DATA=` could ship
    (leftover,) = tmp_path.iterdir()  # only the killed export's staging folder
    assert leftover.name.startswith(".model.export-")

    export_model(seed_vit(num_layers=1, num_classes=3), model_dir, ["a", "b", "c"], {"run": 3})
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # the leftover is gone
    assert json.loads((model_dir / "metadata.json").read_text())["hyperparameters"] == {"run": 3}


def test_export_replaces_the_folder_whole(tmp_path):
    model_dir = tmp_path / "model"
    (model_dir / "2").mkdir(parents=True)
    (model_dir / "stale.txt").write_text("from an older run")
    path = export_model(seed_vit(num_layers=1, num_classes=3), model_dir, ["a", "b", "c"], {})
    assert path == model_dir / "1"
    assert {p.name for p in model_dir.iterdir()} == {"1", "vit.keras", "metadata.json"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left
