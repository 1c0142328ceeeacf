"""What a coordinated round did: its report, its nodes' failures, and their plain-text views."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from flwr.app import ArrayRecord, MetricRecord
from flwr.serverapp.strategy import Result

__all__ = ["NodeFailure", "RoundReport", "record_result", "reports_table", "failure_lines"]


@dataclass(frozen=True)
class NodeFailure:
    """A node that did not do its part: ``phase``, Flower ``node_id`` and ``reason``."""

    phase: str
    node_id: int
    reason: str


@dataclass
class RoundReport:
    """What one coordinated round did.

    ``chain_round`` is the contract's round number; ``submissions`` maps submission id to
    (contributor, CID bytes, status name, yes votes, votes cast); ``meta_cid`` the aggregate's
    CID (``None`` when no model was accepted); ``phase_seconds``, ``compute_seconds`` (local
    training and evaluation on the nodes), ``handler_seconds`` (the nodes' whole handlers:
    compute plus loading data, packing, storing, fetching and signing), ``bytes`` (messages
    and storage) and ``tx`` count. ``wall_seconds`` is the time the round held the strategy
    (from its first step to its last, including any wait for the previous round's chain steps);
    ``overlapped_phases`` names the chain phases that ran in the background during the next
    round's training (pipelining), whose seconds are in ``phase_seconds`` but not on the
    round's critical path.
    """

    server_round: int
    chain_round: int = 0
    submissions: dict[int, tuple[str, bytes, str, int, int]] = field(default_factory=dict)
    votes: int = 0
    accepted: int = 0
    failures: list[NodeFailure] = field(default_factory=list)
    meta_cid: bytes | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    compute_seconds: float = 0.0
    handler_seconds: float = 0.0
    overlapped_phases: tuple[str, ...] = ()
    accepted_digests: list[bytes] = field(default_factory=list)  # arrays_digest of each model
    bytes: int = 0
    tx: int = 0
    gas: int = 0
    new_arrays: ArrayRecord | None = None
    train_metrics: MetricRecord = field(default_factory=MetricRecord)
    app_train_metrics: MetricRecord | None = None
    verify_metrics: MetricRecord = field(default_factory=MetricRecord)


def record_result(result: Result, report: RoundReport) -> None:
    """Put a finished round's train and verification metrics into Flower's ``Result``:
    ``evaluate_metrics_clientapp`` holds the inner strategy's federated evaluation, so the
    verification figures join the train metrics (prefixed ``verify-``)."""
    merged = dict(report.train_metrics)
    merged.update({f"verify-{k}": v for k, v in report.verify_metrics.items()})
    result.train_metrics_clientapp[report.server_round] = MetricRecord(merged)


def reports_table(reports: Sequence[RoundReport]) -> str:
    """A plain-text table of round reports (for logs and docs)."""
    lines = [f"{'round':>5} {'subs':>4} {'votes':>5} {'acc':>3} {'fail':>4} {'tx':>3} "
             f"{'wall s':>7} {'compute s':>9} {'bytes':>10}"]
    for r in reports:
        lines.append(f"{r.server_round:>5} {len(r.submissions):>4} {r.votes:>5} {r.accepted:>3} "
                     f"{len(r.failures):>4} {r.tx:>3} {r.wall_seconds:>7.2f} "
                     f"{r.compute_seconds:>9.2f} {r.bytes:>10}")
    return "\n".join(lines)


def failure_lines(reports: Sequence[RoundReport]) -> list[str]:
    """Every node failure of the rounds, one line each (``round R phase node N: reason``)."""
    return [f"round {r.server_round} {f.phase} node {f.node_id}: {f.reason}"
            for r in reports for f in r.failures]
