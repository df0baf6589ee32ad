"""Fast tests of the SageMaker scripts' own logic, and of the network guard all tests run under."""

from __future__ import annotations

import csv
import json
import re
import socket
import subprocess
import sys

import keras
import network_guard
import numpy as np
import pytest
from conftest import guarded_env, tiny_flags, write_channel

from sagevit.errors import ConfigError
from sagevit.training.epoch_log import METRIC_NAMES, format_line, metric_definitions
from scripts.sagemaker.aws import console_url, parse_pairs, timestamped
from scripts.sagemaker.evaluate import evaluate, load_test_set, write_outputs
from scripts.sagemaker.launch import job_hyperparameters


def test_parse_pairs_keeps_values_as_strings():
    pairs = parse_pairs(["learning_rate=3e-4 batch_size=256", "preset=seed"], "--hyperparameter")
    assert pairs == {"learning_rate": "3e-4", "batch_size": "256", "preset": "seed"}
    with pytest.raises(SystemExit, match="key=value"):
        parse_pairs(["learning_rate"], "--hyperparameter")


def test_job_hyperparameters_pass_through_unchanged_and_are_checked():
    given = {"learning_rate": "3e-4", "d_model": "64", "preset": "seed"}
    assert job_hyperparameters(given, epochs=5) == {**given, "epochs": "5"}
    with pytest.raises(ConfigError, match="--d_modl"):
        job_hyperparameters({"d_modl": "64"}, epochs=None)
    with pytest.raises(ConfigError, match="num-heads"):
        job_hyperparameters({"num_heads": "0"}, epochs=None)


def test_timestamped_names_fit_sagemakers_limits_to_the_millisecond():
    name = timestamped("sagevit", limit=32)  # a tuning job's limit
    assert re.fullmatch(r"sagevit-\d{4}(-\d\d){5}-\d{3}", name) and len(name) <= 32
    long = timestamped("x" * 80)
    assert len(long) == 63 and long.startswith("x" * 39 + "-")


def test_console_url_names_region_and_job():
    assert console_url("eu-west-1", "jobs", "sagevit-1") == (
        "https://eu-west-1.console.aws.amazon.com/sagemaker/home?region=eu-west-1#/jobs/sagevit-1"
    )


@pytest.mark.parametrize("value", [1.4590, 0.0, -0.25, 1e-7, 123456.0, float("nan")])
def test_metric_definitions_read_back_every_value(value):
    metrics = {name: value for name in METRIC_NAMES}
    line = "2026-11-26 10:00:00 INFO sagevit.training.loop: " + format_line(12, metrics)
    for definition in metric_definitions():
        found = re.search(definition["Regex"], line).group(1)
        assert found == f"{value:.4f}"


def test_metric_definitions_keep_loss_and_val_loss_apart():
    line = format_line(1, {"loss": 2.0, "accuracy": 0.1, "val_loss": 3.0, "val_accuracy": 0.2})
    values = {d["Name"]: re.search(d["Regex"], line) for d in metric_definitions()}
    assert values["loss"].group(1) == "2.0000" and values["val_loss"].group(1) == "3.0000"
    assert values["accuracy"].group(1) == "0.1000" and values["val_accuracy"].group(1) == "0.2000"
    assert not any(
        re.search(d["Regex"], "validating on 5000 loss=1.0") for d in metric_definitions()
    )


