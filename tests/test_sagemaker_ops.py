"""`make data train deploy delete-endpoint` with the real SageMaker SDK against moto[server] on 127.0.0.1.

Each target runs as a subprocess with AWS_ENDPOINT_URL aimed at moto and the
network guard on its PYTHONPATH; what the SDK sent is read back with boto3.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import numpy as np
import pytest
from conftest import TELEMETRY_OPT_OUT, guarded_env, run_make

from sagevit.flags import parse_hyperparameters
from sagevit.training.epoch_log import metric_definitions
from scripts.local.server_process import free_port, wait_until_ready
from scripts.sagemaker.aws import latest_training_job
from scripts.sagemaker.push import ecr_credentials, ensure_repository

pytestmark = [pytest.mark.slow, pytest.mark.aws]

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
BUCKET = "sagevit-test-bucket"
IMAGE_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sagevit:test"
# The seed notebook's hyperparameters, by its names, as a user would pass them.
SEED_HYPERPARAMETERS = {
    "image_size": "32",
    "patch_size": "4",
    "num_layers": "4",
    "d_model": "64",
    "num_heads": "4",
    "mlp_dim": "128",
    "learning_rate": "3e-4",
    "weight_decay": "1e-4",
    "batch_size": "256",
}


@pytest.fixture(scope="module")
def moto(tmp_path_factory) -> tuple[str, Path]:
    """(URL, request log) of a moto server on 127.0.0.1 that can record the requests it gets.

    The record is how the tests see what the SDK sent: moto's DescribeTrainingJob
    answers some fields (MetricDefinitions) with fixed values of its own.
    """
    recording = tmp_path_factory.mktemp("moto") / "requests.jsonl"
    port = free_port()
    env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(recording)}
    server_script = Path(__file__).with_name("moto_server.py")  # moto, an AWS answer mended
    command = [sys.executable, str(server_script), "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, timeout=300, path="/moto-api/")
        yield url, recording
    finally:
        server.terminate()
        server.wait(timeout=30)


def recorder(url: str, action: str) -> None:
    """Drive moto's request recorder: reset-recording, start-recording, stop-recording."""
    urllib.request.urlopen(
        urllib.request.Request(f"{url}/moto-api/recorder/{action}", method="POST")
    )


def sent(recording: Path, action: str) -> list[dict]:
    """The JSON bodies of every `SageMaker.<action>` request moto received."""
    bodies = []
    for line in recording.read_text().splitlines():
        entry = json.loads(line)
        if entry["headers"].get("X-Amz-Target") == f"SageMaker.{action}":
            body = entry["body"]
            bodies.append(json.loads(base64.b64decode(body) if entry["body_encoded"] else body))
    return bodies


