"""After the round's aggregate: the inner strategy's federated evaluation and the user's
central ``evaluate_fn``, each timed and printed as a phase of the round."""

from __future__ import annotations

from collections.abc import Callable
from logging import INFO
from typing import TYPE_CHECKING

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result
from flwr.supercore import log

from coopflower.strategy.messaging import send_and_receive

if TYPE_CHECKING:
    from coopflower.strategy.coordinated import CoordinatedStrategy

__all__ = ["federated", "central"]

EvaluateFn = Callable[[int, ArrayRecord], MetricRecord | None]


def federated(s: CoordinatedStrategy, grid: Grid, rnd: int, arrays: ArrayRecord,
              evaluate_config: ConfigRecord | None, timeout: float, result: Result) -> None:
    """Flower's federated evaluation by the inner strategy (plain evaluate messages, which
    ``coop_mod`` passes to the app untouched); its metrics go to
    ``evaluate_metrics_clientapp``."""
    msgs = list(s.inner.configure_evaluate(rnd, arrays, evaluate_config or ConfigRecord(), grid))
    if not msgs:
        return
    with s.phases.phase(rnd, "fed-eval") as rec:
        s.meter.add_sent(rnd, msgs)
        replies = send_and_receive(grid, msgs, timeout=timeout)
        s.meter.add_received(rnd, replies)
        metrics = s.inner.aggregate_evaluate(rnd, replies)
        rec.detail = f"{type(s.inner).__name__}'s federated evaluation on {len(replies)} nodes"
    if metrics is not None:
        result.evaluate_metrics_clientapp[rnd] = metrics


def central(s: CoordinatedStrategy, evaluate_fn: EvaluateFn, rnd: int, arrays: ArrayRecord,
            result: Result) -> None:
    """The user's ``evaluate_fn`` on the new global model, shown as the round's last phase;
    its metrics go to ``evaluate_metrics_serverapp``."""
    with s.phases.phase(rnd, "evaluate") as rec:
        res = evaluate_fn(rnd, arrays)
        rec.detail = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in (res or {}).items()) or "no metrics"
    log(INFO, "\t└──> central evaluation: %s", res)
    if res is not None:
        result.evaluate_metrics_serverapp[rnd] = res
