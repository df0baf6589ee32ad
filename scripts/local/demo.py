"""`make demo`: train in the image, serve it from the image, and ask for one prediction.

    python -m scripts.local.demo --image IMAGE                   # CIFAR-10 if downloadable, else shapes
    python -m scripts.local.demo --image IMAGE --data PATH       # npz channel folder, image folder or archive
    python -m scripts.local.demo --image IMAGE --data synthetic  # the generated shapes dataset, offline
    python -m scripts.local.demo --image IMAGE --train-only      # `make train-local`
    python -m scripts.local.demo --image IMAGE --pretrained DIR --hyperparameter preset=vit-ti16

Everything happens under --workdir (default build/demo): the data, a folder laid
out as SageMaker's /opt/ml (mounted into the container), and the trained model.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sagevit.contract import TRAIN_FILE, VALIDATION_FILE
from scripts.local.containers import (
    TRAINING_HOST,
    remove_container,
    run_training,
    start_serving,
    stop_container,
)
from scripts.local.sagemaker_layout import write_training_layout
from scripts.local.server_process import curl_invocations, free_port, wait_until_ready
from scripts.prepare_data import prepare
from scripts.sagemaker.aws import parse_pairs

log = logging.getLogger("demo")

# Enough to learn each dataset well past chance in a few CPU minutes; the rest is the
# default recipe (sagevit.config).
DEMO_HYPERPARAMETERS = {
    "synthetic": {"epochs": 3},
    "cifar10": {"epochs": 2, "batch-size": 128},
}


def cifar10_downloadable(timeout: float = 3.0) -> bool:
    """True if Keras has CIFAR-10 cached or its download host answers quickly."""
    if (Path.home() / ".keras" / "datasets" / "cifar-10-batches-py").is_dir():
        return True
    try:
        socket.create_connection(("www.cs.toronto.edu", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def get_data(data: str | None, workdir: Path) -> tuple[Path, str]:
    """(channel folder, dataset kind) for the demo, preparing it if needed."""
    if data and (Path(data) / TRAIN_FILE).is_file():
        return Path(data), "cifar10"
    if data and data != "synthetic":
        return prepare(data, workdir / "data"), "cifar10"
    if data is None and cifar10_downloadable():
        log.info("downloading CIFAR-10 (170 MB)")
        return prepare("cifar10", workdir / "data"), "cifar10"
    log.info("CIFAR-10 not given and not downloadable: using the generated shapes dataset")
    return prepare("synthetic", workdir / "data", count=10000, validation_size=2000), "synthetic"


def train(
    image: str, channel: Path, opt_ml: Path, hyperparameters: dict, pretrained: Path | None = None
) -> Path:
    """`docker run IMAGE train` with `opt_ml` laid out as SageMaker's /opt/ml: afresh, as
    for every SageMaker job, so no model, output or checkpoint of an earlier run (which
    the trainer would resume from, or refuse if the model changed) is left in it."""
    shutil.rmtree(opt_ml, ignore_errors=True)
    channels = {"train": channel, "validation": channel}
    if pretrained is not None:  # a folder with one weights file (docs/finetuning.md)
        channels["pretrained"] = pretrained
    write_training_layout(opt_ml, hyperparameters, channels, host=TRAINING_HOST)
    if run_training(image, opt_ml).returncode != 0:
        failure = opt_ml / "output" / "failure"
        reason = failure.read_text() if failure.is_file() else "see the log above"
        raise SystemExit(f"training failed: {reason}")
    return opt_ml / "model"


def predict_one(image: str, model_dir: Path, channel: Path, workdir: Path) -> None:
    """Serve the model from the image and send it one validation image with curl."""
    with np.load(channel / VALIDATION_FILE, allow_pickle=False) as npz:
        pixels, label = npz["image"][0], int(npz["label"].reshape(-1)[0])
        names = [str(n) for n in npz["class_names"]] if "class_names" in npz.files else None
    request_file = workdir / "request.json"
    request_file.write_text(json.dumps({"instances": [pixels.tolist()]}))

    port = free_port()
    container = start_serving(image, model_dir, port)
    try:
        url = f"http://127.0.0.1:{port}"
        seconds = wait_until_ready(url, timeout=120)
        log.info("the container answered /ping after %.1f s", seconds)
        log.info("curl --data-binary @%s %s/invocations", request_file, url)
        body = curl_invocations(url, request_file, "application/json")
    finally:
        stop_container(container)
        remove_container(container)
    probabilities = np.array(body["predictions"][0])
    names = names or [str(i) for i in range(len(probabilities))]
    best = int(probabilities.argmax())
    print(
        f"\nPOST /invocations -> predicted '{names[best]}' with probability {probabilities[best]:.3f}"
    )
    print(f"(true label: '{names[label]}')")


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description="Train, serve and query the ViT locally.")
    parser.add_argument("--image", required=True, help="the project image, e.g. sagevit:latest")
    parser.add_argument("--data", help="npz channel folder, image folder/archive, or 'synthetic'")
    parser.add_argument("--workdir", type=Path, default=Path("build/demo"))
    parser.add_argument("--epochs", type=int, help="override the demo's epoch count")
    parser.add_argument("--train-only", action="store_true", help="train, then stop (no server)")
    parser.add_argument(
        "--pretrained", type=Path, help="pretrained channel: a weights file's folder"
    )
    parser.add_argument(
        "--hyperparameter", action="append", metavar="KEY=VALUE", help="e.g. preset=vit-b16"
    )
    args = parser.parse_args(argv)

    channel, kind = get_data(args.data, args.workdir)
    hyperparameters = dict(DEMO_HYPERPARAMETERS[kind])
    if args.epochs:
        hyperparameters["epochs"] = args.epochs
    hyperparameters |= parse_pairs(args.hyperparameter, "--hyperparameter")
    model_dir = train(args.image, channel, args.workdir / "opt_ml", hyperparameters, args.pretrained)  # fmt: skip
    if args.train_only:
        log.info("model written to %s", model_dir)
        return 0
    predict_one(args.image, model_dir, channel, args.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
