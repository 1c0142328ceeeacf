"""One coordinated round, stage by stage (``coopflower.strategy.stages``), with pipelining: the
chain steps after the votes left running in the background when every vote came in.

``CoordinatedStrategy.start`` calls :func:`run_round` once a round (see
``coopflower.strategy.coordinated`` for the round's steps and the pipelining).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from logging import WARNING
from typing import TYPE_CHECKING

from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp import Grid
from flwr.supercore import log

from coopflower.strategy import accepted, reveal, settlement, stages
from coopflower.strategy.replies import tally_votes
from coopflower.strategy.rounds import RoundReport
from coopflower.strategy.settlement import ChainTail
from coopflower.strategy.stages import RoundState

if TYPE_CHECKING:
    from coopflower.strategy.coordinated import CoordinatedStrategy

__all__ = ["run_round", "OpeningTail"]


class OpeningTail(ChainTail):
    """A pipelined round's chain steps (relay votes, settle, record the MetaModel) followed by
    the ``open`` of the next round, which the contract allows once this one settled: the
    next round then finds its round open when its training ends, instead of opening it after
    (0.05-0.1 s a round on the embedded chain). ``opened`` is the transaction count before
    that ``open`` (the next round's first transaction), ``None`` until it was sent."""

    def __init__(self, s: CoordinatedStrategy, st: RoundState, steps: Callable[[], None]):
        self.opened: int | None = None
        nxt = RoundState(st.rnd + 1, st.arrays, RoundReport(st.rnd + 1))

        def steps_then_open() -> None:
            steps()
            tx0 = s.ledger.chain.tx_count
            stages.open_round(s, nxt, st.report.chain_round + 1)
            self.opened = tx0

        super().__init__(st.report, steps_then_open)


def run_round(
    s: CoordinatedStrategy, grid: Grid, rnd: int, arrays: ArrayRecord, train_config: ConfigRecord,
    timeout: float, previous: ChainTail | None, pipeline: bool,
    evaluate_config: ConfigRecord | None = None,
) -> tuple[RoundReport, ChainTail | None]:
    """One round, stage by stage (``coopflower.strategy.stages``); returns its report and,
    when pipelined, its pending chain steps.

    ``previous`` is the previous round's pending chain steps (joined before this round's
    ``open``); with ``pipeline`` this round's vote, settle and record steps are left
    running in the background when every vote came in.
    """
    st = RoundState(rnd, arrays, RoundReport(rnd))
    if previous is None:
        st.tx0 = s.ledger.chain.tx_count
        stages.open_round(s, st, None)
    else:  # the previous round settles in the background: its successor's number is known
        st.report.chain_round = previous.report.chain_round + 1
    stages.train(s, st, grid, train_config, timeout)
    if previous is not None:
        with s.phases.phase(rnd, "wait-chain") as rec:
            previous.join()
            rec.detail = (f"round {previous.report.server_round}'s votes, settlement and "
                          "MetaModel on chain")
        opened = previous.opened if isinstance(previous, OpeningTail) else None
        if opened is None:
            st.tx0 = s.ledger.chain.tx_count
            stages.open_round(s, st, st.report.chain_round)
        else:  # opened by the previous round's chain steps, during this round's training
            st.tx0 = opened
            st.report.overlapped_phases = ("open",)
    stages.submit(s, st)
    reveal.reveal(s, st, grid, timeout)
    stages.assign(s, st)
    stages.verify(s, st, grid, evaluate_config, timeout)

    # the outcome: known from the votes once all are in, else from the settlement
    settle_first = len(st.votes) < st.expected_votes or not st.by_id
    if settle_first:
        settlement.finish_on_chain(s, st, timeout, None, None)
        accepted_ids = [sid for sid, v in st.report.submissions.items()
                        if v[2] == "ACCEPTED"]
    else:
        accepted_ids = tally_votes(st.votes, st.by_id, s.task.quorum,
                                   s.task.threshold_bps())
    meta = accepted.aggregate(s, st, accepted_ids)

    report = st.report
    report.compute_seconds, report.handler_seconds = st.compute, st.handler
    report.bytes = s.meter.total(rnd)
    for f in report.failures:
        log(WARNING, "round %d: node %d failed in %s: %s", rnd, f.node_id, f.phase, f.reason)
    tail = None
    if settle_first:
        settlement.record_metamodel(s, st, meta)
    elif pipeline:
        report.overlapped_phases = (*report.overlapped_phases, "vote", "settle", "record")
        tail = OpeningTail(s, st, functools.partial(
            settlement.finish_on_chain, s, st, timeout, accepted_ids, meta))
    else:
        settlement.finish_on_chain(s, st, timeout, accepted_ids, meta)
    report.wall_seconds = time.perf_counter() - st.started
    return report, tail
