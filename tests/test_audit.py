"""The audit replays rounds from chain and storage alone: a clean history passes; a tampered
blob and a vote relayed for the wrong verifier are each named."""

from __future__ import annotations

import dataclasses
import io
import secrets
from pathlib import Path
from typing import Any

import pytest
import torch

from coopflower.audit import audit_ledger, collect_history, format_round, replay
from coopflower.blob import state_dict_to_blob
from coopflower.ledger import (
    CoopLedger,
    TaskParams,
    connect,
    sign_registration,
    sign_submission,
    sign_vote,
)
from coopflower.models import build_model
from coopflower.storage import open_store
from tests.fixtures_audit import AuditTask, strategy_aggregate


def _keccak(b: bytes) -> bytes:
    from eth_utils import keccak

    return bytes(keccak(b))


def _blob_submission(store: Any, ledger: CoopLedger, task: int, rnd: int, key: bytes,
                     seed: int) -> Any:
    torch.manual_seed(seed)
    blob = state_dict_to_blob(build_model("table4"), {"model": "table4"})
    cid = store.put(blob).to_bytes()
    return sign_submission(key, ledger.domain, task, rnd, cid, _keccak(blob))


def _setup(tmp_path: Path) -> tuple[CoopLedger, Any, int, list[bytes], dict[str, bytes]]:
    ledger = CoopLedger.deploy(connect())
    store = open_store(tmp_path / "store")
    params = TaskParams(spec_hash=bytes(32), k=3, quorum=2, max_submissions=5, vote_blocks=20)
    task = ledger.publish_task(params, params.escrow_per_round() * 2)
    keys = [secrets.token_bytes(32) for _ in range(5)]
    ledger.register_for(task, [sign_registration(k, ledger.domain, task, params.min_deposit)
                               for k in keys])
    addr = {sign_registration(k, ledger.domain, task, 0).participant.lower(): k for k in keys}
    return ledger, store, task, keys, addr


def _vote_settle_record(ledger: CoopLedger, store: Any, task: int, rnd: int, subs: list[Any],
                        addr: dict[str, bytes]) -> None:
    plan = ledger.assignments(task, rnd)
    votes = [sign_vote(addr[v.lower()], ledger.domain, task, rnd, sid,
                       subs[sid].model_digest, sid != 1, 9000 if sid != 1 else 1000)
             for sid, verifiers in plan.verifiers.items() for v in verifiers]
    ledger.submit_votes(task, rnd, votes)
    settled = ledger.settle(task, rnd)
    accepted = [s.submission for s in settled.submissions if s.status.name == "ACCEPTED"]
    # the round's aggregate as the strategy's aggregate stage stores it (with its provenance)
    meta = strategy_aggregate(AuditTask(ledger, store, task, [], addr), rnd, subs, accepted)
    ledger.record_metamodel(task, rnd, *meta)


@pytest.fixture
def history(tmp_path: Path) -> dict[str, Any]:
    """Two real rounds on the embedded EVM: 5 nodes, 3 submissions, k=3 votes each."""
    ledger, store, task, keys, addr = _setup(tmp_path)
    for rnd_no in (1, 2):
        rnd = ledger.open_round(task).round
        subs = [_blob_submission(store, ledger, task, rnd, key, 10 * rnd_no + i)
                for i, key in enumerate(keys[:3])]
        ledger.submit_batch(task, rnd, subs, close=True)
        _vote_settle_record(ledger, store, task, rnd, subs, addr)
    return {"ledger": ledger, "store": store, "task": task, "subs": subs}


def test_clean_history_passes(history: dict[str, Any]) -> None:
    out = io.StringIO()
    audits = audit_ledger(history["ledger"], history["store"], stream=out)
    assert [a.round for a in audits] == [1, 2] and all(a.ok for a in audits), out.getvalue()
    text = out.getvalue()
    assert "task 1 round 2" in text and "ACCEPTED" in text and "REJECTED" in text
    row = audits[0].rows[1]
    assert (row.blob, row.signature, row.yes, row.cast, row.replayed, row.recorded) == (
        "ok", "ok", 0, 3, "REJECTED", "REJECTED")


def test_tampered_blob_is_named(history: dict[str, Any]) -> None:
    store, sub = history["store"], history["subs"][2]  # round 2, submission 2
    path = store.block_path(sub.cid)
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    audits = audit_ledger(history["ledger"], store, stream=None)
    assert audits[0].ok
    problems = audits[1].problems
    assert len(problems) == 1, problems
    assert "round 2 submission 2: blob " + sub.cid.hex() in problems[0]
    assert audits[1].rows[2].blob == "BAD"


