"""The round's chain steps after the votes: relay them, settle, record the MetaModel.

With pipelining they run in a :class:`ChainTail` (a background thread) while the next round
trains; otherwise in line. Settlement is the contract's; the strategy only checks that it
agrees with the tally of the signed votes it relayed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from flwr.app import Message, MetricRecord

from coopflower.strategy.progress import transactions
from coopflower.strategy.rounds import RoundReport
from coopflower.strategy.task import StrategyError

if TYPE_CHECKING:
    from coopflower.strategy.coordinated import CoordinatedStrategy
    from coopflower.strategy.stages import RoundState

__all__ = ["ChainTail", "finish_on_chain", "record_metamodel", "train_metrics"]


class ChainTail:
    """A round's last chain steps (relay votes, settle, record the MetaModel) running in a
    background thread while the next round trains; ``join`` waits and re-raises its error."""

    def __init__(self, report: RoundReport, steps: Callable[[], None]) -> None:
        self.report = report
        self._steps = steps
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"coop-chain-{report.server_round}",
                                        daemon=False)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._steps()
        except BaseException as exc:  # handed to the joining thread
            self._error = exc

    def wait(self) -> None:
        """Wait for the steps to end, whatever the outcome."""
        self._thread.join()

    def join(self) -> None:
        """Wait for the steps; raises ``StrategyError`` (from the cause) if one failed."""
        self._thread.join()
        if self._error is not None:
            if isinstance(self._error, StrategyError):
                raise self._error
            raise StrategyError(f"round {self.report.server_round}'s chain steps failed: "
                                f"{self._error}") from self._error


def _relay_and_settle(s: CoordinatedStrategy, st: RoundState, timeout: float) -> list[int]:
    """Relay the votes (one tx) and settle (one tx; after the voting deadline when votes are
    missing); returns the submissions the contract accepted among those this strategy relayed.
    A submission it did not relay (sent to the contract by someone else) is named in the
    report's failures and left out of the aggregation."""
    ledger, task_id, report = s.ledger, int(s.task_id or 0), st.report
    with s.phases.phase(st.rnd, "vote") as rec:
        tx0 = ledger.chain.tx_count
        if st.votes:
            # by submission: a submission's k votes, and the packed word it shares with three
            # others, land in one batch, so each is a cold storage access once, not per batch
            # (at 1000 contributors, 4 batches: 0.8 k gas a vote less, bench/scale_round.py)
            tx = ledger.submit_votes(task_id, report.chain_round,
                                     sorted(st.votes, key=lambda v: v.submission))
            report.gas += tx.gas_used
        report.votes = len(st.votes)
        rec.detail = f"{len(st.votes)} votes in {transactions(ledger.chain.tx_count - tx0)}"
    with s.phases.phase(st.rnd, "settle") as rec:
        if len(st.votes) < st.expected_votes:
            end = ledger.round(task_id, report.chain_round).vote_end
            rec.detail = f"waiting for block {end + 1} (missing votes); "
            ledger.chain.wait_for_block(end + 1, timeout=max(timeout, 60.0))
        settlement = ledger.settle(task_id, report.chain_round)
        report.gas += settlement.tx.gas_used
        unknown: list[int] = []
        for sub in settlement.submissions:
            signed = st.by_id.get(sub.submission)
            if signed is None:  # named, and kept out of the report's (relayed) submissions
                unknown.append(sub.submission)
                st.fail("settle", -1, f"submission {sub.submission} by {sub.contributor} "
                        f"({sub.status.name}) was not relayed by this strategy: left out")
                continue
            report.submissions[sub.submission] = (
                sub.contributor, signed.cid, sub.status.name, sub.yes, sub.cast)
        report.accepted = settlement.accepted
        rec.detail += (f"{settlement.accepted} accepted of {len(settlement.submissions)}; "
                       f"paid {settlement.total_paid} wei")
    return sorted(sub.submission for sub in settlement.submissions
                  if sub.status.name == "ACCEPTED" and sub.submission not in unknown)


def finish_on_chain(s: CoordinatedStrategy, st: RoundState, timeout: float,
                    tallied: Sequence[int] | None, meta: tuple[bytes, bytes] | None) -> None:
    """Relay, settle and, given ``tallied`` (the accepted submissions the votes decide, checked
    against the contract's settlement), record the MetaModel ``meta`` (CID, content hash)."""
    on_chain = _relay_and_settle(s, st, timeout)
    if tallied is not None and on_chain != sorted(tallied):
        raise StrategyError(f"round {st.rnd}: the contract accepted {on_chain}, the relayed "
                            f"votes decide {sorted(tallied)}")
    st.report.verify_metrics = MetricRecord({
        "votes": len(st.votes),
        "mean-verifier-accuracy": float(np.mean(st.accuracies)) if st.accuracies else 0.0,
        "accepted": st.report.accepted,
        "failures": len(st.report.failures),
    })
    if tallied is not None:
        record_metamodel(s, st, meta)


def record_metamodel(s: CoordinatedStrategy, st: RoundState,
                     meta: tuple[bytes, bytes] | None) -> None:
    """Record the MetaModel's CID and content hash on chain (one tx) and close the round's
    accounts: phases, transactions, train metrics."""
    report = st.report
    with s.phases.phase(st.rnd, "record") as rec:
        if meta is not None:
            tx = s.ledger.record_metamodel(int(s.task_id or 0), report.chain_round, *meta)
            report.gas += tx.gas_used
            rec.detail = f"MetaModel {meta[0].hex()[:16]}... recorded"
        else:
            rec.detail = "nothing to record"
    report.tx = s.ledger.chain.tx_count - st.tx0
    report.phase_seconds = s.phases.seconds(st.rnd)
    report.train_metrics = train_metrics(st.replies, report)


def train_metrics(replies: Sequence[Message], report: RoundReport) -> MetricRecord:
    """The round's train metrics: counts, and the app's own metrics of the accepted models as
    the inner strategy aggregated them."""
    out: dict[str, int | float | list[int] | list[float]] = {
        "submissions": len(replies),
        "accepted": report.accepted,
        "tx": report.tx,
    }
    out.update(dict(report.app_train_metrics or {}))
    return MetricRecord(out)