@pytest.fixture(scope="module")
def aws_env(moto, tmp_path_factory) -> dict[str, str]:
    """Variables that aim boto3 and the SDK at moto, with throwaway credentials."""
    folder = tmp_path_factory.mktemp("aws")
    (folder / "sagemaker.yaml").write_text(TELEMETRY_OPT_OUT)  # the SDK's own GET to S3
    return {
        "AWS_ENDPOINT_URL": moto[0],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(folder / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(folder / "none"),
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(folder / "sagemaker.yaml"),
        # SDK v3 checks the execution role with iam:SimulatePrincipalPolicy, which moto lacks.
        "SAGEMAKER_VALIDATE_ROLE": "false",
    }


@pytest.fixture(scope="module")
def aws(aws_env):
    """boto3 clients on moto, for the tests' own reads: aws("s3"), aws("sagemaker")."""
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    return lambda service: session.client(service, endpoint_url=aws_env["AWS_ENDPOINT_URL"])


def make(aws_env: dict, tmp_path: Path, target: str, *assignments: str) -> str:
    """Run `make target VAR=value ...` against moto; return its stdout."""
    guard_log = tmp_path / f"guard-{target}.log"
    result = run_make(target, *assignments, guard_log=guard_log, env=aws_env)
    assert result.returncode == 0, f"make {target} failed:\n{result.stdout}\n{result.stderr}"
    refused = guard_log.read_text() if guard_log.exists() else ""
    assert not refused, f"make {target} tried to leave loopback:\n{refused}"
    return result.stdout


@pytest.fixture(scope="module", params=["2", "3"], ids=["sdk2", "sdk3"])
def launched(request, moto, aws_env, tmp_path_factory) -> tuple[str, str, str]:
    """(job name, stdout, SDK) of one `make train` with spot, checkpoints and the seed's
    values: through SDK v2's Estimator, and through v3's ModelTrainer (`SDK=3`, its own venv)."""
    pairs = " ".join(f"{k}={v}" for k, v in SEED_HYPERPARAMETERS.items())
    recorder(moto[0], "reset-recording")
    recorder(moto[0], "start-recording")
    stdout = make(
        aws_env,
        tmp_path_factory.mktemp("train"),
        "train",
        f"ROLE={ROLE}",
        f"BUCKET={BUCKET}",
        f"IMAGE_URI={IMAGE_URI}",
        "EPOCHS=3",
        f"HYPERPARAMETERS={pairs}",
        "TRAIN_INSTANCE_TYPE=ml.g5.2xlarge",
        "SPOT=1",
        f"SDK={request.param}",
    )
    recorder(moto[0], "stop-recording")
    job = re.search(r"training job: (\S+)", stdout).group(1)
    return job, stdout, request.param


def test_data_upload_lands_in_s3(aws_env, aws, tmp_path):
    out = tmp_path / "data"
    stdout = make(
        aws_env, tmp_path, "data", "DATA=synthetic", f"DATA_DIR={out}", f"BUCKET={BUCKET}"
    )
    assert f"s3://{BUCKET}/sagevit/data/" in stdout
    listed = aws("s3").list_objects_v2(Bucket=BUCKET, Prefix="sagevit/data/")["Contents"]
    sizes = {item["Key"]: item["Size"] for item in listed}
    assert sizes == {
        "sagevit/data/train/training.npz": (out / "training.npz").stat().st_size,
        "sagevit/data/validation/testing.npz": (out / "testing.npz").stat().st_size,
    }
    body = aws("s3").get_object(Bucket=BUCKET, Key="sagevit/data/validation/testing.npz")["Body"]
    (tmp_path / "back.npz").write_bytes(body.read())
    with np.load(tmp_path / "back.npz") as back, np.load(out / "testing.npz") as local:
        np.testing.assert_array_equal(back["image"], local["image"])


@pytest.mark.parametrize("sdk", ["2", "3"])
def test_record_channels_upload_under_one_prefix_and_train_sharded_over_fastfile(
    moto, aws_env, aws, tmp_path, sdk
):
    """`make data FORMAT=tfrecord` puts each channel's shards and index under its prefix;
    `make train DISTRIBUTION=sharded INPUT_MODE=FastFile` splits the train shards among
    hosts (ShardedByS3Key) and sends the index to every host as train_index."""
    out = tmp_path / "records"
    make(aws_env, tmp_path, "data", "DATA=synthetic", "FORMAT=tfrecord", "SHARD_MB=0.05",
         f"DATA_DIR={out}", f"BUCKET={BUCKET}")  # fmt: skip
    s3 = aws("s3")
    uploaded = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="sagevit/data/")["Contents"]}  # fmt: skip
    local = {f"sagevit/data/{p.parent.name}/{p.name}" for p in out.glob("*/*")}
    try:
        assert local <= uploaded and len([k for k in local if k.endswith(".tfrecord")]) > 2
        recorder(moto[0], "start-recording")
        stdout = make(aws_env, tmp_path, "train", f"ROLE={ROLE}", f"BUCKET={BUCKET}", f"IMAGE_URI={IMAGE_URI}",
                      "TRAIN_INSTANCE_COUNT=2", "DISTRIBUTION=sharded", "INPUT_MODE=FastFile", f"SDK={sdk}")  # fmt: skip
        recorder(moto[0], "stop-recording")
        job = re.search(r"training job: (\S+)", stdout).group(1)
        (request,) = [r for r in sent(moto[1], "CreateTrainingJob") if r["TrainingJobName"] == job]
        assert request["AlgorithmSpecification"]["TrainingInputMode"] == "FastFile"
        sources = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in request["InputDataConfig"]}  # fmt: skip
        prefix = f"s3://{BUCKET}/sagevit/data"
        assert {
            name: (s["S3Uri"], s.get("S3DataDistributionType")) for name, s in sources.items()
        } == {
            "train": (f"{prefix}/train/", "ShardedByS3Key"),
            "train_index": (f"{prefix}/train/dataset.json", "FullyReplicated"),
            "validation": (f"{prefix}/validation/", "FullyReplicated"),
        }
    finally:
        for key in local:
            s3.delete_object(Bucket=BUCKET, Key=key)


