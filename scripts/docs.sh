#!/usr/bin/env bash
# Build the documentation site strictly: `mkdocs build --strict` into site/ (ignored), so a
# broken link, a missing page, a docstring reference that no longer resolves or a run-config
# key without a meaning in docs/settings-help.toml fails it (exit non-zero). Sets up .venv
# if needed and installs the `docs` extra (mkdocs, mkdocstrings[python]) when it is missing.
# Extra arguments go to `mkdocs build` (e.g. --site-dir /tmp/site).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${NF_VENV:-.venv}"
bash scripts/setup.sh
if ! "$VENV/bin/python" -c "import mkdocs, mkdocstrings, mkdocstrings_handlers.python" 2>/dev/null; then
  echo "docs: installing the docs extra (mkdocs, mkdocstrings[python]) into $VENV"
  # the app's own dependencies stay at the tested versions where constraints.txt pins them
  constraints=()
  [ -f constraints.txt ] && constraints=(-c constraints.txt)
  "$VENV/bin/python" -m pip install --quiet "${constraints[@]}" -e ".[docs]"
fi
exec "$VENV/bin/python" -m mkdocs build --strict "$@"
