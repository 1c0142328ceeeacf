#!/usr/bin/env bash
# Install a coopflower SuperNode on a board (Raspberry Pi OS 64-bit, Jetson Linux) or any host:
# a virtual environment in .venv with only what a node needs (edge/requirements.txt).
#   TORCH_WHEEL=/path/to/torch-*.whl  use this wheel (Jetson: NVIDIA's wheel for your JetPack)
#   TORCH_SPEC="torch==2.13.0"        otherwise, what pip installs (Pi: the aarch64 CPU wheel)
#   APP_REQUIREMENTS=path             the app's own dependencies (a requirements file), if any;
#                                     the paper app's: edge/paper-app-requirements.txt
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
if [ -n "${TORCH_WHEEL:-}" ]; then
  .venv/bin/pip install -q "$TORCH_WHEEL"
elif ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
.venv/bin/pip install -q -r edge/requirements.txt
# --no-deps: keep the board's torch and skip the server-side extras (Ray, Hydra, eth-tester)
.venv/bin/pip install -q --no-deps -e .
if [ -n "${APP_REQUIREMENTS:-}" ]; then
  .venv/bin/pip install -q -r "$APP_REQUIREMENTS"
fi
.venv/bin/python -c "import coopflower.client, torch; print('coopflower node ready, torch', torch.__version__)"