def test_train_refuses_pipe_mode_before_calling_aws(aws_env, tmp_path):
    nowhere = {**aws_env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    result = run_make("train", f"ROLE={ROLE}", "INPUT_MODE=Pipe", guard_log=tmp_path / "g", env=nowhere)  # fmt: skip
    assert result.returncode != 0
    assert "--input-mode Pipe is refused: the trainer reads channel files" in result.stderr


def test_sharding_a_channel_without_an_index_is_refused(moto, aws_env, tmp_path):
    result = run_make("train", f"ROLE={ROLE}", f"BUCKET={BUCKET}", f"IMAGE_URI={IMAGE_URI}",
                      "DISTRIBUTION=sharded", guard_log=tmp_path / "g", env=aws_env)  # fmt: skip
    assert result.returncode != 0
    assert f"--distribution sharded needs a record channel: s3://{BUCKET}/sagevit/data/train/ holds no dataset.json" in result.stderr  # fmt: skip


def test_train_sends_our_metric_definitions(launched, moto):
    (request,) = [
        r for r in sent(moto[1], "CreateTrainingJob") if r["TrainingJobName"] == launched[0]
    ]
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == metric_definitions()
    assert request["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert request["TensorBoardOutputConfig"] == {
        "LocalPath": "/opt/ml/output/tensorboard",
        "S3OutputPath": f"s3://{BUCKET}/sagevit/output/tensorboard",
    }


def test_train_creates_the_job_the_sdk_describes(launched, aws):
    job_name, stdout, sdk = launched
    assert job_name.startswith("sagevit-")
    assert (
        f"https://{REGION}.console.aws.amazon.com/sagemaker/home?region={REGION}#/jobs/{job_name}"
        in stdout
    )
    job = aws("sagemaker").describe_training_job(TrainingJobName=job_name)

    algorithm = job["AlgorithmSpecification"]
    assert algorithm["TrainingImage"] == IMAGE_URI
    assert job["RoleArn"] == ROLE
    # Strings, exactly as written: the toolkit turns them back into --key value, which
    # our parser reads to the same values whichever SDK sent them.
    assert job["HyperParameters"] == {**SEED_HYPERPARAMETERS, "epochs": "3"}
    argv = [word for key, value in job["HyperParameters"].items() for word in (f"--{key}", value)]
    assert parse_hyperparameters(argv) == parse_hyperparameters(
        [w for k, v in {**SEED_HYPERPARAMETERS, "epochs": "3"}.items() for w in (f"--{k}", v)]
    )
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]
    }
    assert channels == {
        "train": f"s3://{BUCKET}/sagevit/data/train/",
        "validation": f"s3://{BUCKET}/sagevit/data/validation/",
    }
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    assert job["ResourceConfig"]["InstanceCount"] == 1
    assert job["EnableManagedSpotTraining"] is True
    # v2's prefix is ours; ModelTrainer names the job itself, so v3's is its own default.
    checkpoints = {"2": f"sagevit/checkpoints/{job_name}", "3": f"sagevit/{job_name}/checkpoints"}
    assert job["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/{checkpoints[sdk]}"
    assert job["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    stopping = job["StoppingCondition"]
    assert stopping["MaxWaitTimeInSeconds"] >= stopping["MaxRuntimeInSeconds"] == 24 * 3600
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/sagevit/output"
    tags = aws("sagemaker").list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    assert {"Key": "project", "Value": "sagevit"} in tags


def test_train_rejects_a_bad_hyperparameter_before_calling_aws(aws_env, tmp_path):
    nowhere = {**aws_env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    result = run_make(
        "train",
        f"ROLE={ROLE}",
        "HYPERPARAMETERS=num_layer=4",
        guard_log=tmp_path / "g",
        env=nowhere,
    )
    assert result.returncode != 0
    assert "unknown hyperparameter(s): --num_layer" in result.stderr


def test_latest_training_job_is_the_newest_completed(launched, aws):
    assert latest_training_job(aws("sagemaker")) == launched[0]  # the module's only job


def test_deploy_then_clean(launched, aws_env, aws, tmp_path):
    """`make deploy` through v2's Model.deploy, and `SDK=3` through sagemaker.core's resources."""
    job_name, _, sdk = launched
    sagemaker = aws("sagemaker")
    stdout = make(aws_env, tmp_path, "deploy", f"JOB={job_name}", "ENDPOINT=sagevit-test", f"SDK={sdk}")  # fmt: skip
    assert "#/endpoints/sagevit-test" in stdout

    endpoint = sagemaker.describe_endpoint(EndpointName="sagevit-test")
    assert endpoint["EndpointStatus"] == "InService"
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    (variant,) = config["ProductionVariants"]
    assert variant["InstanceType"] == "ml.m5.xlarge"
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    job = sagemaker.describe_training_job(TrainingJobName=job_name)
    assert model["PrimaryContainer"]["Image"] == IMAGE_URI
    assert model["PrimaryContainer"]["ModelDataUrl"] == job["ModelArtifacts"]["S3ModelArtifacts"]
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_MODEL_SERVER_TIMEOUT"] == "60"
    assert model["ExecutionRoleArn"] == ROLE

    stdout = make(aws_env, tmp_path, "delete-endpoint", "ENDPOINT=sagevit-test")
    assert "deleted endpoint sagevit-test" in stdout
    assert "sagevit-test" not in str(sagemaker.list_endpoints()["Endpoints"])
    assert not sagemaker.list_endpoint_configs(NameContains=endpoint["EndpointConfigName"])[
        "EndpointConfigs"
    ]
    assert variant["ModelName"] not in str(sagemaker.list_models()["Models"])
    # A second delete-endpoint finds nothing and still succeeds.
    assert "deleted" not in make(aws_env, tmp_path, "delete-endpoint", "ENDPOINT=sagevit-test")


def test_push_creates_the_ecr_repository_once_and_logs_in(aws_env, aws):
    ecr = aws("ecr")
    uri = ensure_repository(ecr, "sagevit-push-test")
    assert uri.endswith("/sagevit-push-test")
    assert ensure_repository(ecr, "sagevit-push-test") == uri  # exists now: found, not created
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]].count(
        "sagevit-push-test"
    ) == 1
    host, user, password = ecr_credentials(ecr)
    assert user == "AWS" and password and "://" not in host


@pytest.mark.parametrize("sdk", ["2", "3"])
def test_make_predict_evaluates_an_endpoint_batch_by_batch(moto, aws_env, tmp_path, sdk):
    """moto's runtime answers InvokeEndpoint from a queue: right for 2 batches, wrong for 1.
    SDK=3 sends them through v3's Endpoint.invoke."""
    labels = np.arange(300) % 10
    test_data = tmp_path / "testing.npz"
    images = np.broadcast_to(
        (np.arange(300) % 256).astype(np.uint8)[:, None, None, None], (300, 32, 32, 3)
    )
    np.savez(test_data, image=images, label=labels)  # distinct batches: moto keys answers by body
    answers = [
        np.eye(10)[labels[:128]],
        np.eye(10)[(labels[128:256] + 1) % 10],
        np.eye(10)[labels[256:]],
    ]
    queue = {"region": REGION, "results": [
        {"Body": json.dumps({"predictions": a.tolist()}), "ContentType": "application/json"} for a in answers
    ]}  # fmt: skip
    request = urllib.request.Request(
        f"{moto[0]}/moto-api/static/sagemaker/endpoint-results",
        data=json.dumps(queue).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request)
    out = tmp_path / "evaluation"
    stdout = make(
        aws_env,
        tmp_path,
        "predict",
        f"ENDPOINT=sagevit-eval-{sdk}",  # moto caches an answer per endpoint and body
        f"TEST_DATA={test_data}",
        f"EVAL_DIR={out}",
        f"SDK={sdk}",
    )
    assert "accuracy 0.5733 on 300 images" in stdout  # (128 + 44) / 300
    summary = json.loads((out / "evaluation.json").read_text())
    assert summary["examples"] == 300 and np.trace(summary["confusion"]) == 172
    assert (out / "confusion_matrix.png").is_file()


def test_deploy_from_a_model_artifact(aws_env, aws, tmp_path):
    model_data = f"s3://{BUCKET}/elsewhere/model.tar.gz"
    stdout = make(
        aws_env,
        tmp_path,
        "deploy",
        f"IMAGE_URI={IMAGE_URI}",
        f"ROLE={ROLE}",
        "ENDPOINT=sagevit-artifact",
        f"MODEL_DATA={model_data}",
        "SERVE_INSTANCE_TYPE=ml.c5.large",
    )
    assert "endpoint: sagevit-artifact" in stdout
    sagemaker = aws("sagemaker")
    config_name = sagemaker.describe_endpoint(EndpointName="sagevit-artifact")["EndpointConfigName"]
    (variant,) = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)[
        "ProductionVariants"
    ]
    assert variant["InstanceType"] == "ml.c5.large"
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["ModelDataUrl"] == model_data
    assert model["PrimaryContainer"]["Image"] == IMAGE_URI
    make(aws_env, tmp_path, "delete-endpoint", "ENDPOINT=sagevit-artifact")


