#!/usr/bin/env bash
# Local deployment: one SuperLink and N SuperNodes as processes on this machine, then
# train -> unlearn -> recover with `flwr run . local-deployment --stream`.
#
#   bash examples/deploy/local.sh                        # 3 nodes, forget partition 0
#   bash examples/deploy/local.sh --nodes 4 --unlearn 2 --train-rounds 5 --recovery-rounds 3
#   bash examples/deploy/local.sh --run-config "local-epochs=1 lr=0.05"
#
# Options (or the environment variable in brackets):
#   --nodes N            SuperNodes, each with partition-id=i num-partitions=N [NF_NODES, 3]
#   --port P             SuperLink HTTP port (Fleet, Control and Runtime APIs) [NF_PORT, a free one]
#   --node-port P        first SuperNode Runtime API port, node i uses P+i [NF_NODE_PORT, free ones]
#   --train-rounds R     FedAvg rounds before the request [NF_TRAIN_ROUNDS, 3]
#   --recovery-rounds R  recovery rounds after it [NF_RECOVERY_ROUNDS, 2]
#   --unlearn IDS        partition ids to forget, comma list ('' = none) [NF_UNLEARN, 0]
#   --run-config "..."   extra run-config overrides, appended last [NF_RUN_CONFIG]
#   --out DIR            where results.json goes [NF_OUT, outputs/deploy-local]
#   --work DIR           logs, state.db, pid list [NF_WORK_DIR, a new temp folder]
#   --connection NAME    connection name in $FLWR_HOME/config.toml [NF_CONNECTION, local-deployment]
# FLWR_HOME defaults to WORK/flwr-home. Everything started is stopped by pid on exit,
# also on failure, Ctrl-C, TERM, HUP or a closed output pipe (`... 2>&1 | tee log`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES="${NF_NODES:-3}"
PORT="${NF_PORT:-}"
NODE_PORT="${NF_NODE_PORT:-}"
TRAIN_ROUNDS="${NF_TRAIN_ROUNDS:-3}"
RECOVERY_ROUNDS="${NF_RECOVERY_ROUNDS:-2}"
UNLEARN="${NF_UNLEARN-0}"
EXTRA="${NF_RUN_CONFIG:-}"
OUT="${NF_OUT:-$NF_ROOT/outputs/deploy-local}"
WORK="${NF_WORK_DIR:-}"
CONN="${NF_CONNECTION:-local-deployment}"
nf_parse_options --node-port NODE_PORT -- "$@"
[ -n "$WORK" ] || WORK="$(mktemp -d "${TMPDIR:-/tmp}/nf-deploy-local.XXXXXX")"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
nf_init "$WORK"
RUN_CONFIG="out-dir='$OUT' $(nf_reuse_key "$EXTRA") num-train-rounds=$TRAIN_ROUNDS recovery.rounds=$RECOVERY_ROUNDS unlearn.clients='$UNLEARN' $EXTRA"
nf_check_run_config "$RUN_CONFIG"  # bad keys and values: exit 2 before anything starts
T0=$SECONDS

[ -n "$PORT" ] || PORT="$(nf_free_port)"
nf_start superlink flower-superlink --insecure --port "$PORT" \
  --database "$NF_WORK/state.db" --disable-runtime-dependency-installation
nf_wait_port 127.0.0.1 "$PORT"
nf_write_connection "$CONN" "127.0.0.1:$PORT"

for ((i = 0; i < NODES; i++)); do
  if [ -n "$NODE_PORT" ]; then np=$((NODE_PORT + i)); else np="$(nf_free_port)"; fi
  nf_start "supernode-$i" flower-supernode --insecure --superlink "127.0.0.1:$PORT" \
    --port "$np" --node-config "partition-id=$i num-partitions=$NODES"
done
nf_wait_nodes "$CONN" "$NODES"

nf_flwr_run "$CONN" "$RUN_CONFIG"
[ -f "$OUT/results.json" ] || nf_die "the run wrote no $OUT/results.json (logs in $NF_WORK)"
nf_log "done in $((SECONDS - T0)) s; results: $OUT/results.json (logs: $NF_WORK)"
echo "$OUT/results.json"
