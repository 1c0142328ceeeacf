#!/usr/bin/env bash
# The main job on the embedded defaults (in-process EVM, embedded content-addressed store).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export FLWR_TELEMETRY_ENABLED=0
.venv/bin/coopflower demo "$@"
# then the shipped Flower app: the coordinated strategy beside FedAvg, 10 simulated SuperNodes
exec .venv/bin/coopflower simulate --nodes 10 --rounds 3
