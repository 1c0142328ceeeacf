"""The pure replay: every round of a ``TaskHistory`` rechecked from chain data and blobs.

``replay(task, fetch)`` takes a ``fetch(cid) -> bytes`` function (the store, which checks the
bytes against the CID) and returns a ``RoundAudit`` per round whose ``problems`` name each
discrepancy; the MetaModel is checked by :mod:`coopflower.audit.metamodel`.
"""

from __future__ import annotations

from collections.abc import Sequence

from coopflower.audit.metamodel import check_metamodel
from coopflower.audit.records import (
    STATUS,
    Fetch,
    RoundAudit,
    RoundHistory,
    SubmissionCheck,
    SubmissionRecord,
    TaskHistory,
    VoteRecord,
    short,
)

__all__ = ["replay"]


def _round_flags(where: str, rh: RoundHistory) -> list[str]:
    """What no single party should decide, as the round's events show it."""
    out = []
    if rh.closes > 1:
        out.append(f"{where}: the submission window was closed {rh.closes} times")
    for expired, new, at in rh.refreshes:
        out.append(f"{where}: randomness refreshed at block {at}: block {expired}'s hash expired "
                   f"unfixed (its verifier draw was public from block {expired + 1} on), "
                   f"verifiers re-drawn from block {new}")
        if at <= expired + 256:
            out.append(f"{where}: the refresh at block {at} came before block {expired}'s hash "
                       f"expired (block {expired + 256})")
    if rh.lost:
        out.append(f"{where}: randomness lost (block {rh.rand_block} expired unfixed after a "
                   "refresh): the round settled void, nothing decided")
    out += [f"{where}: {who} registered while the round was in progress"
            for who in rh.late_registrations]
    return out


def _seed(where: str, task: TaskHistory, rh: RoundHistory, ra: RoundAudit) -> bytes | None:
    """The seed the randomness block gives (``None`` without submissions or block hash)."""
    from coopflower.ledger.rules import round_seed

    if not rh.submissions:
        return None
    if rh.rand_block_hash is None:
        ra.problems.append(f"{where}: randomness block {rh.rand_block} hash unavailable")
        return None
    mix = _revealed_mix(where, rh, ra) if task.reveal_blocks else None
    seed = round_seed(rh.rand_block_hash, task.task_id, rh.round, mix)
    ra.seed = f"0x{short(seed, 12)} (block {rh.rand_block}" + (
        f", {len(rh.shares)} of {len(rh.submissions)} shares)" if mix is not None else ")")
    if rh.seed is not None and rh.seed != seed:
        ra.problems.append(f"{where}: recorded seed 0x{rh.seed.hex()} is not the one block "
                           f"{rh.rand_block} gives (0x{seed.hex()})")
    return seed


def _revealed_mix(where: str, rh: RoundHistory, ra: RoundAudit) -> bytes:
    """The XOR of the round's revealed seed shares; a share that does not open its
    submission's commitment is a problem, an unrevealed submission a note."""
    from coopflower.ledger.eip712 import seed_commitment
    from coopflower.ledger.rules import mix_shares

    subs = {s.submission: s for s in rh.submissions}
    for sid, share in rh.shares:
        sub = subs.get(sid)
        if sub is None or seed_commitment(share, sub.contributor) != sub.seed_commit:
            ra.problems.append(f"{where}: revealed share for submission {sid} does not open "
                               "its signed commitment")
    missing = sorted(set(subs) - {sid for sid, _ in rh.shares})
    ra.notes += [f"{where} submission {sid}: its contributor {subs[sid].contributor} did not "
                 "reveal its seed share (not verified, penalised)" for sid in missing]
    return mix_shares([share for _, share in rh.shares])


