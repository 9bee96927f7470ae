#!/usr/bin/env bash
# Create .venv (if missing) and install not-flower with its pinned dependencies and test
# tools. Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import not_flower, strategies, flwr, torch, torchvision, pytest, hypothesis" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch==2.14.1 / torchvision==0.29.1 are pinned in pyproject.toml
  .venv/bin/python -m pip install --quiet -e ".[dev]"
fi
.venv/bin/python -c "import flwr, torch; print(f'not-flower env ready: flwr {flwr.__version__}, torch {torch.__version__}')" 2>/dev/null || .venv/bin/python -c "import torch; print('not-flower env ready: torch', torch.__version__)"
