"""What the audit reads from the chain (``*Record``, ``RoundHistory``, ``TaskHistory``) and what
it finds (``SubmissionCheck``, ``RoundAudit``): plain data, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["AuditError", "Fetch", "SubmissionRecord", "VoteRecord", "SettledRecord",
           "RoundHistory", "TaskHistory", "SubmissionCheck", "RoundAudit", "STATUS", "short"]

Fetch = Callable[[bytes], bytes]
"""A blob's bytes by binary CID, checked against the CID (raises on a mismatch or no blob)."""

STATUS = {0: "PENDING", 1: "ACCEPTED", 2: "REJECTED", 3: "NO_QUORUM", 4: "UNREVEALED"}


class AuditError(RuntimeError):
    """The history could not be read at all (no such contract, task or node)."""


@dataclass(frozen=True)
class SubmissionRecord:
    """A ``Submitted`` event with the signature from its transaction's calldata."""

    submission: int
    contributor: str
    cid: bytes
    content_hash: bytes
    model_digest: bytes
    signature: bytes | None
    seed_commit: bytes = bytes(32)


@dataclass(frozen=True)
class VoteRecord:
    """A ``VoteCast`` event with the signature from its transaction's calldata."""

    submission: int
    verifier: str
    accept: bool
    score_bps: int
    signature: bytes | None


@dataclass(frozen=True)
class SettledRecord:
    """A ``SubmissionSettled`` event: the contract's decision."""

    submission: int
    contributor: str
    status: int
    yes: int
    cast: int


@dataclass(frozen=True)
class RoundHistory:
    """One round as the chain recorded it.

    ``pool`` is the participant list snapshot at closing (registration order);
    ``rand_block_hash`` the hash of the randomness block read from the chain; ``seed`` the
    seed the contract fixed (``None`` if never fixed); ``paid`` per account from ``Paid``.
    """

    task_id: int
    round: int
    pool: tuple[str, ...]
    rand_block: int
    rand_block_hash: bytes | None
    seed: bytes | None
    submissions: tuple[SubmissionRecord, ...]
    votes: tuple[VoteRecord, ...]
    settled: tuple[SettledRecord, ...]
    paid: dict[str, int] = field(default_factory=dict)
    meta: tuple[bytes, bytes, bytes] | None = None  # cid, content hash, digest
    is_settled: bool = False
    closes: int = 1  # SubmissionsClosed events (more than one: closed twice)
    refreshes: tuple[tuple[int, int, int], ...] = ()  # (expired block, new block, at block)
    lost: bool = False  # RandomnessLost: settled void
    skipped: tuple[str, ...] = ()  # what batches left out, described
    late_registrations: tuple[str, ...] = ()  # registered while this round was in progress
    shares: tuple[tuple[int, bytes], ...] = ()  # SeedRevealed: (submission, share)


@dataclass(frozen=True)
class TaskHistory:
    """A task's rules and rounds, and the EIP-712 domain (chain id, contract address)."""

    task_id: int
    chain_id: int
    contract: str
    k: int
    quorum: int
    min_accuracy_bps: int
    reward: int
    verifier_fee: int
    rounds: tuple[RoundHistory, ...]
    reveal_blocks: int = 0  # > 0: the seed mixes the contributors' revealed shares


@dataclass
class SubmissionCheck:
    """The replay of one submission (a row of the round's table)."""

    submission: int
    contributor: str
    cid: str
    blob: str = "?"
    signature: str = "?"
    yes: int = 0
    cast: int = 0
    replayed: str = "?"
    recorded: str = "?"


@dataclass
class RoundAudit:
    """The replay of one round: a row per submission, every discrepancy found (``problems``),
    what batches refused (``notes``) and what the MetaModel check did or took on trust
    (``metamodel``)."""

    task_id: int
    round: int
    seed: str
    rows: list[SubmissionCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metamodel: str = "none recorded"

    @property
    def ok(self) -> bool:
        """True when nothing disagreed."""
        return not self.problems


def short(b: bytes | str, n: int = 10) -> str:
    """``b`` (hex when bytes) cut to ``n`` characters and ``..``."""
    text = b if isinstance(b, str) else b.hex()
    return text if len(text) <= n else text[:n] + ".."
