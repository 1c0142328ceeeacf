#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, lint, type-check, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --node
export FLWR_TELEMETRY_ENABLED=0
export COOPFLOWER_REQUIRE_TOOLS=1   # the tools were just installed: a skip would hide a missing part
.venv/bin/ruff check coopflower tests bench experiments
.venv/bin/mypy coopflower
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
