"""The model directory appears whole or not at all, even when the exporter is killed."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_LIMIT_S, seed_vit

from sagevit.errors import OutputError
from sagevit.training.export import export_model

# Exports once (whole), then dies by SIGKILL halfway through writing the second export's
# Keras file, after its SavedModel was written: the moment a partial model would be left.
KILLED_EXPORT = """
import os, signal, sys
import keras
from conftest import seed_vit
from sagevit.training.export import export_model

model_dir, first = sys.argv[1], sys.argv[2] == "yes"
model = seed_vit(num_layers=1, num_classes=3)
if first:
    export_model(model, model_dir, ["a", "b", "c"], {"run": 1})
if sys.argv[3] == "mounted":  # the second export sees a mount point (stages inside it)
    import sagevit.training.export
    sagevit.training.export.is_mount_point = lambda path: True

def save_half_then_die(self, path, *args, **kwargs):
    with open(path, "wb") as half:
        half.write(b"PK half a Keras file")
    os.kill(os.getpid(), signal.SIGKILL)

keras.Model.save = save_half_then_die
export_model(model, model_dir, ["a", "b", "c"], {"run": 2})
"""


def killed_export(model_dir: Path, export_first: bool, mounted: bool = False) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    flag = "yes" if export_first else "no"
    command = [sys.executable, "-c", KILLED_EXPORT, str(model_dir), flag, "mounted" if mounted else "plain"]  # fmt: skip
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


class MountedModelDir:
    """os.replace as the kernel does it when `model_dir` is a mount of its own: renaming
    the mount point itself is EBUSY, a rename across its boundary EXDEV. Records renames."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir, self.renames, self.real = model_dir, [], os.replace

    def inside(self, path: Path) -> bool:
        return Path(path).resolve().is_relative_to(self.model_dir) and Path(path).resolve() != self.model_dir  # fmt: skip

    def __call__(self, source, target) -> None:
        if Path(source).resolve() == self.model_dir:
            raise OSError(errno.EBUSY, "Device or resource busy")
        if self.inside(source) != self.inside(target):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        self.renames.append(Path(target).name)
        self.real(source, target)


@pytest.mark.parametrize("detected", [True, False], ids=["detected", "missed"])
def test_a_mounted_model_folder_is_filled_in_place_metadata_last(tmp_path, monkeypatch, detected):
    """Both SDKs' local modes mount /opt/ml/model on its own; a bind mount from the same
    filesystem is not seen by Path.is_mount(). Detected (mountinfo) or not, export stages
    where a rename is possible and replaces the old model whole, metadata last."""
    model_dir = (tmp_path / "model").resolve()
    model = seed_vit(num_layers=1, num_classes=3)
    export_model(model, model_dir, ["a", "b", "c"], {"run": 1})
    (model_dir / "stale.txt").write_text("from an older run")
    mount = MountedModelDir(model_dir)
    monkeypatch.setattr("sagevit.training.export.os.replace", mount)
    monkeypatch.setattr("sagevit.training.export.is_mount_point", lambda path: detected)

    export_model(model, model_dir, ["a", "b", "c"], {"run": 2})
    assert {p.name for p in model_dir.iterdir()} == {"1", "vit.keras", "metadata.json"}
    assert json.loads((model_dir / "metadata.json").read_text())["hyperparameters"] == {"run": 2}
    assert mount.renames[-1] == "metadata.json" and set(mount.renames) == {"1", "vit.keras", "metadata.json"}  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left


@pytest.mark.slow
def test_a_kill_mid_export_into_a_mount_leaves_the_previous_model_and_the_next_cleans_up(tmp_path):
    model_dir = tmp_path / "model"
    killed_export(model_dir, export_first=True, mounted=True)
    metadata = json.loads((model_dir / "metadata.json").read_text())
    assert metadata["hyperparameters"] == {"run": 1}  # the first export, untouched
    (leftover,) = (p for p in model_dir.iterdir() if p.name.startswith("."))
    assert leftover.name.startswith(".export-")  # staged inside the mount, hidden

    export_model(seed_vit(num_layers=1, num_classes=3), model_dir, ["a", "b", "c"], {"run": 3})
    assert {p.name for p in model_dir.iterdir()} == {"1", "vit.keras", "metadata.json"}


def test_an_unwritable_model_folder_fails_in_one_sentence(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("sagevit.platform.outputs.tempfile.mkstemp", read_only)
    with pytest.raises(OutputError) as raised:
        export_model(seed_vit(num_layers=1, num_classes=3), tmp_path / "model", ["a", "b", "c"], {})
    assert str(raised.value) == (
        f"cannot write the model to {tmp_path / 'model'}: Read-only file system;"
        " mount it read-write, with space"
    )


def test_flip_tta_serves_the_mean_of_each_image_and_its_mirror(tmp_path):
    import numpy as np
    import tensorflow as tf

    model = seed_vit(num_layers=1, num_classes=3)
    export_model(model, tmp_path / "model", ["a", "b", "c"], {}, flip_tta=True)
    serve = tf.saved_model.load(str(tmp_path / "model" / "1")).signatures["serving_default"]
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    served = next(iter(serve(tf.constant(images)).values())).numpy()
    plain, mirrored = (tf.nn.softmax(model(x, training=False)).numpy() for x in (images, images[:, :, ::-1]))  # fmt: skip
    np.testing.assert_allclose(served, (plain + mirrored) / 2, atol=1e-5)
    mirrored_served = next(iter(serve(tf.constant(images[:, :, ::-1].copy())).values())).numpy()
    np.testing.assert_allclose(mirrored_served, served, atol=1e-5)  # blind to mirroring
    assert json.loads((tmp_path / "model" / "metadata.json").read_text())["flip_tta"] is True
