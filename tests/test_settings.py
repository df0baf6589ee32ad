import pytest

from sagevit_serve.settings import from_environ


def test_defaults_respect_sagemaker_limits():
    s = from_environ({})
    assert (s.port, s.timeout, s.max_payload_mb, s.model_dir) == (8080, 60, 6.0, "/opt/ml/model")
    assert s.workers >= 1 and s.workers * s.intra_op_threads >= 1


def test_threads_split_the_cores_between_workers(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    s = from_environ({"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    assert (s.workers, s.intra_op_threads, s.inter_op_threads) == (2, 4, 1)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SAGEMAKER_BIND_TO_PORT", "http"),
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "0"),
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "big"),
    ],
)
def test_bad_settings_name_the_variable(name, value):
    with pytest.raises(ValueError, match=name):
        from_environ({name: value})