# ---- Failures leave nothing behind: each AWS call of a deploy and a clean-up made to fail.


def fail_calls(session, operation: str, code: str, times: int | None = None) -> None:
    """Make `operation` on this boto3 session's SageMaker clients answer error `code`
    (the first `times` calls, or every call), as AWS would: a quota, a throttle, a denial."""
    from botocore.awsrequest import AWSResponse

    calls = {"n": 0}

    def answer(**_):
        calls["n"] += 1
        if times is not None and calls["n"] > times:
            return None  # the real call
        error = {"Code": code, "Message": f"{operation} refused ({code})"}
        return AWSResponse("", 400, {}, None), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}  # fmt: skip

    session.events.register(f"before-call.sagemaker.{operation}", answer)


def named_for(aws, endpoint: str) -> list[str]:
    """Every endpoint, endpoint config and model that carries the endpoint's name."""
    sm = aws("sagemaker")
    found = [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]]
    found += [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]]
    found += [m["ModelName"] for m in sm.list_models()["Models"]]
    return [name for name in found if name == endpoint or name.startswith(f"{endpoint}-")]


@pytest.fixture
def in_process_aws(aws_env, monkeypatch):
    """The scripts' sessions, in this process, on moto; `fail(operation, code, times)`
    makes calls fail on every session made afterwards."""
    import scripts.sagemaker.aws

    for name, value in aws_env.items():
        monkeypatch.setenv(name, value)
    failures = []
    real = scripts.sagemaker.aws.boto_session

    def boto_session(region=None):
        session = real(region)
        for failure in failures:
            fail_calls(session, *failure)
        return session

    monkeypatch.setattr(scripts.sagemaker.aws, "boto_session", boto_session)
    return lambda operation, code="ResourceLimitExceeded", times=None: failures.append((operation, code, times))  # fmt: skip


