#!/usr/bin/env bash
# TLS and SuperNode authentication: stable node identities, a client named by its name.
#
#   1. makes a CA, a server certificate for 127.0.0.1/localhost (openssl) and one key pair
#      per SuperNode (ECDSA P-384 in OpenSSH format: what `flwr supernode register` and
#      `flower-supernode --auth-supernode-private-key` read);
#   2. starts the SuperLink with TLS (--ssl-ca-certfile/--ssl-certfile/--ssl-keyfile) and
#      --enable-supernode-auth; writes the connection (address + root-certificates) to
#      $FLWR_HOME/config.toml;
#   3. registers each node's public key by name (`flwr supernode register KEY.pub CONN
#      --name site-i`): the node id is bound to the key;
#   4. starts the SuperNodes with their private keys (partition-id=i for site-i), and
#      checks that a SuperNode with an unregistered key is refused;
#   5. runs train -> unlearn -> recover with identify-by='supernode-name'
#      unlearn.clients='site-1'.
# With --restart-node K the SuperNode site-K is stopped when round --restart-at-round
# starts and started again with the same key: it comes back with the same node id, so it
# stays excluded. Node ids are written to WORK/registered.txt and WORK/nodes-end.json.
#
#   bash examples/deploy/tls_auth.sh
#   bash examples/deploy/tls_auth.sh --unlearn site-2 --restart-node 2 --restart-at-round 5
#
# Options (or the environment variable in brackets):
#   --nodes N            SuperNodes site-0 .. site-(N-1) [NF_NODES, 3]
#   --port P             SuperLink HTTPS port [NF_PORT, a free one]
#   --train-rounds R     [NF_TRAIN_ROUNDS, 3]    --recovery-rounds R  [NF_RECOVERY_ROUNDS, 2]
#   --unlearn NAMES      SuperNode names to forget [NF_UNLEARN, site-1]
#   --restart-node K     restart site-K during the run [NF_RESTART_NODE]
#   --restart-at-round R when round R starts [NF_RESTART_AT_ROUND, train-rounds + 1]
#   --run-config "..."   extra run-config overrides [NF_RUN_CONFIG]
#   --out DIR            where results.json goes [NF_OUT, outputs/deploy-tls]
#   --work DIR           certificates, keys, logs, state.db [NF_WORK_DIR, a new temp folder]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES="${NF_NODES:-3}"
PORT="${NF_PORT:-}"
TRAIN_ROUNDS="${NF_TRAIN_ROUNDS:-3}"
RECOVERY_ROUNDS="${NF_RECOVERY_ROUNDS:-2}"
UNLEARN="${NF_UNLEARN-site-1}"
RESTART_NODE="${NF_RESTART_NODE:-}"
RESTART_AT="${NF_RESTART_AT_ROUND:-}"
EXTRA="${NF_RUN_CONFIG:-}"
OUT="${NF_OUT:-$NF_ROOT/outputs/deploy-tls}"
WORK="${NF_WORK_DIR:-}"
CONN="${NF_CONNECTION:-tls-deployment}"
nf_parse_options --restart-node RESTART_NODE --restart-at-round RESTART_AT -- "$@"
[ -n "$RESTART_AT" ] || RESTART_AT=$((TRAIN_ROUNDS + 1))
[ -n "$WORK" ] || WORK="$(mktemp -d "${TMPDIR:-/tmp}/nf-deploy-tls.XXXXXX")"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
nf_init "$WORK"
RUN_CONFIG="out-dir='$OUT' $(nf_reuse_key "$EXTRA") num-train-rounds=$TRAIN_ROUNDS recovery.rounds=$RECOVERY_ROUNDS identify-by='supernode-name' unlearn.clients='$UNLEARN' $EXTRA"
nf_check_run_config "$RUN_CONFIG"  # bad keys and values: exit 2 before anything starts
T0=$SECONDS
command -v openssl > /dev/null || nf_die "openssl is needed"

