"""The contract's decision rules in pure Python: seed, verifier assignment, tally, settlement.

Anyone can recompute, from chain data alone, what the contract decided:

- ``round_seed(blockhash(randBlock), task_id, round)`` is the round's seed;
- ``assign_verifiers(seed, submission_id, participants, k, exclude=contributor)`` lists the
  verifiers of a submission in the order of the vote-mask bits;
- ``counts_as_yes(accept, score_bps, min_accuracy_bps)`` says whether a vote is a yes;
- ``tally(yes, cast, quorum)`` says whether a submission is accepted;
- ``settle_submission(...)`` says who is paid and who is penalised, and how much.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from eth_hash.auto import keccak

from .errors import LedgerError


class Status(IntEnum):
    """A submission's state on chain."""

    PENDING = 0
    ACCEPTED = 1
    REJECTED = 2
    NO_QUORUM = 3
    UNREVEALED = 4  # its contributor did not reveal its seed share: not verified, penalised


class PenaltyReason(IntEnum):
    """Why a participant's deposit was cut."""

    WRONG_VOTE = 1
    NO_VOTE = 2
    NO_REVEAL = 3  # a contributor that did not reveal its seed share


def round_seed(block_hash: bytes, task_id: int, round: int, mix: bytes | None = None) -> bytes:
    """The round's seed: keccak256(abi.encode(blockhash, taskId, round)), or with the
    contributors' revealed shares keccak256(abi.encode(blockhash, mix, taskId, round)).

    Args:
        block_hash: hash of the round's randomness block (32 bytes).
        mix: the XOR of the revealed seed shares (:func:`mix_shares`), for a task with reveals.
    Returns: 32 bytes.
    """
    if len(block_hash) != 32 or (mix is not None and len(mix) != 32):
        raise LedgerError("block_hash and mix must be 32 bytes")
    middle = b"" if mix is None else bytes(mix)
    return bytes(keccak(bytes(block_hash) + middle + task_id.to_bytes(32, "big")
                        + round.to_bytes(32, "big")))


def mix_shares(shares: Sequence[bytes]) -> bytes:
    """The XOR of revealed seed shares (32 bytes each): what the contract mixes into the seed."""
    acc = 0
    for share in shares:
        if len(share) != 32:
            raise LedgerError("a seed share must be 32 bytes")
        acc ^= int.from_bytes(share, "big")
    return acc.to_bytes(32, "big")


def commit_chain(commits: Sequence[bytes]) -> bytes:
    """keccak chain of seed commitments in submission order, as the contract accumulates it."""
    acc = bytes(32)
    for c in commits:
        acc = bytes(keccak(acc + bytes(c)))
    return acc


def assign_verifier_indices(
    seed: bytes, submission_id: int, pool: int, k: int, exclude: int
) -> list[int]:
    """Indices of the verifiers of a submission, as the contract draws them.

    Draw keccak256(seed, submission_id, attempt) mod pool for attempt = 0, 1, ..., skipping
    ``exclude`` (the contributor) and repeats, until ``k`` are drawn.

    Args:
        seed: the round seed (32 bytes). submission_id: the submission's id in the round.
        pool: participants registered when the submission window closed.
        k: verifiers per submission. exclude: the contributor's participant index.
    Returns: k distinct indices in [0, pool), in vote-mask bit order.
    """
    if len(seed) != 32:
        raise LedgerError("seed must be 32 bytes")
    if k < 1 or pool - (1 if 0 <= exclude < pool else 0) < k:
        raise LedgerError(
            f"cannot draw {k} verifiers from a pool of {pool} excluding the contributor"
        )
    chosen: list[int] = []
    prefix = bytes(seed) + submission_id.to_bytes(32, "big")
    attempt = 0
    while len(chosen) < k:
        idx = int.from_bytes(keccak(prefix + attempt.to_bytes(32, "big")), "big") % pool
        attempt += 1
        if idx != exclude and idx not in chosen:
            chosen.append(idx)
    return chosen


