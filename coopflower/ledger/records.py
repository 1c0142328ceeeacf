"""The values the contract binding returns: task and round parameters, on-chain records,
mined transactions with their decoded events, and settlements.

Plain frozen dataclasses with no web3 dependency (``coopflower.ledger.contract`` re-exports
them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .eip712 import SignedSubmission, SignedVote
from .rules import Status

ROUND_NONE, ROUND_OPEN, ROUND_VOTING, ROUND_SETTLED, ROUND_SETTLING = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class TaskParams:
    """A task's rules (amounts in wei, windows in blocks). See ``CoopLedger.TaskParams``."""

    spec_hash: bytes
    k: int = 3
    quorum: int = 2
    min_accuracy_bps: int = 9000
    submit_blocks: int = 1000
    vote_blocks: int = 1000
    max_submissions: int = 16
    reward: int = 10**15
    verifier_fee: int = 10**14
    min_deposit: int = 10**15
    penalty_wrong_vote: int = 10**14
    penalty_no_vote: int = 10**14
    idle_blocks: int = 100_000
    invite_only: bool = True
    reveal_blocks: int = 0  # 0: the seed is the randomness block's alone (see the contract)
    # an authority closes the window early only once every participant submitted or this many
    # blocks passed since the last batch: a left-out contributor sends its own (0: no grace)
    grace_blocks: int = 4

    def escrow_per_round(self) -> int:
        """Returns: what ``openRound`` reserves: max_submissions * (reward + k * fee)."""
        return self.max_submissions * (self.reward + self.k * self.verifier_fee)

    def as_tuple(self) -> tuple[Any, ...]:
        """Returns: the ABI tuple."""
        return (
            bytes(self.spec_hash),
            self.k,
            self.quorum,
            self.min_accuracy_bps,
            self.submit_blocks,
            self.vote_blocks,
            self.max_submissions,
            self.reward,
            self.verifier_fee,
            self.min_deposit,
            self.penalty_wrong_vote,
            self.penalty_no_vote,
            self.idle_blocks,
            self.invite_only,
            self.reveal_blocks,
            self.grace_blocks,
        )


@dataclass(frozen=True)
class TaskInfo:
    """A task as stored on chain."""

    task_id: int
    initiator: str
    round_count: int
    closed: bool
    escrow: int
    params: TaskParams
    last_active: int = 0  # block of the last publish / openRound / settle


@dataclass(frozen=True)
class RoundInfo:
    """A round as stored on chain (state 0 none, 1 open, 2 voting, 3 settled, 4 settling:
    settled in part, ``settled`` submissions so far)."""

    task_id: int
    round: int
    submit_end: int
    rand_block: int
    vote_end: int
    n_submissions: int
    state: int
    n_participants: int
    accepted: int
    reserved: int
    seed: bytes
    meta_digest: bytes
    refreshes: int = 0
    reveal_end: int = 0  # last block taking seed shares (= rand_block without reveals)
    revealed: int = 0
    commit_acc: bytes = bytes(32)
    mix: bytes = bytes(32)  # XOR of the revealed shares, while some are missing
    rand_hash: bytes = bytes(32)  # the randomness block's hash, kept while shares are missing
    settled: int = 0  # while settling: submissions settled so far (ids 0 .. settled - 1)

    @property
    def reveals(self) -> bool:
        """Whether the round's seed mixes in contributors' revealed shares."""
        return self.reveal_end > self.rand_block


@dataclass(frozen=True)
class ParticipantInfo:
    """A participant of a task."""

    address: str
    deposit: int
    index: int
    last_round: int
    last_submission: int
    registered: bool


@dataclass(frozen=True)
class AccountState:
    """An account's withdrawable balance and its security deposit in one task (wei)."""

    balance: int
    deposit: int


@dataclass(frozen=True)
class SubmissionInfo:
    """One submission's on-chain state; bit j of the masks is the j-th assigned verifier."""

    submission: int
    contributor: str
    model_digest: bytes
    status: Status
    voted_mask: int
    yes_mask: int


@dataclass(frozen=True)
class Event:
    """A decoded contract event."""

    name: str
    args: dict[str, Any]
    block_number: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class TxResult:
    """A mined contract transaction with its decoded events."""

    tx_hash: str
    block_number: int
    gas_used: int
    events: list[Event]

    def named(self, name: str) -> list[Event]:
        """Returns: this transaction's events called ``name``."""
        return [e for e in self.events if e.name == name]


@dataclass(frozen=True)
class Skipped:
    """A batch item the contract left out without reverting the batch.

    ``item`` is its position in the batch sent, ``who`` its author, ``reason`` the contract's
    error name (``AlreadySubmitted``, ``SignatureReplayed``, ``DuplicateModel``,
    ``AlreadyVoted``); for a submission, ``held`` is (round, submission id) of the model the
    contract already holds in its place, for a vote ``submission`` the one it voted on."""

    item: int
    who: str
    reason: str
    held: tuple[int, int] | None = None
    submission: int | None = None


@dataclass(frozen=True)
class SubmitResult(TxResult):
    """A mined ``submitBatch``: the ids the contract gave, by the contributor and model of
    each ``Submitted`` event (never by position), and the items it skipped.

    ``by_id`` maps submission id to the relayed signed submission; it also holds an item the
    contract skipped as already recorded when the model on chain is the relayed one (the node
    sent the same signed message itself). ``skipped`` names every skipped item."""

    by_id: dict[int, SignedSubmission] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class VoteResult(TxResult):
    """A mined ``submitVotes``: the relayed votes the contract recorded (matched by verifier
    and submission of each ``VoteCast``) and the ones it skipped (``AlreadyVoted``)."""

    recorded: list[SignedVote] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class Assignment:
    """The round's verifier assignment: seed and, per submission id, its verifiers."""

    task_id: int
    round: int
    seed: bytes
    rand_block: int
    verifiers: dict[int, list[str]]

    def for_verifier(self, address: str) -> list[int]:
        """Returns: the submission ids ``address`` must verify."""
        a = address.lower()
        return [s for s, vs in self.verifiers.items() if any(v.lower() == a for v in vs)]


@dataclass(frozen=True)
class SettledSubmission:
    """The decision on one submission."""

    submission: int
    contributor: str
    status: Status
    yes: int
    cast: int


@dataclass(frozen=True)
class Settlement:
    """What ``settle`` decided and moved."""

    tx: TxResult
    submissions: list[SettledSubmission]
    paid: dict[str, int]
    penalized: dict[str, int]
    accepted: int
    total_paid: int
    returned_to_escrow: int


@dataclass(frozen=True)
class RoundRecord:
    """A round replayed from events alone (for an audit)."""

    task_id: int
    round: int
    submissions: list[Event]
    closes: list[Event]
    randomness: list[Event]
    votes: list[Event]
    settled: list[Event]
    payments: list[Event]
    penalties: list[Event]
    round_settled: list[Event]
    metamodel: list[Event] = field(default_factory=list)
    refreshed: list[Event] = field(default_factory=list)
    lost: list[Event] = field(default_factory=list)
    skipped: list[Event] = field(default_factory=list)
