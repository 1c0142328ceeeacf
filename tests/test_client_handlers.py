"""The paper app's ClientApp called as Flower calls it (``app(message, context)``): its own
train and evaluate behind coopflower's mods, signed submissions the contract accepts, verifiers
that reject tampered or foreign blobs, score a model on all of their own digits whatever
classes its blob claims, and judge encrypted models in cipherspace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict

from coopflower.app.client_app import app
from coopflower.app.node import NodeSettings, local_data
from coopflower.blob import pack_arrays, unpack_arrays
from coopflower.client import protocol as P
from coopflower.client import stages as S
from coopflower.ledger.backend import connect
from coopflower.ledger.contract import CoopLedger, TaskParams
from coopflower.ledger.eip712 import (
    SignedRegistration,
    SignedSubmission,
    content_hash,
    recover_registration,
    recover_submission,
)
from coopflower.models import build_model
from coopflower.storage import open_store

pytestmark = pytest.mark.usefixtures("run_identity")  # tests/conftest.py


@pytest.fixture(scope="module")
def ledger() -> CoopLedger:
    led = CoopLedger.deploy(connect())
    params = TaskParams(spec_hash=bytes(32), k=1, quorum=1, min_accuracy_bps=0)
    led.publish_task(params, params.escrow_per_round())
    return led


def _ctx(tmp: Path, pid: int, **extra: Any) -> Context:
    cfg = {"partition-id": pid, "num-partitions": 4, "key-file": str(tmp / f"k{pid}.json"),
           **extra}
    return Context(run_id=1, node_id=pid, node_config=cfg, state=RecordDict(), run_config={})


def _coop(ledger: CoopLedger, tmp: Path, stage: str, **extra: Any) -> ConfigRecord:
    return ConfigRecord({"task-id": 1, "chain-id": ledger.chain.chain_id,
                         "contract": ledger.address, "store": str(tmp / "store"), "round": 1,
                         "server-round": 1, S.STAGE: stage, **extra})


def _global(name: str = "table4") -> ArrayRecord:
    return ArrayRecord(build_model(name).state_dict())


def _train(ledger: CoopLedger, tmp: Path, ctx: Context, arrays: ArrayRecord,
           **coop: Any) -> ConfigRecord:
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"epochs": 2, "seed": 0}),
                          S.COOP: _coop(ledger, tmp, S.TRAIN, **coop)})
    reply = app(Message(content, ctx.node_id, "train"), ctx)
    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    return reply.content.config_records[P.SUBMISSION]


def test_contributors_submit_signed_models_of_their_own_architecture(
        tmp_path: Path, ledger: CoopLedger) -> None:
    regs, subs = [], []
    for pid, model in ((0, "table1_c1"), (1, "table1_c2")):
        ctx = _ctx(tmp_path, pid, model=model, partition="labels", labels="0,1,2,3,4")
        reg_msg = Message(RecordDict({S.COOP: _coop(ledger, tmp_path, S.REGISTER,
                                                    deposit=str(10**15))}), pid, "evaluate")
        r = app(reg_msg, ctx).content.config_records[P.REGISTRATION]
        signed = SignedRegistration(1, str(r["address"]), 10**15, bytes(r["signature"]))
        assert recover_registration(ledger.domain, signed) == r["address"]
        regs.append(signed)
        s = _train(ledger, tmp_path, ctx, _global(model))
        assert s["contributor"] == r["address"]
        sub = SignedSubmission(1, 1, str(s["contributor"]), bytes(s["cid"]),
                               bytes(s["content-hash"]), bytes(s["signature"]),
                               bytes(s["seed-commit"]))  # type: ignore[arg-type]
        assert recover_submission(ledger.domain, sub) == sub.contributor
        arrays, _ = unpack_arrays(open_store(tmp_path / "store").get(sub.cid))
        assert set(arrays) == set(build_model(model).state_dict())
        subs.append(sub)
        again = app(reg_msg, ctx)  # the key file is reused: same address next time
        assert again.content.config_records[P.REGISTRATION]["address"] == r["address"]
    ledger.register_for(1, regs)
    rnd = ledger.open_round(1).round
    tx = ledger.submit_batch(1, rnd, subs, close=True)
    assert len(tx.named("Submitted")) == 2  # the contract checks the signatures itself


def test_a_global_model_of_another_architecture_is_a_named_error(tmp_path: Path,
                                                                 ledger: CoopLedger) -> None:
    ctx = _ctx(tmp_path, 0, model="table1_c1")
    content = RecordDict({"arrays": _global("table4"), "config": ConfigRecord({"epochs": 1}),
                          S.COOP: _coop(ledger, tmp_path, S.TRAIN)})
    with pytest.raises(ValueError, match="does not fit this node's table1_c1"):
        app(Message(content, 0, "train"), ctx)


def _verify(tmp_path: Path, ledger: CoopLedger, cids: list[bytes], hashes: list[bytes],
            name: str = "table4") -> ConfigRecord:
    names, shapes = S.encode_shapes({k: tuple(v.shape)
                                     for k, v in build_model(name).state_dict().items()})
    coop = _coop(ledger, tmp_path, S.VERIFY, **{
        "submission-ids": list(range(len(cids))), "cids": cids, "content-hashes": hashes,
        "metric": "accuracy", "min-metric-bps": 0, "array-names": names,
        "array-shapes": shapes})
    msg = Message(RecordDict({S.COOP: coop, "config": ConfigRecord()}), 3, "evaluate")
    reply = app(msg, _ctx(tmp_path, 3))
    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    return reply.content.config_records[P.VOTES]


def test_verifier_scores_real_models_and_refuses_bad_ones(tmp_path: Path,
                                                          ledger: CoopLedger) -> None:
    s = _train(ledger, tmp_path, _ctx(tmp_path, 0), _global())
    good_cid, good_hash = bytes(s["cid"]), bytes(s["content-hash"])
    store = open_store(tmp_path / "store")
    blob = bytearray(store.get(good_cid))
    blob[-1] ^= 0x40  # a tampered copy, stored under its own (honest) CID
    bad_cid = store.put(bytes(blob)).to_bytes()
    foreign = pack_arrays({"w": np.zeros(3, np.float32)}, {"model": "resnet"})
    foreign_cid = store.put(foreign).to_bytes()
    votes = _verify(tmp_path, ledger, [good_cid, bad_cid, foreign_cid, good_cid],
                    [good_hash, good_hash, content_hash(foreign), good_hash])
    assert votes["approve"] == [True, False, False, True]
    assert votes["accuracy-bps"][0] >= 7000 and votes["accuracy-bps"][1:3] == [0, 0]
    reasons = list(votes["reasons"])
    assert reasons[1] == "content hash does not match the blob"
    assert "arrays do not match the global model" in reasons[2]
    missing = _verify(tmp_path, ledger, [bad_cid[:-1] + b"\x00"], [good_hash])
    assert missing["approve"] == [False] and "fetch failed" in missing["reasons"][0]


def test_a_model_that_always_answers_3_is_scored_on_every_digit(tmp_path: Path,
                                                                ledger: CoopLedger) -> None:
    """Issue 11, attack 6: before, the verifier evaluated only on the classes the blob
    declared, so a model that always answers "3", declaring the single class 3, scored 10000
    bps and was approved. The paper app's verifier scores it on all of its own digits."""
    import torch

    model = build_model("table4")
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        dict(model.named_parameters())["out.bias"][3] = 10.0  # every input: class 3
    arrays = {k: v.numpy() for k, v in model.state_dict().items()}
    blob = pack_arrays(arrays, {"model": "table4", "classes": "3", "num-examples": "600"})
    cid = open_store(tmp_path / "store").put(blob).to_bytes()
    votes = _verify(tmp_path, ledger, [cid], [content_hash(blob)])
    share = float(np.mean(local_data(NodeSettings.from_node_config(
        _ctx(tmp_path, 3).node_config)).verify_y == 3))
    assert votes["accuracy-bps"] == [round(share * 10000)] and share < 0.2
    from coopflower.ledger.rules import counts_as_yes

    # the contract compares the signed score with the task's threshold: at the paper app's
    # default criterion (3000 bps) this vote is a no
    assert not counts_as_yes(votes["approve"][0], votes["accuracy-bps"][0], 3000)


