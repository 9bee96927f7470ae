#!/usr/bin/env bash
# The default demo: digits, 10 simulated clients, train, unlearn client 0, recover.
#   bash examples/quickstart.sh                       # defaults from pyproject.toml
#   bash examples/quickstart.sh "unlearn.clients='3'"  # extra run-config overrides
# Exits non-zero, with the error as the last line, when a run-config key is unknown or
# the run fails (`flwr run` itself exits 0 then: not_flower/launch/cli.py asks for the run's status).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/flwr-env.sh
OUT="${OUT:-$PWD/outputs/demo}"
# A second demo run into the same folder moves the previous run's files aside into
# $OUT/previous-<time>/ (overwrite = true) instead of being refused; not when the
# overrides already say resume or overwrite.
REUSE="overwrite=true"
case "${1:-}" in *resume*|*overwrite*) REUSE="" ;; esac
# On exit, also on Ctrl-C (INT), TERM, HUP or a closed output pipe, everything started
# is stopped: cli.py (it stops the run and `flwr run`), then this FLWR_HOME's local
# SuperLink with its whole process tree (flwr-simulation, Ray), by pid, never by name.
# cli.py runs in the background so that a signal to this script is handled at once.
nf_cli_pid=""
nf_quickstart_exit() {
  local rc=$?
  trap '' INT TERM HUP PIPE
  trap - EXIT
  if [ -n "$nf_cli_pid" ]; then
    kill -TERM "$nf_cli_pid" 2>/dev/null || true
    wait "$nf_cli_pid" 2>/dev/null || true
  fi
  nf_stop_local_superlink
  exit "$rc"
}
trap nf_quickstart_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE
"$_nf_python" not_flower/launch/cli.py run . --stream \
  --run-config "out-dir='$OUT' $REUSE ${1:-}" \
  --federation-config "num-supernodes=10 client-resources-num-cpus=1" &
nf_cli_pid=$!
nf_rc=0
wait "$nf_cli_pid" || nf_rc=$?
nf_cli_pid=""  # (a signal's trap exits from inside `wait`, with cli.py still to stop)
[ "$nf_rc" -eq 0 ] || exit "$nf_rc"
echo "results: $OUT/results.json"
