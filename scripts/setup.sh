#!/usr/bin/env bash
# Create .venv (if missing) and install not-flower with its dependencies and test tools at
# the tested versions (constraints.txt). Idempotent: a second run only checks that
# everything is installed, and prints nothing. NF_VENV names another venv folder (default .venv; used by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${NF_VENV:-.venv}"
T0=$SECONDS
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating the virtual environment $VENV ($PYTHON -m venv)"
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import not_flower, strategies, flwr, torch, torchvision, pytest, hypothesis, ruff" 2>/dev/null; then
  # the tested versions constraints.txt pins, e.g. "flwr 1.42.0, torch 2.14.1, ..."
  pins="$(sed -n 's/^\(flwr\|torch\|torchvision\)==\([^ #]*\).*/\1 \2/p' constraints.txt \
    | paste -sd, - | sed 's/,/, /g')"
  more=$(($(grep -c '^[A-Za-z].*==' constraints.txt) - 3))
  echo "setup: installing not-flower and the test tools into $VENV at the tested versions of constraints.txt ($pins and $more more); takes about 2 minutes"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[dev]"
  "$VENV/bin/python" -c "import not_flower, strategies, flwr, torch, torchvision, pytest, hypothesis, ruff" \
    || { echo "setup: installed, but the imports above still fail in $VENV" >&2; exit 1; }
  echo "setup: done in $((SECONDS - T0)) s ($("$VENV/bin/python" -c "import flwr, torch; print(f'flwr {flwr.__version__}, torch {torch.__version__}')"))"
fi