def _check_submission(tag: str, task: TaskHistory, rh: RoundHistory, sub: SubmissionRecord,
                      row: SubmissionCheck, fetch: Fetch) -> list[str]:
    """The digest, the blob against its CID and content hash, the contributor's signature."""
    from coopflower.ledger.eip712 import (
        Eip712Domain,
        SignedSubmission,
        content_hash,
        model_digest,
        recover_submission,
    )

    out = []
    try:  # the recorded digest binds CID and content hash
        if model_digest(sub.cid, sub.content_hash) != sub.model_digest:
            out.append(f"{tag}: model digest does not match CID and content hash")
    except Exception as exc:
        out.append(f"{tag}: malformed CID or content hash ({exc})")
    row.blob = "BAD"
    try:  # fetched by CID (checked by the store), against its content hash
        if content_hash(fetch(sub.cid)) != sub.content_hash:
            out.append(f"{tag}: blob {sub.cid.hex()} does not match the recorded content hash")
        else:
            row.blob = "ok"
    except Exception as exc:
        out.append(f"{tag}: blob {sub.cid.hex()} failed its check: {exc}")
    row.signature = "BAD"
    if sub.signature is None:
        return [*out, f"{tag}: no signature found in the submitting transaction"]
    try:
        signer = recover_submission(Eip712Domain(task.chain_id, task.contract), SignedSubmission(
            task.task_id, rh.round, sub.contributor, sub.cid, sub.content_hash, sub.signature,
            sub.seed_commit))
    except Exception as exc:
        return [*out, f"{tag}: bad contributor signature ({exc})"]
    if signer.lower() == sub.contributor.lower():
        row.signature = "ok"
    else:
        out.append(f"{tag}: signed by {signer}, not by contributor {sub.contributor}")
    return out


def _count_votes(tag: str, task: TaskHistory, rh: RoundHistory, sub: SubmissionRecord,
                 votes: Sequence[VoteRecord], assigned: Sequence[str],
                 ) -> tuple[int, int, dict[int, bool], list[str]]:
    """The valid votes (assigned, once, signed by their verifier): yes, cast, the yes/no of
    each assigned position that voted, and the problems."""
    from coopflower.ledger.eip712 import Eip712Domain, SignedVote, recover_vote
    from coopflower.ledger.rules import counts_as_yes

    domain = Eip712Domain(task.chain_id, task.contract)
    lowered = [a.lower() for a in assigned]
    seen: set[str] = set()
    yes = cast = 0
    voted: dict[int, bool] = {}
    out: list[str] = []
    for v in votes:
        who = v.verifier.lower()
        before = len(out)
        if who not in lowered:
            out.append(f"{tag}: vote relayed for {v.verifier}, who is not an assigned verifier "
                       f"(assigned: {', '.join(assigned)})")
        if who in seen:
            out.append(f"{tag}: second vote by {v.verifier}")
        if v.signature is None:
            out.append(f"{tag}: vote by {v.verifier} has no signature in calldata")
        else:
            try:
                signer = recover_vote(domain, SignedVote(
                    task.task_id, rh.round, sub.submission, sub.model_digest, v.verifier,
                    v.accept, v.score_bps, v.signature))
                if signer.lower() != who:
                    out.append(f"{tag}: vote recorded for {v.verifier} was signed by {signer}")
            except Exception as exc:
                out.append(f"{tag}: bad vote signature of {v.verifier} ({exc})")
        if len(out) == before:  # valid
            seen.add(who)
            cast += 1
            said_yes = counts_as_yes(v.accept, v.score_bps, task.min_accuracy_bps)
            yes += int(said_yes)
            voted[lowered.index(who)] = said_yes
    return yes, cast, voted, out


