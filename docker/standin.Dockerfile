# Stand-in for tensorflow/tensorflow:2.21.0-gpu, for machines that cannot pull it (CI, offline).
#
# It replays the public recipe of the real image (github.com/tensorflow/build,
# tensorflow_runtime_dockerfiles/gpu.Dockerfile and its setup.*.sh) step by step, on Debian
# bookworm instead of Ubuntu 22.04, and is never kinder than it: apt's Python packages that pip
# cannot uninstall, a distutils-installed blinker 1.4, PyPI's pip in /usr/local, TensorFlow
# without the CUDA libraries it was built for, CUDA 12.3 libraries in the linker cache.
# docs/base-image.md lists every remaining difference.
#
# Built by `scripts/local/docker_up.sh --standin`: ROOTFS is a debootstrapped bookworm, and the build
# context holds PyPI's pip wheel and blinker's 1.4 source release (downloaded by that script).
ARG ROOTFS=sagevit-standin-rootfs
FROM ${ROOTFS}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# What FROM nvidia/cuda:12.3.0-base-ubuntu22.04 and gpu.Dockerfile set. NVIDIA_VISIBLE_DEVICES is
# "all" whether or not the container was given a GPU.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    NVIDIA_REQUIRE_CUDA="cuda>=12.3" \
    CUDA_VERSION=12.3.0 \
    LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64 \
    PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8

# setup.sources.sh: these four with their recommended packages, as the recipe installs them.
# software-properties-common brings apt's Python packages into /usr/lib/python3/dist-packages.
# The next step, like the recipe's, uses the package lists and then deletes them.
# hadolint ignore=DL3008,DL3009,DL3015
RUN apt-get update \
    && apt-get install -y gnupg ca-certificates wget software-properties-common

# setup.packages.sh gpu.packages.txt, less the CUDA packages (below), and setup.python.sh's
# python3.11, -venv, -distutils and -dev (bookworm's own Python is 3.11; the real image's is
# deadsnakes' 3.11 beside Ubuntu's 3.10, with the same dist-packages on its path).
# hadolint ignore=DL3008
RUN apt-get install -y --no-install-recommends build-essential pkg-config curl unzip \
        python3.11 python3.11-venv python3-distutils python3.11-dev \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

# Ubuntu 22.04's python3-blinker is 1.4, installed by distutils: a lone .egg-info file that pip
# refuses to uninstall. Bookworm's is 1.5 with a RECORD; put 1.4 in its place the same way Ubuntu
# did (setuptools hidden, so setup.py falls back to distutils). Ubuntu's other apt packages carry
# no RECORD either, so pip cannot uninstall them; drop the RECORDs bookworm ships.
ADD blinker-1.4.tar.gz /tmp/standin/
WORKDIR /tmp/standin/blinker-1.4
RUN rm -rf /usr/lib/python3/dist-packages/blinker /usr/lib/python3/dist-packages/blinker-*.dist-info \
    && python3 -c "import sys; sys.modules['setuptools'] = None; sys.argv[0] = 'setup.py'; \
exec(compile(open('setup.py').read(), 'setup.py', 'exec'))" \
        install --install-lib /usr/lib/python3/dist-packages \
    && test -f /usr/lib/python3/dist-packages/blinker-1.4.egg-info \
    && find /usr/lib/python3/dist-packages -path '*.dist-info/RECORD' -delete

# setup.python.sh: python3 is 3.11, headers linked, and PyPI's pip (get-pip.py installs it with
# the newest setuptools and wheel) in /usr/local. No EXTERNALLY-MANAGED marker, as on Ubuntu 22.04.
COPY pip-*.whl /tmp/standin/
# hadolint ignore=DL3013
RUN ln -sf /usr/bin/python3.11 /usr/bin/python3 \
    && ln -sf /usr/bin/python3.11 /usr/bin/python \
    && ln -sf /usr/include/python3.11 /usr/local/include/python3.11 \
    && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED \
    && whl="$(echo /tmp/standin/pip-*.whl)" \
    && python3 "$whl/pip" install --no-cache-dir --no-index "$whl" \
    && python3 -m pip install --no-cache-dir setuptools wheel \
    && test "$(command -v pip)" = /usr/local/bin/pip
WORKDIR /
RUN rm -rf /tmp/standin

# gpu.Dockerfile: pip install tensorflow (without the [and-cuda] extra).
ARG TF_VERSION=2.21.0
RUN python3 -m pip install --no-cache-dir "tensorflow==${TF_VERSION}"

# gpu.packages.txt's CUDA 12.3 libraries (cuda-libraries-12-3, libcublas-12-3, ...) where its
# packages put them, in the linker cache. NVIDIA's apt repository cannot be reached; these are
# the same libraries from NVIDIA's CUDA 12.3 wheels on PyPI.
RUN python3 -m pip install --no-cache-dir --no-deps --target /tmp/cuda \
        nvidia-cuda-runtime-cu12==12.3.101 nvidia-cublas-cu12==12.3.4.1 \
        nvidia-cufft-cu12==11.0.12.1 nvidia-curand-cu12==10.3.4.107 \
        nvidia-cusolver-cu12==11.5.4.101 nvidia-cusparse-cu12==12.2.0.103 \
        nvidia-nvjitlink-cu12==12.3.101 nvidia-cuda-cupti-cu12==12.3.101 \
        nvidia-cuda-nvrtc-cu12==12.3.107 \
    && mkdir -p /usr/local/cuda-12.3/targets/x86_64-linux/lib \
    && mv /tmp/cuda/nvidia/*/lib/lib*.so* /usr/local/cuda-12.3/targets/x86_64-linux/lib/ \
    && ln -s cuda-12.3 /usr/local/cuda \
    && ln -s targets/x86_64-linux/lib /usr/local/cuda-12.3/lib64 \
    && echo /usr/local/cuda/targets/x86_64-linux/lib >/etc/ld.so.conf.d/000_cuda.conf \
    && ldconfig \
    && rm -rf /tmp/cuda
