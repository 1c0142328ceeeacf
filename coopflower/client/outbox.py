"""The node's outbox: every submission and vote the node signed, kept on the node itself.

A relayer that leaves a verifier's vote out of ``submitVotes``, or a contributor's submission
out of ``submitBatch`` (censorship), cannot stop it: the contract takes a signed vote from
anyone until the round's vote deadline, and a signed submission until the submission window
closes, which an authority may do early only after the task's grace. The train and verify
stages append what they sign here (one JSON line each, beside the node's key file), and the
watcher (``coopflower watch``, :mod:`coopflower.client.watch`) sends what the chain does not
hold in time. Pure file I/O, no chain.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from coopflower.ledger.eip712 import SignedSubmission, SignedVote

__all__ = ["OutboxError", "OutboxVote", "OutboxSubmission", "OutboxEntry", "outbox_path",
           "record_entries", "load_entries", "keep_entries"]


class OutboxError(ValueError):
    """An outbox line that is not a vote this node wrote."""


@dataclass(frozen=True)
class OutboxVote:
    """A signed vote and the deployment it is for."""

    chain_id: int
    contract: str
    vote: SignedVote


@dataclass(frozen=True)
class OutboxSubmission:
    """A signed submission and the deployment it is for."""

    chain_id: int
    contract: str
    submission: SignedSubmission


OutboxEntry = OutboxVote | OutboxSubmission


def outbox_path(key_path: Path) -> Path:
    """The outbox beside a node's key file (``node-3.json`` -> ``node-3.outbox.jsonl``)."""
    return key_path.with_name(key_path.stem + ".outbox.jsonl")


def _line(entry: OutboxEntry) -> str:
    if isinstance(entry, OutboxSubmission):
        sub = entry.submission
        return json.dumps({
            "kind": "submission", "chain-id": entry.chain_id, "contract": entry.contract,
            "task-id": sub.task_id, "round": sub.round, "contributor": sub.contributor,
            "cid": sub.cid.hex(), "content-hash": sub.content_hash.hex(),
            "seed-commit": sub.seed_commit.hex(), "signature": sub.signature.hex(),
        }, sort_keys=True)
    v = entry.vote
    return json.dumps({
        "chain-id": entry.chain_id, "contract": entry.contract, "task-id": v.task_id,
        "round": v.round, "submission": v.submission, "model-digest": v.model_digest.hex(),
        "verifier": v.verifier, "accept": v.accept, "score-bps": v.score_bps,
        "signature": v.signature.hex(),
    }, sort_keys=True)


def _entry(text: str, where: str) -> OutboxEntry:
    try:
        d = json.loads(text)
        if d.get("kind") == "submission":
            sub = SignedSubmission(int(d["task-id"]), int(d["round"]), str(d["contributor"]),
                                   bytes.fromhex(d["cid"]), bytes.fromhex(d["content-hash"]),
                                   bytes.fromhex(d["signature"]),
                                   bytes.fromhex(d["seed-commit"]))
            return OutboxSubmission(int(d["chain-id"]), str(d["contract"]), sub)
        vote = SignedVote(int(d["task-id"]), int(d["round"]), int(d["submission"]),
                          bytes.fromhex(d["model-digest"]), str(d["verifier"]),
                          bool(d["accept"]), int(d["score-bps"]), bytes.fromhex(d["signature"]))
        return OutboxVote(int(d["chain-id"]), str(d["contract"]), vote)
    except (ValueError, KeyError, TypeError) as exc:
        raise OutboxError(f"{where}: not an outbox entry ({exc})") from exc


def record_entries(path: Path, entries: Iterable[OutboxEntry]) -> None:
    """Append signed votes and submissions to the outbox (mode 0600 when first created)."""
    lines = "".join(_line(e) + "\n" for e in entries)
    if not lines:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(lines)


def load_entries(path: Path) -> list[OutboxEntry]:
    """The outbox's votes and submissions, oldest first (none when it does not exist)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8").splitlines()
    return [_entry(line, f"{path}:{i + 1}") for i, line in enumerate(text) if line.strip()]


def keep_entries(path: Path, entries: Iterable[OutboxEntry]) -> None:
    """Rewrite the outbox with only ``entries`` (atomically)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(_line(e) + "\n" for e in entries))
    os.replace(tmp, path)
