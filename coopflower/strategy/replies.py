"""Pure parsers of the nodes' replies: registration, submission, votes, and the tally.

Each parser takes a reply and what the strategy knows (the EIP-712 domain, the task and round,
the node's registered address) and returns the signed object, or raises ``ReplyError`` with
the reason that goes into the round's report. Nothing here sends, stores or touches the chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flwr.app import Message

from coopflower.client import protocol as P
from coopflower.client.mod import COOP_METRICS
from coopflower.ledger.eip712 import (
    SignedRegistration,
    SignedSubmission,
    SignedVote,
    model_digest,
    recover_registration,
    recover_submission,
    recover_vote,
)
from coopflower.ledger.rules import Status, counts_as_yes, tally

__all__ = ["ReplyError", "VoteBatch", "metric", "last_line", "parse_registration",
           "parse_submission", "parse_votes", "tally_votes"]


class ReplyError(ValueError):
    """A node's reply the strategy cannot use (its reason goes into the round's report)."""


def metric(msg: Message, key: str) -> float:
    """A number from the reply's coordination metrics (0.0 when absent)."""
    rec = msg.content.metric_records.get(COOP_METRICS, msg.content.metric_records.get(P.METRICS))
    value = rec.get(key, 0.0) if rec is not None else 0.0
    return float(value) if isinstance(value, int | float) else 0.0


def last_line(text: str) -> str:
    """An error reason's last non-empty line (a node's traceback ends with the exception)."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[-1] if lines else str(text)


def parse_registration(msg: Message, domain: Any, task_id: int,
                       deposit: int) -> tuple[SignedRegistration, str]:
    """The node's signed consent to join ``task_id`` with ``deposit``, and the model it named."""
    rec = msg.content.config_records.get(P.REGISTRATION)
    if rec is None:
        raise ReplyError("bad registration: the reply has no 'registration' record: does the "
                         "ClientApp run coop_mod (ClientApp(mods=[coop_mod]))?")
    try:
        address = P.get_str(rec, "address")
        sig = bytes(rec["signature"])  # type: ignore[arg-type]
        reg = SignedRegistration(task_id, address, deposit, sig)
        signer = recover_registration(domain, reg)
    except Exception as exc:  # a malformed reply is the node's failure, not ours
        raise ReplyError(f"bad registration: {exc}") from exc
    if signer.lower() != address.lower():
        raise ReplyError("bad registration: signature is not the node's")
    return reg, str(rec.get("model", ""))


def parse_submission(msg: Message, domain: Any, task_id: int, chain_round: int,
                     address: str) -> SignedSubmission:
    """The contributor's signed submission (CID, content hash), checked against ``address``."""
    try:
        r = msg.content.config_records[P.SUBMISSION]
        sub = SignedSubmission(
            task_id, chain_round, P.get_str(r, "contributor"),
            bytes(r["cid"]), bytes(r["content-hash"]),  # type: ignore[arg-type]
            bytes(r["signature"]),  # type: ignore[arg-type]
            bytes(r.get("seed-commit", bytes(32))),  # type: ignore[arg-type]
        )
        signer = recover_submission(domain, sub)
    except Exception as exc:
        raise ReplyError(f"bad submission: {exc}") from exc
    if sub.contributor.lower() != address.lower():
        raise ReplyError(f"bad submission: contributor {sub.contributor} is not the node's "
                         f"registered address {address}")
    if signer.lower() != sub.contributor.lower():
        raise ReplyError("bad submission: signature is not the contributor's")
    return sub


@dataclass
class VoteBatch:
    """One verifier's usable votes, their scores in basis points, and the refused ones."""

    votes: list[SignedVote]
    scores: list[int]
    refused: list[str]


def parse_votes(msg: Message, domain: Any, task_id: int, chain_round: int, verifier: str,
                assigned: Sequence[int], by_id: Mapping[int, SignedSubmission]) -> VoteBatch:
    """A verifier's signed votes on the submissions it was ``assigned``.

    Raises ``ReplyError`` when the vote record is malformed; a vote on a submission it was not
    assigned, or one not signed by ``verifier``, is refused (named in ``refused``)."""
    try:
        r = msg.content.config_records[P.VOTES]
        sids = P.get_list(r, "submission-ids", int)
        approve = P.get_list(r, "approve", bool)
        sigs = P.get_list(r, "signatures", bytes)
        scores = P.get_list(r, "accuracy-bps", int)
    except Exception as exc:
        raise ReplyError(f"bad votes: {exc}") from exc
    if not len(sids) == len(approve) == len(sigs) == len(scores):
        raise ReplyError("bad votes: vote lists differ in length")
    out = VoteBatch([], [], [])
    for sid, ok, sig, score in zip(sids, approve, sigs, scores, strict=True):
        if sid not in assigned:
            out.refused.append(f"vote on submission {sid} it was not assigned")
            continue
        sub = by_id[sid]
        vote = SignedVote(task_id, chain_round, sid, model_digest(sub.cid, sub.content_hash),
                          verifier, bool(ok), int(score), sig)
        try:
            if recover_vote(domain, vote).lower() != verifier.lower():
                raise ValueError("not signed by the verifier")
        except Exception as exc:
            out.refused.append(f"bad vote on submission {sid}: {exc}")
            continue
        out.votes.append(vote)
        out.scores.append(int(score))
    return out


def tally_votes(votes: Sequence[Any], by_id: Mapping[int, Any], quorum: int,
                min_accuracy_bps: int) -> list[int]:
    """The submissions the votes accept, by the contract's rule (a yes is a sound model
    scored at the task's threshold or above; majority of votes cast, with quorum): what
    settlement will decide when every assigned verifier voted."""
    yes = dict.fromkeys(by_id, 0)
    cast = dict.fromkeys(by_id, 0)
    for v in votes:
        cast[v.submission] += 1
        yes[v.submission] += int(counts_as_yes(v.accept, v.score_bps, min_accuracy_bps))
    return sorted(sid for sid in by_id
                  if tally(yes[sid], cast[sid], quorum).status == Status.ACCEPTED)
