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
from coopflower.blob import pack_arrays, state_dict_to_blob
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


def _keccak(b: bytes) -> bytes:
    from eth_utils import keccak

    return bytes(keccak(b))


@pytest.fixture
def history(tmp_path: Path) -> dict[str, Any]:
    """Two real rounds on the embedded EVM: 5 nodes, 3 submissions, k=3 votes each."""
    ledger = CoopLedger.deploy(connect())
    store = open_store(tmp_path / "store")
    params = TaskParams(spec_hash=bytes(32), k=3, quorum=2, max_submissions=5)
    task = ledger.publish_task(params, params.escrow_per_round() * 2)
    keys = [secrets.token_bytes(32) for _ in range(5)]
    ledger.register_for(task, [sign_registration(k, ledger.domain, task, params.min_deposit)
                               for k in keys])
    addr = {sign_registration(k, ledger.domain, task, 0).participant.lower(): k for k in keys}
    for rnd_no in (1, 2):
        rnd = ledger.open_round(task).round
        subs = []
        for i, key in enumerate(keys[:3]):
            torch.manual_seed(10 * rnd_no + i)
            blob = state_dict_to_blob(build_model("table4"), {"model": "table4"})
            cid = store.put(blob).to_bytes()
            subs.append(sign_submission(key, ledger.domain, task, rnd, cid, _keccak(blob)))
        ledger.submit_batch(task, rnd, subs, close=True)
        plan = ledger.assignments(task, rnd)
        votes = [sign_vote(addr[v.lower()], ledger.domain, task, rnd, sid,
                           subs[sid].model_digest, sid != 1, 9000 if sid != 1 else 1000)
                 for sid, verifiers in plan.verifiers.items() for v in verifiers]
        ledger.submit_votes(task, rnd, votes)
        ledger.settle(task, rnd)
        meta = pack_arrays({"w": torch.ones(3).numpy()}, {"round": str(rnd)})
        ledger.record_metamodel(task, rnd, store.put(meta).to_bytes(), _keccak(meta))
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
