#!/usr/bin/env bash
# The library (strategies/) against the newest flwr-nightly, in a separate venv, so that the
# next Flower release is known to work before it is needed. The pinned Flower (1.42) in
# .venv stays the tested default; this venv gets flwr-nightly, numpy and pytest, no torch,
# and runs the library's own tests that need neither torch nor not_flower.
#   bash scripts/test-flwr-nightly.sh [pytest args]
# Exit status: 0 passed; 1 a test failed; 3 the package index could not be reached (or the
# install failed), nothing was tested. NIGHTLY_VENV names the venv (default .venv-nightly).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${NIGHTLY_VENV:-.venv-nightly}"
TESTS=(tests/test_composition.py tests/test_unlearning.py tests/test_strategy.py
       tests/test_identity_hint.py)
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV" || { echo "flwr-nightly: could not create the venv $VENV" >&2; exit 3; }
fi
echo "flwr-nightly: installing the newest flwr-nightly, numpy and pytest into $VENV"
if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade --pre \
    flwr-nightly numpy pytest; then
  echo "flwr-nightly: could not install flwr-nightly from the package index (unreachable?); nothing tested" >&2
  exit 3
fi
"$VENV/bin/python" -c "import flwr; print('flwr-nightly: testing strategies/ with flwr', flwr.__version__)"
if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "flwr-nightly: torch is installed in $VENV; these tests must not need it" >&2
fi
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "${TESTS[@]}" "$@"
