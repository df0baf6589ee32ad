#!/usr/bin/env bash
# Run a command on a machine made slow: one busy loop per core, at normal priority, for as
# long as the command runs (`make test-slow-machine` runs `make test` this way). Every
# test's verdict must be the same as on an idle machine: none may depend on its speed.
#
#   scripts/local/with_busy_cores.sh make test
#   BUSY_LOOPS=4 scripts/local/with_busy_cores.sh make test   # more loops than the 2 cores
set -euo pipefail

loops="${BUSY_LOOPS:-$(nproc)}"
pids=()
# shellcheck disable=SC2329  # run by the trap below
stop_loops() { kill "${pids[@]}" 2>/dev/null || true; }
trap stop_loops EXIT

for _ in $(seq "$loops"); do
    bash -c 'while :; do :; done' &
    pids+=("$!")
done
echo "[with_busy_cores] $loops busy loop(s) running (pids ${pids[*]}): $*" >&2

started=$(date +%s)
status=0
"$@" || status=$?
echo "[with_busy_cores] '$*' exited $status after $(($(date +%s) - started)) s with $loops busy loop(s)" >&2
exit "$status"
