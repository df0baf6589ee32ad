#!/bin/sh
# The image's ENTRYPOINT. SageMaker runs `docker run IMAGE train` for a training job and
# `docker run IMAGE serve` for an endpoint or a batch transform; anything else is a mistake
# that should say so at once rather than fall through to the base image's shell.
case "${1:-}" in
    train | serve)
        command="$1"
        shift
        exec "$command" "$@"
        ;;
    *)
        echo "usage: docker run IMAGE train|serve (got: ${*:-no command}); for a shell: docker run --entrypoint bash IMAGE" >&2
        exit 64  # EX_USAGE
        ;;
esac