def fake_predictor(calls: list[int]):
    """Predicts class (mean pixel % 3): known answers for a known set of images."""

    def predict(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        classes = images.reshape(len(images), -1).mean(axis=1).astype(int) % 3
        return np.eye(3)[classes]

    return predict


def test_evaluate_batches_and_tallies_the_confusion_matrix(tmp_path):
    images = np.stack([np.full((4, 4, 3), i, np.uint8) for i in range(10)])  # predicts i % 3
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 0, 0, 0])
    calls: list[int] = []
    evaluation = evaluate(fake_predictor(calls), images, labels, ("a", "b", "c"), batch_size=4)
    assert calls == [4, 4, 2]
    predicted = np.arange(10) % 3
    assert evaluation.accuracy == pytest.approx(np.mean(predicted == labels))
    assert evaluation.confusion.sum() == 10
    # True a at 0, 3, 6, 7, 8, 9 is predicted a, a, a, b, c, a; every predicted a is an a.
    assert evaluation.confusion[0].tolist() == [4, 1, 1]
    rows = evaluation.per_class()
    assert rows[0] == {"class": "a", "support": 6, "recall": 4 / 6, "precision": 1.0}

    write_outputs(evaluation, tmp_path)
    assert (tmp_path / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    with open(tmp_path / "per_class.csv") as file:
        assert [row["class"] for row in csv.DictReader(file)] == ["a", "b", "c"]
    summary = json.loads((tmp_path / "evaluation.json").read_text())
    assert summary["accuracy"] == evaluation.accuracy and summary["examples"] == 10


def test_evaluate_rejects_predictions_of_the_wrong_shape():
    images = np.zeros((2, 4, 4, 3), np.uint8)
    with pytest.raises(SystemExit, match=r"expected \(2, 5\) predictions"):
        evaluate(lambda batch: np.ones((len(batch), 3)), images, np.zeros(2, int), "abcde")


def test_load_test_set_names_classes_by_index_without_class_names(tmp_path):
    np.savez(
        tmp_path / "t.npz", image=np.zeros((3, 4, 4, 3), np.uint8), label=np.array([[0], [2], [1]])
    )
    images, labels, names = load_test_set(tmp_path / "t.npz")
    assert images.shape == (3, 4, 4, 3)
    assert labels.tolist() == [0, 2, 1] and names == ("0", "1", "2")


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", True),
        (None, True),
        ("10.0.0.1", False),
        ("sagemaker.us-east-1.amazonaws.com", False),
        ("203.0.113.7", False),
    ],
)
def test_network_guard_knows_loopback(host, local):
    assert network_guard.is_loopback(host) is local


def test_network_guard_refuses_and_records_a_public_address():
    before = len(network_guard.violations)
    with pytest.raises(network_guard.NetworkGuardError), socket.socket() as sock:
        sock.connect(("203.0.113.7", 443))
    with pytest.raises(network_guard.NetworkGuardError):
        socket.getaddrinfo("aws.amazon.com", 443)
    assert len(network_guard.violations) == before + 2
    del network_guard.violations[before:]  # refused on purpose: not this test's failure


def test_network_guard_covers_subprocesses(tmp_path):
    code = "import socket\ntry:\n    socket.create_connection(('aws.amazon.com', 443))\nexcept OSError as e:\n    print(e)"
    log = tmp_path / "guard.log"
    result = subprocess.run(
        [sys.executable, "-c", code], env=guarded_env(log), capture_output=True, text=True
    )
    assert "network guard" in result.stdout
    assert log.read_text() == "resolving 'aws.amazon.com'\n"


def test_bench_accuracy_resumes_a_run_from_the_epoch_its_checkpoints_or_backup_reached(tmp_path):
    from scripts.bench.accuracy import first_epoch

    assert first_epoch(tmp_path, "default") == first_epoch(tmp_path, "seed") == 1
    (tmp_path / "default-checkpoints").mkdir()
    for name in ("ckpt-0003-000000.npz", "ckpt-0004-000120.npz", ".ckpt-0009-000000.tmp"):
        (tmp_path / "default-checkpoints" / name).touch()
    (tmp_path / "seed-epochs.json").write_text('[{"epoch": 1}, {"epoch": 2}]')
    assert (first_epoch(tmp_path, "default"), first_epoch(tmp_path, "seed")) == (4, 3)


