#!/usr/bin/env bash
# Bring up Docker on a machine like our CI's, and the stand-in TensorFlow base image.
#
#   scripts/docker_up.sh             # install and start Docker
#   scripts/docker_up.sh --standin   # ... and build the stand-in base; prints its reference last
#
# 1. Installs docker.io, debootstrap and docker-registry (the local registry the push
#    test pushes to) with apt if they are missing.
# 2. Starts `dockerd --bridge=none --iptables=false --ip-masq=false` in the background
#    if no daemon answers, and waits until one does. Everything is built and run
#    with --network host: no bridge networks, no private-range addresses.
# 3. With --standin, builds the stand-in for tensorflow/tensorflow:<version>-gpu, which cannot be
#    pulled here, when it is absent or its recipe (this file) has changed:
#    debootstrap Debian bookworm minbase with python3, pip and ca-certificates,
#    this machine's CA bundle copied in, `docker import`, then `pip install` of
#    the same TensorFlow distribution and version the real base ships.
# Quick when everything exists already.
set -euo pipefail

TF_VERSION="${TF_VERSION:-2.21.0}"       # what tensorflow/tensorflow:2.21.0-gpu ships
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ROOTFS_IMAGE="sagevit-standin-rootfs"
STANDIN_REPO="sagevit-standin-tensorflow"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/sagevit-dockerd.log}"

log() { echo "[docker_up] $*" >&2; }

# The second half of the recipe: TensorFlow installed into the imported root.
# shellcheck disable=SC2016  # the ${...} are docker build arguments, not bash's
STANDIN_DOCKERFILE='
ARG ROOTFS
FROM ${ROOTFS}
ARG TF_VERSION
ENV LANG=C.UTF-8 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m pip install "tensorflow==${TF_VERSION}"
'

# The recipe's fingerprint: the root filesystem steps, the Dockerfile, the TF version.
recipe_hash() {
    { declare -f build_rootfs; echo "$STANDIN_DOCKERFILE"; echo "$TF_VERSION"; } \
        | sha256sum | cut -c1-12
}

# Stand-in images from older recipes only take disk space.
remove_old() {
    local repo="$1" keep="$2"
    docker image ls "$repo" --format '{{.Repository}}:{{.Tag}}' | grep -vxF "$keep" \
        | xargs -r docker rmi >&2 || true
}

install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v docker-registry >/dev/null || missing+=(docker-registry)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
    fi
}

start_daemon() {
    if docker info >/dev/null 2>&1; then
        return
    fi
    log "starting dockerd (log: $DOCKERD_LOG)"
    nohup dockerd --bridge=none --iptables=false --ip-masq=false >"$DOCKERD_LOG" 2>&1 &
    for _ in $(seq 60); do
        if docker info >/dev/null 2>&1; then
            return
        fi
        sleep 1
    done
    log "dockerd did not answer within 60 s; see $DOCKERD_LOG"
    tail -20 "$DOCKERD_LOG" >&2
    exit 1
}

build_rootfs() {
    local tag="$1" dir
    dir="$(mktemp -d)"
    log "debootstrap bookworm minbase into $dir"
    debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates \
        bookworm "$dir" "$DEBIAN_MIRROR" >&2
    # pip inside the container needs this machine's CA bundle to reach the package index.
    cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
    # The real base image lets pip install into the system Python; so does the stand-in.
    rm -f "$dir"/usr/lib/python3*/EXTERNALLY-MANAGED
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar -C "$dir" -c . | docker import - "$tag" >&2
    rm -rf "$dir"
}

build_standin() {
    local hash tag
    hash="$(recipe_hash)"
    tag="$STANDIN_REPO:$TF_VERSION-$hash"
    if docker image inspect "$tag" >/dev/null 2>&1; then
        echo "$tag"
        return
    fi
    if ! docker image inspect "$ROOTFS_IMAGE:$hash" >/dev/null 2>&1; then
        build_rootfs "$ROOTFS_IMAGE:$hash"
    fi
    log "installing tensorflow==$TF_VERSION into the stand-in base"
    docker build --network host -t "$tag" --build-arg "ROOTFS=$ROOTFS_IMAGE:$hash" \
        --build-arg "TF_VERSION=$TF_VERSION" - <<<"$STANDIN_DOCKERFILE" >&2
    remove_old "$STANDIN_REPO" "$tag"
    remove_old "$ROOTFS_IMAGE" "$ROOTFS_IMAGE:$hash"
    echo "$tag"
}

install_packages
start_daemon
if [[ "${1:-}" == "--standin" ]]; then
    build_standin
fi
