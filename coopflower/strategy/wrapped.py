"""The coordinated round around an inner Flower strategy (``CoordinatedStrategy(FedAvg(...))``).

The inner strategy keeps what a Flower strategy decides: which nodes train (its
``configure_train``, with the user's ``train_config``), how the accepted models are aggregated
(its ``aggregate_train``, on replies rebuilt from the accepted blobs and the contributors' own
metrics) and the federated evaluation (``configure_evaluate`` / ``aggregate_evaluate`` with
the user's ``evaluate_config``). The coordinated round adds what no single party decides: the
signed submissions, the verifiers drawn on chain, their votes and the contract's settlement.

Coordination stages travel inside the app's own message types (``coopflower.client.stages``),
answered by ``coop_mod`` on the nodes. This module builds those messages and talks to the inner
strategy; it holds no state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from coopflower.client import protocol as P
from coopflower.client import stages as S
from coopflower.strategy.aggregate import capped_counts

__all__ = ["register_message", "train_messages", "verify_message", "aggregate_accepted"]


def _coop(stage: str, cfg: Mapping[str, Any]) -> ConfigRecord:
    return ConfigRecord({**cfg, S.STAGE: stage})


def register_message(node_id: int, cfg: Mapping[str, Any]) -> Message:
    """The ``register`` stage: an evaluate message the mod answers without the app."""
    return Message(RecordDict({S.COOP: _coop(S.REGISTER, cfg)}), node_id, "evaluate")


def reveal_message(node_id: int, cfg: Mapping[str, Any]) -> Message:
    """The ``reveal`` stage: the contributor's seed share, answered by the mod alone."""
    return Message(RecordDict({S.COOP: _coop(S.REVEAL, cfg)}), node_id, "evaluate")


def train_messages(
    inner: Strategy, grid: Grid, server_round: int, arrays: ArrayRecord,
    train_config: ConfigRecord, registered: Iterable[int], cfg: Mapping[str, Any],
) -> tuple[list[Message], list[int]]:
    """The inner strategy's train messages (its sampling, the user's config), each with the
    ``train`` stage's ``coop`` record added; nodes that are not registered are left out.

    Returns:
        The messages, and the node ids the inner strategy sampled but are not registered.
    """
    known = set(registered)
    out, unregistered = [], []
    for msg in inner.configure_train(server_round, arrays, train_config, grid):
        nid = msg.metadata.dst_node_id
        if nid not in known:
            unregistered.append(nid)
            continue
        msg.content[S.COOP] = _coop(S.TRAIN, cfg)
        out.append(msg)
    return out, unregistered


def verify_message(node_id: int, cfg: Mapping[str, Any], global_arrays: ArrayRecord,
                   evaluate_config: ConfigRecord | None) -> Message:
    """The ``verify`` stage for one verifier: its assignments in ``cfg`` (ids, CIDs, hashes,
    metric and threshold), the global model's names and shapes, and the user's evaluate config
    (what the app's evaluate gets beside each model)."""
    names, shapes = S.encode_shapes({k: tuple(a.shape) for k, a in global_arrays.items()})
    coop = _coop(S.VERIFY, {**cfg, "array-names": names, "array-shapes": shapes})
    content = RecordDict({S.COOP: coop, P.CONFIG: evaluate_config or ConfigRecord()})
    return Message(content, node_id, "evaluate")


def _claim(reply: Message, key: str) -> float:
    value = reply.content.metric_records.get(P.METRICS, MetricRecord()).get(key, 0)
    return float(value) if isinstance(value, int | float) else 0.0


def aggregate_accepted(
    inner: Strategy, server_round: int, accepted: Sequence[tuple[Mapping[str, Any], Message]],
    weighted_by: str | None = None, weights: str = "equal",
) -> tuple[ArrayRecord | None, MetricRecord | None]:
    """Aggregate the accepted models with the inner strategy.

    Args:
        accepted: per accepted model, its arrays (from the blob, checked against its CID) and
            the contributor's train reply (whose metric record holds the app's metrics).

        weighted_by: the metric the inner strategy weights by (default: its
            ``weighted_by_key``).
        weights: the task's rule (``TaskConfig.weights``): ``"equal"`` gives every accepted
            model the same weight whatever its contributor wrote in that metric;
            ``"declared"`` keeps each claim, clipped to twice the round's median claim
            (``aggregate.capped_counts``).

    Returns:
        The inner strategy's ``aggregate_train`` result (``None, None`` with nothing accepted).
    """
    if not accepted:
        return None, None
    replies = []
    weighted_by = weighted_by or str(getattr(inner, "weighted_by_key", "num-examples"))
    claims = [_claim(reply, weighted_by) for _, reply in accepted]
    counts = capped_counts(claims) if weights == "declared" else [1.0] * len(claims)
    for (arrays, reply), n in zip(accepted, counts, strict=True):
        metrics = MetricRecord(dict(reply.content.metric_records.get(P.METRICS, MetricRecord())))
        if weights != "declared" or weighted_by in metrics:
            keep_float = isinstance(metrics.get(weighted_by), float)
            metrics[weighted_by] = float(n) if keep_float else int(n)
        content = RecordDict({
            P.ARRAYS: ArrayRecord({k: Array(v) for k, v in arrays.items()}),
            P.METRICS: metrics,
        })
        replies.append(Message(content, reply.metadata.src_node_id, "train"))
    return inner.aggregate_train(server_round, replies)