def _replay_submission(tag: str, task: TaskHistory, rh: RoundHistory, sub: SubmissionRecord,
                       seed: bytes | None, votes: Sequence[VoteRecord], row: SubmissionCheck,
                       fetch: Fetch, paid: dict[str, int]) -> list[str]:
    """One submission: its checks, its votes' tally against the settled decision, and what
    the rules pay for it (added to ``paid``)."""
    from coopflower.ledger.rules import Status, Tally, assign_verifiers, tally

    out = _check_submission(tag, task, rh, sub, row, fetch)
    assigned: list[str] = []
    if seed is not None:
        try:
            assigned = assign_verifiers(seed, sub.submission, list(rh.pool), task.k,
                                        sub.contributor)
        except Exception as exc:
            out.append(f"{tag}: cannot recompute verifiers ({exc})")
    yes, cast, voted, problems = _count_votes(tag, task, rh, sub, votes, assigned)
    out += problems
    row.yes, row.cast = yes, cast
    t = tally(yes, cast, task.quorum)
    if task.reveal_blocks and sub.submission not in {sid for sid, _ in rh.shares}:
        t = Tally(Status.UNREVEALED, 0, 0, False)  # not verified: no votes count
        voted = {}
    row.replayed = t.status.name
    rec = next((s for s in rh.settled if s.submission == sub.submission), None)
    row.recorded = "-" if rec is None else STATUS.get(rec.status, str(rec.status))
    if rec is None and rh.is_settled:
        out.append(f"{tag}: settled round has no decision for it")
    elif rec is not None:
        if (rec.status, rec.yes, rec.cast) != (int(t.status), yes, cast):
            out.append(f"{tag}: chain says {row.recorded} with {rec.yes}/{rec.cast} votes, "
                       f"replay gives {t.status.name} with {yes}/{cast}")
        if rec.contributor.lower() != sub.contributor.lower():
            out.append(f"{tag}: settled contributor {rec.contributor} differs")
    # payments: reward to accepted contributors, fee to voters with the majority
    if t.accepted:
        paid[sub.contributor.lower()] = paid.get(sub.contributor.lower(), 0) + task.reward
    for pos, accept in voted.items():
        if not t.majority or accept == t.accepted:
            key = assigned[pos].lower()
            paid[key] = paid.get(key, 0) + task.verifier_fee
    return out


def _payments(where: str, rh: RoundHistory, expected_paid: dict[str, int]) -> list[str]:
    """Every account whose ``Paid`` total differs from what the rules give."""
    paid = {a.lower(): v for a, v in rh.paid.items() if v}
    expected = {a: v for a, v in expected_paid.items() if v}
    return [f"{where}: {a} was paid {paid.get(a, 0)} wei, the rules give {expected.get(a, 0)}"
            for a in sorted(set(paid) | set(expected)) if paid.get(a, 0) != expected.get(a, 0)]


def _replay_round(task: TaskHistory, rh: RoundHistory, fetch: Fetch,
                  models_seen: dict[bytes, tuple[int, int]]) -> RoundAudit:
    where = f"task {task.task_id} round {rh.round}"
    ra = RoundAudit(task.task_id, rh.round, "-")
    ra.notes.extend(f"{where}: {s}" for s in rh.skipped)
    ra.problems += _round_flags(where, rh)
    seed = _seed(where, task, rh, ra)
    expected_paid: dict[str, int] = {}
    for sub in sorted(rh.submissions, key=lambda s: s.submission):
        row = SubmissionCheck(sub.submission, sub.contributor, short(sub.cid.hex(), 14))
        ra.rows.append(row)
        tag = f"{where} submission {sub.submission}"
        first = models_seen.setdefault(bytes(sub.content_hash), (rh.round, sub.submission))
        if first != (rh.round, sub.submission):
            ra.problems.append(f"{tag}: a copy: its content hash was submitted as round "
                               f"{first[0]} submission {first[1]}")
        votes = [v for v in rh.votes if v.submission == sub.submission]
        ra.problems += _replay_submission(tag, task, rh, sub, seed, votes, row, fetch,
                                          expected_paid)
    if rh.is_settled:
        ra.problems += _payments(where, rh, expected_paid)
    known = {s.submission for s in rh.submissions}
    ra.problems += [f"{where}: decision on unknown submission {sid}"
                    for sid in sorted({s.submission for s in rh.settled} - known)]
    ra.problems += [f"{where}: votes on unknown submission {sid}"
                    for sid in sorted({v.submission for v in rh.votes} - known)]
    problems, ra.metamodel = check_metamodel(where, rh, fetch)
    ra.problems += problems
    return ra


def replay(task: TaskHistory, fetch: Fetch) -> list[RoundAudit]:
    """Replay every round of ``task``.

    Args:
        task: the history read from the chain (``collect_history``).
        fetch: returns a blob's bytes by binary CID, checking them against the CID (raises
            on a mismatch or a missing blob).

    Returns:
        A ``RoundAudit`` per round; ``problems`` names each discrepancy.
    """
    models_seen: dict[bytes, tuple[int, int]] = {}  # content hash -> (round, submission)
    return [_replay_round(task, rh, fetch, models_seen) for rh in task.rounds]
