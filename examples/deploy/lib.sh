# Source me: helpers shared by examples/deploy/*.sh (bash).
#
# Every process is started with `nf_start NAME CMD...`: in its own process group (setsid),
# output to $NF_WORK/NAME.log, pid recorded in $NF_WORK/pids (one "name pid" a line).
# `nf_stop_all` (installed as the EXIT trap by `nf_init`; INT, TERM, HUP and a closed
# output pipe exit through it) stops each of them and every descendant it has (Flower
# spawns flower-superexec, some in a new session, which spawns flwr-serverapp /
# flwr-clientapp), by pid, never by name. Every pid it signalled is appended to
# $NF_WORK/stopped-pids so that a test can check that all are gone. Log lines go to
# stderr and never fail: a handler that wrote into a closed pipe (`... | tee log`, then
# Ctrl-C) must not die of SIGPIPE before the cleanup.

NF_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# (stdout goes to stderr, then stderr to /dev/null: only echo's own "write error" is lost)
nf_log() { echo "[deploy $(date +%H:%M:%S)] $*" >&2 2>/dev/null || true; }
# nf_die MESSAGE: log it, exit 1; the cleanup trap prints MESSAGE again as the very last line.
nf_die() { nf_log "ERROR: $*"; NF_ERROR="ERROR: $*"; exit 1; }

