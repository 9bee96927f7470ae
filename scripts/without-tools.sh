#!/usr/bin/env bash
# Run a command on a PATH without some optional tools, as on a machine that lacks them:
#   bash scripts/without-tools.sh docker docker-compose dockerd -- bash scripts/test.sh ...
# Every executable on PATH is linked into a temporary folder except the named ones; that
# folder becomes the whole PATH. CI uses it to run the tests that branch on an optional
# tool both ways (.ci/run). The folder is removed on every exit.
set -euo pipefail
hide=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do hide+=("$1"); shift; done
[ "${1:-}" = "--" ] && [ $# -gt 1 ] || { echo "usage: $0 TOOL... -- COMMAND..." >&2; exit 2; }
shift
bare="$(mktemp -d)"
trap 'rm -rf "$bare"' EXIT
IFS=: read -r -a dirs <<< "$PATH"
for d in "${dirs[@]}"; do
  [ -d "$d" ] || continue
  for f in "$d"/*; do
    name="${f##*/}"
    [ -x "$f" ] && [ ! -d "$f" ] && [ ! -e "$bare/$name" ] || continue
    for h in "${hide[@]}"; do [ "$name" = "$h" ] && continue 2; done
    ln -s "$f" "$bare/$name"
  done
done
PATH="$bare" "$@"
