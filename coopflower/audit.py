"""Audit: replay every round of a task from chain data and storage alone.

Nothing the initiator says is trusted. From the contract's events, the batch transactions'
calldata (which carries every signature) and the chain's block hashes, and from the blobs in
content-addressed storage, the audit rechecks:

- every signature: each submission recovers to its contributor and each vote to its verifier
  (EIP-712, the same typed data the contract checks);
- every verifier assignment, recomputed from the round's randomness block hash
  (``round_seed``, ``assign_verifiers``): each vote must come from an assigned verifier, once;
- every blob against its CID (the store checks the bytes) and its recorded content hash, and
  the recorded model digest;
- every tally (majority of valid votes cast, with quorum) against the settled status, and the
  payments against the task's rules;
- what no single party should decide, named as a discrepancy when the chain shows it: a
  refreshed randomness (every ``RandomnessRefreshed``: the first draw was public and someone let
  it expire), a round whose randomness was lost (settled void), a submission window closed
  twice, a model (content hash) submitted twice in the task, a participant registered while a
  round was in progress. Items a batch skipped (copies, second submissions, second ballots) are
  listed as notes: refused by the contract, they changed nothing.

``collect_history`` is the adapter that reads the chain; ``replay`` is pure and takes a
``fetch(cid) -> bytes`` function; ``run_audit`` prints a table per round and returns the
process exit code (0 clean, 1 discrepancies, 2 could not audit).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = [
    "AuditError",
    "SubmissionRecord",
    "VoteRecord",
    "SettledRecord",
    "RoundHistory",
    "TaskHistory",
    "RoundAudit",
    "collect_history",
    "replay",
    "format_round",
    "audit_ledger",
    "run_audit",
]

Fetch = Callable[[bytes], bytes]


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
    """The replay of one round: a row per submission and every discrepancy found."""

    task_id: int
    round: int
    seed: str
    rows: list[SubmissionCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing disagreed."""
        return not self.problems


STATUS = {0: "PENDING", 1: "ACCEPTED", 2: "REJECTED", 3: "NO_QUORUM"}


def _short(b: bytes | str, n: int = 10) -> str:
    text = b if isinstance(b, str) else b.hex()
    return text if len(text) <= n else text[:n] + ".."


