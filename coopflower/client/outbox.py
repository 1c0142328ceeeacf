"""The node's outbox: every vote the node signed, kept on the node itself.

A relayer that leaves a verifier's vote out of ``submitVotes`` (censorship) cannot stop it: the
contract takes a signed vote from anyone until the round's vote deadline. The verify stage
appends each vote it signs here (one JSON line per vote, beside the node's key file), and the
watcher (``coopflower watch``, :mod:`coopflower.client.watch`) sends those the chain does not hold
while the round still takes votes. Pure file I/O, no chain.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from coopflower.ledger.eip712 import SignedVote

__all__ = ["OutboxError", "OutboxVote", "outbox_path", "record_votes", "load_votes",
           "keep_votes"]


class OutboxError(ValueError):
    """An outbox line that is not a vote this node wrote."""


@dataclass(frozen=True)
class OutboxVote:
    """A signed vote and the deployment it is for."""

    chain_id: int
    contract: str
    vote: SignedVote


def outbox_path(key_path: Path) -> Path:
    """The outbox beside a node's key file (``node-3.json`` -> ``node-3.outbox.jsonl``)."""
    return key_path.with_name(key_path.stem + ".outbox.jsonl")


def _line(entry: OutboxVote) -> str:
    v = entry.vote
    return json.dumps({
        "chain-id": entry.chain_id, "contract": entry.contract, "task-id": v.task_id,
        "round": v.round, "submission": v.submission, "model-digest": v.model_digest.hex(),
        "verifier": v.verifier, "accept": v.accept, "score-bps": v.score_bps,
        "signature": v.signature.hex(),
    }, sort_keys=True)


def _entry(text: str, where: str) -> OutboxVote:
    try:
        d = json.loads(text)
        vote = SignedVote(int(d["task-id"]), int(d["round"]), int(d["submission"]),
                          bytes.fromhex(d["model-digest"]), str(d["verifier"]),
                          bool(d["accept"]), int(d["score-bps"]), bytes.fromhex(d["signature"]))
        return OutboxVote(int(d["chain-id"]), str(d["contract"]), vote)
    except (ValueError, KeyError, TypeError) as exc:
        raise OutboxError(f"{where}: not an outbox vote ({exc})") from exc


def record_votes(path: Path, entries: Iterable[OutboxVote]) -> None:
    """Append signed votes to the outbox (created with mode 0600 on first use)."""
    lines = "".join(_line(e) + "\n" for e in entries)
    if not lines:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(lines)


def load_votes(path: Path) -> list[OutboxVote]:
    """The outbox's votes, oldest first (none when it does not exist)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8").splitlines()
    return [_entry(line, f"{path}:{i + 1}") for i, line in enumerate(text) if line.strip()]


def keep_votes(path: Path, entries: Iterable[OutboxVote]) -> None:
    """Rewrite the outbox with only ``entries`` (atomically)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(_line(e) + "\n" for e in entries))
    os.replace(tmp, path)
