"""`make transform`: batch transform of an S3 prefix with the project's image, then one
predictions file with class names.

    python -m scripts.sagemaker.transform --input s3://BUCKET/prefix/ [--kind images|npy|jsonlines]
        [--job NAME | --model-data s3://.../model.tar.gz --image-uri URI] [--wait] [--sdk 3]

How SageMaker feeds each kind of input to the server (`serve`, POST /invocations):

| Kind | Objects | SplitType | BatchStrategy | Content-Type | Output `<object>.out` |
|---|---|---|---|---|---|
| images | one .jpg/.png each | None | SingleRecord | application/x-image | `{"predictions": [[...]]}` |
| npy | one (N, H, W, 3) array each | None | SingleRecord | application/x-npy | `{"predictions": [[...] x N]}` |
| jsonlines | one image (or list of them) a line | Line | MultiRecord | application/jsonlines | one line per input line |

MaxPayloadInMB is the server's payload limit, which the model's environment sets
(`PAYLOAD_MB`); MaxConcurrentTransforms is left out, so SageMaker asks the server's
`/execution-parameters` (its worker count). Images are SingleRecord although the server
says MultiRecord: two whole image files in one body are not an image. With --wait the
outputs are collected into --out (CSV: source, record, predicted class, its probability,
then one column per class), class names read from the model's metadata.json. `--sdk 3`
sends the same requests through SDK v3 (sagemaker.core's Model and Transformer).
"""

from __future__ import annotations

import csv
import json
import logging
import sys
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagevit.contract import METADATA_FILE
from scripts.sagemaker.aws import (  # fmt: skip
    PROJECT,
    add_sdk_argument,
    add_session_arguments,
    latest_training_job,
    resolve_role,
    script_parser,
    session_for,
    timestamped,
)
from scripts.sagemaker.deploy import ModelSource, from_training_job

log = logging.getLogger("transform")

PAYLOAD_MB = 6  # the server's default SAGEMAKER_MAX_PAYLOAD_IN_MB, and SageMaker's default
TIMEOUT_S = 600  # seconds an invocation may take: batch transform's default, and the server's


@dataclass(frozen=True)
class Kind:
    split_type: str
    strategy: str
    content_type: str
    accept: str
    assemble_with: str | None


KINDS = {
    "images": Kind("None", "SingleRecord", "application/x-image", "application/json", None),
    "npy": Kind("None", "SingleRecord", "application/x-npy", "application/json", None),
    "jsonlines": Kind(
        "Line", "MultiRecord", "application/jsonlines", "application/jsonlines", "Line"
    ),
}


# The model's environment: the payload limit and timeout the server (serve/) enforces.
MODEL_ENVIRONMENT = {
    "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(PAYLOAD_MB),
    "SAGEMAKER_MODEL_SERVER_TIMEOUT": str(TIMEOUT_S),
}


def transformer_settings(kind: Kind, output_uri: str, instance_type: str) -> dict[str, Any]:
    """The Transformer's arguments, the same in SDK v2 (`Model.transformer`) and v3."""
    return {
        "instance_count": 1,
        "instance_type": instance_type,
        "strategy": kind.strategy,
        "assemble_with": kind.assemble_with,
        "output_path": output_uri,
        "accept": kind.accept,
        "max_payload": PAYLOAD_MB,
        "tags": [{"Key": "project", "Value": PROJECT}],
    }


def start_transform(session: Any, source: ModelSource, role: str, kind: Kind, input_uri: str,
                    output_uri: str, instance_type: str, wait: bool, sdk: str = "2") -> str:  # fmt: skip
    """Create a model for `source` and a transform job over `input_uri` (both named
    sagevit-transform-TIMESTAMP) through SDK v`sdk`; the job's name."""
    name = timestamped(f"{PROJECT}-transform")
    settings = transformer_settings(kind, output_uri, instance_type)
    if sdk == "3":
        from scripts.sagemaker import sdk3

        sdk3.create_model(name, source.model_data, source.image_uri, role, session.boto_session, MODEL_ENVIRONMENT)  # fmt: skip
        transformer = sdk3.transformer(session, name, settings)
    else:
        from sagemaker.model import Model

        model = Model(image_uri=source.image_uri, model_data=source.model_data, role=role,
                      env=MODEL_ENVIRONMENT, name=name, sagemaker_session=session)  # fmt: skip
        transformer = model.transformer(**settings)
    transformer.transform(
        input_uri,
        content_type=kind.content_type,
        split_type=kind.split_type,
        job_name=name,
        model_client_config={"InvocationsTimeoutInSeconds": TIMEOUT_S, "InvocationsMaxRetries": 1},
        wait=wait,
        logs=False,
    )
    return name