# ---------------------------------------------------------------------- pure replay
def replay(task: TaskHistory, fetch: Fetch) -> list[RoundAudit]:  # noqa: C901
    """Replay every round of ``task``.

    Args:
        task: the history read from the chain (``collect_history``).
        fetch: returns a blob's bytes by binary CID, checking them against the CID (raises
            on a mismatch or a missing blob).

    Returns:
        A ``RoundAudit`` per round; ``problems`` names each discrepancy.
    """
    from coopflower.ledger.eip712 import (
        Eip712Domain,
        SignedSubmission,
        SignedVote,
        content_hash,
        model_digest,
        recover_submission,
        recover_vote,
    )
    from coopflower.ledger.rules import assign_verifiers, counts_as_yes, round_seed, tally

    domain = Eip712Domain(task.chain_id, task.contract)
    audits = []
    models_seen: dict[bytes, tuple[int, int]] = {}  # content hash -> (round, submission)
    for rh in task.rounds:
        where = f"task {task.task_id} round {rh.round}"
        ra = RoundAudit(task.task_id, rh.round, "-")
        problems = ra.problems
        ra.notes.extend(f"{where}: {s}" for s in rh.skipped)
        if rh.closes > 1:
            problems.append(f"{where}: the submission window was closed {rh.closes} times")
        for expired, new, at in rh.refreshes:
            problems.append(
                f"{where}: randomness refreshed at block {at}: block {expired}'s hash expired "
                f"unfixed (its verifier draw was public from block {expired + 1} on), verifiers "
                f"re-drawn from block {new}")
            if at <= expired + 256:
                problems.append(f"{where}: the refresh at block {at} came before block "
                                f"{expired}'s hash expired (block {expired + 256})")
        if rh.lost:
            problems.append(f"{where}: randomness lost (block {rh.rand_block} expired unfixed "
                            "after a refresh): the round settled void, nothing decided")
        for who in rh.late_registrations:
            problems.append(f"{where}: {who} registered while the round was in progress")
        seed: bytes | None = None
        if rh.submissions:
            if rh.rand_block_hash is None:
                problems.append(f"{where}: randomness block {rh.rand_block} hash unavailable")
            else:
                seed = round_seed(rh.rand_block_hash, task.task_id, rh.round)
                ra.seed = f"0x{_short(seed, 12)} (block {rh.rand_block})"
                if rh.seed is not None and rh.seed != seed:
                    problems.append(f"{where}: recorded seed 0x{rh.seed.hex()} is not the one "
                                    f"block {rh.rand_block} gives (0x{seed.hex()})")
        subs = {s.submission: s for s in rh.submissions}
        votes_by_sub: dict[int, list[VoteRecord]] = {}
        for v in rh.votes:
            votes_by_sub.setdefault(v.submission, []).append(v)
        settled = {s.submission: s for s in rh.settled}
        expected_paid: dict[str, int] = {}
        for sid, sub in sorted(subs.items()):
            row = SubmissionCheck(sid, sub.contributor, _short(sub.cid.hex(), 14))
            ra.rows.append(row)
            tag = f"{where} submission {sid}"
            first = models_seen.setdefault(bytes(sub.content_hash), (rh.round, sid))
            if first != (rh.round, sid):
                problems.append(f"{tag}: a copy: its content hash was submitted as round "
                                f"{first[0]} submission {first[1]}")
            # the recorded digest binds CID and content hash
            try:
                if model_digest(sub.cid, sub.content_hash) != sub.model_digest:
                    problems.append(f"{tag}: model digest does not match CID and content hash")
            except Exception as exc:
                problems.append(f"{tag}: malformed CID or content hash ({exc})")
            # the blob, fetched by CID (checked by the store), against its content hash
            try:
                blob = fetch(sub.cid)
                if content_hash(blob) != sub.content_hash:
                    row.blob = "BAD"
                    problems.append(f"{tag}: blob {sub.cid.hex()} does not match the recorded "
                                    "content hash")
                else:
                    row.blob = "ok"
            except Exception as exc:
                row.blob = "BAD"
                problems.append(f"{tag}: blob {sub.cid.hex()} failed its check: {exc}")
            # the contributor's signature
            row.signature = "BAD"
            if sub.signature is None:
                problems.append(f"{tag}: no signature found in the submitting transaction")
            else:
                try:
                    signer = recover_submission(domain, SignedSubmission(
                        task.task_id, rh.round, sub.contributor, sub.cid, sub.content_hash,
                        sub.signature))
                    if signer.lower() == sub.contributor.lower():
                        row.signature = "ok"
                    else:
                        problems.append(f"{tag}: signed by {signer}, not by contributor "
                                        f"{sub.contributor}")
                except Exception as exc:
                    problems.append(f"{tag}: bad contributor signature ({exc})")
            # the assignment and the votes
            assigned: list[str] = []
            if seed is not None:
                try:
                    assigned = assign_verifiers(seed, sid, list(rh.pool), task.k, sub.contributor)
                except Exception as exc:
                    problems.append(f"{tag}: cannot recompute verifiers ({exc})")
            lowered = [a.lower() for a in assigned]
            seen: set[str] = set()
            yes = cast = 0
            voted: dict[int, bool] = {}
            for v in votes_by_sub.get(sid, []):
                who = v.verifier.lower()
                valid = True
                if who not in lowered:
                    valid = False
                    problems.append(f"{tag}: vote relayed for {v.verifier}, who is not an "
                                    f"assigned verifier (assigned: {', '.join(assigned)})")
                if who in seen:
                    valid = False
                    problems.append(f"{tag}: second vote by {v.verifier}")
                if v.signature is None:
                    valid = False
                    problems.append(f"{tag}: vote by {v.verifier} has no signature in calldata")
                else:
                    try:
                        signer = recover_vote(domain, SignedVote(
                            task.task_id, rh.round, sid, sub.model_digest, v.verifier, v.accept,
                            v.score_bps, v.signature))
                        if signer.lower() != who:
                            valid = False
                            problems.append(f"{tag}: vote recorded for {v.verifier} was signed "
                                            f"by {signer}")
                    except Exception as exc:
                        valid = False
                        problems.append(f"{tag}: bad vote signature of {v.verifier} ({exc})")
                if valid:
                    seen.add(who)
                    cast += 1
                    said_yes = counts_as_yes(v.accept, v.score_bps, task.min_accuracy_bps)
                    yes += int(said_yes)
                    voted[lowered.index(who)] = said_yes
            row.yes, row.cast = yes, cast
            t = tally(yes, cast, task.quorum)
            row.replayed = t.status.name
            rec = settled.get(sid)
            if rec is None:
                if rh.is_settled:
                    problems.append(f"{tag}: settled round has no decision for it")
                row.recorded = "-"
            else:
                row.recorded = STATUS.get(rec.status, str(rec.status))
                if (rec.status, rec.yes, rec.cast) != (int(t.status), yes, cast):
                    problems.append(
                        f"{tag}: chain says {row.recorded} with {rec.yes}/{rec.cast} votes, "
                        f"replay gives {t.status.name} with {yes}/{cast}")
                if rec.contributor.lower() != sub.contributor.lower():
                    problems.append(f"{tag}: settled contributor {rec.contributor} differs")
            # payments: reward to accepted contributors, fee to voters with the majority
            if t.accepted:
                key = sub.contributor.lower()
                expected_paid[key] = expected_paid.get(key, 0) + task.reward
            for pos, accept in voted.items():
                if not t.majority or accept == t.accepted:
                    key = lowered[pos]
                    expected_paid[key] = expected_paid.get(key, 0) + task.verifier_fee
        if rh.is_settled:
            paid = {a.lower(): v for a, v in rh.paid.items() if v}
            expected = {a: v for a, v in expected_paid.items() if v}
            if paid != expected:
                for a in sorted(set(paid) | set(expected)):
                    if paid.get(a, 0) != expected.get(a, 0):
                        problems.append(f"{where}: {a} was paid {paid.get(a, 0)} wei, the rules "
                                        f"give {expected.get(a, 0)}")
        for sid in set(settled) - set(subs):
            problems.append(f"{where}: decision on unknown submission {sid}")
        for sid in set(votes_by_sub) - set(subs):
            problems.append(f"{where}: votes on unknown submission {sid}")
        if rh.meta is not None:
            cid, chash, digest = rh.meta
            try:
                if model_digest(cid, chash) != digest:
                    problems.append(f"{where}: MetaModel digest does not match its CID and hash")
                if content_hash(fetch(cid)) != chash:
                    problems.append(f"{where}: MetaModel blob {cid.hex()} does not match its hash")
            except Exception as exc:
                problems.append(f"{where}: MetaModel blob {cid.hex()} failed its check: {exc}")
        audits.append(ra)
    return audits


