#!/usr/bin/env bash
# Bring up Docker on a machine like our CI's, and the stand-in TensorFlow base image.
#
#   scripts/local/docker_up.sh             # install and start Docker
#   scripts/local/docker_up.sh --standin   # ... and build the stand-in base; prints its reference last
#   scripts/local/docker_up.sh --base IMAGE  # ... IMAGE, pulled if missing; the stand-in if it cannot be
#                                      # pulled (one line says so); prints the base to build on
#
# 1. Installs docker.io, debootstrap and docker-registry (the local registry the push
#    test pushes to) with apt if they are missing.
# 2. Starts `dockerd --bridge=none --iptables=false --ip-masq=false` in the background
#    if no daemon answers, and waits until one does. Everything is built and run
#    with --network host: no bridge networks, no private-range addresses.
# 3. With --standin, builds the stand-in for tensorflow/tensorflow:<version>-gpu, which cannot be
#    pulled here, when it is absent or its recipe (this file, docker/standin.Dockerfile) has
#    changed: debootstrap Debian bookworm minbase with ca-certificates, this machine's CA bundle
#    copied in, `docker import`, then docker/standin.Dockerfile replays the real image's recipe
#    on it (docs/base-image.md).
# Quick when everything exists already.
set -euo pipefail

TF_VERSION="${TF_VERSION:-2.21.0}"       # what tensorflow/tensorflow:2.21.0-gpu ships
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ROOTFS_IMAGE="sagevit-standin-rootfs"
STANDIN_REPO="sagevit-standin-tensorflow"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/sagevit-dockerd.log}"

log() { echo "[docker_up] $*" >&2; }

STANDIN_DOCKERFILE="$(dirname "$0")/../../docker/standin.Dockerfile"

# The recipe's fingerprint: the root filesystem steps, the Dockerfile, the TF version.
recipe_hash() {
    { declare -f build_rootfs build_context; cat "$STANDIN_DOCKERFILE"; echo "$TF_VERSION"; } \
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
    debootstrap --variant=minbase --include=ca-certificates bookworm "$dir" "$DEBIAN_MIRROR" >&2
    # apt and pip inside the container need this machine's CA bundle to reach the registries.
    cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar -C "$dir" -c . | docker import - "$tag" >&2
    rm -rf "$dir"
}

# What the recipe downloads from outside PyPI's index, taken from PyPI instead: pip's wheel
# (get-pip.py bundles it) and blinker 1.4's source release (Ubuntu 22.04 packages that version).
build_context() {
    local dir="$1"
    python3 -m pip download --quiet --no-deps --only-binary :all: --dest "$dir" pip >&2
    python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$dir" blinker==1.4 >&2
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
    local context
    context="$(mktemp -d)"
    build_context "$context"
    log "replaying the real base's recipe (docker/standin.Dockerfile) with tensorflow==$TF_VERSION"
    docker build --network host -t "$tag" -f "$STANDIN_DOCKERFILE" \
        --build-arg "ROOTFS=$ROOTFS_IMAGE:$hash" --build-arg "TF_VERSION=$TF_VERSION" \
        "$context" >&2
    rm -rf "$context"
    remove_old "$STANDIN_REPO" "$tag"
    remove_old "$ROOTFS_IMAGE" "$ROOTFS_IMAGE:$hash"
    echo "$tag"
}

# The real base when this machine has it or can pull it, else the stand-in of its recipe.
choose_base() {
    local image="$1" error
    if docker image inspect "$image" >/dev/null 2>&1; then
        echo "$image"
    elif error="$(timeout "${PULL_TIMEOUT:-1800}" docker pull "$image" 2>&1 >/dev/null)"; then
        echo "$image"
    else
        log "cannot pull $image (${error##*$'\n'}); building on the stand-in that replays its recipe (docs/base-image.md)"
        build_standin
    fi
}

install_packages
start_daemon
case "${1:-}" in
    --standin) build_standin ;;
    --base) choose_base "${2:?--base needs an image}" ;;
esac
