"""The scale bench's JSON object from its per-size runs: the figures keyed by backend and n,
the targets' ratios, seed 000's Table 3 beside ours, and what changes at 10,000 contributors."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# seeds/000_28a9d12aa89c3e2f.txt, Table 3: nodes -> transaction processing time (ms)
SEED_TABLE3_MS = {10: 50, 50: 80, 100: 120, 200: 200, 500: 400}
SEED_CLAIM = "seed 000, Table 3: 400 ms transaction processing time at 500 nodes"
FIGURES = ("round_s", "coordination_s", "tx_per_round", "gas_per_contributor", "peak_rss_mb",
           "simulation_rss_mb", "compute_s", "setup_s", "accepted", "votes", "ms_per_tx")
# phases that are chain transactions only (no message exchange), and their functions
CHAIN_PHASES = ("open", "submit", "vote", "settle", "record")
CHAIN_FUNCTIONS = ("openRound", "submitBatch", "closeSubmissions", "submitVotes", "settle",
                   "recordMetaModel")
# items a round relays per contributor (k votes each) and the function that carries them
ITEMS = {"submitBatch": 1, "revealSeeds": 1, "submitVotes": 3}
BIG_N = 10_000


def ms_per_tx(run: Mapping[str, Any]) -> float | None:
    """Wall ms per transaction of the round's chain-only phases (send until receipt, gas
    estimate included): our counterpart of the seed's transaction processing time."""
    chain = run.get("chain", {})
    tx = sum(chain.get(f, {}).get("tx", 0) for f in CHAIN_FUNCTIONS)
    secs = sum(run.get("phase_s", {}).get(p, 0.0) for p in CHAIN_PHASES)
    return round(1000 * secs / tx, 1) if tx else None


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """Least squares ``y = a + b x``; None with fewer than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    m = len(points)
    sx, sy = sum(x for x, _ in points), sum(y for _, y in points)
    sxx, sxy = sum(x * x for x, _ in points), sum(x * y for x, y in points)
    b = (m * sxy - sx * sy) / (m * sxx - sx * sx)
    return (sy - b * sx) / m, b


def _ratio(runs: Mapping[int, Mapping[str, Any]], key: str, hi: int, lo: int) -> float | None:
    if hi not in runs or lo not in runs or not runs[lo].get(key) or key not in runs[hi]:
        return None  # a size that failed has no figure: the ratio is unknown, not met
    return round(float(runs[hi][key]) / float(runs[lo][key]), 3)


def ratios(runs: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """The targets: coordination_s(1000)/coordination_s(100) <= 10 and
    gas_per_contributor(1000)/gas_per_contributor(100) <= 1."""
    coord = _ratio(runs, "coordination_s", 1000, 100)
    gas = _ratio(runs, "gas_per_contributor", 1000, 100)
    return {"coordination_1000_over_100": coord, "coordination_target": 10,
            "coordination_ok": None if coord is None else coord <= 10,
            "gas_per_contributor_1000_over_100": gas, "gas_target": 1,
            "gas_ok": None if gas is None else gas <= 1}


def _extrapolate(runs: Mapping[int, Mapping[str, Any]], key: str) -> float | None:
    fit = fit_line([(n, float(r[key])) for n, r in runs.items() if r.get(key) is not None])
    return None if fit is None else round(fit[0] + fit[1] * BIG_N, 1)


def chain_at(n: int, chain: Mapping[str, Mapping[str, int]], runs_n: int,
             block_gas_limit: int) -> dict[str, Any]:
    """The round's batches at ``n`` contributors on paper, from one run's per-function
    census at ``runs_n``: per item gas and calldata, items per transaction (the library's
    ``batch_size``), transactions, the largest batch's gas against the block's."""
    from coopflower.ledger.batches import batch_size

    kinds = {"submitBatch": "submission", "revealSeeds": "share", "submitVotes": "vote",
             "registerFor": "registration"}
    out: dict[str, Any] = {}
    for fn, kind in kinds.items():
        row = chain.get(fn)
        if not row:
            continue
        items = ITEMS.get(fn, 1) * runs_n
        per_gas, per_bytes = row["gas"] / items, row["calldata_bytes"] / items
        size = batch_size(block_gas_limit, kind)
        big_items = ITEMS.get(fn, 1) * n
        out[fn] = {"gas_per_item": round(per_gas), "calldata_per_item": round(per_bytes, 1),
                   "items_per_tx": size, "tx": math.ceil(big_items / size),
                   "batch_gas": round(min(size, big_items) * per_gas),
                   "batch_calldata_bytes": round(min(size, big_items) * per_bytes),
                   "calldata_bytes_total": round(big_items * per_bytes)}
    out["block_gas_limit"] = block_gas_limit
    return out


def at_10000(by_backend: Mapping[str, Mapping[int, Mapping[str, Any]]],
             measured_chain: Mapping[str, Any] | None) -> dict[str, Any]:
    """What changes at 10,000: each figure marked ``measured`` or ``estimated``."""
    out: dict[str, Any] = {"n": BIG_N}
    if measured_chain is not None:
        out["chain_measured"] = {"kind": "measured", **measured_chain}
    for backend, runs in by_backend.items():
        ok = {n: r for n, r in runs.items() if r.get("ok")}
        if not ok:
            continue
        top = max(ok)
        est: dict[str, Any] = {"kind": "estimated", "from_sizes": sorted(ok),
                               "method": "least-squares line through the measured sizes"}
        for key in ("coordination_s", "round_s", "peak_rss_mb", "simulation_rss_mb",
                    "setup_s"):
            est[key] = _extrapolate(ok, key)
        est["batches"] = chain_at(BIG_N, ok[top]["chain"], top, ok[top]["block_gas_limit"])
        out[backend] = est
    return out


def summarize(by_backend: Mapping[str, Mapping[int, Mapping[str, Any]]], sizes: Sequence[int],
              measured_chain: Mapping[str, Any] | None) -> dict[str, Any]:
    """The bench's JSON object (see ``bench/scale_round.py``)."""
    doc: dict[str, Any] = {"k": 3, "sizes": list(sizes), "backends": list(by_backend)}
    for key in FIGURES:
        doc[key] = {b: {str(n): (ms_per_tx(r) if key == "ms_per_tx" else r.get(key))
                        for n, r in runs.items()} for b, runs in by_backend.items()}
    doc["ok"] = {b: {str(n): bool(r.get("ok")) for n, r in runs.items()}
                 for b, runs in by_backend.items()}
    doc["errors"] = {b: {str(n): r["error"] for n, r in runs.items() if r.get("error")}
                     for b, runs in by_backend.items()}
    doc["ratios"] = {b: ratios(runs) for b, runs in by_backend.items()}
    doc["seed_000_table3"] = {"claim": SEED_CLAIM, "tx_processing_ms": {
        str(n): ms for n, ms in SEED_TABLE3_MS.items()}, "ours_ms_per_tx": doc["ms_per_tx"]}
    doc["at_10000"] = at_10000(by_backend, measured_chain)
    doc["per_size"] = {b: {str(n): dict(r) for n, r in runs.items()}
                       for b, runs in by_backend.items()}
    return doc
