#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: a virtual environment in .venv with the
# pinned Python packages, and (with --node) the pinned npm tools in tools/*/node_modules.
# Re-running is cheap: each step is skipped while its inputs are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

PY=${PYTHON:-python3}
# (the image's pip config names an extra index folder that may not exist: drop that warning;
# pipefail keeps pip's exit status, only grep's "nothing left to print" is forgiven)
quiet() { grep -v "is ignored: it is neither" || true; }
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi

stamp=.venv/.coopflower-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  t0=$SECONDS
  # torch first: 2.13.0 resolves to the local CPU wheel; anything looser pulls CUDA.
  .venv/bin/pip install -q "torch==2.13.0" 2>&1 | quiet
  .venv/bin/pip install -q -e ".[dev]" 2>&1 | quiet
  echo "$want" > "$stamp"
  log "python packages installed in $((SECONDS - t0)) s"
fi

# slither (static analysis of contracts/, tests/test_slither.py) in a virtual environment of its
# own: slither-analyzer 0.11.6 requires web3<8, the project pins web3 8.0.0.
SLITHER=slither-analyzer==0.11.6
sdir=.venv/tools/slither
if [ "$(cat "$sdir/.coopflower-installed" 2>/dev/null || true)" != "$SLITHER" ]; then
  t0=$SECONDS
  "$PY" -m venv "$sdir"
  "$sdir/bin/pip" install -q "$SLITHER" 2>&1 | quiet
  echo "$SLITHER" > "$sdir/.coopflower-installed"
  log "$SLITHER installed in $sdir in $((SECONDS - t0)) s"
fi

if [ "${1:-}" = "--node" ]; then
  for d in evm ipfs clique mnist; do
    dir=tools/$d
    nstamp=$dir/node_modules/.coopflower-installed
    nwant=$(cat "$dir/package.json" "$dir/package-lock.json" 2>/dev/null | sha256sum | cut -c1-16)
    if [ "$(cat "$nstamp" 2>/dev/null || true)" != "$nwant" ]; then
      t0=$SECONDS
      (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
      # hash again: the first install writes package-lock.json
      cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -c1-16 > "$nstamp"
      log "npm tools in $dir installed in $((SECONDS - t0)) s"
    fi
  done
fi
