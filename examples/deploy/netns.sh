#!/usr/bin/env bash
# Several hosts on one machine: each SuperNode runs in its own network namespace with its
# own address, and reaches the SuperLink over a veth pair plugged into a bridge:
#
#   root namespace: bridge nfbr-TAG 10.77.0.1/24, flower-superlink --host 10.77.0.1
#   namespace nf-TAG-i: eth0 10.77.0.(10+i)/24, flower-supernode --superlink 10.77.0.1:PORT
#
# Then train -> unlearn -> recover with `flwr run . netns-deployment --stream`. With
# --kill-node K, the SuperNode with partition-id K (its whole namespace: SuperNode,
# SuperExec, ClientApps) is killed when round --kill-at-round starts, and the namespace is
# deleted: the run must go on with the others. Needs root (CAP_NET_ADMIN). Only addresses
# inside the namespaces and bridge made here are used.
#
#   sudo bash examples/deploy/netns.sh                                  # 3 nodes, forget 0
#   sudo bash examples/deploy/netns.sh --unlearn 0 --kill-node 2 --kill-at-round 5 --recovery-rounds 3
#
# Options (or the environment variable in brackets):
#   --nodes N            SuperNodes [NF_NODES, 3]
#   --subnet A.B.C       /24 used for the bridge (A.B.C.1) and the nodes [NF_SUBNET, 10.77.0]
#   --tag T              suffix of namespace/interface names, <= 5 chars [NF_TAG, random]
#   --port P             SuperLink HTTP port [NF_PORT, a free one]
#   --train-rounds R     [NF_TRAIN_ROUNDS, 3]    --recovery-rounds R  [NF_RECOVERY_ROUNDS, 2]
#   --unlearn IDS        partition ids to forget [NF_UNLEARN, 0]
#   --kill-node K        partition id of a node to kill during the run [NF_KILL_NODE]
#   --kill-at-round R    kill it when round R starts [NF_KILL_AT_ROUND, train-rounds + 2]
#   --run-config "..."   extra run-config overrides [NF_RUN_CONFIG]
#   --out DIR            where results.json goes [NF_OUT, outputs/deploy-netns]
#   --work DIR           logs, state.db, pid list [NF_WORK_DIR, a new temp folder]
# Namespaces, veths, the bridge and every process are removed on exit, also on failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES="${NF_NODES:-3}"
SUBNET="${NF_SUBNET:-10.77.0}"
TAG="${NF_TAG:-}"
PORT="${NF_PORT:-}"
TRAIN_ROUNDS="${NF_TRAIN_ROUNDS:-3}"
RECOVERY_ROUNDS="${NF_RECOVERY_ROUNDS:-2}"
UNLEARN="${NF_UNLEARN-0}"
KILL_NODE="${NF_KILL_NODE:-}"
KILL_AT="${NF_KILL_AT_ROUND:-}"
EXTRA="${NF_RUN_CONFIG:-}"
OUT="${NF_OUT:-$NF_ROOT/outputs/deploy-netns}"
WORK="${NF_WORK_DIR:-}"
CONN="${NF_CONNECTION:-netns-deployment}"
nf_parse_options --subnet SUBNET --tag TAG --kill-node KILL_NODE \
  --kill-at-round KILL_AT -- "$@"