def class_names_of(s3: Any, model_data: str) -> list[str]:
    """The class names in the model artifact's metadata.json (streamed, not unpacked)."""
    bucket, _, key = model_data.removeprefix("s3://").partition("/")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with tarfile.open(fileobj=body, mode="r|gz") as archive:
        for member in archive:
            if member.name.lstrip("./") == METADATA_FILE:
                return json.load(archive.extractfile(member))["class_names"]
    raise SystemExit(f"{model_data} holds no {METADATA_FILE}")


def output_rows(kind: str, body: bytes) -> Iterator[list[float]]:
    """Each image's probabilities in one `.out` object, in input order."""
    if kind != "jsonlines":
        yield from json.loads(body)["predictions"]
        return
    for line in body.decode().splitlines():
        if line.strip():
            predictions = json.loads(line)["predictions"]
            yield from predictions if isinstance(predictions[0], list) else [predictions]


def collect(s3: Any, output_uri: str, kind: str, class_names: Sequence[str], out: Path) -> int:
    """Write every `.out` object under `output_uri` to the CSV `out`; the rows written."""
    bucket, _, prefix = output_uri.removeprefix("s3://").partition("/")
    keys = sorted(
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
        if item["Key"].endswith(".out")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "record", "class", "probability", *class_names])
        for key in keys:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            source = key[len(prefix) :].lstrip("/").removesuffix(".out")
            for record, probabilities in enumerate(output_rows(kind, body)):
                best = max(range(len(probabilities)), key=probabilities.__getitem__)
                writer.writerow([source, record, class_names[best], f"{probabilities[best]:.6f}",
                                 *(f"{p:.6f}" for p in probabilities)])  # fmt: skip
                rows += 1
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = script_parser(__doc__)
    add_session_arguments(parser)
    parser.add_argument("--input", required=True, help="S3 prefix of the inputs")
    parser.add_argument("--kind", choices=list(KINDS), default="images")
    parser.add_argument("--output", help="S3 prefix for the outputs (default: INPUT's bucket, sagevit/transform/JOB)")  # fmt: skip
    parser.add_argument("--job", help="training job whose model to use (default: the newest)")
    parser.add_argument("--model-data", help="model.tar.gz S3 URI, instead of a job")
    parser.add_argument("--image-uri", help="serving image (default: the job's)")
    parser.add_argument("--role", help="execution role ARN (default: the job's)")
    parser.add_argument("--instance-type", default="ml.m5.xlarge")
    parser.add_argument("--wait", action="store_true", help="wait, then collect the predictions")
    parser.add_argument("--out", type=Path, default=Path("build/transform/predictions.csv"))
    add_sdk_argument(parser, "Model.transformer", "sagemaker.core Model + Transformer")
    args = parser.parse_args(argv)
    if not args.input.startswith("s3://"):
        raise SystemExit(f"--input {args.input}: give an S3 prefix (s3://BUCKET/prefix/)")

    session = session_for(args.sdk, args.region, args.bucket)
    client = session.sagemaker_client
    if args.model_data:
        if not args.image_uri:
            raise SystemExit("--model-data needs --image-uri (the image that trained it)")
        source = ModelSource(args.model_data, args.image_uri, None)
    else:
        source = from_training_job(client, args.job or latest_training_job(client))
    role = args.role or source.role or resolve_role(None, session)
    bucket = args.input.removeprefix("s3://").partition("/")[0]
    output = args.output or f"s3://{bucket}/{PROJECT}/transform/{timestamped('out')}"
    name = start_transform(session, source, role, KINDS[args.kind], args.input, output,
                           args.instance_type, args.wait, args.sdk)  # fmt: skip
    print(f"transform job: {name}")
    print(f"output:        {output}")
    if args.wait:
        s3 = session.boto_session.client("s3")
        rows = collect(s3, output, args.kind, class_names_of(s3, source.model_data), args.out)
        print(f"predictions:   {args.out} ({rows} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