# nf_parse_options [OPTION VAR]... -- ARG...: the scripts' command line. Each option takes
# one value and sets a variable: the shared ones --nodes NODES, --port PORT, --train-rounds
# TRAIN_ROUNDS, --recovery-rounds RECOVERY_ROUNDS, --unlearn UNLEARN, --run-config EXTRA,
# --out OUT, --work WORK, --connection CONN, plus the script's own OPTION VAR pairs given
# before `--`. -h/--help prints the script's header comment (line 2 up to `set -euo`) and
# exits 0; an unknown option exits 2.
nf_parse_options() {
  local -a table=(--nodes NODES --port PORT --train-rounds TRAIN_ROUNDS
    --recovery-rounds RECOVERY_ROUNDS --unlearn UNLEARN --run-config EXTRA
    --out OUT --work WORK --connection CONN)
  local i
  while [ "$1" != "--" ]; do table+=("$1" "$2"); shift 2; done
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
      -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    esac
    for ((i = 0; i < ${#table[@]}; i += 2)); do
      [ "$1" = "${table[i]}" ] && break
    done
    (( i < ${#table[@]} )) || { echo "unknown option: $1 (see --help)" >&2; exit 2; }
    printf -v "${table[i + 1]}" '%s' "$2"
    shift 2
  done
}

# nf_init WORKDIR: set up PATH/FLWR_HOME/work dir and the cleanup trap.
nf_init() {
  NF_WORK="$1"
  mkdir -p "$NF_WORK"
  NF_WORK="$(cd "$NF_WORK" && pwd)"
  : > "$NF_WORK/pids"
  : > "$NF_WORK/stopped-pids"
  if [ -x "$NF_ROOT/.venv/bin/flwr" ]; then
    export PATH="$NF_ROOT/.venv/bin:$PATH"
  fi
  command -v flower-superlink > /dev/null || nf_die "flower-superlink not on PATH (run scripts/setup.sh)"
  export FLWR_HOME="${FLWR_HOME:-$NF_WORK/flwr-home}"
  export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
  # N SuperNodes share this machine's cores: one torch thread per ClientApp process.
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  NF_PY="$(command -v python3 || command -v python || true)"
  [ -x "$NF_ROOT/.venv/bin/python" ] && NF_PY="$NF_ROOT/.venv/bin/python"
  NF_CLEANUP_HOOKS=()
  trap 'nf_stop_all' EXIT
  trap 'nf_on_signal 130 interrupted' INT
  trap 'nf_on_signal 143 terminated' TERM
  trap 'nf_on_signal 129 "hung up"' HUP
  trap 'nf_on_signal 141 "output closed"' PIPE
}

# nf_on_signal STATUS WHAT: a stop signal arrived; exit STATUS (the EXIT trap cleans up).
# SIGPIPE is ignored first: the log line may go into the very pipe that closed.
nf_on_signal() {
  trap '' PIPE
  nf_log "$2"
  exit "$1"
}

# nf_free_port: print a TCP port that is free on this machine now.
nf_free_port() {
  "$NF_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# nf_start NAME CMD...: start CMD (in directory $NF_CWD if set) in a new process group;
# sets NF_LAST_PID.
nf_start() {
  local name="$1"; shift
  (cd "${NF_CWD:-.}" && exec setsid "$@") > "$NF_WORK/$name.log" 2>&1 < /dev/null &
  NF_LAST_PID=$!
  echo "$name $NF_LAST_PID" >> "$NF_WORK/pids"
  nf_log "started $name (pid $NF_LAST_PID): $*"
}

# nf_descendants PID: print PID's descendants (children first walk, all levels).
nf_descendants() {
  local child
  for child in $(pgrep -P "$1" 2>/dev/null); do
    echo "$child"
    nf_descendants "$child"
  done
}

# nf_stop_pid PID [SECONDS]: SIGTERM PID and all its descendants, SIGKILL what is left.
nf_stop_pid() {
  local pid="$1" grace="${2:-10}" pids p i alive
  kill -0 "$pid" 2>/dev/null || return 0
  pids="$pid $(nf_descendants "$pid")"
  echo $pids | tr ' ' '\n' >> "$NF_WORK/stopped-pids"
  for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
  for ((i = 0; i < grace * 5; i++)); do
    alive=""
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
    [ -z "$alive" ] && break
    sleep 0.2
  done
  # descendants started while we waited (a SuperExec may have launched one)
  for p in $pids; do
    for c in $(nf_descendants "$p"); do echo "$c" >> "$NF_WORK/stopped-pids"; kill -KILL "$c" 2>/dev/null || true; done
  done
  for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
}

# nf_stop NAME: stop the process started as NAME.
nf_stop() {
  local pid
  pid="$(awk -v n="$1" '$1 == n {print $2}' "$NF_WORK/pids" | tail -1)"
  [ -n "$pid" ] && nf_stop_pid "$pid"
}

# nf_stop_all: stop everything started, newest first, then run cleanup hooks.
nf_stop_all() {
  local rc=$? pid name hook
  trap - EXIT
  trap '' INT TERM HUP PIPE  # a second Ctrl-C or a closed pipe must not cut the cleanup short
  if [ -s "$NF_WORK/pids" ]; then
    nf_log "stopping everything started (by pid)"
    while read -r name pid; do
      nf_stop_pid "$pid" 10
    done < <(tac "$NF_WORK/pids")
  fi
  for hook in "${NF_CLEANUP_HOOKS[@]}"; do "$hook" || true; done
  nf_log "stopped (exit $rc)"
  if [ "$rc" -ne 0 ] && [ -n "${NF_ERROR:-}" ]; then echo "$NF_ERROR" >&2 2>/dev/null || true; fi
  exit "$rc"
}

# nf_write_connection NAME ADDRESS [ROOT_CERT]: add/replace [superlink.NAME] in
# $FLWR_HOME/config.toml (insecure = true unless a root certificate is given).
nf_write_connection() {
  mkdir -p "$FLWR_HOME"
  "$NF_PY" - "$FLWR_HOME/config.toml" "$1" "$2" "${3:-}" <<'EOF'
import sys, tomllib, tomli_w
from pathlib import Path
path, name, address, root_cert = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
cfg = tomllib.loads(path.read_text()) if path.exists() else {}
conn = {"address": address}
if root_cert:
    conn["root-certificates"] = root_cert
else:
    conn["insecure"] = True
cfg.setdefault("superlink", {})[name] = conn
path.write_text(tomli_w.dumps(cfg))
EOF
  nf_log "connection [superlink.$1] address=$2 written to $FLWR_HOME/config.toml"
}

# nf_online_nodes CONNECTION: print the number of online SuperNodes.
nf_online_nodes() {
  flwr supernode ls "$1" --format json 2>/dev/null | "$NF_PY" -c '
import json, sys
text = sys.stdin.read()
try:
    data = json.loads(text[text.index("{"):])
except ValueError:
    print(0); raise SystemExit
print(sum(1 for n in data.get("nodes", []) if n.get("status") == "online"))'
}

# nf_wait_nodes CONNECTION N [TIMEOUT]: wait until N SuperNodes are online.
nf_wait_nodes() {
  local conn="$1" want="$2" timeout="${3:-120}" start=$SECONDS n=0
  while (( SECONDS - start < timeout )); do
    n="$(nf_online_nodes "$conn")"
    if [ "${n:-0}" -ge "$want" ]; then
      nf_log "$n SuperNode(s) online"
      return 0
    fi
    sleep 1
  done
  nf_die "only ${n:-0} of $want SuperNodes online after ${timeout}s (logs in $NF_WORK)"
}

# nf_wait_port HOST PORT [TIMEOUT]: wait until HOST:PORT accepts TCP connections.
nf_wait_port() {
  local host="$1" port="$2" timeout="${3:-60}" start=$SECONDS
  while (( SECONDS - start < timeout )); do
    if "$NF_PY" -c 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()' "$host" "$port" 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  nf_die "$host:$port not reachable after ${timeout}s"
}

# nf_flwr_run CONNECTION RUN_CONFIG: `flwr run . CONNECTION --stream` from the app root
# (a started process like the others, so that a signal stops it too), its output shown
# and kept in $NF_WORK/flwr-run.log. Through not_flower/launch/cli.py: an unknown run-config key
# is named before the run, and a run that did not complete (flwr run exits 0 then) gives
# status 1 with the error's first line as the log's last line. Returns that status.
nf_flwr_run() {
  local conn="$1" run_config="$2" pid tpid rc=0
  nf_log "flwr run . $conn --stream --run-config \"$run_config\""
  NF_CWD="${NF_APP_DIR:-$NF_ROOT}" nf_start flwr-run "$NF_PY" "$NF_ROOT/not_flower/launch/cli.py" run . "$conn" --stream --run-config "$run_config"
  pid=$NF_LAST_PID
  tail -n +1 -f --pid="$pid" "$NF_WORK/flwr-run.log" >&2 &
  tpid=$!
  echo "tail $tpid" >> "$NF_WORK/pids"
  # tail dies of SIGPIPE when our output is a pipe that closed: that stops the run too
  while kill -0 "$pid" 2>/dev/null; do
    kill -0 "$tpid" 2>/dev/null || nf_on_signal 141 "output closed"
    wait -n "$pid" "$tpid" 2>/dev/null || true
  done
  wait "$pid" || rc=$?
  wait "$tpid" 2>/dev/null || true
  # the run's error (cli.py's last line) is printed again after the cleanup's own lines
  [ "$rc" -eq 0 ] || NF_ERROR="$(tail -n 1 "$NF_WORK/flwr-run.log")"
  return "$rc"
}

# nf_check_run_config RUN_CONFIG: check the run config's keys and values with
# not_flower/launch/cli.py (no torch, a second or so) before any process starts; a bad one exits 2
# naming it. A key given twice (a script's own and the user's --run-config) is fine: the
# later value wins when cli.py merges them for `flwr run`.
nf_check_run_config() {
  "$NF_PY" "$NF_ROOT/not_flower/launch/cli.py" check-run-config --app "${NF_APP_DIR:-$NF_ROOT}" "$1" \
    || exit 2
}

# The run-config key for reusing a demo's out-dir: "overwrite=true" (a second run moves
# the previous run's files into out-dir/previous-<time>/ instead of being refused), or
# nothing when the user's overrides ($1) already say resume or overwrite.
nf_reuse_key() {
  case "${1:-}" in *resume*|*overwrite*) echo "" ;; *) echo "overwrite=true" ;; esac
}
