"""Shared fixtures: tiny generated channels, a model trained in-process, and the Flask app.

Every test runs under the network guard (tests/guard): reaching anything but
loopback fails the test, even where a library swallows the connection error.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import network_guard
import numpy as np
import pytest

from sagevit.config import Hyperparameters
from scripts.local.synthetic_shapes import make_shapes, write_npz

ROOT = Path(__file__).resolve().parents[1]
GUARD_DIR = ROOT / "tests" / "guard"
network_guard.install()

# Bounds a subprocess that hangs, and nothing else: ten times what the slowest of them
# takes on a slow day here, so that no verdict depends on this machine's speed.
HANG_LIMIT_S = 900


@pytest.fixture(autouse=True)
def no_network_beyond_loopback():
    """Fail the test if it tried to reach a non-loopback address, caught or not."""
    before = len(network_guard.violations)
    yield
    refused = network_guard.violations[before:]
    assert not refused, f"test tried to leave loopback: {refused}"


def guarded_env(log_file: Path, **extra: str) -> dict[str, str]:
    """Environment for a Python subprocess that runs under the network guard too."""
    path = os.pathsep.join([str(GUARD_DIR), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, network_guard.LOG_VARIABLE: str(log_file), **extra}


def run_make(
    target: str,
    *assignments: str,
    guard_log: Path,
    env: dict | None = None,
    timeout: float = HANG_LIMIT_S,
) -> subprocess.CompletedProcess:
    """`make target VAR=value ...` in the repository, its Python under the network guard."""
    return subprocess.run(
        ["make", "--no-print-directory", target, *assignments],
        cwd=ROOT,
        env=guarded_env(guard_log, **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# The SageMaker SDKs' config (SAGEMAKER_USER_CONFIG_OVERRIDE) that turns their telemetry off:
# otherwise they ask STS and S3 in AWS itself, whatever AWS_ENDPOINT_URL says.
TELEMETRY_OPT_OUT = """\
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
"""

# Small enough to train in seconds on 2 CPU cores.
TINY = {
    "epochs": 1,
    "batch-size": 32,
    "num-layers": 1,
    "d-model": 32,
    "num-heads": 2,
    "mlp-dim": 64,
}


def tiny_flags(**overrides: object) -> list[str]:
    """TINY (with `overrides`, e.g. epochs=3) as `--key value` arguments."""
    return [item for k, v in {**TINY, **overrides}.items() for item in (f"--{k}", str(v))]


def epoch_numbers(output: str) -> list[int]:
    """The epoch numbers of the trainer's `epoch=N loss=...` lines, in order."""
    return [int(n) for n in re.findall(r" epoch=(\d+) loss=", output)]


