"""The chain adapter: a task's history from a ``coopflower.ledger.CoopLedger``'s events, its
batch transactions' calldata (which carries every signature) and the chain's block hashes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from coopflower.audit.records import (
    AuditError,
    RoundHistory,
    SettledRecord,
    SubmissionRecord,
    TaskHistory,
    VoteRecord,
    short,
)

__all__ = ["collect_history"]


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


def _submissions(ledger: Any, events: Sequence[Any], cache: dict[str, Any],
                 ) -> tuple[SubmissionRecord, ...]:
    """Each ``Submitted`` event with the signature of its item in the batch's calldata."""
    subs = []
    for e in events:
        fn, args = _calldata(ledger, e.tx_hash, cache)
        sig = None
        if fn == "submitBatch":  # the item of this contributor and model (skipped items
            for raw in args["subs"]:  # shift positions: never match by index)
                item = _item(raw, ("contributor", "contentHash", "seedCommit", "cid", "r", "vs"))
                if (str(item["contributor"]).lower() == str(e.args["contributor"]).lower()
                        and bytes(item["contentHash"]) == bytes(e.args["contentHash"])
                        and bytes(item["cid"]) == bytes(e.args["cid"])):
                    sig = _signature(item["r"], item["vs"])
                    break
        subs.append(SubmissionRecord(
            int(e.args["submission"]), str(e.args["contributor"]), bytes(e.args["cid"]),
            bytes(e.args["contentHash"]), bytes(e.args["modelDigest"]), sig,
            bytes(e.args["seedCommit"])))
    return tuple(subs)


def _votes(ledger: Any, events: Sequence[Any], cache: dict[str, Any]) -> tuple[VoteRecord, ...]:
    """Each ``VoteCast`` event with the signature of its ballot in the batch's calldata."""
    votes = []
    for e in events:
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
    return tuple(votes)


def _skipped(subs: Sequence[Any], votes: Sequence[Any], errors: dict[str, Any]) -> tuple[str, ...]:
    """The ``SubmissionSkipped`` and ``VoteSkipped`` events, described."""
    out = [f"batch {e.tx_hash[:12]}.. item {e.args['item']} by {e.args['contributor']} "
           f"skipped: {_error_name(errors, e.args['reason'])} (content hash "
           f"0x{short(bytes(e.args['contentHash']), 12)})" for e in subs]
    out += [f"vote batch {e.tx_hash[:12]}.. item {e.args['item']} by {e.args['verifier']} on "
            f"submission {e.args['submission']} skipped: {_error_name(errors, e.args['reason'])}"
            for e in votes]
    return tuple(out)


def _late(registered: Sequence[Any], opened: Sequence[Any], ended: Sequence[Any],
          ) -> tuple[str, ...]:
    """Participants whose ``Registered`` event falls between the round's opening and end."""
    start = [(e.block_number, e.log_index) for e in opened]
    end = [(e.block_number, e.log_index) for e in ended]
    return tuple(
        str(e.args["participant"]) for e in registered
        if start and start[0] < (e.block_number, e.log_index)
        and (not end or (e.block_number, e.log_index) < end[0]))


def _round(ledger: Any, tid: int, rnd: int, events: Sequence[Any], registered: Sequence[Any],
           errors: dict[str, Any], cache: dict[str, Any]) -> RoundHistory:
    """Round ``rnd`` of task ``tid`` from the task's events."""
    evs = [e for e in events if e.args.get("round") == rnd]

    def named(n: str) -> list[Any]:
        return [e for e in evs if e.name == n]

    closes, refreshed, fixed = (named("SubmissionsClosed"), named("RandomnessRefreshed"),
                                named("RandomnessFixed"))
    pool_n = int(closes[0].args["participants"]) if closes else 0
    rand_block = int(closes[0].args["randBlock"]) if closes else 0
    if refreshed:  # the seed comes from the last randomness block
        rand_block = int(refreshed[-1].args["randBlock"])
    rand_hash = None
    if closes and ledger.chain.block_number() >= rand_block:
        rand_hash = ledger.chain.block_hash(rand_block)
    paid: dict[str, int] = {}
    for e in named("Paid"):
        a = str(e.args["account"])
        paid[a] = paid.get(a, 0) + int(e.args["amount"])
    meta = named("MetaModelRecorded")
    participants = [str(e.args["participant"]) for e in registered]
    return RoundHistory(
        tid, rnd, tuple(participants[:pool_n]), rand_block, rand_hash,
        bytes(fixed[-1].args["seed"]) if fixed else None,
        _submissions(ledger, named("Submitted"), cache), _votes(ledger, named("VoteCast"), cache),
        tuple(SettledRecord(int(e.args["submission"]), str(e.args["contributor"]),
                            int(e.args["status"]), int(e.args["yesVotes"]),
                            int(e.args["votesCast"])) for e in named("SubmissionSettled")),
        paid,
        (bytes(meta[0].args["cid"]), bytes(meta[0].args["contentHash"]),
         bytes(meta[0].args["digest"])) if meta else None,
        bool(named("RoundSettled")), len(closes),
        tuple((int(e.args["expiredBlock"]), int(e.args["randBlock"]), e.block_number)
              for e in refreshed),
        bool(named("RandomnessLost")),
        _skipped(named("SubmissionSkipped"), named("VoteSkipped"), errors),
        _late(registered, named("RoundOpened"), named("RoundSettled")),
        tuple((int(e.args["submission"]), bytes(e.args["share"])) for e in named("SeedRevealed")),
    )


def collect_history(ledger: Any, task_id: int | None = None) -> list[TaskHistory]:
    """Read tasks and rounds from a ``coopflower.ledger.CoopLedger``'s events and calldata.

    Args:
        ledger: the bound contract.
        task_id: one task, or ``None`` for every task the contract published.

    Returns:
        A ``TaskHistory`` per task.

    Raises:
        AuditError: ``task_id`` was never published on this contract.
    """
    published = ledger.events("TaskPublished")
    if task_id is not None:
        published = [e for e in published if int(e.args["taskId"]) == task_id]
        if not published:
            raise AuditError(f"task {task_id} was never published on {ledger.address}")
    cache: dict[str, Any] = {}
    errors = {e["name"]: e for e in ledger.artifact.abi if e["type"] == "error"}
    out = []
    for ev in published:
        tid = int(ev.args["taskId"])
        p = ledger.task(tid).params
        registered = sorted(ledger.events("Registered", task_id=tid),
                            key=lambda e: int(e.args["index"]))
        events = ledger.events(None, task_id=tid)
        rounds_seen = sorted({int(e.args["round"]) for e in events if e.name == "RoundOpened"})
        rounds = tuple(_round(ledger, tid, rnd, events, registered, errors, cache)
                       for rnd in rounds_seen)
        out.append(TaskHistory(
            tid, int(ledger.chain.chain_id), str(ledger.address), p.k, p.quorum,
            p.min_accuracy_bps, p.reward, p.verifier_fee, rounds, p.reveal_blocks))
    return out
