"""The folders a job writes: mount points (bind mounts included) and unwritable folders."""

from __future__ import annotations

import errno
import tempfile

import pytest
from conftest import tiny_flags, write_channel

from sagevit.errors import OutputError
from sagevit.flags import parse_hyperparameters
from sagevit.job import run
from sagevit.platform.outputs import ensure_writable, is_mount_point, mount_points

# Two lines of /proc/self/mountinfo as SageMaker SDK local mode leaves them in a container:
# /opt/ml/model bind-mounted from the host's disk, and a folder whose name has a space.
MOUNTINFO = """\
1310 1250 0:120 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/var/lib/docker/l
1320 1310 8:1 /tmp/tmpab12/model /opt/ml/model rw,relatime - ext4 /dev/sda1 rw
1321 1310 8:1 /tmp/my\\040data /opt/ml/input/data/my\\040channel rw,relatime - ext4 /dev/sda1 rw
"""


def test_mount_points_reads_mountinfo_with_its_escapes(tmp_path):
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO)
    assert mount_points(path) == {"/", "/opt/ml/model", "/opt/ml/input/data/my channel"}
    assert mount_points(tmp_path / "absent") == set()  # no /proc: nothing known


def test_is_mount_point_sees_this_machines_root_and_not_a_plain_folder(tmp_path):
    assert is_mount_point("/")
    assert not is_mount_point(tmp_path)


def test_ensure_writable_leaves_nothing_behind(tmp_path):
    ensure_writable(tmp_path / "a" / "b", "the model")  # made for the proof, then removed
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "c").mkdir()
    ensure_writable(tmp_path / "c", "the model")
    assert [p.name for p in tmp_path.iterdir()] == ["c"] and not list((tmp_path / "c").iterdir())


def fail_writes_in(monkeypatch, folder, code=errno.EROFS, reason="Read-only file system"):
    """mkstemp in `folder` fails as it does on a read-only mount (root ignores chmod)."""
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and str(dir).startswith(str(folder)):
            raise OSError(code, reason)
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr("sagevit.platform.outputs.tempfile.mkstemp", mkstemp)


@pytest.mark.parametrize("code, reason", [(errno.EROFS, "Read-only file system"), (errno.ENOSPC, "No space left on device")])  # fmt: skip
def test_an_unwritable_folder_is_one_sentence_naming_it(tmp_path, monkeypatch, code, reason):
    fail_writes_in(monkeypatch, tmp_path, code, reason)
    with pytest.raises(OutputError) as raised:
        ensure_writable(tmp_path / "checkpoints", "checkpoints")
    message = str(raised.value)
    assert message == f"cannot write checkpoints to {tmp_path / 'checkpoints'}: {reason}; mount it read-write, with space"  # fmt: skip
    assert "\n" not in message


def test_training_with_an_unwritable_output_folder_fails_before_it_trains(tmp_path, monkeypatch):
    """An hour of training must not end in a failed export: the folders are checked first."""
    channel = write_channel(tmp_path / "data")
    fail_writes_in(monkeypatch, tmp_path / "output")
    hp = parse_hyperparameters(tiny_flags(epochs=50))
    loaded = []
    monkeypatch.setattr("sagevit.job.load_data", lambda *args: loaded.append(args))
    with pytest.raises(OutputError, match=r"cannot write the reports to .*output/data"):
        run(hp, channel, tmp_path / "model", channel, output_data_dir=tmp_path / "output" / "data")
    assert loaded == []  # never reached the data