def test_bench_accuracy_reads_its_targets_in_seed_epochs():
    from scripts.bench.accuracy_report import curve, targets

    def run(accuracies, seconds, unit=100.0):
        epochs = [{"epoch": i + 1, "val_accuracy": a, "seconds": seconds} for i, a in enumerate(accuracies)]  # fmt: skip
        return {"epochs": epochs, "seed_epoch_s": unit, "measured": "now"}

    runs = {
        "default": run([0.5, 0.86, 0.88, 0.91], 2000.0),  # 20 seed-epochs an epoch
        "fast": run([0.55, 0.62], 40.0),  # 0.8 seed-epochs to 62%
        "seed": run([0.3, 0.6], 100.0),
    }
    assert curve(runs["fast"]) == [(0.4, 0.55), (0.8, 0.62)]
    resumed = run([0.55, 0.62], 40.0) | {"epochs": [{"epoch": 1, "val_accuracy": 0.55, "seconds": 40.0, "seed_epoch_s": 20.0}, {"epoch": 2, "val_accuracy": 0.62, "seconds": 40.0}]}  # fmt: skip
    assert curve(resumed) == [(2.0, 0.55), (2.4, 0.62)]  # epoch 1 ran on a day of 20 s seed-epochs
    measured = [(row["measured"], row["hit"]) for row in targets(runs)]
    # The best within 60 seed-epochs is epoch 3's (60); epoch 4 (80) is past it.
    assert measured == [(0.88, True), (0.88, False), (0.8, True), (0.91, True)]
    assert "(fast)" in targets(runs)[2]["target"]
    assert [row["hit"] for row in targets({})] == [None, None, None, None]
    # A budgeted run's process may outlast its budget by two minutes (loading, export).
    runs["fast"] |= {"budget_s": 100.0, "process_s": 190.0}
    assert targets(runs)[4] | {"target": ""} == {"target": "", "goal": "<= 120", "measured": 90.0, "hit": True}  # fmt: skip
    runs["fast"]["process_s"] = 221.0
    assert targets(runs)[4]["hit"] is False


def test_bench_accuracy_names_its_runs_and_every_ablation():
    from scripts.bench.accuracy import ABLATIONS, RUNS, selected_runs

    assert selected_runs("default, seed") == ["default", "seed"]
    ablations = selected_runs("fast,ablate")[1:]
    assert ablations == [f"ablate-{name}" for name in ABLATIONS] and "ablate-base" in ablations
    assert all(RUNS[name].budget == RUNS["ablate-base"].budget > 0 for name in ablations)
    with pytest.raises(SystemExit, match=r"unknown runs \['nope'\]"):
        selected_runs("default,nope")


def test_bench_serve_exports_each_preset_as_the_trainer_does(tmp_path):
    """The default serves flip TTA (twice the model's compute), so bench-serve times it so."""
    from sagevit.contract import METADATA_FILE
    from scripts.bench.serve import export_preset_model

    for preset, flipped in (("default", True), ("v1", False)):
        folder = export_preset_model(tmp_path / preset, preset)
        assert json.loads((folder / METADATA_FILE).read_text())["flip_tta"] is flipped, preset


