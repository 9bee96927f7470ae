#!/usr/bin/env bash
# Test scaffolding, not for users: make what the compose test needs where Docker Hub
# cannot be reached, without any network but the Python package index.
#   1. docker/wheelhouse: wheels for Flower and for the app image (CPU-only torch from
#      TORCH_REQUIREMENTS, not-flower's other dependencies at constraints.txt's versions,
#      hatchling), via `pip download` with PYTHON (the host's Python must be 3.11, as in
#      the images);
#   2. a Debian bookworm base image with Python 3.11 (debootstrap, then `docker import`),
#      once;
#   3. stand-ins for flwr/superlink, flwr/supernode and flwr/superexec at FLWR_VERSION
#      (docker/testing/Dockerfile, via docker/testing/standins.yaml), unless images of
#      those names exist already (real ones pulled from Docker Hub are used as they are).
# Needs root (debootstrap), `docker` with Compose v2 and a running engine (DOCKER_HOST).
#
# One at a time: .ci/run starts this in the background while its other steps run, and the
# compose test runs it again; the second waits for the first (a lock) and finds all made.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec 9>"/tmp/not-flower-standins-$(id -u).lock"
flock 9
FLWR_VERSION="${FLWR_VERSION:-1.42.0}"
TORCH_REQUIREMENTS="${TORCH_REQUIREMENTS:-torch==2.13.0+cpu}"
PYTHON="${PYTHON:-python3}"
BASE_IMAGE=not-flower-testing/debian:bookworm
say() { echo "standins: $*"; }

# 1. wheels
deps=$("$PYTHON" - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(" ".join(d for d in deps if not re.match(r"(flwr|torch|torchvision)\b", d)))
PY
)
# the versions docker/Dockerfile installs: constraints.txt's, less the pins of Flower, Ray
# and torch (named here by FLWR_VERSION and TORCH_REQUIREMENTS)
constraints=$(mktemp /tmp/not-flower-constraints.XXXXXX)
trap 'rm -f "$constraints"' EXIT
grep -v -E '^(flwr|ray|torch|torchvision)==' constraints.txt >"$constraints"
say "pip download into docker/wheelhouse: flwr==$FLWR_VERSION $TORCH_REQUIREMENTS $deps hatchling (-c constraints.txt)"
# shellcheck disable=SC2086
"$PYTHON" -m pip download -q -d docker/wheelhouse -c "$constraints" "flwr==$FLWR_VERSION" \
  $TORCH_REQUIREMENTS $deps hatchling 2>&1 | grep -v "is neither a file nor a directory" || true
rm -f "$constraints"
trap - EXIT
ls docker/wheelhouse/flwr-"$FLWR_VERSION"-*.whl >/dev/null

# 2. base image
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  root=$(mktemp -d /tmp/not-flower-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  say "debootstrap bookworm into $root (about a minute)"
  debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" \
    >"$root.log" 2>&1 || { tail -20 "$root.log"; exit 1; }
  rm -f "$root.log"
  tar -C "$root" -c . | docker import - "$BASE_IMAGE" >/dev/null
  say "imported $BASE_IMAGE"
fi

# 3. stand-ins under the official names
missing=0
for image in "flwr/superlink:$FLWR_VERSION" "flwr/supernode:$FLWR_VERSION" \
             "flwr/superexec:$FLWR_VERSION-py3.11-ubuntu24.04"; do
  docker image inspect "$image" >/dev/null 2>&1 || missing=1
done
if [ "$missing" = 1 ]; then
  say "building stand-ins for Flower's images"
  FLWR_VERSION="$FLWR_VERSION" docker compose -p not-flower-standins \
    -f docker/testing/standins.yaml build
fi
say "ready"
