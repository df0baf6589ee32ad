"""The folders a job writes (model, output data, TensorBoard, checkpoints), whatever is mounted there.

SageMaker, and both SDKs' local modes, mount /opt/ml/model, /opt/ml/output,
/opt/ml/output/data, /opt/ml/input and /opt/ml/checkpoints as volumes of their own,
from the same filesystem as their parent or another one, read-write or (by mistake)
read-only. Two things follow:

* a rename works only within one mount, so a file or folder that must appear whole
  is staged *inside* the folder it goes to (`is_mount_point` says when the folder
  itself cannot be renamed);
* a folder the job cannot write should fail the job in its first second, in one
  sentence, and not after an hour of training (`ensure_writable`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sagevit.errors import OutputError

MOUNTINFO = Path("/proc/self/mountinfo")


def ensure_writable(folder: str | Path, what: str) -> None:
    """Prove `folder` writable with a scratch file, creating it for the proof and removing
    again what the proof created (a job that fails later leaves no empty model folder);
    raise OutputError naming `what` (e.g. "the model") and the reason if not writable."""
    folder = Path(folder).absolute()
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, scratch = tempfile.mkstemp(prefix=".sagevit-probe-", dir=folder)
        os.close(handle)
        os.unlink(scratch)
    except OSError as error:
        raise unwritable(folder, what, error) from None
    finally:
        for path in created:
            try:
                path.rmdir()
            except OSError:
                break  # not ours any more (something else wrote into it)


def unwritable(folder: Path, what: str, error: OSError) -> OutputError:
    """The one-sentence error for an OSError met while writing `what` into `folder`."""
    reason = error.strerror or str(error)
    return OutputError(
        f"cannot write {what} to {folder}: {reason}; mount it read-write, with space"
    )


def is_mount_point(path: str | Path) -> bool:
    """Whether `path` is a mount point, bind mounts from the same filesystem included
    (which `Path.is_mount()`, comparing devices, misses): then it cannot be renamed."""
    path = Path(path)
    if path.is_mount():
        return True
    return str(path.resolve()) in mount_points()


def mount_points(mountinfo: Path = MOUNTINFO) -> set[str]:
    """Every mount point of this process's mount namespace (none where /proc lacks it).
    mountinfo's fifth field is the mount point, with space, tab, newline and backslash
    written as octal escapes (`\\040`)."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return set()
    return {_unescape(line.split()[4]) for line in lines if len(line.split()) > 4}


def _unescape(field: str) -> str:
    for code in ("040", "011", "012", "134"):
        field = field.replace(f"\\{code}", chr(int(code, 8)))
    return field
