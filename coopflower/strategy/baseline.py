"""The FedAvg baseline: Flower's own ``FedAvg``, metered, optionally logging each round's
global model (round number, CID) to the same contract as the coordinated strategy."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from coopflower.strategy.metering import ByteMeter

__all__ = ["FedAvgBaseline", "RoundLogFn"]

# (round, global arrays) -> bytes moved to storage (e.g. the blob put by CID), or 0
RoundLogFn = Callable[[int, ArrayRecord], int]


class FedAvgBaseline(FedAvg):
    """``FedAvg`` with per-round bytes, wall time and client compute time recorded.

    Args:
        round_logger: called after each aggregation with the new global arrays; the shipped
            one (``coopflower.strategy.chainlog.ChainRoundLogger``) stores the blob and logs
            its CID on the contract.
        progress: where a line per round goes (``None``: silent).
        **kwargs: passed to ``FedAvg``.
    """

    def __init__(self, *, round_logger: RoundLogFn | None = None,
                 progress: TextIO | None = sys.stderr, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.round_logger = round_logger
        self.progress = progress
        self.meter = ByteMeter()
        self.round_seconds: dict[int, float] = {}
        self.compute_seconds: dict[int, float] = {}
        self.handler_seconds: dict[int, float] = {}
        self._t0: dict[int, float] = {}

    def _compute(self, rnd: int, replies: list[Message]) -> None:
        total = handler = 0.0
        for m in replies:
            if m.has_content():
                for rec in m.content.metric_records.values():
                    total += float(rec.get("compute-seconds", 0.0))  # type: ignore[arg-type]
                    handler += float(rec.get("handler-seconds", 0.0))  # type: ignore[arg-type]
        self.compute_seconds[rnd] = self.compute_seconds.get(rnd, 0.0) + total
        self.handler_seconds[rnd] = self.handler_seconds.get(rnd, 0.0) + handler

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's messages, metered; opens the round's wall time."""
        self._t0[server_round] = time.perf_counter()
        msgs = list(super().configure_train(server_round, arrays, config, grid))
        self.meter.add_sent(server_round, msgs)
        return msgs

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """FedAvg's aggregation, then the optional chain log of the new global model."""
        replies = list(replies)
        self.meter.add_received(server_round, replies)
        self._compute(server_round, replies)
        arrays, metrics = super().aggregate_train(server_round, replies)
        if arrays is not None and self.round_logger is not None:
            self.meter.add_storage(server_round, self.round_logger(server_round, arrays))
        self.round_seconds[server_round] = time.perf_counter() - self._t0[server_round]
        if self.progress is not None:
            print(f"[FedAvg round {server_round}] train   : {len(replies)} replies, "
                  f"{'averaged' if arrays is not None else 'nothing to average'} "
                  f"({self.round_seconds[server_round]:.2f} s)", file=self.progress, flush=True)
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's evaluation messages, metered."""
        msgs = list(super().configure_evaluate(server_round, arrays, config, grid))
        self.meter.add_sent(server_round, msgs)
        return msgs

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """FedAvg's metric aggregation, metered; closes the round's wall time."""
        replies = list(replies)
        self.meter.add_received(server_round, replies)
        self._compute(server_round, replies)
        out = super().aggregate_evaluate(server_round, replies)
        if server_round in self._t0:
            self.round_seconds[server_round] = time.perf_counter() - self._t0[server_round]
        return out