# -- 1. certificates and keys ------------------------------------------------------------
CERTS="$NF_WORK/certs"
KEYS="$NF_WORK/keys"
mkdir -p "$CERTS" "$KEYS"
openssl req -x509 -newkey rsa:2048 -sha256 -days 7 -nodes -subj "/CN=not-flower demo CA" \
  -keyout "$CERTS/ca.key" -out "$CERTS/ca.crt" 2> "$NF_WORK/openssl.log"
cat > "$CERTS/server.ext" <<'EOF'
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
EOF
openssl req -newkey rsa:2048 -sha256 -nodes -subj "/CN=localhost" \
  -keyout "$CERTS/server.key" -out "$CERTS/server.csr" 2>> "$NF_WORK/openssl.log"
openssl x509 -req -in "$CERTS/server.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" \
  -CAcreateserial -days 7 -sha256 -extfile "$CERTS/server.ext" -out "$CERTS/server.pem" \
  2>> "$NF_WORK/openssl.log"
openssl verify -CAfile "$CERTS/ca.crt" "$CERTS/server.pem" > /dev/null \
  || nf_die "server certificate does not verify"

# ECDSA P-384 key pair in OpenSSH format (ssh-keygen, else Python's cryptography,
# which Flower itself depends on).
nf_node_key() {
  if command -v ssh-keygen > /dev/null; then
    ssh-keygen -q -t ecdsa -b 384 -N "" -C "" -f "$1"
  else
    "$NF_PY" - "$1" <<'EOF'
import sys
from pathlib import Path
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric import ec
key = ec.generate_private_key(ec.SECP384R1())
Path(sys.argv[1]).write_bytes(key.private_bytes(s.Encoding.PEM, s.PrivateFormat.OpenSSH, s.NoEncryption()))
Path(sys.argv[1]).chmod(0o600)
Path(sys.argv[1] + ".pub").write_bytes(key.public_key().public_bytes(s.Encoding.OpenSSH, s.PublicFormat.OpenSSH) + b"\n")
EOF
  fi
}
for ((i = 0; i < NODES; i++)); do nf_node_key "$KEYS/site-$i"; done
nf_log "CA, server certificate (SAN localhost, 127.0.0.1) in $CERTS; node keys in $KEYS"

# -- 2. SuperLink with TLS and SuperNode authentication ---------------------------------
[ -n "$PORT" ] || PORT="$(nf_free_port)"
nf_start superlink flower-superlink --port "$PORT" \
  --ssl-ca-certfile "$CERTS/ca.crt" --ssl-certfile "$CERTS/server.pem" \
  --ssl-keyfile "$CERTS/server.key" --enable-supernode-auth \
  --database "$NF_WORK/state.db" --disable-runtime-dependency-installation
nf_wait_port 127.0.0.1 "$PORT"
nf_write_connection "$CONN" "127.0.0.1:$PORT" "$CERTS/ca.crt"

