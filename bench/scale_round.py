"""One full coordinated round (k = 3) in Flower's simulation engine at 10, 100 and 1000
simulated contributors, on the embedded chain and on anvil.

    python bench/scale_round.py --json                                   # 10,100,1000 x both
    python bench/scale_round.py --json --sizes 10,100 --backends embedded
    python bench/scale_round.py --json --tiny                            # n = 6, embedded

Each (backend, n) runs in a process of its own (``bench/scale/round.py``): a ServerApp with
``CoordinatedStrategy(FedAvg(fraction_train=1.0), k=3)`` and ``flwr.simulation.run_simulation``
with ``num_supernodes=n`` of a tiny numpy softmax-regression app (``bench/scale/app.py``, one
local gradient step, ``coop_mod`` around it), ``--workers`` Ray workers at once. The round
(open to MetaModel recorded; registration is once per task and reported apart as ``setup_s``)
is timed by the strategy's own round report; ``coordination_s`` is its wall time less the
nodes' compute (the app's train and evaluate, summed over nodes, over the workers running at
once), ``tx_per_round`` and ``gas_per_contributor`` come from the round's transactions read
back from the chain, ``peak_rss_mb`` is the ServerApp process's peak RSS and
``simulation_rss_mb`` the peak of Ray's processes together.

The last stdout line is one JSON object: ``sizes``; per figure ``{backend: {n: value}}``;
``ratios`` per backend (coordination_s(1000)/coordination_s(100), target <= 10, and
gas_per_contributor(1000)/gas_per_contributor(100), target <= 1); seed 000's Table 3 beside our
milliseconds per transaction; ``at_10000``: the chain side of a 10,000-contributor round
measured on anvil (``bench/scaling.py``'s life-cycle, no Flower; ``--no-chain-10000`` skips
it) and the rest estimated from the measured sizes. A line per size and phase goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scale.summary import BIG_N, summarize  # noqa: E402


def log(msg: str) -> None:
    print(f"[scale_round] {msg}", file=sys.stderr, flush=True)


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                return dict(json.loads(line))
            except ValueError:
                return None
    return None


def run_child(args: list[str], timeout: float, what: str) -> dict[str, Any]:
    """Run ``python -m <args>`` from the repo (its stderr shown as it comes); returns its last
    JSON line, or ``{"ok": False, "error": ...}``."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, stdout=subprocess.PIPE,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"{what}: no result within {timeout:.0f} s"}
    out = _last_json(proc.stdout)
    if out is None:
        return {"ok": False, "error": f"{what}: exit {proc.returncode}, no JSON result"}
    out.setdefault("wall_s", round(time.perf_counter() - t0, 1))
    return out


def _line(backend: str, n: int, r: dict[str, Any]) -> str:
    if not r.get("ok"):
        return f"{backend} n={n}: FAILED in {r.get('failed_phase')}: {r.get('error')}"
    return (f"{backend} n={n}: round {r['round_s']:.2f} s, coordination "
            f"{r['coordination_s']:.2f} s, {r['tx_per_round']} tx, "
            f"{r['gas_per_contributor']:,.0f} gas/contributor, {r['accepted']} accepted, "
            f"ServerApp {r['peak_rss_mb']:.0f} MB, Ray {r['simulation_rss_mb']:.0f} MB")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.add_argument("--sizes", default="10,100,1000", help="simulated contributors, comma list")
    p.add_argument("--backends", default="embedded,anvil", help="embedded and/or anvil")
    p.add_argument("--workers", type=int, default=1, help="Ray workers running ClientApps "
                   "at once (1: the nodes' compute adds up to wall time)")
    p.add_argument("--tiny", action="store_true", help="n = 6 on the embedded chain, no "
                   "10,000 measurement (for the test)")
    p.add_argument("--no-chain-10000", action="store_true", help="estimate the 10,000 "
                   "round's chain side instead of measuring it on anvil")
    p.add_argument("--block-gas-limit", type=int, default=None, help="the chains' block gas "
                   "limit (default: their own, about 30 M)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per size")
    args = p.parse_args(argv)
    if args.tiny:
        args.sizes, args.backends, args.no_chain_10000 = "6", "embedded", True
    sizes = sorted({int(s) for s in args.sizes.split(",") if s})
    backends = [b for b in args.backends.split(",") if b]
    bad = [b for b in backends if b not in ("embedded", "anvil")]
    if bad or not sizes or min(sizes) < 4:
        p.error(f"backends must be embedded/anvil (got {bad}); sizes >= k + 1 = 4")
    t0 = time.perf_counter()
    by_backend: dict[str, dict[int, dict[str, Any]]] = {}
    for backend in backends:
        for n in sizes:
            log(f"{backend} n={n}: one coordinated round in Flower's simulation")
            gas = ["--block-gas-limit", str(args.block_gas_limit)] if args.block_gas_limit else []
            r = run_child(["bench.scale.round", str(n), backend, "--workers",
                           str(args.workers), *gas], args.timeout, f"{backend} n={n}")
            by_backend.setdefault(backend, {})[n] = r
            log(_line(backend, n, r))
    measured = None
    if not args.no_chain_10000:
        log(f"anvil n={BIG_N}: the round's chain side alone (bench/scaling.py's life-cycle)")
        measured = run_child(["bench.scale.chain10k", str(BIG_N)], args.timeout,
                             f"chain side at {BIG_N}")
        log(f"anvil n={BIG_N}: {json.dumps(measured)[:400]}")
    doc = summarize(by_backend, sizes, measured)
    doc["workers"] = args.workers
    doc["block_gas_limit"] = {b: {str(n): r.get("block_gas_limit") for n, r in runs.items()}
                              for b, runs in by_backend.items()}
    doc["total_s"] = round(time.perf_counter() - t0, 1)
    doc["command"] = " ".join(["python bench/scale_round.py", *(argv or sys.argv[1:])])
    for b, rat in doc["ratios"].items():
        log(f"{b}: {rat}")
    log(f"{doc['seed_000_table3']['claim']}; ours, ms per transaction: {doc['ms_per_tx']}")
    if args.json:
        print(json.dumps(doc))
    else:
        for key, value in doc.items():
            if key != "per_size":
                print(f"{key:22s} {value}")
    ok = all(r.get("ok") for runs in by_backend.values() for r in runs.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