def test_bench_accuracy_resumes_an_interrupted_run_and_then_starts_afresh(tmp_path):
    from sagevit.flags import parse_hyperparameters
    from sagevit.job import run
    from scripts.bench.accuracy import our_recipe

    channel = write_channel(tmp_path / "data")
    checkpoints = tmp_path / "default@2-checkpoints"
    # A run cut short after its first epoch leaves that epoch's checkpoint behind.
    hp = parse_hyperparameters(tiny_flags(epochs=1))
    first = run(hp, channel, tmp_path / "model", channel, checkpoint_dir=checkpoints)
    assert list(checkpoints.iterdir())

    result = our_recipe(channel, tmp_path, "default@2", tiny_flags(epochs=2))
    epochs = result["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[0] == {"epoch": 1, **first[0].metrics}  # resumed, not trained again
    assert not checkpoints.exists()  # the next measurement starts from scratch
    # The exported model, evaluated again on the same validation images, scores what the
    # last epoch's validation did; flip TTA is scored beside it.
    assert result["flip_tta"]["plain"] == pytest.approx(epochs[-1]["val_accuracy"], abs=1e-6)
    assert 0.0 <= result["flip_tta"]["flip_tta"] <= 1.0


def test_bench_train_counts_the_seed_models_flops_and_takes_medians():
    from sagevit.flags import parse_hyperparameters
    from scripts.bench.train import forward_flops, summarise

    seed = parse_hyperparameters(["--preset", "seed"])
    # 64 patches + a class token, 4 blocks of width 64: 21.8 MFLOP forward, 65 with backward.
    assert forward_flops(seed) == pytest.approx(21.8e6, rel=0.01)
    v1 = parse_hyperparameters(["--preset", "v1"])
    assert forward_flops(v1) == pytest.approx(43.5e6, rel=0.01)  # the conv stem doubles it
    # The hybrid: six 3x3 convs (64 to 256 wide) make 136 of its 170 MFLOP; 16 tokens are cheap.
    assert forward_flops(parse_hyperparameters([])) == pytest.approx(169.7e6, rel=0.01)
    # CCT-7/3x1: 1.18 G multiply-adds, as Hassani et al. 2021 (Table 1) give 1.19 G MACs.
    cct = parse_hyperparameters(["--preset", "cct-7-3x1"])
    assert forward_flops(cct) == pytest.approx(2.36e9, rel=0.01)

    rounds = {"seed": [[9.0, 2.0, 2.0], [9.0, 4.0]], "ours@seed": [[9.0, 1.0], [9.0, 1.5, 0.5]]}
    report = summarise(rounds, 400, {"nominal": 100.0, "matmul": 50.0})
    assert report["runs"]["seed"]["images_per_s"] == [200.0, 100.0]  # first epoch not timed
    assert report["runs"]["seed"]["median"] == 150.0
    assert report["runs"]["ours@seed"]["median"] == 400.0
    assert report["ratios"] == {"ours@seed / seed": pytest.approx(400 / 150)}
    gflops = 400.0 * 3 * forward_flops(seed) / 1e9
    assert report["runs"]["ours@seed"]["of_peak"] == pytest.approx(gflops / 100.0)


def test_the_notebooks_model_is_our_seed_architecture():
    from sagevit.flags import parse_hyperparameters
    from sagevit.model.vit import build_vit
    from scripts.seed_notebook import notebook_vit

    ours = build_vit(**parse_hyperparameters(["--preset", "seed"]).model_kwargs())
    notebook = notebook_vit()
    assert notebook.count_params() == ours.count_params() == 142_026
    assert sum(isinstance(layer, keras.layers.MultiHeadAttention) for layer in notebook.layers) == 4


def test_tune_prints_the_best_jobs_as_sagemaker_ranks_them():
    import boto3
    from botocore.stub import Stubber

    from scripts.sagemaker.tune import best_jobs, format_table

    client = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")  # fmt: skip
    summary = {"TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/x", "CreationTime": 0}
    answer = {"TrainingJobSummaries": [
        {**summary, "TrainingJobName": "sagevit-t-001", "TrainingJobStatus": "Completed",
         "TunedHyperParameters": {"learning_rate": "0.0012"},
         "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "val_accuracy", "Value": 0.71}},
        {**summary, "TrainingJobName": "sagevit-t-002", "TrainingJobStatus": "Stopped",
         "TunedHyperParameters": {"learning_rate": "0.0001"}},
    ]}  # fmt: skip
    expected = {"HyperParameterTuningJobName": "sagevit-t", "SortBy": "FinalObjectiveMetricValue",
                "SortOrder": "Descending", "MaxResults": 5}  # fmt: skip
    with Stubber(client) as stub:
        stub.add_response("list_training_jobs_for_hyper_parameter_tuning_job", answer, expected)
        rows = best_jobs(client, "sagevit-t")
    assert [(r["job"], r["val_accuracy"]) for r in rows] == [("sagevit-t-001", 0.71), ("sagevit-t-002", None)]  # fmt: skip
    table = format_table(rows).splitlines()
    assert "0.7100" in table[1] and "learning_rate=0.0012" in table[1] and table[2].split()[2] == "-"  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "payload", "timeout"),
    [("realtime", 6, 60), ("serverless", 4, 60), ("asynchronous", 100, 3600)],
)
def test_each_endpoint_mode_sets_limits_the_server_and_nginx_follow(tmp_path, mode, payload, timeout):  # fmt: skip
    from sagevit_serve.nginx import render
    from sagevit_serve.settings import from_environ
    from scripts.sagemaker import endpoint_modes

    make = getattr(endpoint_modes, mode)
    chosen = {
        "realtime": lambda: make("ml.m5.xlarge", 1),
        "serverless": lambda: make(4096),
        "asynchronous": lambda: make("s3://bucket/answers", "ml.m5.xlarge", 1),
    }[mode]()
    settings = from_environ(chosen.environment, cpus=2, gpu_files=[])
    assert (settings.max_payload_mb, settings.timeout) == (payload, timeout)
    conf = render(settings, tmp_path, tmp_path / "gunicorn.sock")
    assert f"client_max_body_size {payload}m;" in conf and f"proxy_read_timeout {timeout}s;" in conf


def test_serverless_limits_are_checked_before_any_aws_call():
    from scripts.sagemaker.endpoint_modes import serverless

    with pytest.raises(SystemExit, match="serverless memory is one of 1024, 2048"):
        serverless(8192)
    with pytest.raises(SystemExit, match="one of 1024"):
        serverless(1500)
    assert serverless(6144).serverless == {"memory_size_in_mb": 6144, "max_concurrency": 5}


