#!/bin/sh
# The image's ENTRYPOINT. SageMaker runs `docker run IMAGE train` for a training job and
# `docker run IMAGE serve` for an endpoint or a batch transform. Started with no command
# (as SageMaker SDK v3's ModelTrainer starts a custom image: its local mode's compose
# service has none), SageMaker's own files say which job this is: the training job's
# config under /opt/ml/input/config, or else a model in /opt/ml/model to serve. Anything
# else is a mistake that should say so at once rather than fall through to a shell.
opt_ml="${SAGEMAKER_BASE_DIR:-/opt/ml}"
if [ "$#" -eq 0 ]; then
    if [ -e "$opt_ml/input/config/resourceconfig.json" ] || [ -e "$opt_ml/input/config/inputdataconfig.json" ]; then
        set -- train
    elif [ -n "$(ls -A "$opt_ml/model" 2>/dev/null)" ]; then
        set -- serve
    fi
    [ "$#" -eq 0 ] || echo "no command given: running '$1', as $opt_ml's files say" >&2
fi
case "${1:-}" in
    train | serve)
        command="$1"
        shift
        exec "$command" "$@"
        ;;
    *)
        echo "usage: docker run IMAGE train|serve (got: ${*:-no command, and no training config or model under $opt_ml}); for a shell: docker run --entrypoint bash IMAGE" >&2
        exit 64  # EX_USAGE
        ;;
esac