def assign_verifiers(
    seed: bytes, submission_id: int, participants: Sequence[str], k: int, exclude: str
) -> list[str]:
    """The verifiers of a submission: exactly what the contract checks on chain.

    Args:
        seed: the round seed. submission_id: the submission's id in the round.
        participants: the task's participants in registration order, the pool snapshot taken
            when the submission window closed (``RoundInfo.n_participants`` first entries).
        k: verifiers per submission. exclude: the contributor's address.
    Returns: k addresses, in vote-mask bit order.
    """
    lowered = [p.lower() for p in participants]
    try:
        ex = lowered.index(exclude.lower())
    except ValueError:
        ex = -1
    return [
        participants[i]
        for i in assign_verifier_indices(seed, submission_id, len(participants), k, ex)
    ]


@dataclass(frozen=True)
class Tally:
    """The outcome of one submission's votes."""

    status: Status
    yes: int
    cast: int
    majority: bool  # a strict majority exists (quorum met and not tied)

    @property
    def accepted(self) -> bool:
        """Returns: True iff the model was accepted."""
        return self.status is Status.ACCEPTED


def counts_as_yes(accept: bool, score_bps: int, min_accuracy_bps: int) -> bool:
    """Whether a signed vote is a yes: the verifier found the model sound (``accept``) and
    its signed score reaches the task's threshold on chain, whatever threshold a relayer told
    the verifier (the contract's ``submitVotes`` rule)."""
    return bool(accept) and int(score_bps) >= int(min_accuracy_bps)


def tally(yes: int, cast: int, quorum: int) -> Tally:
    """Accepted iff at least ``quorum`` votes were cast and more than half of them said yes.

    Args:
        yes: votes saying accept. cast: votes cast. quorum: minimum votes cast.
    Returns: the :class:`Tally`.
    """
    if not 0 <= yes <= cast or quorum < 1:
        raise LedgerError(f"bad tally input yes={yes} cast={cast} quorum={quorum}")
    if cast < quorum:
        status = Status.NO_QUORUM
    elif 2 * yes > cast:
        status = Status.ACCEPTED
    else:
        status = Status.REJECTED
    return Tally(status, yes, cast, cast >= quorum and 2 * yes != cast)


@dataclass(frozen=True)
class SubmissionSettlement:
    """Who gets what for one submission (amounts in wei, penalties before deposit caps)."""

    tally: Tally
    contributor_reward: int
    fees: dict[int, int] = field(default_factory=dict)  # assigned position -> fee
    penalties: dict[int, tuple[PenaltyReason, int]] = field(default_factory=dict)


def settle_submission(
    votes: Sequence[bool | None],
    quorum: int,
    reward: int,
    verifier_fee: int,
    penalty_wrong_vote: int,
    penalty_no_vote: int,
) -> SubmissionSettlement:
    """The contract's settlement of one submission.

    Args:
        votes: per assigned verifier (mask-bit order) True = accept, False = reject,
            None = did not vote.
        quorum, reward, verifier_fee, penalty_wrong_vote, penalty_no_vote: the task's rules.
    Returns: the reward, fee per voter paid, and penalty per verifier penalised. Voters are
    paid when they voted with the majority, or at all when there is none (tie, no quorum);
    voting against a majority and not voting are penalised.
    """
    cast = sum(v is not None for v in votes)
    yes = sum(v is True for v in votes)
    t = tally(yes, cast, quorum)
    fees: dict[int, int] = {}
    penalties: dict[int, tuple[PenaltyReason, int]] = {}
    for j, v in enumerate(votes):
        if v is None:
            penalties[j] = (PenaltyReason.NO_VOTE, penalty_no_vote)
        elif not t.majority or v == t.accepted:
            fees[j] = verifier_fee
        else:
            penalties[j] = (PenaltyReason.WRONG_VOTE, penalty_wrong_vote)
    return SubmissionSettlement(t, reward if t.accepted else 0, fees, penalties)