def deploy_args(endpoint: str) -> list[str]:
    return ["--model-data", f"s3://{BUCKET}/model.tar.gz", "--image-uri", IMAGE_URI,
            "--role", ROLE, "--endpoint", endpoint, "--bucket", BUCKET]  # fmt: skip


@pytest.mark.parametrize("operation", ["CreateModel", "CreateEndpointConfig", "CreateEndpoint"])
def test_a_deploy_that_fails_at_any_call_removes_what_it_created(in_process_aws, aws, operation):
    from scripts.sagemaker import deploy

    endpoint = f"sagevit-fails-at-{operation.lower()}"
    in_process_aws(operation)
    with pytest.raises(SystemExit) as failed:
        deploy.main(deploy_args(endpoint))
    message = str(failed.value)
    assert f"{operation} refused" in message and "removed" in message and "\n" not in message
    assert named_for(aws, endpoint) == []  # the next deploy starts clean


def test_a_failed_clean_up_after_a_failed_deploy_prints_the_command(in_process_aws, aws):
    from scripts.sagemaker import cleanup, deploy

    endpoint = "sagevit-cleanup-denied"
    in_process_aws("CreateEndpoint")
    in_process_aws("DeleteEndpointConfig", "AccessDeniedException")
    with pytest.raises(SystemExit) as failed:
        deploy.main(deploy_args(endpoint))
    assert f"make delete-endpoint ENDPOINT={endpoint}" in str(failed.value)
    assert named_for(aws, endpoint)  # the config and model it could not remove
    cleanup.delete_endpoint(aws("sagemaker"), endpoint)  # the printed command's work
    assert named_for(aws, endpoint) == []


def test_clean_up_is_idempotent_ordered_and_finds_orphans(in_process_aws, aws):
    from scripts.sagemaker.cleanup import delete_endpoint

    sm, endpoint = aws("sagemaker"), "sagevit-orphans"
    image = {"Image": IMAGE_URI, "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz"}
    for model in (f"{endpoint}-2026-11-29-00-00-00-001", f"{endpoint}-2026-11-29-00-00-00-002"):
        sm.create_model(ModelName=model, PrimaryContainer=image, ExecutionRoleArn=ROLE)
    variant = {"VariantName": "AllTraffic", "ModelName": f"{endpoint}-2026-11-29-00-00-00-002",
               "InitialInstanceCount": 1, "InstanceType": "ml.m5.xlarge"}  # fmt: skip
    sm.create_endpoint_config(EndpointConfigName=endpoint, ProductionVariants=[variant])
    # No endpoint: a deploy whose CreateEndpoint failed; model 001: a crash between deletes.
    deleted = delete_endpoint(sm, endpoint)
    assert deleted == [f"endpoint config {endpoint}",
                       f"model {endpoint}-2026-11-29-00-00-00-001",
                       f"model {endpoint}-2026-11-29-00-00-00-002"]  # fmt: skip
    assert named_for(aws, endpoint) == []
    assert delete_endpoint(sm, endpoint) == []  # again: nothing left, no error


def test_clean_up_retries_throttling_and_stops_on_other_errors(in_process_aws, aws):
    from scripts.sagemaker import aws as scripts_aws
    from scripts.sagemaker.cleanup import delete_endpoint

    sm, endpoint = aws("sagemaker"), "sagevit-throttled"
    image = {"Image": IMAGE_URI, "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz"}
    sm.create_model(ModelName=f"{endpoint}-2026-11-29-00-00-00-001", PrimaryContainer=image,
                    ExecutionRoleArn=ROLE)  # fmt: skip
    in_process_aws("DeleteModel", "ThrottlingException", times=2)
    waits = []
    client = scripts_aws.boto_session().client("sagemaker")
    assert delete_endpoint(client, endpoint, sleep=waits.append) == [f"model {endpoint}-2026-11-29-00-00-00-001"]  # fmt: skip
    assert waits == [1.0, 2.0]

    sm.create_model(ModelName=f"{endpoint}-2026-11-29-00-00-00-002", PrimaryContainer=image,
                    ExecutionRoleArn=ROLE)  # fmt: skip
    in_process_aws("DeleteModel", "AccessDeniedException")
    client = scripts_aws.boto_session().client("sagemaker")
    with pytest.raises(Exception, match="AccessDeniedException"):  # not taken for "gone"
        delete_endpoint(client, endpoint, sleep=waits.append)