def test_a_serverless_image_over_10_gb_is_refused():
    from types import SimpleNamespace

    import boto3
    from botocore.stub import Stubber

    from scripts.sagemaker.endpoint_modes import check_serverless_image

    ecr = boto3.client("ecr", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")  # fmt: skip
    session = SimpleNamespace(boto_session=SimpleNamespace(client=lambda *_, **__: ecr))
    uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sagevit:big"
    with Stubber(ecr) as stub:
        stub.add_response("describe_images", {"imageDetails": [{"imageSizeInBytes": 11 * 1024**3}]},
                          {"repositoryName": "sagevit", "imageIds": [{"imageTag": "big"}]})  # fmt: skip
        with pytest.raises(SystemExit, match=r"11\.0 GB; serverless endpoints take at most 10 GB"):
            check_serverless_image(session, uri)
        stub.add_response("describe_images", {"imageDetails": [{"imageSizeInBytes": 4 * 1024**3}]})
        check_serverless_image(session, uri)  # 4 GB: fine


def test_the_demo_lays_out_opt_ml_afresh_for_every_run(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from scripts.local import demo

    stale = tmp_path / "opt_ml" / "checkpoints" / "ckpt-0004-000000.npz"  # an earlier run's
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"a finished run, or another model's")
    monkeypatch.setattr(demo, "run_training", lambda image, opt_ml: SimpleNamespace(returncode=0))
    demo.train("sagevit:test", write_channel(tmp_path / "data"), tmp_path / "opt_ml", {"epochs": 1})
    assert not stale.exists()
    assert (tmp_path / "opt_ml" / "input" / "config" / "hyperparameters.json").is_file()


def test_async_and_transform_refuse_a_destination_that_is_not_s3():
    from scripts.sagemaker.endpoint_modes import asynchronous
    from scripts.sagemaker.transform import main as transform

    with pytest.raises(SystemExit, match="give the S3 prefix answers go to"):
        asynchronous("/tmp/answers", "ml.m5.xlarge", 1)
    with pytest.raises(SystemExit, match="give an S3 prefix"):
        transform(["--input", "/tmp/images"])  # before any session is made


def test_the_pretrained_channel_reaches_the_job_and_the_local_layout():
    from scripts.sagemaker.launch import job_channels

    channels = job_channels("b", None, "", "s3://b/weights/vit-b16/")
    assert channels == {"train": "s3://b/sagevit/data/train/", "pretrained": "s3://b/weights/vit-b16/"}  # fmt: skip
    with pytest.raises(SystemExit, match="--pretrained must be an s3:// prefix"):
        job_channels("b", None, None, "weights/")
    for target in ("train", "train-local"):  # an S3 prefix for one, a folder for the other
        dry = subprocess.run(
            ["make", "-n", target, "PRETRAINED=s3://b/w/", "HYPERPARAMETERS=preset=vit-ti16"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert "--pretrained s3://b/w/" in dry.stdout
        assert "--hyperparameter preset=vit-ti16" in dry.stdout


def test_time_budget_reaches_the_job_and_the_local_run_as_a_hyperparameter():
    for target in ("train", "train-local"):
        dry = subprocess.run(
            ["make", "-n", target, "TIME_BUDGET=3600"], capture_output=True, text=True, check=True
        )
        assert "--hyperparameter time-budget=3600" in dry.stdout


def test_only_could_not_find_means_an_endpoint_is_missing():
    """A throttled or malformed DescribeEndpoint is an error, not a missing endpoint
    (deploy would otherwise create one beside it)."""
    import botocore.exceptions

    from scripts.sagemaker.aws import describe_endpoint

    def failing(message: str):
        class Client:
            def describe_endpoint(self, EndpointName):  # boto3 spells it so
                error = {"Error": {"Code": "ValidationException", "Message": message}}
                raise botocore.exceptions.ClientError(error, "DescribeEndpoint")

        return Client()

    assert describe_endpoint(failing('Could not find endpoint "x".'), "x") is None
    with pytest.raises(botocore.exceptions.ClientError, match="1 validation error detected"):
        describe_endpoint(failing("1 validation error detected: EndpointName"), "x!")
