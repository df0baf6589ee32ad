"""Read published weight files without trusting them: safetensors and .npz.

safetensors (what Hugging Face and timm publish): 8 bytes of little-endian header
length, a JSON header `{name: {"dtype", "shape", "data_offsets": [begin, end]}}`,
then the raw little-endian tensor bytes. The format is simple enough to read in
this page with numpy, which spares the image a dependency (and the Rust wheel the
`safetensors` package is); the tests check this reader against that package's writer.
Every header entry is checked against the file before any tensor is read, and every
problem is one WeightFileError sentence that names the file.

.npz (what Google's big_vision and vision_transformer publish) goes through the
project's guarded reader, `sagevit.platform.npz`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import ml_dtypes  # TensorFlow's own dependency: numpy's bfloat16
import numpy as np

from sagevit.platform.npz import NpzError, read_npz, require_regular_file

# safetensors dtype names -> numpy dtypes (all little-endian)
DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
MAX_HEADER_BYTES = 100 << 20  # the reference implementation's own limit
SUFFIXES = (".safetensors", ".npz")


class WeightFileError(ValueError):
    """A weight file cannot be read; the message is one sentence that names it."""


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors or .npz file, by name, as numpy arrays."""
    path = Path(path)
    try:
        require_regular_file(path)
        if path.suffix == ".npz":
            return read_npz(path)
    except NpzError as error:
        raise WeightFileError(str(error)) from None
    except FileNotFoundError:  # a dangling link
        raise WeightFileError(f"{path} does not exist") from None
    if path.suffix != ".safetensors":
        raise WeightFileError(f"{path} is neither a .safetensors nor an .npz file")
    return read_safetensors(path)


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of one safetensors file (floating point ones as float32)."""
    data = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else b""
    if len(data) < 8:
        raise WeightFileError(f"{path} is too short to be a safetensors file")
    length = int.from_bytes(bytes(data[:8]), "little")
    if length > min(MAX_HEADER_BYTES, len(data) - 8):
        raise WeightFileError(f"{path}: a header of {length} bytes does not fit the file")
    try:
        header = json.loads(bytes(data[8 : 8 + length]))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WeightFileError(f"{path}: the header is not JSON") from None
    if not isinstance(header, dict):
        raise WeightFileError(f"{path}: the header is not a JSON object")
    header.pop("__metadata__", None)
    body = data[8 + length :]
    return {name: _tensor(path, name, entry, body) for name, entry in header.items()}


def _tensor(path: Path, name: str, entry: object, body: np.ndarray) -> np.ndarray:
    """One header entry's tensor, after checking the entry against the file."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise WeightFileError(f"{where} needs exactly dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPES:
        raise WeightFileError(f"{where} has dtype {dtype!r}, not one of {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(_count(n) for n in shape):
        raise WeightFileError(f"{where} has shape {shape!r}, not a list of sizes")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_count(n) for n in offsets):
        raise WeightFileError(f"{where} has data_offsets {offsets!r}, not [begin, end]")
    begin, end = offsets
    expected = math.prod(shape) * DTYPES[dtype].itemsize
    if not begin <= end <= len(body) or end - begin != expected:
        raise WeightFileError(
            f"{where}: bytes {begin}-{end} of {len(body)} do not hold {dtype} {shape}"
        )
    array = np.frombuffer(body[begin:end], DTYPES[dtype]).reshape(shape)
    kind = np.float32 if array.dtype.kind == "f" or dtype == "BF16" else array.dtype
    return np.array(array, dtype=kind)  # a copy: the file may be closed after


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
