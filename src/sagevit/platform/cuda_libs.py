"""The CUDA libraries TensorFlow loads: which file each resolves to, and its version.

TensorFlow's own loader (tsl::internal::DsoLoader, exported by libtensorflow_framework.so.2)
does the loading, so the answer is the one TensorFlow gets at run time; each version is read
from the library itself and held against what TensorFlow was built for:
`tf.sysconfig.get_build_info()` for the CUDA runtime, the lower bounds of its `and-cuda`
extra for the rest. No GPU is needed. `python -m sagevit.platform.gpu` prints the table.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import re
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import tensorflow as tf

Version = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Library:
    name: str  # as the CUDA documentation names it
    soname: str  # the file TensorFlow 2.21 asks the dynamic linker for
    loader: str | None  # tsl::internal::DsoLoader::Get<loader>DsoHandle; None: TF never loads it
    package: str | None  # the NVIDIA wheel its `and-cuda` extra pins
    read_version: Callable[[ctypes.CDLL], Version]


def _property_version(function: str) -> Callable[[ctypes.CDLL], Version]:
    """The libraryPropertyType getters: MAJOR_VERSION=0, MINOR_VERSION=1, PATCH_LEVEL=2."""

    def read(lib: ctypes.CDLL) -> Version:
        parts = []
        for kind in range(3):
            value = ctypes.c_int()
            _checked(getattr(lib, function)(kind, ctypes.byref(value)), function)
            parts.append(value.value)
        return tuple(parts)

    return read


def _cudart_version(lib: ctypes.CDLL) -> Version:
    value = ctypes.c_int()  # 12050 for 12.5; the runtime reports no patch level
    _checked(lib.cudaRuntimeGetVersion(ctypes.byref(value)), "cudaRuntimeGetVersion")
    return (value.value // 1000, value.value % 1000 // 10)


def _cudnn_version(lib: ctypes.CDLL) -> Version:
    lib.cudnnGetVersion.restype = ctypes.c_size_t
    value = lib.cudnnGetVersion()  # 90300 for 9.3.0 (cuDNN 9), 8906 for 8.9.6 (cuDNN 8)
    scale = 10000 if value >= 90000 else 1000
    return (value // scale, value % scale // 100, value % 100)


def _nccl_version(lib: ctypes.CDLL) -> Version:
    value = ctypes.c_int()  # 22707 for 2.27.7
    _checked(lib.ncclGetVersion(ctypes.byref(value)), "ncclGetVersion")
    return (value.value // 10000, value.value % 10000 // 100, value.value % 100)


def _checked(status: int, function: str) -> None:
    if status != 0:
        raise OSError(f"{function} returned status {status}")


LIBRARIES = (
    Library("cudart", "libcudart.so.12", "CudaRuntime", "nvidia-cuda-runtime-cu12", _cudart_version),
    Library("cublas", "libcublas.so.12", "Cublas", "nvidia-cublas-cu12", _property_version("cublasGetProperty")),
    Library("cublasLt", "libcublasLt.so.12", "CublasLt", "nvidia-cublas-cu12", _property_version("cublasLtGetProperty")),
    Library("cufft", "libcufft.so.11", "Cufft", "nvidia-cufft-cu12", _property_version("cufftGetProperty")),
    Library("cusparse", "libcusparse.so.12", "Cusparse", "nvidia-cusparse-cu12", _property_version("cusparseGetProperty")),
    Library("cusolver", "libcusolver.so.11", "Cusolver", "nvidia-cusolver-cu12", _property_version("cusolverGetProperty")),
    Library("curand", "libcurand.so.10", None, "nvidia-curand-cu12", _property_version("curandGetProperty")),
    Library("cudnn", "libcudnn.so.9", "Cudnn", "nvidia-cudnn-cu12", _cudnn_version),
    Library("nccl", "libnccl.so.2", "Nccl", "nvidia-nccl-cu12", _nccl_version),
)  # fmt: skip
DRIVER = "libcuda.so.1"


@dataclasses.dataclass
class Loaded:
    """One library as TensorFlow's loader resolves it."""

    name: str
    soname: str
    path: str | None = None  # None: not found
    version: Version | None = None
    required: Version | None = None  # same major, and at least this
    used_by_tensorflow: bool = True
    error: str | None = None

    @property
    def compatible(self) -> bool:
        if self.version is None or self.required is None:
            return False
        same_major = self.version[0] == self.required[0]
        return same_major and self.version >= self.required[: len(self.version)]

    def describe(self) -> str:
        wanted = dotted(self.required) if self.required else "?"
        if self.path is None:
            return f"{self.soname}: not found (TensorFlow wants {wanted}): {self.error}"
        verdict = "ok" if self.compatible else f"INCOMPATIBLE, TensorFlow wants {wanted}"
        unused = "" if self.used_by_tensorflow else " (not used by TensorFlow)"
        return f"{self.soname} {dotted(self.version)} {verdict}{unused}: {self.path}"


