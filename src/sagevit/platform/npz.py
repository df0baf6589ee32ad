"""Read an .npz file without trusting it.

`numpy.load` opens whatever the path is (a FIFO blocks it forever), allocates what
an array's header declares before reading a byte of it (a 100-byte member can ask
for terabytes), and lets zlib's and zipfile's errors through. `read_npz` reads only
regular files, checks every member's header against the size the archive records
for it before reading its data, and turns every problem into one NpzError sentence.
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sagevit.platform.watchdog import no_beat


class NpzError(ValueError):
    """The file is not a readable .npz; the message is one sentence that names it."""


def require_regular_file(path: Path) -> None:
    """NpzError unless `path` is a regular file (following links): never a FIFO, a
    device or a directory, which would block a reader or fail it with a traceback."""
    mode = os.stat(path).st_mode  # stat does not open: safe on a FIFO
    if not stat.S_ISREG(mode):
        raise NpzError(f"{path} is not a regular file")


def read_npz(path: Path, beat: Callable[[], None] = no_beat) -> dict[str, np.ndarray]:
    """Every array in the .npz at `path`, by name; `beat()` after each one is read.
    FileNotFoundError if there is no such file; NpzError for anything else wrong."""
    require_regular_file(path)
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                name = member.filename.removesuffix(".npy")
                arrays[name] = _read_member(archive, member, path)
                beat()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
        if isinstance(error, NpzError | FileNotFoundError):
            raise
        raise NpzError(f"{path} is not a readable .npz file ({error})") from None
    return arrays


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, path: Path) -> np.ndarray:
    """One .npy member, read only once its header agrees with the size the zip records."""
    with archive.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        declared = stream.tell() + math.prod(shape) * dtype.itemsize
    if dtype.hasobject:
        raise NpzError(
            f"{path} is not a readable .npz file ('{member.filename}' holds Python objects, not numbers)"
        )
    if declared != member.file_size:
        raise NpzError(
            f"{path} is not a readable .npz file ('{member.filename}' declares shape {shape}"
            f" of {dtype}, {declared} bytes, but holds {member.file_size})"
        )
    with archive.open(member) as stream:
        try:
            return np.lib.format.read_array(stream, allow_pickle=False)
        except MemoryError:
            raise NpzError(
                f"{path}: '{member.filename}' ({declared} bytes) does not fit in memory"
            ) from None