def write_channel(folder: Path, train_count: int = 128, test_count: int = 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_npz(str(folder / "training.npz"), *make_shapes(train_count, seed=1))
    write_npz(str(folder / "testing.npz"), *make_shapes(test_count, seed=2))
    return folder


def write_image_tree(
    root: Path,
    sizes: Sequence[tuple[int, int]] = ((32, 32), (48, 40)),
    classes: Sequence[str] = ("cat", "dog"),
) -> Path:
    """An image-folder channel: `root/<class>/<i>.png`, one image per size in each class."""
    from PIL import Image

    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i, size in enumerate(sizes):
            Image.new("RGB", size, (label * 100, i, 0)).save(root / name / f"{i}.png")
    return root


def toolkit_command(base_dir: Path) -> tuple[list[str], dict[str, str]]:
    """(command, environment) of the real sagemaker-training `train` command, run
    against a SageMaker-layout folder instead of /opt/ml."""
    env = {
        **os.environ,
        "SAGEMAKER_BASE_DIR": str(base_dir),
        "SAGEMAKER_TRAINING_MODULE": "sagevit.toolkit:main",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",  # lines reach a log file as they are written
    }
    return [sys.executable, "-m", "sagemaker_training.cli.train"], env


def run_toolkit(
    base_dir: Path, timeout: float = HANG_LIMIT_S, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the toolkit's `train` command to the end (`toolkit_command`), with `env` added."""
    command, environment = toolkit_command(base_dir)
    environment |= env or {}
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout)


def wait_for(
    log: Path,
    line: str,
    process: subprocess.Popen,
    timeout: float = HANG_LIMIT_S,
    also: Sequence[Path] = (),
) -> None:
    """Wait until `line` appears in the log file of a running `process`; fail the test if
    the process exits first or `timeout` seconds pass. The tails of the `also` logs (its
    peers') join the failure message: a peer's crash is often why the process exited."""
    deadline = time.monotonic() + timeout
    while line not in log.read_text():
        tail = "\n".join(f"--- {p.name}:\n{p.read_text()[-3000:]}" for p in (log, *also))
        assert process.poll() is None, f"exited before {line!r}:\n{tail}"
        assert time.monotonic() < deadline, f"no {line!r} within {timeout} s:\n{tail}"
        time.sleep(0.05)


@pytest.fixture(scope="session")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_channel(tmp_path_factory.mktemp("channel"))


@pytest.fixture(scope="session")
def model_dir(channel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained in-process for one epoch and exported like the trainer does."""
    from sagevit.flags import parse_hyperparameters
    from sagevit.job import run

    out = tmp_path_factory.mktemp("model")
    hp = parse_hyperparameters(tiny_flags())
    run(hp, channel, out, validation_dir=channel)
    return out


@pytest.fixture(scope="session")
def toolkit_run(channel: Path, tmp_path_factory: pytest.TempPathFactory):
    """(opt_ml folder, completed process) of one real toolkit `train` run, shared by slow tests."""
    from scripts.local.sagemaker_layout import write_training_layout

    base = write_training_layout(
        tmp_path_factory.mktemp("opt_ml"),
        {**TINY, "epochs": 2, "jit-compile": "True"},
        {"train": channel, "validation": channel},
    )
    return base, run_toolkit(base)


@pytest.fixture(scope="session")
def image() -> str:
    """The project image built on the stand-in base (or SAGEVIT_TEST_IMAGE, if set)."""
    if os.environ.get("SAGEVIT_TEST_IMAGE"):
        return os.environ["SAGEVIT_TEST_IMAGE"]
    result = subprocess.run(
        ["make", "-s", "build-standin"], cwd=ROOT, capture_output=True, text=True, timeout=3600
    )
    if result.returncode != 0:
        pytest.fail(f"make build-standin failed:\n{result.stdout}\n{result.stderr[-4000:]}")
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def sdk3_python() -> Path:
    """The Python of .venv-sdk3 (SageMaker SDK v3), made by its make target if missing."""
    # Not under the network guard: pip reaches the package index.
    result = subprocess.run(["make", "-s", ".venv-sdk3/.installed"], cwd=ROOT,
                            capture_output=True, text=True, timeout=1800)  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"making .venv-sdk3 failed:\n{result.stdout}\n{result.stderr[-4000:]}")
    return ROOT / ".venv-sdk3" / "bin" / "python"


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    return make_shapes(8, seed=3)[0]


@pytest.fixture(scope="session")
def predictor(model_dir: Path):
    """The served model, loaded (and XLA-compiled for every batch bucket) once per session."""
    from sagevit_serve.predictor import Predictor

    return Predictor.load(model_dir)


@pytest.fixture
def app(predictor):
    from sagevit_serve.app import create_app

    app = create_app(predictor)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def seed_hyperparameters() -> Hyperparameters:
    from sagevit.flags import parse_hyperparameters

    return parse_hyperparameters(["--preset", "seed"])


def in_process_probabilities(model_dir: Path, images: np.ndarray) -> np.ndarray:
    """What the exported model should serve, from its Keras file: the softmax, averaged
    with the mirror images' when the export has flip TTA (its metadata says)."""
    import keras

    from sagevit.model.vit import load_model

    model = load_model(model_dir / "vit.keras")
    images = images.astype("float32")
    probabilities = keras.ops.softmax(model(images)).numpy()
    if json.loads((model_dir / "metadata.json").read_text()).get("flip_tta"):
        probabilities = (probabilities + keras.ops.softmax(model(images[:, :, ::-1])).numpy()) / 2
    return probabilities


def seed_vit(**overrides: object):
    """The seed notebook's ViT (the seed preset's model arguments), with `overrides`."""
    from sagevit.flags import parse_hyperparameters
    from sagevit.model.vit import build_vit

    kwargs = parse_hyperparameters(["--preset", "seed"]).model_kwargs()
    return build_vit(**{**kwargs, **overrides})


def training_stream(
    split, batch_size: int, epochs: int, seed: int = 0, start=None, **augmentation: object
):
    """What the job feeds the loop (`sagevit.data.training_data.TrainingData`): every
    epoch's batches from `start` (a Progress; default the beginning) to `epochs` as one
    distributed stream, and the steps in an epoch."""
    import tensorflow as tf

    from sagevit.data.pipeline import Augmentation
    from sagevit.data.training_data import TrainingData, agree_steps
    from sagevit.training.checkpoints import Progress

    start = start or Progress()
    data = TrainingData(split, None, (), batch_size, agree_steps(split, batch_size, 1, list))
    batches = data.training_batches(
        tf.distribute.get_strategy(),
        range(start.epoch, epochs + 1),
        start.step,
        10,
        seed,
        Augmentation(**augmentation),
    )
    return batches, data.steps_per_epoch
