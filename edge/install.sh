#!/usr/bin/env bash
# Install a coopflower SuperNode on a board (Raspberry Pi OS 64-bit, Jetson Linux) or any host:
# a virtual environment in .venv with only what a node needs (edge/requirements.txt).
#   TORCH_WHEEL=/path/to/torch-*.whl  use this wheel (Jetson: NVIDIA's wheel for your JetPack)
#   TORCH_SPEC="torch==2.13.0"        otherwise, this torch ...
#   TORCH_INDEX=URL                   ... from this index. Default: PyTorch's CPU wheel index
#                                     on aarch64 (a Pi) and on x86_64 without an NVIDIA GPU;
#                                     PyPI on a host with one. PyPI's aarch64 torch is the CUDA
#                                     build (2.13.0+cu130, a 427 MB wheel that pulls the NVIDIA
#                                     packages: 4.9 GB in the venv), so it is never the default
#                                     on a Pi; TORCH_INDEX=pypi asks for it anyway.
#   TORCH=none                        a torch-free node, for an app whose ClientApp needs none
#                                     (coop_mod itself imports no torch)
#   APP_REQUIREMENTS=path             the app's own dependencies (a requirements file), if any;
#                                     the paper app's: edge/paper-app-requirements.txt
#   PYTHON=python3                    the interpreter the venv is made from (3.10-3.13)
set -euo pipefail
cd "$(dirname "$0")/.."
CPU_INDEX="https://download.pytorch.org/whl/cpu"

has_nvidia_gpu() {
  [ -e /dev/nvidia0 ] || [ -e /dev/nvhost-ctrl ] || nvidia-smi -L >/dev/null 2>&1
}

default_torch_index() {  # what a host like this one should install torch from
  case "$(uname -m)" in
    aarch64|arm64) if [ -e /dev/nvhost-ctrl ]; then echo jetson; else echo "$CPU_INDEX"; fi ;;
    x86_64|amd64) if has_nvidia_gpu; then echo pypi; else echo "$CPU_INDEX"; fi ;;
    *) echo pypi ;;
  esac
}

install_torch() {
  local spec="${TORCH_SPEC:-torch==2.13.0}" index="${TORCH_INDEX:-$(default_torch_index)}"
  case "$index" in
    jetson)
      echo "install.sh: a Jetson needs NVIDIA's torch wheel for its JetPack:" \
           "TORCH_WHEEL=/path/to/torch-*.whl bash edge/install.sh" >&2
      exit 3 ;;
    pypi) .venv/bin/pip install -q "$spec" ;;
    *)
      # --index-url, not --extra-index-url: PyPI's build of the same version must not win
      if ! .venv/bin/pip install -q --index-url "$index" "$spec"; then
        echo "install.sh: could not install $spec from $index (unreachable, or no wheel for" \
             "$(uname -m) / this Python). Choose: TORCH_WHEEL=path, TORCH_INDEX=another index," \
             "TORCH_INDEX=pypi (on aarch64: the 4.9 GB CUDA build), or TORCH=none" \
             "(a torch-free node, for an app that needs none)." >&2
        exit 3
      fi ;;
  esac
}

"${PYTHON:-python3}" -m venv .venv
.venv/bin/pip install -q --upgrade pip
if [ -n "${TORCH_WHEEL:-}" ]; then
  .venv/bin/pip install -q "$TORCH_WHEEL"
elif [ "${TORCH:-}" = none ]; then
  echo "install.sh: a torch-free node (TORCH=none)"
elif ! .venv/bin/python -c "import torch" 2>/dev/null; then
  install_torch
fi
.venv/bin/pip install -q -r edge/requirements.txt
# --no-deps: keep the board's torch and skip the server-side extras (Ray, Hydra, eth-tester)
.venv/bin/pip install -q --no-deps -e .
if [ -n "${APP_REQUIREMENTS:-}" ]; then
  .venv/bin/pip install -q -r "$APP_REQUIREMENTS"
fi
.venv/bin/python - <<'EOF'
import importlib.util
import coopflower.client  # noqa: F401  (coop_mod: no torch needed)
if importlib.util.find_spec("torch") is None:
    print("coopflower node ready, no torch")
else:
    import torch
    print("coopflower node ready, torch", torch.__version__)
EOF