@pytest.mark.parametrize("sdk", ["2", "3"])
def test_tune_sends_ranges_fixed_strings_and_regexes_that_read_the_trainer(moto, aws_env, tmp_path, sdk):  # fmt: skip
    """The same request through v2's HyperparameterTuner(Estimator) and, with SDK=3,
    v3's HyperparameterTuner(ModelTrainer)."""
    from sagevit.training.loop import EpochResult

    recorder(moto[0], "start-recording")
    stdout = make(
        aws_env, tmp_path, "tune", f"ROLE={ROLE}", f"BUCKET={BUCKET}", f"IMAGE_URI={IMAGE_URI}",
        "EPOCHS=5", "RANGES=learning_rate=1e-4:3e-3:log batch_size=32:256 tokenizer=patch,conv",
        "HYPERPARAMETERS=preset=seed weight_decay=1e-4", "MAX_JOBS=6", "PARALLEL_JOBS=3",
        "WARM_START=sagevit-parent-tuner", f"SDK={sdk}",
    )  # fmt: skip
    recorder(moto[0], "stop-recording")
    name = re.search(r"tuning job: (\S+)", stdout).group(1)
    assert name.startswith("sagevit-")
    (request,) = [
        r for r in sent(moto[1], "CreateHyperParameterTuningJob")
        if r["HyperParameterTuningJobName"] == name
    ]  # fmt: skip
    config = request["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "val_accuracy"}  # fmt: skip
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 3}
    assert config["TrainingJobEarlyStoppingType"] == "Auto"
    ranges = config["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"] == [
        {
            "Name": "learning_rate",
            "MinValue": "0.0001",
            "MaxValue": "0.003",
            "ScalingType": "Logarithmic",
        }
    ]
    assert ranges["IntegerParameterRanges"] == [
        {"Name": "batch_size", "MinValue": "32", "MaxValue": "256", "ScalingType": "Linear"}
    ]
    assert ranges["CategoricalParameterRanges"] == [{"Name": "tokenizer", "Values": ["patch", "conv"]}]  # fmt: skip
    assert request["WarmStartConfig"] == {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "sagevit-parent-tuner"}],
        "WarmStartType": "IdenticalDataAndAlgorithm",
    }
    definition = request["TrainingJobDefinition"]
    assert definition["AlgorithmSpecification"]["TrainingImage"] == IMAGE_URI
    assert definition["StaticHyperParameters"] == {"preset": "seed", "weight_decay": "1e-4", "epochs": "5"}  # fmt: skip
    # The regexes read the trainer's real epoch line, the objective among them.
    line = EpochResult(3, {"loss": 1.25, "accuracy": 0.55, "val_loss": 1.125, "val_accuracy": 0.6123, "seconds": 40.5}).log_line()  # fmt: skip
    read = {
        d["Name"]: float(re.search(d["Regex"], line).group(1))
        for d in definition["AlgorithmSpecification"]["MetricDefinitions"]
    }
    assert read == {"loss": 1.25, "accuracy": 0.55, "val_loss": 1.125, "val_accuracy": 0.6123, "seconds": 40.5}  # fmt: skip


