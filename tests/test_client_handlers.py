"""The contributor's handlers called directly: heterogeneous models by node config, signed
submissions the contract accepts, verifiers that reject tampered or foreign blobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict

from coopflower.app.handlers import handle_register, handle_train, handle_verify
from coopflower.blob import pack_arrays, unpack_arrays
from coopflower.client import protocol as P
from coopflower.ledger.backend import connect
from coopflower.ledger.contract import CoopLedger, TaskParams
from coopflower.ledger.eip712 import (
    SignedRegistration,
    SignedSubmission,
    recover_registration,
    recover_submission,
)
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


def _base(ledger: CoopLedger, store: Path) -> dict[str, Any]:
    return {"task-id": 1, "chain-id": ledger.chain.chain_id, "contract": ledger.address,
            "store": str(store), "round": 1, "server-round": 1}


def test_heterogeneous_contributors_submit_signed_models(tmp_path: Path,
                                                         ledger: CoopLedger) -> None:
    cfg = ConfigRecord({**_base(ledger, tmp_path / "store"), "mode": P.MODE_COOP,
                        "epochs": 1})
    regs, subs = [], []
    for pid, model in ((0, "table1_c1"), (1, "table1_c2")):
        ctx = _ctx(tmp_path, pid, model=model, partition="labels", labels="0,1,2,3,4")
        reg_cfg = ConfigRecord({**_base(ledger, tmp_path / "store"), "deposit": str(10**15)})
        reg = handle_register(Message(RecordDict({P.CONFIG: reg_cfg}), pid, P.MSG_REGISTER), ctx)
        r = reg.content.config_records[P.REGISTRATION]
        signed = SignedRegistration(1, str(r["address"]), 10**15, bytes(r["signature"]))
        assert recover_registration(ledger.domain, signed) == r["address"]
        regs.append(signed)
        # the global model is a table4: it does not fit, so each keeps its own architecture
        msg = Message(RecordDict({P.ARRAYS: ArrayRecord(), P.CONFIG: cfg}), pid, "train")
        reply = handle_train(msg, ctx)
        s = reply.content.config_records[P.SUBMISSION]
        assert s["model"] == model and s["contributor"] == r["address"]
        sub = SignedSubmission(1, 1, str(s["contributor"]), bytes(s["cid"]),
                               bytes(s["content-hash"]), bytes(s["signature"]))
        assert recover_submission(ledger.domain, sub) == sub.contributor
        _, meta = unpack_arrays(
            open_store(tmp_path / "store").get(sub.cid))
        assert meta["model"] == model and meta["classes"] == "0,1,2,3,4"
        subs.append(sub)
        # the key file is reused: same address next time
        again = handle_register(Message(RecordDict({P.CONFIG: reg_cfg}), pid, P.MSG_REGISTER),
                                ctx)
        assert again.content.config_records[P.REGISTRATION]["address"] == r["address"]
    ledger.register_for(1, regs)
    rnd = ledger.open_round(1).round
    tx = ledger.submit_batch(1, rnd, subs, close=True)
    assert len(tx.named("Submitted")) == 2  # the contract checks the signatures itself


def _verify(tmp_path: Path, ledger: CoopLedger, cids: list[bytes], hashes: list[bytes],
            min_bps: int = 0) -> ConfigRecord:
    cfg = ConfigRecord({**_base(ledger, tmp_path / "store"), "submission-ids": list(
        range(len(cids))), "cids": cids, "content-hashes": hashes, "min-accuracy-bps": min_bps})
    msg = Message(RecordDict({P.CONFIG: cfg}), 3, P.MSG_VERIFY)
    reply = handle_verify(msg, _ctx(tmp_path, 3))
    return reply.content.config_records[P.VOTES]


def test_verifier_judges_real_and_bad_models(tmp_path: Path, ledger: CoopLedger) -> None:
    from coopflower.ledger.eip712 import content_hash

    ctx = _ctx(tmp_path, 0, model="table4")
    cfg = ConfigRecord({**_base(ledger, tmp_path / "store"), "mode": P.MODE_COOP, "epochs": 2})
    s = handle_train(Message(RecordDict({P.CONFIG: cfg}), 0, "train"), ctx).content \
        .config_records[P.SUBMISSION]
    good_cid, good_hash = bytes(s["cid"]), bytes(s["content-hash"])
    store = open_store(tmp_path / "store")
    blob = bytearray(store.get(good_cid))
    blob[-1] ^= 0x40  # a tampered copy, stored under its own (honest) CID
    bad_cid = store.put(bytes(blob)).to_bytes()
    foreign = pack_arrays({"w": np.zeros(3, np.float32)}, {"model": "resnet"})
    foreign_cid = store.put(foreign).to_bytes()
    votes = _verify(tmp_path, ledger,
                    [good_cid, bad_cid, foreign_cid, good_cid],
                    [good_hash, good_hash, content_hash(foreign), good_hash], min_bps=7000)
    assert votes["approve"] == [True, False, False, True]
    assert votes["accuracy-bps"][0] >= 7000
    reasons = list(votes["reasons"])
    assert reasons[1] == "content hash does not match the blob"
    assert "unknown model architecture 'resnet'" in reasons[2]
    strict = _verify(tmp_path, ledger, [good_cid], [good_hash], min_bps=10000)
    assert strict["approve"] == [False] and "below 10000" in strict["reasons"][0]
    missing = _verify(tmp_path, ledger, [bad_cid[:-1] + b"\x00"], [good_hash])
    assert missing["approve"] == [False] and "fetch failed" in missing["reasons"][0]


def test_encrypted_model_is_judged_in_cipherspace(tmp_path: Path, ledger: CoopLedger) -> None:
    """IVHE (element-wise): the contributor encrypts under the initiator's public key, the
    verifier evaluates in cipherspace; its accuracy matches the decrypted model's."""
    from coopflower.crypto import (
        EncryptedModel,
        IVHEParams,
        decrypt_model,
        make_keys,
        public_key_to_bytes,
    )
    from coopflower.models import build_model
    from coopflower.training import evaluate_model

    store = open_store(tmp_path / "store")
    sk, pk = make_keys("elementwise", "table4", IVHEParams())
    key_cid = store.put(public_key_to_bytes(pk)).to_bytes()
    cfg = ConfigRecord({**_base(ledger, tmp_path / "store"), "mode": P.MODE_COOP, "epochs": 2,
                        "encryption": "elementwise", "ivhe-key-cid": key_cid,
                        "ivhe-p": 2**7, "ivhe-q": 1000})
    s = handle_train(Message(RecordDict({P.CONFIG: cfg}), 0, "train"),
                     _ctx(tmp_path, 0, model="table4")).content.config_records[P.SUBMISSION]
    blob = store.get(bytes(s["cid"]))
    enc = EncryptedModel.from_bytes(blob)  # the stored model is the encrypted one
    assert enc.strategy == "elementwise" and enc.metadata["model"] == "table4"
    votes = _verify(tmp_path, ledger, [bytes(s["cid"])], [bytes(s["content-hash"])],
                    min_bps=5000)
    assert votes["approve"] == [True], votes["reasons"]
    plain = build_model("table4")
    plain.load_state_dict(decrypt_model(enc, sk))
    from coopflower.app.handlers import NodeSettings, local_data

    data = local_data(NodeSettings.from_node_config(_ctx(tmp_path, 3).node_config))
    ref = evaluate_model(plain, data.verify_x, data.verify_y).accuracy
    assert abs(votes["accuracy-bps"][0] / 10000 - ref) <= 0.03