def format_round(ra: RoundAudit) -> str:
    """A plain-text table of one round's replay, with its discrepancies below."""
    head = (f"task {ra.task_id} round {ra.round}: seed {ra.seed}, {len(ra.rows)} submissions, "
            f"{'OK' if ra.ok else f'{len(ra.problems)} DISCREPANCIES'}")
    lines = [head, f"  {'sub':>3} {'contributor':<12} {'cid':<16} {'blob':<4} {'sig':<4} "
                   f"{'yes/cast':>8} {'replayed':<9} {'recorded':<9}"]
    for r in ra.rows:
        lines.append(f"  {r.submission:>3} {_short(r.contributor, 10):<12} {r.cid:<16} "
                     f"{r.blob:<4} {r.signature:<4} {f'{r.yes}/{r.cast}':>8} {r.replayed:<9} "
                     f"{r.recorded:<9}")
    lines += [f"  ! {p}" for p in ra.problems]
    lines += [f"  ~ {n}" for n in ra.notes]
    return "\n".join(lines)


# ---------------------------------------------------------------------- chain adapter
def _signature(r: bytes, vs: bytes) -> bytes:
    n = int.from_bytes(vs, "big")
    v = 27 + (n >> 255)
    s = n & ((1 << 255) - 1)
    return bytes(r) + s.to_bytes(32, "big") + bytes([v])