def test_vote_relayed_for_the_wrong_verifier_is_named(history: dict[str, Any]) -> None:
    ledger, store = history["ledger"], history["store"]
    (task,) = collect_history(ledger)
    rh = task.rounds[0]
    v = rh.votes[0]
    assigned = set(ledger.assigned_verifiers_on_chain(task.task_id, 1, v.submission))
    contributor = next(s.contributor for s in rh.submissions if s.submission == v.submission)
    outsider = next(p for p in rh.pool if p not in assigned and p != contributor)
    # what a lying node or a rogue relayer would show: the vote moved to another participant
    forged = dataclasses.replace(v, verifier=outsider)
    bad_round = dataclasses.replace(rh, votes=(forged, *rh.votes[1:]))
    audits = replay(dataclasses.replace(task, rounds=(bad_round, *task.rounds[1:])), store.get)
    text = "\n".join(audits[0].problems)
    assert f"vote relayed for {outsider}, who is not an assigned verifier" in text
    assert f"vote recorded for {outsider} was signed by 0x" in text  # not by the outsider
    assert "chain says" in text  # the tally no longer matches the settled decision
    assert audits[1].ok
    assert "DISCREPANCIES" in format_round(audits[0])


def test_refreshed_randomness_is_named_and_the_refreshed_seed_replays(tmp_path: Path) -> None:
    """Attack 4's trace. Before: the audit read only the last ``SubmissionsClosed`` and reported
    a re-rolled round clean. Now every ``RandomnessRefreshed`` is a named discrepancy, and the
    assignment still replays from the new randomness block (nothing else is flagged)."""
    ledger, store, task, keys, addr = _setup(tmp_path)
    rnd = ledger.open_round(task).round
    subs = [_blob_submission(store, ledger, task, rnd, k, i) for i, k in enumerate(keys[:3])]
    ledger.submit_batch(task, rnd, subs, close=True)
    first = ledger.round(task, rnd).rand_block
    ledger.chain.mine(first + 257 - ledger.chain.block_number())
    ledger.refresh_randomness(task, rnd)
    _vote_settle_record(ledger, store, task, rnd, subs, addr)
    (ra,) = audit_ledger(ledger, store, stream=None)
    assert len(ra.problems) == 1, ra.problems
    assert f"randomness refreshed at block {first + 258}: block {first}'s hash expired" in (
        ra.problems[0])
    assert [(r.replayed, r.recorded) for r in ra.rows] == [
        ("ACCEPTED", "ACCEPTED"), ("REJECTED", "REJECTED"), ("ACCEPTED", "ACCEPTED")]


def test_void_round_and_refused_copy_are_named(tmp_path: Path) -> None:
    """A round whose randomness was lost twice is named (settled void); a copy the contract
    refused is a note (it changed nothing), and a copy recorded by an older contract, built
    into the history by hand, is a named discrepancy."""
    ledger, store, task, keys, addr = _setup(tmp_path)
    rnd = ledger.open_round(task).round
    subs = [_blob_submission(store, ledger, task, rnd, k, i) for i, k in enumerate(keys[:2])]
    copy = sign_submission(keys[2], ledger.domain, task, rnd, subs[0].cid, subs[0].content_hash)
    ledger.submit_batch(task, rnd, [*subs, copy], close=True)
    for _ in range(2):
        ledger.chain.mine(ledger.round(task, rnd).rand_block + 257 - ledger.chain.block_number())
        if ledger.round(task, rnd).refreshes == 0:
            ledger.refresh_randomness(task, rnd)
    ledger.settle(task, rnd)
    out = io.StringIO()
    (ra,) = audit_ledger(ledger, store, stream=out)
    assert any("randomness lost" in p and "settled void" in p for p in ra.problems), ra.problems
    assert len(ra.notes) == 1 and "skipped: DuplicateModel" in ra.notes[0], ra.notes
    assert "~ task 1 round 1: batch" in out.getvalue()
    (th,) = collect_history(ledger)
    rh = th.rounds[0]
    dup = dataclasses.replace(rh.submissions[1], submission=2, content_hash=subs[0].content_hash)
    bad = dataclasses.replace(th, rounds=(dataclasses.replace(
        rh, submissions=(*rh.submissions, dup), late_registrations=("0xabc",)),))
    text = "\n".join(replay(bad, store.get)[0].problems)
    assert "submission 2: a copy: its content hash was submitted as round 1 submission 0" in text
    assert "0xabc registered while the round was in progress" in text
