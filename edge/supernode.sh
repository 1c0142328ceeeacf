#!/usr/bin/env bash
# Start a SuperNode for any Flower app that runs coopflower's mod (a computing/verification
# contributor) on a board or any host.
#
# Settings come from the environment (or an env file given with --env FILE, as systemd does):
#   SUPERLINK        host:port of the SuperLink's Fleet API        (required, e.g. 10.0.0.2:9092)
#   PARTITION_ID     this node's partition index                   (required)
#   NUM_PARTITIONS   how many nodes share the data                 (required)
#   NODE_CONFIG      the app's own node config keys, as flower-supernode --node-config takes
#                    them, e.g. for the paper app: model="table4" partition="labels"
#                    labels="0,1,2,3,4" (see coopflower/app/__init__.py)
#   STORE            the node's IPFS Kubo RPC URL (default: the server's storage spec)
#   KEY_FILE         the node's Ethereum key file (created on first start, never sent)
#   WATCH_CHAIN      opt-in: a JSON-RPC URL of the task's chain; the node then also runs
#                    `coopflower watch`, which sends from KEY_FILE's (funded) key the node's
#                    signed votes that no relayer sent before the deadline (needs KEY_FILE)
#   CONTRACT, DEPOSIT_WEI  with WATCH_CHAIN: before starting, hold DEPOSIT_WEI of the node's
#                    own money in the task's contract (`coopflower deposit`), from which its
#                    deposits are paid: its penalties then cost the node, not the initiator
#   CLIENTAPP_PORT   the SuperNode's local ClientAppIo port        (default 9094; one per node/host)
#   INSECURE=1       plaintext HTTP (loopback only); otherwise ROOT_CERT=path to the lab CA
#                    that signed the SuperLink's certificate (edge/lab-certs.sh makes both)
#   AUTH_KEY         the SuperNode's P-384 private key (OpenSSH form, edge/lab-certs.sh or
#                    ssh-keygen -t ecdsa -b 384); its .pub must be registered with the
#                    SuperLink first (flwr supernode register), which then refuses any other
#   VENV             the virtual environment with coopflower       (default: the repo's .venv)
# --dry-run prints the command instead of running it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --env) set -a; . "$2"; set +a; shift 2 ;;
    --dry-run) dry=1; shift ;;
    *) echo "supernode.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
: "${SUPERLINK:?set SUPERLINK=host:port}"
: "${PARTITION_ID:?set PARTITION_ID}"
: "${NUM_PARTITIONS:?set NUM_PARTITIONS}"
VENV=${VENV:-$here/../.venv}

for old in MODEL PARTITION LABELS ALPHA MNIST_DIR; do
  if [ -n "${!old:-}" ]; then
    echo "supernode.sh: $old is the paper app's setting, not the node's: put it in NODE_CONFIG" \
         "(e.g. NODE_CONFIG='model=\"table4\" partition=\"labels\" labels=\"0,1,2,3,4\"')" >&2
    exit 2
  fi
done
cfg="partition-id=$PARTITION_ID num-partitions=$NUM_PARTITIONS"
[ -n "${NODE_CONFIG:-}" ] && cfg="$cfg $NODE_CONFIG"
[ -n "${STORE:-}" ] && cfg="$cfg store=\"$STORE\""
[ -n "${KEY_FILE:-}" ] && cfg="$cfg key-file=\"$KEY_FILE\""

args=(--superlink "$SUPERLINK" --node-config "$cfg" --port "${CLIENTAPP_PORT:-9094}")
if [ "${INSECURE:-0}" = 1 ]; then
  args+=(--insecure)
else
  : "${ROOT_CERT:?set ROOT_CERT=path/to/ca.pem (or INSECURE=1 on a lab network)}"
  args+=(--root-certificates "$ROOT_CERT")
fi
if [ -n "${AUTH_KEY:-}" ]; then
  [ "${INSECURE:-0}" = 1 ] && { echo "supernode.sh: AUTH_KEY needs TLS (ROOT_CERT), not INSECURE=1" >&2; exit 2; }
  args+=(--auth-supernode-private-key "$AUTH_KEY")
fi
export FLWR_TELEMETRY_ENABLED=${FLWR_TELEMETRY_ENABLED:-0}
deposit=()
if [ -n "${DEPOSIT_WEI:-}" ]; then
  : "${WATCH_CHAIN:?set WATCH_CHAIN: DEPOSIT_WEI is paid on that chain}"
  : "${CONTRACT:?set CONTRACT: the task contract that holds the deposit}"
  : "${KEY_FILE:?set KEY_FILE: the deposit comes from the node key, which must be funded}"
  deposit=("$VENV/bin/python" -m coopflower deposit --chain "$WATCH_CHAIN" --key-file "$KEY_FILE"
           --contract "$CONTRACT" --wei "$DEPOSIT_WEI")
fi
watch=()
if [ -n "${WATCH_CHAIN:-}" ]; then
  : "${KEY_FILE:?set KEY_FILE: WATCH_CHAIN sends votes from the node key, which must be funded}"
  watch=("$VENV/bin/python" -m coopflower watch --chain "$WATCH_CHAIN" --key-file "$KEY_FILE")
fi
if [ "$dry" = 1 ]; then
  [ ${#deposit[@]} -gt 0 ] && { printf '%q ' "${deposit[@]}"; echo; }
  [ ${#watch[@]} -gt 0 ] && { printf '%q ' "${watch[@]}"; echo; }
  printf '%q ' "$VENV/bin/flower-supernode" "${args[@]}"; echo
  exit 0
fi
[ ${#deposit[@]} -gt 0 ] && "${deposit[@]}"
[ ${#watch[@]} -gt 0 ] && "${watch[@]}" &
exec "$VENV/bin/flower-supernode" "${args[@]}"