def _item(value: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """A decoded ABI struct as a dict (web3 gives dicts or tuples depending on version)."""
    if isinstance(value, dict):
        return dict(value)
    return dict(zip(names, value, strict=True))


def _calldata(ledger: Any, tx_hash: str, cache: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if tx_hash not in cache:  # decode_input also checks the transaction called this contract
        cache[tx_hash] = ledger.decode_input(tx_hash)
    return cache[tx_hash]


def _error_name(errors: dict[str, Any], selector: bytes) -> str:
    from eth_utils import keccak

    for name, spec in errors.items():
        types = ",".join(i["type"] for i in spec["inputs"])
        if bytes(keccak(f"{name}({types})".encode()))[:4] == bytes(selector)[:4]:
            return name
    return "0x" + bytes(selector).hex()


def collect_history(ledger: Any, task_id: int | None = None) -> list[TaskHistory]:
    """Read tasks and rounds from a ``coopflower.ledger.CoopLedger``'s events and calldata.

    Args:
        ledger: the bound contract.
        task_id: one task, or ``None`` for every task the contract published.

    Returns:
        A ``TaskHistory`` per task.
    """
    published = ledger.events("TaskPublished")
    if task_id is not None:
        published = [e for e in published if int(e.args["taskId"]) == task_id]
        if not published:
            raise AuditError(f"task {task_id} was never published on {ledger.address}")
    cache: dict[str, Any] = {}
    out = []
    for ev in published:
        tid = int(ev.args["taskId"])
        p = ledger.task(tid).params
        registered = sorted(ledger.events("Registered", task_id=tid),
                            key=lambda e: int(e.args["index"]))
        participants = [str(e.args["participant"]) for e in registered]
        events = ledger.events(None, task_id=tid)
        errors = {e["name"]: e for e in ledger.artifact.abi if e["type"] == "error"}
        rounds_seen = sorted({int(e.args["round"]) for e in events if e.name == "RoundOpened"})
        rounds = []
        for rnd in rounds_seen:
            evs = [e for e in events if e.args.get("round") == rnd]

            def named(n: str, evs: list[Any] = evs) -> list[Any]:
                return [e for e in evs if e.name == n]

            closes = named("SubmissionsClosed")
            refreshed = named("RandomnessRefreshed")
            pool_n = int(closes[0].args["participants"]) if closes else 0
            rand_block = int(closes[0].args["randBlock"]) if closes else 0
            if refreshed:  # the seed comes from the last randomness block
                rand_block = int(refreshed[-1].args["randBlock"])
            rand_hash = None
            if closes and ledger.chain.block_number() >= rand_block:
                rand_hash = ledger.chain.block_hash(rand_block)
            fixed = named("RandomnessFixed")
            subs = []
            for e in named("Submitted"):
                fn, args = _calldata(ledger, e.tx_hash, cache)
                sig = None
                if fn == "submitBatch":  # the item of this contributor and model (skipped
                    for raw in args["subs"]:  # items shift positions: never match by index)
                        item = _item(raw, ("contributor", "contentHash", "cid", "r", "vs"))
                        if (str(item["contributor"]).lower() == str(e.args["contributor"]).lower()
                                and bytes(item["contentHash"]) == bytes(e.args["contentHash"])
                                and bytes(item["cid"]) == bytes(e.args["cid"])):
                            sig = _signature(item["r"], item["vs"])
                            break
                subs.append(SubmissionRecord(
                    int(e.args["submission"]), str(e.args["contributor"]), bytes(e.args["cid"]),
                    bytes(e.args["contentHash"]), bytes(e.args["modelDigest"]), sig))
            votes = []
            for e in named("VoteCast"):
                fn, args = _calldata(ledger, e.tx_hash, cache)
                sig = None
                if fn == "submitVotes":  # the first item of this verifier on this submission
                    for raw in args["votes"]:  # (a later duplicate ballot was skipped)
                        item = _item(raw, ("verifier", "submission", "accept", "scoreBps",
                                           "modelDigest", "contentHash", "r", "vs"))
                        if (str(item["verifier"]).lower() == str(e.args["verifier"]).lower()
                                and int(item["submission"]) == int(e.args["submission"])):
                            sig = _signature(item["r"], item["vs"])
                            break
                votes.append(VoteRecord(int(e.args["submission"]), str(e.args["verifier"]),
                                        bool(e.args["accept"]), int(e.args["scoreBps"]), sig))
            paid: dict[str, int] = {}
            for e in named("Paid"):
                a = str(e.args["account"])
                paid[a] = paid.get(a, 0) + int(e.args["amount"])
            meta = named("MetaModelRecorded")
            skipped = []
            for e in named("SubmissionSkipped"):
                skipped.append(f"batch {e.tx_hash[:12]}.. item {e.args['item']} by "
                               f"{e.args['contributor']} skipped: "
                               f"{_error_name(errors, e.args['reason'])} (content hash "
                               f"0x{_short(bytes(e.args['contentHash']), 12)})")
            for e in named("VoteSkipped"):
                skipped.append(f"vote batch {e.tx_hash[:12]}.. item {e.args['item']} by "
                               f"{e.args['verifier']} on submission {e.args['submission']} "
                               f"skipped: {_error_name(errors, e.args['reason'])}")
            opened = [(e.block_number, e.log_index) for e in named("RoundOpened")]
            ended = [(e.block_number, e.log_index) for e in named("RoundSettled")]
            late = tuple(
                str(e.args["participant"]) for e in registered
                if opened and opened[0] < (e.block_number, e.log_index)
                and (not ended or (e.block_number, e.log_index) < ended[0]))
            rounds.append(RoundHistory(
                tid, rnd, tuple(participants[:pool_n]), rand_block, rand_hash,
                bytes(fixed[-1].args["seed"]) if fixed else None, tuple(subs), tuple(votes),
                tuple(SettledRecord(int(e.args["submission"]), str(e.args["contributor"]),
                                    int(e.args["status"]), int(e.args["yesVotes"]),
                                    int(e.args["votesCast"])) for e in named("SubmissionSettled")),
                paid,
                (bytes(meta[0].args["cid"]), bytes(meta[0].args["contentHash"]),
                 bytes(meta[0].args["digest"])) if meta else None,
                bool(named("RoundSettled")),
                len(closes),
                tuple((int(e.args["expiredBlock"]), int(e.args["randBlock"]), e.block_number)
                      for e in refreshed),
                bool(named("RandomnessLost")),
                tuple(skipped),
                late,
            ))
        out.append(TaskHistory(
            tid, int(ledger.chain.chain_id), str(ledger.address), p.k, p.quorum,
            p.min_accuracy_bps, p.reward, p.verifier_fee, tuple(rounds)))
    return out


def audit_ledger(ledger: Any, store: Any, task_id: int | None = None,
                 stream: TextIO | None = sys.stdout) -> list[RoundAudit]:
    """Collect and replay; print a table per round to ``stream``; return the audits."""
    audits = []
    for task in collect_history(ledger, task_id):
        for ra in replay(task, store.get):
            if stream is not None:
                print(format_round(ra), file=stream, flush=True)
            audits.append(ra)
    return audits


def run_audit(chain: str, contract: str, store: str | None, task_id: int | None = None,
              stream: TextIO = sys.stdout) -> int:
    """``coopflower audit``: replay from a JSON-RPC chain, a contract address and a store.

    Args:
        chain: the chain's JSON-RPC URL. contract: the CoopLedger address.
        store: storage spec (directory or IPFS RPC URL; ``None``: the default store).
        task_id: one task, or every task.

    Returns:
        The exit code: 0 clean, 1 discrepancies found, 2 the audit could not run.
    """
    import secrets

    from coopflower.ledger import CoopLedger, LedgerError, connect
    from coopflower.storage import StorageError, open_store

    try:
        # a throwaway key: the audit only reads, it never sends a transaction
        ledger = CoopLedger.at(connect(chain, private_key=secrets.token_bytes(32)), contract)
        audits = audit_ledger(ledger, open_store(store), task_id, stream)
    except (AuditError, LedgerError, StorageError) as exc:
        print(f"audit failed: {exc}", file=stream)
        return 2
    bad = sum(len(a.problems) for a in audits)
    notes = sum(len(a.notes) for a in audits)
    print(f"{len(audits)} rounds replayed, {bad} discrepancies"
          + (f", {notes} notes (batch items the contract refused)" if notes else ""), file=stream)
    return 1 if bad else 0


def add_arguments(parser: Any) -> None:
    """Add the audit's options to an ``argparse`` (sub)parser."""
    parser.add_argument("--chain", required=True, help="JSON-RPC URL of the chain")
    parser.add_argument("--contract", required=True, help="the CoopLedger contract address")
    parser.add_argument("--store", default=None, help="store directory or IPFS RPC URL")
    parser.add_argument("--task", type=int, default=None, help="audit one task only")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m coopflower.audit --chain URL --contract ADDR [--store S] [--task N]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="coopflower audit", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_audit(args.chain, args.contract, args.store, args.task)


if __name__ == "__main__":
    sys.exit(main())
