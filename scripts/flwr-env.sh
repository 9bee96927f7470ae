# Source me: environment for running `flwr run .` with this checkout's venv.
# FLWR_HOME is kept inside the checkout so runs do not touch ~/.flwr, and runtime
# dependency installation is disabled (it would reinstall torch for every run).
# The local SuperLink that `flwr run` starts gets this FLWR_HOME's own two ports
# (HTTP API, Control API): chosen free once, kept in $FLWR_HOME/local-superlink.env and
# exported as FLWR_LOCAL_SUPERLINK_HTTP_API_PORT / FLWR_LOCAL_CONTROL_API_PORT, so two
# checkouts on one machine never share (or stop) each other's SuperLink.
_nf_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$_nf_root/.venv/bin:$PATH"
export FLWR_HOME="${FLWR_HOME:-$_nf_root/.flwr-home}"
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
_nf_python="$_nf_root/.venv/bin/python"
[ -x "$_nf_python" ] || _nf_python=python3
if _nf_ports="$("$_nf_python" "$_nf_root/not_flower/launch/local_superlink.py" env "$FLWR_HOME")"; then
  eval "$_nf_ports"
else
  echo "flwr-env.sh: could not choose ports for the local SuperLink (see above)" >&2
fi
unset _nf_ports
# Stop the background `flower-superlink --simulation` that `flwr run` started for this
# FLWR_HOME (its --log-file is under $FLWR_HOME and its --port is this FLWR_HOME's), by pid,
# with everything it started (flower-superexec, flwr-simulation, Ray and its workers, also
# those re-parented to init): its process tree and the processes carrying its token
# (not_flower/launch/proctree.py), never by name.
nf_stop_local_superlink() {
  "$_nf_python" "$_nf_root/not_flower/launch/local_superlink.py" stop "$FLWR_HOME" || true
}