# -- 3. register the nodes by name --------------------------------------------------------
: > "$NF_WORK/registered.txt"
for ((i = 0; i < NODES; i++)); do
  reg="$(flwr supernode register "$KEYS/site-$i.pub" "$CONN" --name "site-$i" --format json)" \
    || nf_die "flwr supernode register site-$i failed: $reg"
  id="$(printf '%s' "$reg" | "$NF_PY" -c 'import json,sys; t=sys.stdin.read(); print(json.loads(t[t.index("{"):])["node-id"])')"
  echo "site-$i $id" >> "$NF_WORK/registered.txt"
  nf_log "registered site-$i as node $id"
done

# -- 4. SuperNodes with their private keys ----------------------------------------------
nf_start_node() {
  local i="$1" name="$2"
  nf_start "$name" flower-supernode --root-certificates "$CERTS/ca.crt" \
    --superlink "127.0.0.1:$PORT" --auth-supernode-private-key "$KEYS/site-$i" \
    --port "$(nf_free_port)" --node-config "partition-id=$i num-partitions=$NODES"
}
for ((i = 0; i < NODES; i++)); do nf_start_node "$i" "supernode-$i"; done
nf_wait_nodes "$CONN" "$NODES"

# A SuperNode whose key was never registered is refused (and exits).
nf_node_key "$KEYS/intruder"
nf_start intruder flower-supernode --root-certificates "$CERTS/ca.crt" \
  --superlink "127.0.0.1:$PORT" --auth-supernode-private-key "$KEYS/intruder" \
  --port "$(nf_free_port)" --node-config "partition-id=0 num-partitions=$NODES"
INTRUDER=$NF_LAST_PID
for ((t = 0; t < 120 && $(kill -0 "$INTRUDER" 2>/dev/null && echo 1 || echo 0); t++)); do sleep 0.5; done
kill -0 "$INTRUDER" 2>/dev/null && nf_die "a SuperNode with an unregistered key was not refused"
rc=0; wait "$INTRUDER" || rc=$?
echo "$rc" > "$NF_WORK/unregistered-exit"
# its SuperExec (started before the refusal) follows its parent out; make sure it did
for ((t = 0; t < 20; t++)); do
  orphans="$(pgrep -f -- "--parent-pid $INTRUDER\$" || true)"
  [ -z "$orphans" ] && break
  sleep 0.5
done
for p in $orphans; do echo "$p" >> "$NF_WORK/stopped-pids"; kill -KILL "$p" 2>/dev/null || true; done
nf_log "a SuperNode with an unregistered key was refused (exit $rc)"

# Restart site-K (same key) once round RESTART_AT has sampled its nodes (so that a
# request applied at that boundary found the node online), then record whether it was back
# online (same node id) before round RESTART_AT+1 sampled: WORK/restarted.
nf_restart_watch() {
  local id
  id="$(awk -v n="site-$RESTART_NODE" '$1 == n {print $2}' "$NF_WORK/registered.txt")"
  until awk -v r="[ROUND $RESTART_AT/" 'index($0, r) {f = 1} f && /configure_train/ {ok = 1} END {exit !ok}' \
      "$NF_WORK/flwr-run.log" 2>/dev/null; do
    sleep 0.5
  done
  nf_log "round $RESTART_AT sampled: restarting site-$RESTART_NODE (node $id) with the same key"
  nf_stop "supernode-$RESTART_NODE"
  nf_start_node "$RESTART_NODE" "supernode-$RESTART_NODE-restarted"
  until grep -q "SuperNode ID" "$NF_WORK/supernode-$RESTART_NODE-restarted.log"; do sleep 0.5; done
  if grep -q "\[ROUND $((RESTART_AT + 1))/" "$NF_WORK/flwr-run.log"; then
    echo "restarted site-$RESTART_NODE at round $RESTART_AT; back online after round $((RESTART_AT + 1)) began" > "$NF_WORK/restarted"
  else
    echo "restarted site-$RESTART_NODE at round $RESTART_AT; back online before round $((RESTART_AT + 1))" > "$NF_WORK/restarted"
  fi
  nf_log "$(cat "$NF_WORK/restarted")"
}
if [ -n "$RESTART_NODE" ]; then
  nf_restart_watch 2> "$NF_WORK/restart-watch.log" &
  echo "restart-watch $!" >> "$NF_WORK/pids"
fi

# -- 5. the run ---------------------------------------------------------------------------
nf_flwr_run "$CONN" "$RUN_CONFIG"
[ -f "$OUT/results.json" ] || nf_die "the run wrote no $OUT/results.json (logs in $NF_WORK)"
if [ -n "$RESTART_NODE" ]; then
  [ -f "$NF_WORK/restarted" ] || nf_die "round $RESTART_AT never started: site-$RESTART_NODE was not restarted"
  # the restarted node's SuperNode ID lines (one per start) must all be the registered id
  grep -h "SuperNode ID" "$NF_WORK/supernode-$RESTART_NODE.log" "$NF_WORK/supernode-$RESTART_NODE-restarted.log" >&2 || true
fi
flwr supernode ls "$CONN" --format json > "$NF_WORK/nodes-end.json" 2>/dev/null || true
nf_log "done in $((SECONDS - T0)) s; results: $OUT/results.json (logs: $NF_WORK)"
echo "$OUT/results.json"
