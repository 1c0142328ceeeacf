"""A run's JSON report: contract, task, and per round its phases, timings, transactions,
bytes, accepted models and failures, plus central accuracy (``$COOPFLOWER_REPORT`` or the
app's ``report-file``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flwr.serverapp.strategy import Result, Strategy

__all__ = ["write_report"]


def write_report(path: str, strategy: Strategy, result: Result) -> None:
    """Write a JSON report of a run: contract, task, and per round its phases, timings,
    transactions, bytes, accepted models and failures, plus central accuracy."""
    doc: dict[str, Any] = {"strategy": type(strategy).__name__, "central": {
        str(r): dict(m) for r, m in result.evaluate_metrics_serverapp.items()}}
    from coopflower.strategy.coordinated import CoordinatedStrategy

    if isinstance(strategy, CoordinatedStrategy):
        doc.update(contract=strategy.ledger.address, task=strategy.task_id, rounds=[{
            "round": r.server_round, "chain_round": r.chain_round,
            "phase_seconds": r.phase_seconds, "wall_seconds": r.wall_seconds,
            "compute_seconds": r.compute_seconds, "tx": r.tx, "gas": r.gas, "bytes": r.bytes,
            "submissions": len(r.submissions), "votes": r.votes, "accepted": r.accepted,
            "meta_cid": r.meta_cid.hex() if r.meta_cid else None,
            "failures": [f"{f.phase} node {f.node_id}: {f.reason}" for f in r.failures],
        } for r in strategy.reports], setup_seconds=strategy.phases.seconds(0).get("setup"))
    Path(path).write_text(json.dumps(doc, indent=1))
