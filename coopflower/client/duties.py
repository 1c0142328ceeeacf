"""A node's duties beside training: publish a model (store, hash, sign), sign its consent and
its votes. Thin adapters over the store and the ledger's EIP-712 signing; the node key never
leaves this process.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coopflower.client.keys import NodeKey

if TYPE_CHECKING:
    from coopflower.storage.base import ContentStore

__all__ = ["Submission", "make_submission", "sign_vote", "open_store",
           "sign_registration", "model_digest", "seed_share", "DutyError"]


class DutyError(ValueError):
    """A duty that cannot be carried out (missing config, unusable store)."""


@dataclass(frozen=True)
class Submission:
    """A published model: binary ``cid``, ``content_hash`` of the blob, EIP-712 ``signature``."""

    cid: bytes
    content_hash: bytes
    signature: bytes
    store_seconds: float
    seed_commit: bytes = bytes(32)


@functools.lru_cache(maxsize=4)
def _open(spec: str | None) -> ContentStore:
    """One store per spec and process (a Kubo store keeps its HTTP connection pool)."""
    from coopflower.storage import open_store

    return open_store(spec)


def make_submission(key: NodeKey, cfg: Mapping[str, Any], blob: bytes,
                    store_spec: str | None) -> Submission:
    """Put ``blob`` into storage and sign the submission for the round named in ``cfg``."""
    from coopflower.ledger.eip712 import content_hash, seed_commitment

    t0 = time.perf_counter()
    cid_bytes = _open(store_spec).put(blob).to_bytes()
    stored = time.perf_counter() - t0
    chash = content_hash(blob)
    commit = seed_commitment(seed_share(key, cfg), key.address)
    sig = _sign("submission", key, cfg, cid=cid_bytes, content_hash=chash, seed_commit=commit)
    return Submission(cid_bytes, chash, sig, stored, commit)


def seed_share(key: NodeKey, cfg: Mapping[str, Any]) -> bytes:
    """The node's seed share for the round named in ``cfg``: derived from its key, so only it
    knows the share until it reveals it, and it needs no state between train and reveal."""
    from eth_hash.auto import keccak

    from coopflower.client import protocol as P

    tag = (b"coopflower seed share" + P.get_int(cfg, "chain-id").to_bytes(32, "big")
           + bytes.fromhex(P.get_str(cfg, "contract").removeprefix("0x"))
           + P.get_int(cfg, "task-id").to_bytes(32, "big")
           + P.get_int(cfg, "round").to_bytes(32, "big"))
    return bytes(keccak(key.private_key + tag))


def sign_vote(key: NodeKey, cfg: Mapping[str, Any], submission: int, model_digest: bytes,
              approve: bool, score_bps: int) -> bytes:
    """Sign a vote on ``submission`` (bound to its ``model_digest``) of the round in ``cfg``."""
    return _sign("vote", key, cfg, submission=submission, model_digest=model_digest,
                 accept=approve, score_bps=score_bps)


def model_digest(cid: bytes, chash: bytes) -> bytes:
    """The digest the contract stores for a model (what a vote is bound to)."""
    from coopflower.ledger.eip712 import model_digest as digest

    return digest(cid, chash)


def sign_registration(key: NodeKey, cfg: Mapping[str, Any]) -> bytes:
    """Sign the node's consent to be registered for the task in ``cfg`` with its deposit."""
    return _sign("registration", key, cfg)


def _domain(cfg: Mapping[str, Any]) -> Any:
    from coopflower.client import protocol as P
    from coopflower.ledger.eip712 import Eip712Domain

    return Eip712Domain(P.get_int(cfg, "chain-id"), P.get_str(cfg, "contract"))


def _sign(kind: str, key: NodeKey, cfg: Mapping[str, Any], **fields: Any) -> bytes:
    """Sign one of the contract's EIP-712 messages for the task and round named in ``cfg``."""
    from coopflower.client import protocol as P
    from coopflower.ledger import eip712

    domain = _domain(cfg)
    task_id = P.get_int(cfg, "task-id")
    if kind == "registration":
        deposit = int(P.get_str(cfg, "deposit"))
        return eip712.sign_registration(key.private_key, domain, task_id, deposit).signature
    rnd = P.get_int(cfg, "round")
    if kind == "submission":
        return eip712.sign_submission(key.private_key, domain, task_id, rnd, fields["cid"],
                                      fields["content_hash"], fields["seed_commit"]).signature
    if kind == "vote":
        return eip712.sign_vote(key.private_key, domain, task_id, rnd, fields["submission"],
                                fields["model_digest"], fields["accept"],
                                fields["score_bps"]).signature
    raise DutyError(f"unknown signature kind {kind!r}")


def open_store(spec: str | None) -> ContentStore:
    """The content store for ``spec`` (one per spec and process)."""
    return _open(spec)