def test_encrypted_model_is_judged_in_cipherspace(tmp_path: Path, ledger: CoopLedger) -> None:
    """IVHE (element-wise): the contributor encrypts under the initiator's public key, the
    verifier evaluates in cipherspace on all of its digits; its accuracy matches the
    decrypted model's."""
    from coopflower.crypto import (
        EncryptedModel,
        IVHEParams,
        decrypt_model,
        make_keys,
        public_key_to_bytes,
    )
    from coopflower.training import evaluate_model

    store = open_store(tmp_path / "store")
    sk, pk = make_keys("elementwise", 1, IVHEParams())
    ivhe = {"encryption": "elementwise", "ivhe-key-cid": store.put(public_key_to_bytes(pk))
            .to_bytes(), "ivhe-p": 2**7, "ivhe-q": 1000, "ivhe-input-lo": 0.0,
            "ivhe-input-hi": 1.0}
    s = _train(ledger, tmp_path, _ctx(tmp_path, 0), _global(), **ivhe)
    enc = EncryptedModel.from_bytes(store.get(bytes(s["cid"])))  # stored encrypted
    assert enc.strategy == "elementwise"
    names, shapes = S.encode_shapes({k: tuple(v.shape)
                                     for k, v in build_model("table4").state_dict().items()})
    coop = _coop(ledger, tmp_path, S.VERIFY, **ivhe, **{
        "submission-ids": [0], "cids": [bytes(s["cid"])],
        "content-hashes": [bytes(s["content-hash"])], "metric": "ivhe-accuracy",
        "min-metric-bps": 0, "array-names": names, "array-shapes": shapes})
    reply = app(Message(RecordDict({S.COOP: coop, "config": ConfigRecord()}), 3, "evaluate"),
                _ctx(tmp_path, 3))
    votes = reply.content.config_records[P.VOTES]
    assert votes["approve"] == [True], votes["reasons"]
    plain = build_model("table4")
    plain.load_state_dict(decrypt_model(enc, sk))
    data = local_data(NodeSettings.from_node_config(_ctx(tmp_path, 3).node_config))
    ref = evaluate_model(plain, data.verify_x, data.verify_y).accuracy
    assert abs(votes["accuracy-bps"][0] / 10000 - ref) <= 0.03
