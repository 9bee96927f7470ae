# Source me: environment for running `flwr run .` with this checkout's venv.
# FLWR_HOME is kept inside the checkout so runs do not touch ~/.flwr, and runtime
# dependency installation is disabled (it would reinstall torch for every run).
_nf_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$_nf_root/.venv/bin:$PATH"
export FLWR_HOME="${FLWR_HOME:-$_nf_root/.flwr-home}"
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
# Stop the background `flower-superlink --simulation` that `flwr run` started for this
# FLWR_HOME (found by its unique log-file path), by pid.
nf_stop_local_superlink() {
  local pids
  pids=$(pgrep -f -- "--log-file $FLWR_HOME/local-superlink/superlink.log" || true)
  if [ -n "$pids" ]; then kill $pids 2>/dev/null || true; sleep 1; kill -9 $pids 2>/dev/null || true; fi
}
