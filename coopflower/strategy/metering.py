"""Bytes moved per round: Flower message payloads, counted on the ServerApp side."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ConfigRecord, Message, MetricRecord

__all__ = ["message_bytes", "record_bytes", "ByteMeter"]


def _value_bytes(value: Any) -> int:
    if isinstance(value, list):
        return sum(_value_bytes(v) for v in value)
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, bool):
        return 1
    return 8  # int and float travel as 64-bit values


def record_bytes(record: ConfigRecord | MetricRecord) -> int:
    """Bytes of a config or metric record: keys plus values (Flower's own ``count_bytes``
    fails on empty strings and empty lists)."""
    return sum(len(k) + _value_bytes(v) for k, v in record.items())


def message_bytes(msg: Message) -> int:
    """Payload bytes of a message: its arrays, metrics and configs (0 for an error reply)."""
    if not msg.has_content():
        return 0
    content = msg.content
    total = sum(r.count_bytes() for r in content.array_records.values())
    for records in (content.metric_records, content.config_records):
        total += sum(record_bytes(r) for r in records.values())
    return total


@dataclass
class ByteMeter:
    """Bytes sent to and received from nodes, and bytes moved through storage, per round."""

    sent: dict[int, int] = field(default_factory=dict)
    received: dict[int, int] = field(default_factory=dict)
    storage: dict[int, int] = field(default_factory=dict)

    def add_sent(self, rnd: int, msgs: Iterable[Message]) -> None:
        """Count outgoing messages of round ``rnd``."""
        self.sent[rnd] = self.sent.get(rnd, 0) + sum(message_bytes(m) for m in msgs)

    def add_received(self, rnd: int, msgs: Iterable[Message]) -> None:
        """Count replies of round ``rnd``."""
        self.received[rnd] = self.received.get(rnd, 0) + sum(message_bytes(m) for m in msgs)

    def add_storage(self, rnd: int, nbytes: int) -> None:
        """Count bytes put into or fetched from content-addressed storage in round ``rnd``."""
        self.storage[rnd] = self.storage.get(rnd, 0) + int(nbytes)

    def total(self, rnd: int) -> int:
        """All bytes of round ``rnd``."""
        return self.sent.get(rnd, 0) + self.received.get(rnd, 0) + self.storage.get(rnd, 0)
