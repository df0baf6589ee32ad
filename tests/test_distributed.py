"""Distribution: TF_CONFIG from SageMaker's hosts, data shards, two logical CPUs, two workers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    HANG_LIMIT_S,
    epoch_numbers,
    in_process_probabilities,
    tiny_flags,
    wait_for,
    write_channel,
    write_image_tree,
)

import sagevit
from sagevit.data.channels import Split
from sagevit.data.pipeline import training_batches
from sagevit.entry import cluster_config
from sagevit.training.distribute import tf_config, worker_count
from scripts.local.server_process import free_ports

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
TESTS_PATH = os.pathsep.join([str(Path(__file__).parent), *sys.path])


def test_tf_config_makes_every_host_a_worker_and_the_first_the_chief():
    config = tf_config(["algo-1", "algo-2", "algo-3"], "algo-2")
    assert config == {
        "cluster": {"worker": ["algo-1:2222", "algo-2:2222", "algo-3:2222"]},
        "task": {"type": "worker", "index": 1},
    }
    assert worker_count(json.dumps(config)) == 3 and worker_count(None) == 1
    with pytest.raises(ValueError, match="algo-9"):
        tf_config(["algo-1", "algo-2"], "algo-9")


def test_cluster_config_makes_tf_config_only_for_several_hosts_and_never_exports_it(
    monkeypatch,
):
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != "TF_CONFIG"})
    assert cluster_config(["algo-1"], "algo-1") is None
    made = json.loads(cluster_config(["algo-1", "algo-2"], "algo-2"))
    assert made["task"]["index"] == 1
    # The JSON is handed down to the strategy: nothing reads or writes the variable.
    assert "TF_CONFIG" not in os.environ
    given = '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"index": 0}}'
    assert cluster_config(["algo-1", "algo-2"], "algo-1", given) == given


def shapes_split(count: int):
    """A Split whose label is each example's index, to follow examples through batches."""
    images = np.zeros((count, 4, 4, 3), np.uint8)
    return Split(images, np.arange(count, dtype=np.int32), None, Path("."), image_size=4)


def test_workers_get_disjoint_shards_and_the_same_number_of_steps():
    split = shapes_split(103)
    steps = 103 // 8  # global batch 8: 12 steps an epoch

    def labels(batches):
        return [np.argmax(targets, axis=-1).tolist() for _, targets in batches]

    def batches(index: int, skip_steps: int = 0) -> list:
        context = tf.distribute.InputContext(  # two workers, two replicas each: 4 replicas
            num_input_pipelines=2, input_pipeline_id=index, num_replicas_in_sync=4
        )
        return labels(training_batches(split, context, global_batch_size=8, steps_per_epoch=steps,
                                       epochs=range(1, 2), skip_steps=skip_steps, num_classes=103,
                                       seed=42))  # fmt: skip

    seen = [batches(0), batches(1)]
    assert len(seen[0]) == len(seen[1]) == 2 * steps  # 2 local replicas a step
    first, second = ({x for b in worker for x in b} for worker in seen)
    assert not first & second  # no example on both workers
    assert all(len(b) == 2 for worker in seen for b in worker)  # 8 / 4 replicas
    assert batches(0, skip_steps=5) == seen[0][10:]  # 5 steps = 10 local batches


