"""`make predict`: evaluate a served model on a test set, as the seed notebook did.

    python -m scripts.sagemaker.evaluate --endpoint sagevit --data build/data/testing.npz   # SageMaker
    python -m scripts.sagemaker.evaluate --url http://127.0.0.1:8080 --data testing.npz     # make serve-local
    python -m scripts.sagemaker.evaluate --model-dir build/local/opt_ml/model --data ...    # in-process

Sends the test images in batches as `{"instances": [...]}` JSON, reads
`response["predictions"]`, and writes to --out: confusion_matrix.png (rows
normalised: the share of each true class given each prediction),
per_class.csv, and evaluation.json. Prints accuracy and the per-class table.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scripts.sagemaker.aws import add_sdk_argument, boto_session, script_parser

log = logging.getLogger("evaluate")

PredictFn = Callable[[np.ndarray], np.ndarray]  # (B, H, W, 3) uint8 -> (B, classes) probabilities


def _request_body(images: np.ndarray) -> bytes:
    return json.dumps({"instances": images.tolist()}).encode()


def endpoint_predictor(endpoint: str, region: str | None = None, sdk: str = "2") -> PredictFn:
    """Batches to a SageMaker endpoint: boto3's InvokeEndpoint (what SDK v2's Predictor
    sends), or with `sdk` "3", SDK v3's `Endpoint.invoke`."""
    boto = boto_session(region)
    if sdk == "3":
        from scripts.sagemaker import sdk3

        def send(body: bytes) -> bytes:
            return sdk3.invoke(boto, endpoint, body, "application/json")
    else:
        runtime = boto.client("sagemaker-runtime")

        def send(body: bytes) -> bytes:
            response = runtime.invoke_endpoint(
                EndpointName=endpoint,
                ContentType="application/json",
                Accept="application/json",
                Body=body,
            )
            return response["Body"].read()

    def predict(images: np.ndarray) -> np.ndarray:
        return np.asarray(json.loads(send(_request_body(images)))["predictions"])

    return predict


def url_predictor(base_url: str, timeout: float = 60.0) -> PredictFn:
    def predict(images: np.ndarray) -> np.ndarray:
        request = urllib.request.Request(
            f"{base_url.rstrip('/')}/invocations",
            data=_request_body(images),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return np.asarray(json.loads(response.read())["predictions"])

    return predict


def model_dir_predictor(model_dir: str | Path) -> PredictFn:
    """The exported model in this process, through the server's own predictor."""
    from sagevit_serve.predictor import Predictor

    return Predictor.load(model_dir).predict


@dataclass
class Evaluation:
    accuracy: float
    confusion: np.ndarray  # (C, C) counts: row = true class, column = predicted
    class_names: tuple[str, ...]

    def per_class(self) -> list[dict]:
        support = self.confusion.sum(axis=1)
        predicted = self.confusion.sum(axis=0)
        correct = np.diag(self.confusion)
        return [
            {
                "class": name,
                "support": int(support[i]),
                "recall": float(correct[i] / support[i]) if support[i] else 0.0,
                "precision": float(correct[i] / predicted[i]) if predicted[i] else 0.0,
            }
            for i, name in enumerate(self.class_names)
        ]


def evaluate(
    predict: PredictFn,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    batch_size: int = 128,
) -> Evaluation:
    """Predict every image in batches and tally the confusion matrix."""
    classes = len(class_names)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    for start in range(0, len(images), batch_size):
        batch = slice(start, start + batch_size)
        probabilities = predict(images[batch])
        expected = (len(labels[batch]), classes)
        if probabilities.shape != expected:
            raise SystemExit(f"expected {expected} predictions, got {probabilities.shape}")
        np.add.at(confusion, (labels[batch], probabilities.argmax(axis=1)), 1)
        if (start // batch_size) % 10 == 0:
            log.info("%d/%d images", min(start + batch_size, len(images)), len(images))
    return Evaluation(float(np.trace(confusion) / confusion.sum()), confusion, tuple(class_names))


def plot_confusion(evaluation: Evaluation, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = evaluation.confusion.sum(axis=1, keepdims=True)
    normalised = evaluation.confusion / np.maximum(rows, 1)
    names = evaluation.class_names
    figure, axis = plt.subplots(figsize=(8, 7))
    shown = axis.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(shown, ax=axis)
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axis.set_yticks(range(len(names)), names)
    for (i, j), value in np.ndenumerate(normalised):
        colour = "white" if value > 0.5 else "black"
        axis.text(j, i, f"{value:.2f}", ha="center", va="center", color=colour, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"accuracy {evaluation.accuracy:.2%}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_outputs(evaluation: Evaluation, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    plot_confusion(evaluation, out / "confusion_matrix.png")
    rows = evaluation.per_class()
    with open(out / "per_class.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = {
        "accuracy": evaluation.accuracy,
        "examples": int(evaluation.confusion.sum()),
        "per_class": rows,
        "confusion": evaluation.confusion.tolist(),
    }
    (out / "evaluation.json").write_text(json.dumps(summary, indent=2) + "\n")


def load_test_set(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(images, labels, class names) from a seed-format npz (`image`, `label`, `class_names`)."""
    with np.load(path, allow_pickle=False) as npz:
        images, labels = npz["image"], npz["label"].reshape(-1).astype(np.int64)
        if "class_names" in npz.files:
            names = tuple(str(name) for name in npz["class_names"])
        else:
            names = tuple(str(i) for i in range(int(labels.max()) + 1))
    return images, labels, names


def main(argv: Sequence[str] | None = None) -> int:
    parser = script_parser(__doc__)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--endpoint", help="SageMaker endpoint name")
    target.add_argument("--url", help="base URL of a running server, e.g. http://127.0.0.1:8080")
    target.add_argument("--model-dir", help="an exported model folder, evaluated in-process")
    parser.add_argument("--region", help="AWS region, for --endpoint")
    parser.add_argument("--data", type=Path, required=True, help="test set npz (testing.npz)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per request")
    parser.add_argument("--limit", type=int, help="evaluate only the first N images")
    parser.add_argument("--out", type=Path, default=Path("build/evaluation"), help="output folder")
    add_sdk_argument(parser, "InvokeEndpoint (as Predictor)", "Endpoint.invoke (for --endpoint)")
    args = parser.parse_args(argv)

    images, labels, class_names = load_test_set(args.data)
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    if args.endpoint:
        predict = endpoint_predictor(args.endpoint, args.region, args.sdk)
    elif args.url:
        predict = url_predictor(args.url)
    else:
        predict = model_dir_predictor(args.model_dir)
    evaluation = evaluate(predict, images, labels, class_names, args.batch_size)
    write_outputs(evaluation, args.out)

    print(f"\n{'class':<14}{'support':>8}{'recall':>8}{'precision':>10}")
    for row in evaluation.per_class():
        print(
            f"{row['class']:<14}{row['support']:>8}{row['recall']:>8.3f}{row['precision']:>10.3f}"
        )
    print(f"\naccuracy {evaluation.accuracy:.4f} on {len(labels)} images")
    print(f"wrote {args.out}/confusion_matrix.png, per_class.csv, evaluation.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
