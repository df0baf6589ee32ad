import pytest

from sagevit_serve.settings import from_environ


def test_defaults_respect_sagemaker_limits():
    s = from_environ({})
    assert (s.port, s.timeout, s.max_payload_mb, s.model_dir) == (8080, 60, 6.0, "/opt/ml/model")
    assert s.workers >= 1 and s.workers * s.intra_op_threads >= 1


def test_the_worker_timeout_is_liveness_never_shorter_than_a_request():
    """gunicorn's timeout restarts a worker whose main loop stops beating; gthread beats
    about once a second, so a timeout near the request timeout's 1 s would restart healthy
    workers (it did, on a slow day). It follows a longer request timeout, never a shorter one."""
    assert from_environ({}).worker_timeout == 60
    assert from_environ({"SAGEMAKER_MODEL_SERVER_TIMEOUT": "1"}).worker_timeout == 60
    assert from_environ({"SAGEMAKER_MODEL_SERVER_TIMEOUT": "3600"}).worker_timeout == 3600
    assert from_environ({"SAGEVIT_WORKER_TIMEOUT": "10"}).worker_timeout == 10
    with pytest.raises(ValueError, match="SAGEVIT_WORKER_TIMEOUT must be from 10"):
        from_environ({"SAGEVIT_WORKER_TIMEOUT": "2"})


def test_gunicorn_drains_inside_sagemakers_sigterm_window():
    """SageMaker sends SIGKILL 30 s after SIGTERM: in-flight requests must end before."""
    from sagevit_serve import gunicorn_conf

    assert gunicorn_conf.graceful_timeout + 5 <= 30
    assert gunicorn_conf.timeout == gunicorn_conf._s.worker_timeout


def test_batching_defaults_wait_at_most_2_ms():
    s = from_environ({})
    assert (s.threads, s.batch_wait_ms) == (8, 2)
    assert from_environ({"SAGEVIT_BATCH_WAIT_MS": "0"}).batch_wait_ms == 0  # never wait


def test_each_worker_may_use_twice_its_share_of_the_cores_at_most_all():
    s = from_environ({"SAGEMAKER_MODEL_SERVER_WORKERS": "2"}, cpus=8, gpu_files=[])
    assert (s.workers, s.intra_op_threads, s.inter_op_threads) == (2, 8, 1)
    assert from_environ({"SAGEMAKER_MODEL_SERVER_WORKERS": "4"}, cpus=8).intra_op_threads == 4
    assert from_environ({"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}, cpus=8).intra_op_threads == 8
    assert from_environ({"SAGEMAKER_MODEL_SERVER_WORKERS": "5"}, cpus=2).intra_op_threads == 1


def test_default_workers_one_per_cpu_of_the_quota_without_gpus():
    s = from_environ({}, cpus=3, gpu_files=[])
    assert (s.workers, s.intra_op_threads, s.gpus) == (3, 2, [])


def test_default_workers_one_per_gpu_with_the_cores_shared_between_them():
    s = from_environ({}, cpus=16, gpu_files=["nvidia0", "nvidia1", "nvidia2", "nvidia3"])
    assert (s.workers, s.intra_op_threads, s.gpus) == (4, 8, ["0", "1", "2", "3"])


def test_cuda_visible_devices_chooses_the_gpus():
    s = from_environ({"CUDA_VISIBLE_DEVICES": "2, 3"}, cpus=8, gpu_files=["nvidia0"])
    assert (s.workers, s.gpus) == (2, ["2", "3"])
    hidden = from_environ({"CUDA_VISIBLE_DEVICES": "-1"}, cpus=8, gpu_files=["nvidia0"])
    assert (hidden.workers, hidden.gpus) == (8, [])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SAGEMAKER_BIND_TO_PORT", "http"),
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "0"),
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "big"),
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "0.5"),  # batch transform would read 0: unlimited
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "0"),
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "101"),
        ("SAGEMAKER_BIND_TO_PORT", "70000"),
        ("SAGEMAKER_BIND_TO_PORT", "٣"),
        ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "9" * 5000),
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "-1"),
        ("SAGEVIT_WORKER_THREADS", "0"),
        ("SAGEVIT_BATCH_WAIT_MS", "1.5"),
        ("SAGEVIT_BATCH_WAIT_MS", "5000"),
    ],
)
def test_bad_settings_name_the_variable(name, value):
    with pytest.raises(ValueError, match=name):
        from_environ({name: value})


def test_serve_stops_on_a_bad_setting_with_one_line():
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "0.5"}
    result = subprocess.run(
        [sys.executable, "-m", "sagevit_serve.cli"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "serve: SAGEMAKER_MAX_PAYLOAD_IN_MB must be a whole number, got '0.5'"
    ]