@pytest.mark.parametrize(
    ("ranges", "sentence"),
    [
        ("learning_rate=nan:1", "need LOW < HIGH, both in (0, 10]"),
        ("learning_rate=0:1e-3:log", "need LOW < HIGH, both in (0, 10]"),
        ("num_layers=1:1e9", "need LOW < HIGH, both in [1, 256]"),
        ("tokenizer=patch,pixels", "tokenizer takes patch, conv"),
        ("learning_rat=1e-4:1e-3", "no hyperparameter 'learning_rat' to tune"),
    ],
)
def test_tune_refuses_a_bad_range_before_any_aws_call(aws_env, tmp_path, ranges, sentence):
    nowhere = {**aws_env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    result = run_make("tune", f"ROLE={ROLE}", f"RANGES={ranges}", guard_log=tmp_path / "g", env=nowhere)  # fmt: skip
    assert result.returncode != 0 and sentence in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize(
    ("setting", "config_field", "expected", "limits"),
    [
        (
            "SERVERLESS=4096",
            "ServerlessConfig",
            {"MemorySizeInMB": 4096, "MaxConcurrency": 5},
            ("60", "4"),
        ),
        (
            f"ASYNC=s3://{BUCKET}/async-answers",
            "AsyncInferenceConfig",
            {
                "OutputConfig": {
                    "S3OutputPath": f"s3://{BUCKET}/async-answers",
                    "S3FailurePath": f"s3://{BUCKET}/async-answers/failures",
                }
            },
            ("3600", "100"),
        ),
    ],
)
def test_deploy_makes_serverless_and_async_endpoints_with_their_limits(
    moto, aws_env, aws, tmp_path, setting, config_field, expected, limits
):
    endpoint = f"sagevit-{config_field.lower()}"
    recorder(moto[0], "start-recording")
    make(aws_env, tmp_path, "deploy", f"IMAGE_URI={IMAGE_URI}", f"ROLE={ROLE}", f"ENDPOINT={endpoint}",
         f"MODEL_DATA=s3://{BUCKET}/model.tar.gz", setting)  # fmt: skip
    recorder(moto[0], "stop-recording")
    (config,) = [c for c in sent(moto[1], "CreateEndpointConfig") if c["EndpointConfigName"] == endpoint]  # fmt: skip
    variant_or_config = config["ProductionVariants"][0] if config_field == "ServerlessConfig" else config  # fmt: skip
    assert {k: variant_or_config[config_field][k] for k in expected} == expected
    if config_field == "ServerlessConfig":
        assert "InstanceType" not in config["ProductionVariants"][0]  # no instance, no GPU
    (model,) = [
        m for m in sent(moto[1], "CreateModel") if m["ModelName"].startswith(f"{endpoint}-")
    ]
    environment = model["PrimaryContainer"]["Environment"]
    assert (environment["SAGEMAKER_MODEL_SERVER_TIMEOUT"], environment["SAGEMAKER_MAX_PAYLOAD_IN_MB"]) == limits  # fmt: skip
    make(aws_env, tmp_path, "delete-endpoint", f"ENDPOINT={endpoint}")
    assert named_for(aws, endpoint) == []


def test_deploy_refuses_an_impossible_serverless_size_before_any_aws_call(aws_env, tmp_path):
    nowhere = {**aws_env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    result = run_make("deploy", f"ROLE={ROLE}", "SERVERLESS=8192", guard_log=tmp_path / "g", env=nowhere)  # fmt: skip
    assert result.returncode != 0 and "serverless memory is one of 1024" in result.stderr


# ---- Batch transform: the request on the local AWS API, and the served container fed as
# SageMaker feeds it.


@pytest.mark.parametrize("sdk", ["2", "3"])
def test_transform_sends_what_the_server_needs_for_each_kind(moto, aws_env, tmp_path, sdk):
    """Through v2's Model.transformer and, with SDK=3, v3's Model.create and Transformer."""
    recorder(moto[0], "start-recording")
    stdout = make(aws_env, tmp_path, "transform", f"INPUT=s3://{BUCKET}/records/", "KIND=jsonlines",
                  f"MODEL_DATA=s3://{BUCKET}/model.tar.gz", f"IMAGE_URI={IMAGE_URI}", f"ROLE={ROLE}",
                  f"SDK={sdk}")  # fmt: skip
    recorder(moto[0], "stop-recording")
    name = re.search(r"transform job: (\S+)", stdout).group(1)
    (job,) = [j for j in sent(moto[1], "CreateTransformJob") if j["TransformJobName"] == name]
    assert job["BatchStrategy"] == "MultiRecord" and job["MaxPayloadInMB"] == 6
    assert "MaxConcurrentTransforms" not in job  # SageMaker asks /execution-parameters
    assert job["ModelClientConfig"] == {"InvocationsTimeoutInSeconds": 600, "InvocationsMaxRetries": 1}  # fmt: skip
    assert job["TransformInput"]["SplitType"] == "Line"
    assert job["TransformInput"]["ContentType"] == "application/jsonlines"
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/records/"
    assert job["TransformOutput"]["AssembleWith"] == "Line"
    assert job["TransformOutput"]["Accept"] == "application/jsonlines"
    (model,) = [m for m in sent(moto[1], "CreateModel") if m["ModelName"] == job["ModelName"]]
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_MAX_PAYLOAD_IN_MB"] == "6"


def test_transform_end_to_end_against_the_served_container(toolkit_run, aws, tmp_path):
    """Replay what batch transform sends (one image per request; jsonlines lines joined into
    one MultiRecord body) to the real server, store its answers as SageMaker would, and
    collect them into the predictions file."""
    import csv
    import io
    import tarfile

    from PIL import Image

    from sagevit_serve.predictor import Predictor
    from scripts.local.server_process import request, start_server, stop_server
    from scripts.sagemaker.transform import class_names_of, collect

    model_dir = toolkit_run[0] / "model"
    s3 = aws("s3")
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:  # run alone
        s3.create_bucket(Bucket=BUCKET)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(model_dir, arcname=".")
    s3.put_object(Bucket=BUCKET, Key="e2e/model.tar.gz", Body=archive.getvalue())
    images = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    port = free_port()
    server = start_server(model_dir, port)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_ready(base, timeout=300, process=server)
        limits = json.loads(urllib.request.urlopen(f"{base}/execution-parameters").read())
        assert limits["MaxPayloadInMB"] == 6  # what make transform sends as MaxPayloadInMB
        for i, image in enumerate(images[:2]):  # images: SplitType None, SingleRecord
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            status, body = request(f"{base}/invocations", png.getvalue(), "application/x-image")
            assert status == 200
            s3.put_object(Bucket=BUCKET, Key=f"e2e/out-images/{i}.png.out", Body=body)
        lines = "\n".join(json.dumps(image.tolist()) for image in images).encode()  # one body
        status, body = request(f"{base}/invocations", lines, "application/jsonlines",
                               headers={"Accept": "application/jsonlines"})  # fmt: skip
        assert status == 200
        s3.put_object(Bucket=BUCKET, Key="e2e/out-lines/records.jsonl.out", Body=body)
    finally:
        stop_server(server)

    names = class_names_of(s3, f"s3://{BUCKET}/e2e/model.tar.gz")
    expected = Predictor.load(model_dir).predict(images.astype(np.float32))
    for kind, prefix, count in (("images", "out-images", 2), ("jsonlines", "out-lines", 4)):
        out = tmp_path / f"{kind}.csv"
        assert collect(s3, f"s3://{BUCKET}/e2e/{prefix}", kind, names, out) == count
        rows = list(csv.DictReader(out.open()))
        assert [row["class"] for row in rows] == [names[i] for i in expected[:count].argmax(axis=1)]
        got = np.array([[float(row[name]) for name in names] for row in rows])
        np.testing.assert_allclose(got, expected[:count], atol=1e-4)


def docs_snippet(marker: str) -> str:
    """The Python block of docs/sagemaker.md whose first line names `marker`."""
    text = (Path(__file__).parents[1] / "docs" / "sagemaker.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    (block,) = [b for b in blocks if marker in b.splitlines()[0]]
    return block


def test_the_docs_sdk3_snippet_trains_deploys_and_invokes_against_moto(moto, aws_env, aws, sdk3_python, tmp_path):  # fmt: skip
    """docs/sagemaker.md's notebook-style v3 code, run as written by v3 against moto."""
    runtime = aws("sagemaker-runtime")
    for body in map(str, range(100)):  # take what other tests left in moto's answer queue
        if runtime.invoke_endpoint(EndpointName="drain", Body=body)["Body"].read() == b"body":
            break  # moto's answer once the queue is empty
    answer = {"predictions": [[0.1] * 10]}
    queue = {"region": REGION, "results": [{"Body": json.dumps(answer), "ContentType": "application/json"}]}  # fmt: skip
    urllib.request.urlopen(urllib.request.Request(
        f"{moto[0]}/moto-api/static/sagemaker/endpoint-results",
        data=json.dumps(queue).encode(), headers={"Content-Type": "application/json"}))  # fmt: skip
    guard = tmp_path / "guard.log"
    root = Path(__file__).parents[1]
    result = subprocess.run([str(sdk3_python), "-c", docs_snippet("docs test: sdk3")], cwd=root,
                            env=guarded_env(guard, **aws_env), capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert not (guard.exists() and guard.read_text()), guard.read_text()
    assert json.loads(result.stdout.strip().splitlines()[-1].replace("'", '"')) == answer["predictions"]  # fmt: skip
    sagemaker = aws("sagemaker")
    (job,) = [j for j in sagemaker.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]
              if sagemaker.describe_training_job(TrainingJobName=j["TrainingJobName"])
              ["AlgorithmSpecification"]["TrainingImage"].endswith("sagevit:latest")]  # fmt: skip
    described = sagemaker.describe_training_job(TrainingJobName=job["TrainingJobName"])
    assert described["HyperParameters"] == {"epochs": "30", "learning_rate": "2e-3"}
    assert sagemaker.describe_endpoint(EndpointName="sagevit-v3")["EndpointStatus"] == "InService"
    model = sagemaker.describe_model(ModelName="sagevit-v3")["PrimaryContainer"]
    assert model["ModelDataUrl"] == described["ModelArtifacts"]["S3ModelArtifacts"]