MIRRORED = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import sagevit.job
sagevit.job.choose_strategy = lambda tf_config=None: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
import sys
import sagevit.entry
sys.exit(sagevit.entry.main(sys.argv[1:]))
"""


def losses(output: str) -> list[float]:
    return [float(x) for x in re.findall(r" epoch=\d+ loss=([0-9.]+)", output)]


def test_importing_the_trainer_leaves_tensorflow_unstarted():
    """MultiWorkerMirroredStrategy configures collective ops at startup; a tensor built when a
    module is imported starts TensorFlow first, and every multi-host job then dies with
    "Collective ops must be configured at program startup"."""
    src = Path(sagevit.__file__).parent.parent
    files = Path(sagevit.__file__).parent.rglob("*.py")  # every wing's modules too
    modules = sorted(".".join(f.relative_to(src).with_suffix("").parts).removesuffix(".__init__") for f in files)  # fmt: skip
    code = (
        "import importlib, tensorflow as tf\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "tf.config.threading.set_intra_op_parallelism_threads(1)  # raises once started\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus_trains_and_exports(channel, tmp_path):
    """The several-GPUs path, on two logical CPU devices (no GPU here)."""
    command = [sys.executable, "-c", MIRRORED, "--train", str(channel), "--validation", str(channel),
               "--model-dir", str(tmp_path / "model"), *tiny_flags(epochs=3)]  # fmt: skip
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "2 replica(s)" in output
    loss = losses(output)
    assert len(loss) == 3 and loss[-1] < loss[0]
    assert (tmp_path / "model/vit.keras").is_file()


@pytest.fixture(scope="module")
def worker_channel(tmp_path_factory) -> Path:
    return write_channel(tmp_path_factory.mktemp("workers"), train_count=512, test_count=64)


def start_workers(
    channel: Path,
    tmp_path: Path,
    epochs: int,
    *extra: str,
    train: Sequence[Path] = (),
    hang: Sequence[str] = (),
) -> list[tuple[subprocess.Popen, Path]]:
    """Two `sagevit-train` processes on 127.0.0.1, each with its own model dir and log,
    and `train[i]` as worker i's train channel if given (else `channel`). Worker 1's
    reads of the image files named in `hang` never return."""
    cluster = [f"127.0.0.1:{port}" for port in free_ports(2)]
    workers = []
    for index in range(2):
        config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
        log = tmp_path / f"worker{index}-{time.monotonic_ns()}.log"
        train_dir = train[index] if train else channel
        program = ["-m", "sagevit.entry"]
        env = {**ENV, "TF_CONFIG": json.dumps(config), "TMPDIR": str(tmp_path)}
        if hang and index == 1:  # tests/hanging_reads.py
            program = ["-c", "import hanging_reads; hanging_reads.cli()"]
            env |= {"SAGEVIT_TEST_HANG": ",".join(hang), "PYTHONPATH": TESTS_PATH}
        command = [sys.executable, *program, "--train", str(train_dir), "--validation", str(channel),
                   "--model-dir", str(tmp_path / f"model{index}"), *tiny_flags(epochs=epochs), *extra]  # fmt: skip
        with open(log, "w") as out:
            workers.append(
                (subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT), log)
            )
    return workers


@pytest.mark.slow
def test_two_workers_on_loopback_train_one_model(worker_channel, tmp_path):
    workers = start_workers(worker_channel, tmp_path, epochs=3)
    codes = [process.wait(timeout=900) for process, _ in workers]
    outputs = [log.read_text() for _, log in workers]
    assert codes == [0, 0], "\n".join(o[-2000:] for o in outputs)
    chief, other = (losses(o) for o in outputs)
    assert len(chief) == 3 and chief[-1] < chief[0]
    assert chief == other  # one model: both workers report the same all-reduced figures
    assert "2 replica(s)" in outputs[0]
    assert (tmp_path / "model0/vit.keras").is_file()  # the chief's
    assert not (tmp_path / "model1").exists()  # the other wrote to scratch, then removed it
    assert not list(tmp_path.glob("sagevit-worker-*"))

    from sagevit_serve.predictor import Predictor

    images = np.random.default_rng(0).uniform(0, 255, (5, 32, 32, 3)).astype("float32")
    served = Predictor.load(tmp_path / "model0").predict(images)
    np.testing.assert_allclose(served, in_process_probabilities(tmp_path / "model0", images), atol=1e-5)  # fmt: skip


@pytest.mark.slow
def test_a_dead_worker_fails_the_job_with_a_clear_message(worker_channel, tmp_path):
    workers = start_workers(worker_channel, tmp_path, epochs=200)
    (chief, chief_log), (other, other_log) = workers
    wait_for(chief_log, " epoch=1 loss=", chief, also=[other_log])
    other.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    code = chief.wait(timeout=HANG_LIMIT_S)  # bounded: health checks find the dead peer
    print(f"\nthe chief exited {time.monotonic() - killed:.0f} s after the other worker died")
    assert code == 1, chief_log.read_text()[-3000:]
    assert "lost another training host" in chief_log.read_text()


@pytest.mark.slow
def test_a_stuck_worker_fails_the_job_instead_of_hanging(tmp_path):
    """A worker that is alive but stuck (here on a file that never answers) keeps
    heartbeating while the other waits for it in a collective: the stall watchdog
    fails the job instead of letting it hang until max_run."""
    healthy = write_image_tree(tmp_path / "healthy", sizes=[(32, 32)] * 16)
    stuck = write_image_tree(tmp_path / "stuck", sizes=[(32, 32)] * 16)
    # The 2nd and 3rd files in order: whichever of its two shards worker 1 reads
    # (its own channel; worker 0 reads the healthy one), one of them is in it.
    hang = ("1.png", "10.png")
    flags = ("--num-classes", "2", "--batch-size", "8", "--stall-timeout", "20")
    workers = start_workers(healthy, tmp_path, 50, *flags, train=[healthy, stuck], hang=hang)
    started = time.monotonic()
    codes = [process.wait(timeout=HANG_LIMIT_S) for process, _ in workers]
    print(f"\nboth workers exited within {time.monotonic() - started:.0f} s of starting")
    outputs = [log.read_text() for _, log in workers]
    assert codes == [1, 1], "\n".join(o[-2000:] for o in outputs)
    assert "no training step finished in" in outputs[1]  # the stuck one's own watchdog
    # The chief, waiting in a collective, fails by its own watchdog or on hearing
    # that the stuck worker is gone, whichever comes first.
    assert re.search(r"no training step finished in|lost another training host", outputs[0])
    assert not (tmp_path / "model0").exists()


def threads(process: subprocess.Popen) -> int:
    return int(re.search(r"Threads:\s+(\d+)", Path(f"/proc/{process.pid}/status").read_text())[1])


@pytest.mark.slow
def test_sigterm_stops_both_workers_at_one_step_and_both_resume(worker_channel, tmp_path):
    checkpoints = tmp_path / "checkpoints"  # shared, as SageMaker syncs one S3 prefix to all hosts
    workers = start_workers(worker_channel, tmp_path, 200, "--checkpoint-dir", str(checkpoints))
    (chief, chief_log), (other, other_log) = workers
    wait_for(chief_log, " epoch=2 loss=", chief, also=[other_log])
    other.send_signal(signal.SIGTERM)  # one worker's signal is enough: they agree
    codes = [process.wait(timeout=HANG_LIMIT_S) for process, _ in workers]
    assert codes == [0, 0], "\n".join(log.read_text()[-2000:] for _, log in workers)
    stopped = max(p.name for p in checkpoints.glob("ckpt-*.npz"))
    epoch = int(stopped[5:9])
    assert epoch >= 3 and not stopped.endswith("-000000.npz")  # mid-epoch, on the signal

    # Resumed with one more epoch to go, so the test ends soon (the schedule gets shorter).
    workers = start_workers(
        worker_channel, tmp_path, epoch + 1, "--checkpoint-dir", str(checkpoints)
    )
    codes = [process.wait(timeout=600) for process, _ in workers]
    outputs = [log.read_text() for _, log in workers]
    assert codes == [0, 0], "\n".join(o[-2000:] for o in outputs)
    for output in outputs:
        assert f"resuming from {stopped}" in output
        assert epoch_numbers(output) == [epoch, epoch + 1]
    assert (tmp_path / "model0/vit.keras").is_file() and not (tmp_path / "model1").exists()


@pytest.mark.slow
def test_two_workers_do_not_leak_threads(worker_channel, tmp_path):
    workers = start_workers(worker_channel, tmp_path, 200)
    (chief, chief_log), (_, other_log) = workers
    try:
        wait_for(chief_log, " epoch=2 loss=", chief, also=[other_log])
        before = threads(chief)
        wait_for(chief_log, " epoch=6 loss=", chief, also=[other_log])
        grown = threads(chief) - before
        print(f"\nchief threads: {before} at epoch 2, {before + grown} at epoch 6")
    finally:
        for process, _ in workers:
            process.kill()
            process.wait(timeout=60)
    assert grown < 10, f"{grown} threads more after 4 epochs of 16 steps"
