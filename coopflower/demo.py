"""The main job on the embedded defaults: one round of the paper's task life-cycle.

Deploys the CoopLedger contract on the in-process EVM, publishes a task, registers five nodes
from their signed consents, lets three computing contributors train the Table IV CNN on their
own digits, store the model blobs by CID and sign their submissions, assigns verifiers from
on-chain randomness, lets each verifier fetch the blob, check it against its CID, evaluate it on
its own digits and sign a vote, settles by majority, and prints what happened. One contributor
is lazy (submits an untrained model): the verifiers' majority rejects it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field

from eth_account import Account

from coopflower.blob import blob_to_state_dict, state_dict_to_blob
from coopflower.data import load_mnist, stratified_split
from coopflower.ledger import (
    CoopLedger,
    TaskParams,
    connect,
    content_hash,
    sign_registration,
    sign_submission,
    sign_vote,
)
from coopflower.models import build_model
from coopflower.storage import CID, EmbeddedStore
from coopflower.training import evaluate_model, train_model

NUM_NODES = 5
CONTRIBUTORS = (0, 1, 2)
LAZY = 2  # this contributor submits its untrained model
MIN_ACCURACY_BPS = 8000


@dataclass
class DemoReport:
    """What the demo did: addresses, CIDs, gas, votes and the settlement."""

    contract: str
    task_id: int
    round: int
    cids: dict[str, str] = field(default_factory=dict)
    votes: list[dict[str, object]] = field(default_factory=list)
    decisions: dict[str, str] = field(default_factory=dict)
    paid_wei: dict[str, int] = field(default_factory=dict)
    gas: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def run_demo(as_json: bool = False, seed: int = 0) -> int:
    """Run the demo round; print a line per step (and a JSON summary with ``as_json``).

    Returns:
        0 when the round settled with the trained models accepted and the lazy one rejected.
    """
    t0 = time.perf_counter()
    data = load_mnist()
    split = stratified_split(
        data.labels, {f"node{i}": 600 for i in range(NUM_NODES)}, seed=seed
    )
    _say(f"{len(data)} MNIST digits ({data.source}); each node holds 600 of its own")

    chain = connect()
    ledger = CoopLedger.deploy(chain)
    _say(f"CoopLedger deployed at {ledger.address} on the embedded EVM")
    keys = [Account.create().key for _ in range(NUM_NODES)]
    addrs = [Account.from_key(k).address for k in keys]
    params = TaskParams(
        spec_hash=hashlib.sha256(b"table4 MNIST").digest(),
        k=3,
        quorum=2,
        min_accuracy_bps=MIN_ACCURACY_BPS,
        max_submissions=len(CONTRIBUTORS),
    )
    task = ledger.publish_task(params, escrow=params.escrow_per_round())
    consents = [sign_registration(k, ledger.domain, task, params.min_deposit) for k in keys]
    reg = ledger.register_for(task, consents)
    _say(f"task {task} published; {NUM_NODES} nodes registered from signed consents "
         f"(1 tx, {reg.gas_used} gas)")
    rnd = ledger.open_round(task).round
    report = DemoReport(contract=ledger.address, task_id=task, round=rnd)

    store = EmbeddedStore(tempfile.mkdtemp(prefix="coopflower-demo-store-"))
    subs = []
    for i in CONTRIBUTORS:
        idx = split[f"node{i}"]
        model = build_model("table4")
        if i != LAZY:
            train_model(model, data.images[idx], data.labels[idx], epochs=3, seed=seed + i)
        blob = state_dict_to_blob(model)
        cid = store.put(blob)
        fetched = store.get(cid)  # verified against the CID on read
        assert fetched == blob
        subs.append(sign_submission(keys[i], ledger.domain, task, rnd, cid.to_bytes(),
                                    content_hash(blob)))
        report.cids[addrs[i]] = str(cid)
        _say(f"contributor {i} {'(lazy) ' if i == LAZY else ''}stored {len(blob)} B as {cid}")
    sub_tx = ledger.submit_batch(task, rnd, subs, close=True)
    report.gas["submit_batch"] = sub_tx.gas_used
    _say(f"{len(subs)} signed submissions relayed in 1 tx ({sub_tx.gas_used} gas)")

    plan = ledger.assignments(task, rnd)
    _say(f"verifiers from on-chain randomness {plan.seed.hex()[:16]}...: "
         + "; ".join(f"submission {s} -> {len(v)}" for s, v in plan.verifiers.items()))
    votes = []
    for v, addr in enumerate(addrs):
        for s in plan.for_verifier(addr):
            sub = subs[s]
            blob = store.get(CID.from_bytes(sub.cid))
            model = build_model("table4")
            model.load_state_dict(blob_to_state_dict(blob, model))
            idx = split[f"node{v}"]
            acc = evaluate_model(model, data.images[idx], data.labels[idx]).accuracy
            score = int(round(acc * 10_000))
            votes.append(sign_vote(keys[v], ledger.domain, task, rnd, s, sub.model_digest,
                                   score >= MIN_ACCURACY_BPS, score))
            report.votes.append({"verifier": addr, "submission": s, "accuracy": round(acc, 4),
                                 "accept": score >= MIN_ACCURACY_BPS})
            _say(f"verifier {v} evaluated submission {s}: accuracy {acc:.3f} -> "
                 f"{'accept' if score >= MIN_ACCURACY_BPS else 'reject'}")
    vote_tx = ledger.submit_votes(task, rnd, votes)
    report.gas["submit_votes"] = vote_tx.gas_used
    _say(f"{len(votes)} signed votes relayed in 1 tx ({vote_tx.gas_used} gas)")

    settlement = ledger.settle(task, rnd)
    report.gas["settle"] = settlement.tx.gas_used
    for decided in settlement.submissions:
        report.decisions[decided.contributor] = decided.status.name
        _say(f"submission {decided.submission} by {decided.contributor[:10]}: "
             f"{decided.status.name} ({decided.yes}/{decided.cast} yes)")
    report.paid_wei = dict(settlement.paid)
    report.seconds = round(time.perf_counter() - t0, 2)
    _say(f"settled: {settlement.accepted} accepted, {settlement.total_paid} wei paid; "
         f"{report.seconds} s in all")
    if as_json:
        print(json.dumps(asdict(report), default=str))
    lazy = addrs[LAZY]
    ok = all(
        (st == "REJECTED") == (a == lazy) for a, st in report.decisions.items()
    ) and len(report.decisions) == len(CONTRIBUTORS)
    return 0 if ok else 1
