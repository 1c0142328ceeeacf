"""Bytes moved per round: Flower message payloads, counted on the ServerApp side."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flwr.app import Message

__all__ = ["message_bytes", "ByteMeter"]


def message_bytes(msg: Message) -> int:
    """Payload bytes of a message: its arrays, metrics and configs (0 for an error reply)."""
    if not msg.has_content():
        return 0
    content = msg.content
    total = 0
    for records in (content.array_records, content.metric_records, content.config_records):
        total += sum(r.count_bytes() for r in records.values())
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
