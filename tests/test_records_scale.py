"""Record channels at scale: memory that does not grow with the data, and two hosts over a
ShardedByS3Key-shaped pair of channels that see every record once an epoch."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_LIMIT_S, tiny_flags
from PIL import Image

from sagevit.data.record_writer import write_channel
from scripts.local.server_process import free_ports

pytestmark = pytest.mark.slow
TESTS = Path(__file__).parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}  # fmt: skip


def jpeg_channel(folder: Path, count: int, size: int) -> Path:
    """`count` random size x size JPEGs (two classes) as a record channel."""
    rng = np.random.default_rng(count)

    def items():
        for number in range(count):
            buffer = io.BytesIO()
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(buffer, "JPEG", quality=80)
            yield str(number), buffer.getvalue(), number % 2

    write_channel(items(), folder, "train", ("a", "b"), shard_mb=16)
    return folder


PEAK = "import atexit, resource, runpy, sys; atexit.register(lambda: print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)); sys.argv[0] = 'sagevit-train'; runpy.run_module('sagevit.entry', run_name='__main__')"  # fmt: skip


def peak_training_memory(channel: Path, tmp_path: Path) -> int:
    """Peak RSS in bytes of `sagevit-train` streaming `channel` for a 15-second budget."""
    flags = tiny_flags(**{"image-size": 128, "patch-size": 16, "time-budget": 15, "epochs": 10, "num-classes": 2})  # fmt: skip
    command = [sys.executable, "-c", PEAK, "--train", str(channel), "--model-dir", str(tmp_path / f"model-{channel.name}"), *flags]  # fmt: skip
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=HANG_LIMIT_S)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("PEAK_KB")]
    return int(line.split()[1]) * 1024


def test_peak_memory_does_not_grow_with_the_dataset(tmp_path):
    """8,000 and 32,000 images of 128 x 128: their decoded pixels differ by 1.2 GB; the
    trainer's peak memory differs by a fraction of that (the shuffle buffer is bounded,
    nothing is cached)."""
    small = peak_training_memory(jpeg_channel(tmp_path / "small", 8_000, 128), tmp_path)
    large = peak_training_memory(jpeg_channel(tmp_path / "large", 32_000, 128), tmp_path)
    decoded_difference = 24_000 * 128 * 128 * 3
    assert large - small < decoded_difference / 4, (small, large)


def numbered_channel(folder: Path, count: int) -> Path:
    """`count` 8 x 8 PNGs whose first pixel spells the record's number (red + 256 * green)."""
    from sagevit.data.record_writer import png

    def items():
        for number in range(count):
            pixels = np.zeros((8, 8, 3), np.uint8)
            pixels[0, 0] = (number % 256, number // 256, 0)
            yield str(number), png(pixels), number % 2

    write_channel(items(), folder, "train", ("a", "b"), expected=(count, count * 100), shard_mb=count * 100 / 4 / 2**20)  # fmt: skip
    return folder


def test_two_hosts_over_sharded_by_key_channels_see_every_record_once_an_epoch(tmp_path):
    """The shards split between two hosts as ShardedByS3Key would; each host's channel holds
    only its shards, the index comes from the index channel; two epochs on loopback."""
    whole = numbered_channel(tmp_path / "whole", 640)
    shards = sorted(whole.glob("*.tfrecord"))
    assert len(shards) == 4
    hosts = [tmp_path / "host0", tmp_path / "host1"]
    for number, host in enumerate(hosts):
        host.mkdir()
        for shard in shards[number::2]:
            (host / shard.name).write_bytes(shard.read_bytes())
    cluster = [f"127.0.0.1:{port}" for port in free_ports(2)]
    workers = []
    for index, host in enumerate(hosts):
        config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
        command = [sys.executable, str(TESTS / "sharded_pipeline.py"), str(host), str(whole),
                   str(tmp_path / f"seen{index}.json"), "32", "2"]  # fmt: skip
        env = {**ENV, "TF_CONFIG": json.dumps(config)}
        workers.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))  # fmt: skip
    outputs = [worker.communicate(timeout=HANG_LIMIT_S)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], "\n".join(
        o[-3000:] for o in outputs
    )
    seen = [json.loads((tmp_path / f"seen{i}.json").read_text()) for i in range(2)]
    assert seen[0]["steps"] == seen[1]["steps"] == 320 // 16  # 320 a host, 16 a host a step
    assert [s["local"] for s in seen] == [320, 320]
    for epoch in range(2):
        numbers = seen[0]["epochs"][epoch] + seen[1]["epochs"][epoch]
        assert sorted(numbers) == list(range(640)), f"epoch {epoch + 1}"
    assert seen[0]["epochs"][0] != seen[0]["epochs"][1]  # reshuffled each epoch
