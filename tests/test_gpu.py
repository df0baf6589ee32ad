"""GPU truth at start-up, the container's CPU share, the CUDA library pins and `make gpu-check`'s
verdicts. Both sides of "given GPUs, TensorFlow sees none" are simulated with a folder that
holds (or lacks) an nvidia0 device file; the image-level checks are in test_container.py."""

from __future__ import annotations

import dataclasses
import os
import re
import types
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, tiny_flags

from sagevit.errors import GpuUnavailable
from sagevit.flags import parse_hyperparameters
from sagevit.job import run
from sagevit.platform import cuda_libs
from sagevit.platform.gpu import Device, device_report, diagnose, require_gpus
from sagevit.platform.machine import available_cpus, given_gpus
from scripts.local import gpu_check

H100 = Device("GPU:0", "NVIDIA H100 80GB HBM3", (9, 0))


def fake_dev(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / name).touch()
    return tmp_path


def test_given_gpus_are_the_numbered_nvidia_device_files(tmp_path):
    dev = fake_dev(tmp_path, "nvidia10", "nvidia2", "nvidiactl", "nvidia-uvm", "null")
    assert given_gpus(dev) == ["nvidia2", "nvidia10"]
    assert given_gpus(tmp_path / "absent") == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "150000 100000\n"}, 1),  # --cpus 1.5: one whole CPU
        ({"cpu.max": "400000 100000\n"}, 4),
        ({"cpu.max": "50000 100000\n"}, 1),  # never zero
        ({"cpu.max": "max 100000\n"}, None),  # no quota: the affinity decides
        ({"cpu/cpu.cfs_quota_us": "200000", "cpu/cpu.cfs_period_us": "100000"}, 2),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
        ({}, None),
    ],
)
def test_available_cpus_follow_the_cgroup_quota(tmp_path, monkeypatch, files, expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert available_cpus(tmp_path) == (8 if expected is None else expected)


def test_available_cpus_follow_the_affinity_under_a_larger_quota(tmp_path, monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    (tmp_path / "cpu.max").write_text("800000 100000")
    assert available_cpus(tmp_path) == 2


def test_cuda_pins_are_the_lower_bounds_of_tensorflows_and_cuda_extra():
    bounds = {}
    for requirement in metadata.requires("tensorflow"):
        if 'extra == "and-cuda"' in requirement:
            name, low = re.match(r"([\w.-]+).*?>=([\d.]+)", requirement).groups()
            bounds[name.lower()] = low
    pins = dict(
        line.split("==")
        for line in (ROOT / "docker" / "cuda-requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert pins == bounds


def test_required_versions_come_from_the_build_info_and_the_extra():
    required = cuda_libs.required_versions()
    assert required["cudart"] == (12, 5)  # build info: CUDA 12.5.1
    assert required["cudnn"] == (9, 3, 0)
    assert required["cusolver"] == (11, 6, 3)
    assert set(required) == {lib.name for lib in cuda_libs.LIBRARIES}


@pytest.mark.parametrize(
    ("version", "required", "compatible"),
    [((12, 5, 3), (12, 5, 3), True), ((12, 9, 1), (12, 5, 3), True), ((12, 3, 4), (12, 5, 3), False),
     ((13, 0, 0), (12, 5, 3), False), ((12, 5), (12, 5), True), ((9, 3, 0), (9, 3, 0), True),
     ((8, 9, 6), (9, 3, 0), False), (None, (9, 3, 0), False)],
)  # fmt: skip
def test_a_library_is_compatible_with_the_same_major_and_no_older(version, required, compatible):
    lib = cuda_libs.Loaded("x", "libx.so", path="/x", version=version, required=required)
    assert lib.compatible is compatible


def test_libraries_load_through_tensorflows_loader_or_report_why_not():
    """Here, without CUDA: every library is reported missing, with a reason, not raised."""
    for lib in cuda_libs.load_libraries():
        assert (lib.path is None) == (lib.error is not None)
        assert lib.required is not None
        assert lib.describe().startswith(lib.soname)


def cudnn_missing() -> list[cuda_libs.Loaded]:
    ok = cuda_libs.Loaded("cudart", "libcudart.so.12", "/o/libcudart.so.12", (12, 5), (12, 5))
    old = cuda_libs.Loaded(
        "cublas", "libcublas.so.12", "/usr/local/cuda/libcublas.so.12", (12, 3, 4), (12, 5, 3)
    )
    missing = cuda_libs.Loaded("cudnn", "libcudnn.so.9", None, None, (9, 3, 0), error="no")
    return [ok, missing, old]  # fmt: skip


def test_diagnosis_names_the_first_missing_piece():
    assert "libcuda.so.1 is not in the container" in diagnose(None, cudnn_missing())
    assert "CUDA's stub" in diagnose("/usr/local/cuda/lib64/stubs/libcuda.so.1", [])
    assert diagnose("/usr/lib/libcuda.so.1", cudnn_missing()).startswith(
        "it cannot load libcudnn.so.9 (it was built for CUDA 12.5.1 and cuDNN 9)"
    )
    old = diagnose("/usr/lib/libcuda.so.1", cudnn_missing()[::2])
    assert "libcublas.so.12 is version 12.3.4" in old and "12.5.3 or newer" in old
    assert "every CUDA library" in diagnose("/usr/lib/libcuda.so.1", cudnn_missing()[:1])


def test_given_gpus_that_tensorflow_cannot_use_fail_in_one_sentence():
    with pytest.raises(GpuUnavailable) as raised:
        require_gpus(
            ["nvidia0"], [], allow_cpu=False, reason=lambda: "it cannot load libcudnn.so.9"
        )
    message = str(raised.value)
    assert message.startswith("This container was given GPUs (/dev/nvidia0) but TensorFlow")
    assert "libcudnn.so.9" in message and message.endswith(
        "--allow-cpu True to train on the CPU anyway."
    )
    assert message.count(". ") == 0 and "\n" not in message


def test_the_cpu_is_fine_when_allowed_not_given_gpus_or_when_tensorflow_sees_them(caplog):
    never = lambda: pytest.fail("no diagnosis needed")  # noqa: E731
    require_gpus([], [], allow_cpu=False, reason=never)
    require_gpus(["nvidia0"], [H100], allow_cpu=False, reason=never)
    with caplog.at_level("WARNING", logger="sagevit.platform.gpu"):
        require_gpus(["nvidia0"], [], allow_cpu=True, reason=lambda: "driver missing")
    assert "driver missing; running on the CPU instead" in caplog.text


def test_device_report_names_each_gpu_its_capability_and_cudnn():
    lines = device_report(["nvidia0"], [H100], "9.3.0", 16)
    assert "sees 1 GPU(s) (GPU devices given: /dev/nvidia0)" in lines[0]
    assert "built for CUDA 12.5.1, cuDNN 9" in lines[0]
    assert lines[1].split() == [
        "GPU:0",
        "NVIDIA",
        "H100",
        "80GB",
        "HBM3",
        "compute",
        "capability",
        "9.0",
        "cuDNN",
        "9.3.0",
    ]
    cpu = device_report([], [], "-", 2)
    assert cpu == [cpu[0]] and cpu[0].endswith(
        "sees no GPU (GPU devices given: none); running on 2 CPU(s)"
    )


def test_training_given_a_gpu_it_cannot_use_stops_before_loading_data(tmp_path):
    hp = parse_hyperparameters(tiny_flags())
    with pytest.raises(GpuUnavailable, match=r"given GPUs \(/dev/nvidia0\)"):
        run(hp, tmp_path / "no-data", tmp_path / "model", dev_dir=fake_dev(tmp_path, "nvidia0"))


def test_training_given_a_gpu_trains_on_the_cpu_with_allow_cpu(channel, tmp_path, caplog):
    hp = parse_hyperparameters([*tiny_flags(), "--allow-cpu", "True"])
    with caplog.at_level("INFO", logger="sagevit"):
        history = run(hp, channel, tmp_path / "model", dev_dir=fake_dev(tmp_path, "nvidia0"))
    assert [r.epoch for r in history] == [1]
    assert "sees no GPU (GPU devices given: /dev/nvidia0)" in caplog.text
    assert re.search(r"weights on \S*device:CPU:0", caplog.text)


def test_gunicorn_spreads_workers_over_the_gpus_and_pins_each(monkeypatch):
    from sagevit_serve import gunicorn_conf

    monkeypatch.setattr(gunicorn_conf, "_s", dataclasses.replace(gunicorn_conf._s, gpus=["0", "1"]))
    server = types.SimpleNamespace(WORKERS={}, log=types.SimpleNamespace(info=lambda *a: None))
    assigned = []
    for pid in range(5):
        worker = types.SimpleNamespace(pid=pid)
        gunicorn_conf.pre_fork(server, worker)
        server.WORKERS[pid] = worker
        assigned.append(worker.sagevit_gpu)
    assert assigned == ["0", "1", "0", "1", "0"]
    del server.WORKERS[1]  # a worker on GPU 1 died: its replacement goes there
    replacement = types.SimpleNamespace(pid=5, notify=lambda: None)
    gunicorn_conf.pre_fork(server, replacement)
    assert replacement.sagevit_gpu == "1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    gunicorn_conf.post_fork(server, replacement)
    gunicorn_conf.post_worker_init(replacement)  # ends post_fork's loading heartbeat
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"


def test_gunicorn_pins_nothing_without_gpus(monkeypatch):
    from sagevit_serve import gunicorn_conf

    monkeypatch.setattr(gunicorn_conf, "_s", dataclasses.replace(gunicorn_conf._s, gpus=[]))
    worker = types.SimpleNamespace(pid=1, notify=lambda: None)
    gunicorn_conf.pre_fork(types.SimpleNamespace(WORKERS={}), worker)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gunicorn_conf.post_fork(None, worker)
    gunicorn_conf.post_worker_init(worker)
    assert worker.sagevit_gpu is None and "CUDA_VISIBLE_DEVICES" not in os.environ


GOOD_TRAINING_LOG = """
sagevit.platform.gpu: TensorFlow 2.21.0 (built for CUDA 12.5.1, cuDNN 9) sees 1 GPU(s) (GPU devices given: /dev/nvidia0):
sagevit.job: compute dtype bfloat16, XLA on
sagevit.job: training vit (1000 parameters) on 9000 examples, validating on 0, 1 replica(s), weights on /job:localhost/replica:0/task:0/device:GPU:0
sagevit.training.loop: epoch=1 loss=2.0 accuracy=0.3
"""


def test_gpu_check_reads_the_training_log():
    assert gpu_check.training_problems(GOOD_TRAINING_LOG) == []
    on_cpu = GOOD_TRAINING_LOG.replace("sees 1 GPU(s)", "sees no GPU").replace("GPU:0", "CPU:0")
    on_cpu = on_cpu.replace("bfloat16, XLA on", "float32, XLA off")
    assert gpu_check.training_problems(on_cpu) == [
        "the device table lists no GPU",
        "mixed precision or XLA is off",
        "the weights (and the training step) are not on a GPU",
    ]


def test_gpu_check_reads_the_device_report():
    lib = {"soname": "libcudnn.so.9", "used_by_tensorflow": True, "compatible": False,
           "version": None, "required": [9, 3, 0]}  # fmt: skip
    unused = dict(lib, soname="libcurand.so.10", used_by_tensorflow=False)
    assert gpu_check.report_problems({"gpus": [], "libraries": [lib, unused]}) == [
        "TensorFlow sees no GPU",
        "libcudnn.so.9: missing, TensorFlow wants 9.3.0",
    ]
    good = dict(lib, compatible=True, version=[9, 3, 0])
    assert gpu_check.report_problems({"gpus": [{"name": "GPU:0"}], "libraries": [good]}) == []


def test_gpu_check_compares_served_probabilities():
    cpu = np.array([[0.7, 0.3], [0.1, 0.9]])
    assert gpu_check.prediction_problems(cpu + 0.01, cpu, atol=0.02) == []
    assert gpu_check.prediction_problems(cpu[::-1], cpu, atol=0.02) == [
        "probabilities differ by up to 0.6000 > 0.02"
    ]
    assert "shapes differ" in gpu_check.prediction_problems(cpu[:1], cpu, atol=0.02)[0]
