#!/usr/bin/env bash
# The default demo: digits, 10 simulated clients, train, unlearn client 0, recover.
#   bash examples/quickstart.sh                       # defaults from pyproject.toml
#   bash examples/quickstart.sh "unlearn-clients='3'"  # extra run-config overrides
# Exits non-zero, with the error as the last line, when a run-config key is unknown or
# the run fails (`flwr run` itself exits 0 then: not_flower/cli.py asks for the run's status).
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
trap nf_stop_local_superlink EXIT
"$_nf_python" not_flower/cli.py run . --stream \
  --run-config "out-dir='$OUT' $REUSE ${1:-}" \
  --federation-config "num-supernodes=10 client-resources-num-cpus=1"
echo "results: $OUT/results.json"