[ -n "$TAG" ] || TAG="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' | head -c 4)"
[ "${#TAG}" -le 5 ] || { echo "--tag: at most 5 characters" >&2; exit 2; }
[[ "$SUBNET" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "--subnet: A.B.C" >&2; exit 2; }
[ -n "$KILL_AT" ] || KILL_AT=$((TRAIN_ROUNDS + 2))
[ -n "$WORK" ] || WORK="$(mktemp -d "${TMPDIR:-/tmp}/nf-deploy-netns.XXXXXX")"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
nf_init "$WORK"
RUN_CONFIG="out-dir='$OUT' $(nf_reuse_key "$EXTRA") num-train-rounds=$TRAIN_ROUNDS recovery.rounds=$RECOVERY_ROUNDS unlearn.clients='$UNLEARN' $EXTRA"
nf_check_run_config "$RUN_CONFIG"  # bad keys and values: exit 2 before anything starts
T0=$SECONDS

BRIDGE="nfbr-$TAG"
LINK_IP="$SUBNET.1"
NAMESPACES=()

# Cleanup (runs after every started process was stopped): namespaces (their veth ends
# go with them, and so do the root-side peers), then the bridge.
nf_netns_cleanup() {
  local ns pid
  for ns in "${NAMESPACES[@]}"; do
    if ip netns list | grep -qw "^$ns"; then
      for pid in $(ip netns pids "$ns" 2>/dev/null); do
        echo "$pid" >> "$NF_WORK/stopped-pids"
        kill -KILL "$pid" 2>/dev/null || true
      done
      ip netns del "$ns" 2>/dev/null || true
    fi
    ip link del "nfv-$TAG-${ns##*-}" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  nf_log "removed namespaces ${NAMESPACES[*]:-none} and bridge $BRIDGE"
}
NF_CLEANUP_HOOKS+=(nf_netns_cleanup)

ip link add "$BRIDGE" type bridge || nf_die "cannot create a bridge (needs root / CAP_NET_ADMIN)"
ip addr add "$LINK_IP/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
for ((i = 0; i < NODES; i++)); do
  ns="nf-$TAG-$i"
  ip netns add "$ns" || nf_die "cannot create network namespace $ns (needs root)"
  NAMESPACES+=("$ns")
  ip link add "nfv-$TAG-$i" type veth peer name eth0 netns "$ns"
  ip link set "nfv-$TAG-$i" master "$BRIDGE" up
  ip -n "$ns" addr add "$SUBNET.$((10 + i))/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
done
nf_log "bridge $BRIDGE $LINK_IP/24; namespaces ${NAMESPACES[*]} at $SUBNET.10-$((9 + NODES))"

[ -n "$PORT" ] || PORT="$(nf_free_port)"
nf_start superlink flower-superlink --insecure --host "$LINK_IP" --port "$PORT" \
  --database "$NF_WORK/state.db" --disable-runtime-dependency-installation
nf_wait_port "$LINK_IP" "$PORT"
nf_write_connection "$CONN" "$LINK_IP:$PORT"

for ((i = 0; i < NODES; i++)); do
  # Every namespace is its own host: the same Runtime API port 9094 in each.
  nf_start "supernode-$i" ip netns exec "nf-$TAG-$i" flower-supernode --insecure \
    --superlink "$LINK_IP:$PORT" --port 9094 \
    --node-config "partition-id=$i num-partitions=$NODES"
done
nf_wait_nodes "$CONN" "$NODES"

# Kill node K's namespace (every process in it, by pid) when round KILL_AT starts.
nf_kill_watch() {
  local ns="nf-$TAG-$KILL_NODE" pid
  while ! grep -q "\[ROUND $KILL_AT/" "$NF_WORK/flwr-run.log" 2>/dev/null; do
    sleep 0.5
  done
  nf_log "round $KILL_AT started: killing every process in $ns (partition $KILL_NODE) and deleting it"
  for pid in $(ip netns pids "$ns"); do
    echo "$pid" >> "$NF_WORK/stopped-pids"
    kill -KILL "$pid" 2>/dev/null || true
  done
  sleep 1
  ip netns del "$ns"
  echo "killed partition-id=$KILL_NODE namespace=$ns at round $KILL_AT" > "$NF_WORK/killed"
}
if [ -n "$KILL_NODE" ]; then
  nf_kill_watch > "$NF_WORK/kill-watch.log" 2>&1 &
  echo "kill-watch $!" >> "$NF_WORK/pids"
fi

nf_flwr_run "$CONN" "$RUN_CONFIG"
[ -f "$OUT/results.json" ] || nf_die "the run wrote no $OUT/results.json (logs in $NF_WORK)"
if [ -n "$KILL_NODE" ] && [ ! -f "$NF_WORK/killed" ]; then
  nf_die "round $KILL_AT never started: node $KILL_NODE was not killed"
fi
nf_log "done in $((SECONDS - T0)) s; results: $OUT/results.json (logs: $NF_WORK)"
echo "$OUT/results.json"
