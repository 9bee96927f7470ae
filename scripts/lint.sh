#!/usr/bin/env bash
# Lint and format check with ruff (configured in pyproject.toml: [tool.ruff]); run by CI.
# Sets up .venv first if needed (ruff comes with the dev extra, at the version
# constraints.txt pins). Exit status 1 on any finding, with the commands that fix it.
#   bash scripts/lint.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ok=1
.venv/bin/ruff check . || ok=0
.venv/bin/ruff format --check . || ok=0
if [ "$ok" = 0 ]; then
  echo "lint: ruff found the problems above; '.venv/bin/ruff check --fix .' and" \
    "'.venv/bin/ruff format .' fix most of them" >&2
  exit 1
fi
echo "lint: ruff check and ruff format --check passed ($(.venv/bin/ruff --version))"