def dotted(version: Version | None) -> str:
    return ".".join(map(str, version)) if version else "?"


def build_info() -> dict[str, str]:
    info = tf.sysconfig.get_build_info()
    return {"cuda": str(info.get("cuda_version", "")), "cudnn": str(info.get("cudnn_version", ""))}


def required_versions() -> dict[str, Version]:
    """Each library's minimum version: the `and-cuda` extra's lower bounds, cut to three
    parts (the libraries report major.minor.patch), and the build info for cudart and cuDNN."""
    floors: dict[str, Version] = {}
    for requirement in metadata.requires("tensorflow") or []:
        match = re.match(r"([\w.-]+)\s*[^;]*?>=\s*([\d.]+)[^;]*;.*extra == .and-cuda.", requirement)
        if match:
            floors[match[1].lower()] = _version(match[2])[:3]
    built = build_info()
    required = {lib.name: floors[lib.package] for lib in LIBRARIES if lib.package in floors}
    if built["cuda"]:
        required["cudart"] = _version(built["cuda"])[:2]
    if built["cudnn"] and "cudnn" not in required:
        required["cudnn"] = _version(built["cudnn"])
    return required


def _version(text: str) -> Version:
    return tuple(int(part) for part in re.findall(r"\d+", text))


_STATUS_OK = 1


class _Loader:
    """TensorFlow's own library loader, called through ctypes: DsoLoader::GetXDsoHandle()
    returns an absl::StatusOr<void*> through a hidden result pointer (it has a destructor),
    laid out as absl::Status's word (1 is OK: code 0, inlined) and then the dlopen handle."""

    def __init__(self) -> None:
        framework = Path(tf.__file__).parent / "libtensorflow_framework.so.2"
        self.tf_dir = framework.parent
        self._framework = ctypes.CDLL(str(framework))
        self._libc = ctypes.CDLL(None)

    def open(self, loader: str) -> int | None:
        name = f"Get{loader}DsoHandle"
        function = getattr(self._framework, f"_ZN3tsl8internal9DsoLoader{len(name)}{name}Ev")
        function.restype, function.argtypes = None, [ctypes.c_void_p]
        result = (ctypes.c_uint64 * 8)()  # room to spare: StatusOr<void*> is two words
        function(result)
        return result[1] if result[0] == _STATUS_OK and result[1] else None

    def path_of(self, handle: int) -> str:
        """dlinfo(RTLD_DI_LINKMAP): a struct link_map's second field is the file's name."""
        link_map = ctypes.c_void_p()
        self._libc.dlinfo(ctypes.c_void_p(handle), 2, ctypes.byref(link_map))
        return ctypes.c_char_p.from_address(link_map.value + 8).value.decode()


def load_libraries() -> list[Loaded]:
    """Load every library as TensorFlow would, and read each one's version. No GPU needed."""
    loader = _Loader()
    required = required_versions()
    results = []
    for lib in LIBRARIES:
        found = Loaded(lib.name, lib.soname, required=required.get(lib.name))
        found.used_by_tensorflow = lib.loader is not None
        try:
            if lib.loader is None:  # the wheel's copy, where the `and-cuda` extra puts it
                found.path = str(_wheel_library(loader.tf_dir, lib.soname))
            else:
                handle = loader.open(lib.loader)
                if handle is None:
                    raise OSError("TensorFlow's loader cannot open it")
                found.path = os.path.realpath(loader.path_of(handle))
            found.version = lib.read_version(ctypes.CDLL(found.path))
        except (OSError, AttributeError) as error:
            found.error = str(error)
        results.append(found)
    return results


def _wheel_library(tf_dir: Path, soname: str) -> Path:
    matches = sorted(tf_dir.parent.glob(f"nvidia/*/lib/{soname}"))
    if not matches:
        raise OSError(f"no {soname} in {tf_dir.parent / 'nvidia'}")
    return matches[0]


def driver_path() -> str | None:
    """Where libcuda.so.1 resolves for TensorFlow (a path with /stubs/ is CUDA's stub, no driver)."""
    loader = _Loader()
    handle = loader.open("CudaDriver")
    return loader.path_of(handle) if handle else None


def mapped_cuda_files() -> list[str]:
    """Every CUDA library file mapped into this process, dependencies included."""
    pattern = re.compile(r"/lib(cu\w*|nccl|nvJitLink|nvrtc)[\w.]*\.so[\d.]*$")
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if len(line.split()) >= 6}
    return sorted(p for p in paths if pattern.search(p))


def loaded_cudnn() -> str:
    """The cuDNN version TensorFlow loads (it loads cuDNN once it has a GPU)."""
    loader = _Loader()
    handle = loader.open("Cudnn")
    if handle is None:
        return "not found"
    return dotted(_cudnn_version(ctypes.CDLL(loader.path_of(handle))))
