#!/usr/bin/env bash
# The main job on the embedded defaults (in-process EVM, embedded content-addressed store).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export FLWR_TELEMETRY_ENABLED=0
exec .venv/bin/coopflower demo "$@"
