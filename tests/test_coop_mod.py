"""``coop_mod`` called as Flower calls a mod, around an app's own train and evaluate functions
(a small torch MLP the project did not shape around it): the submissions and votes it signs
are the contract's, the blob is exactly what the app trained, and every way an app's reply or a
contributor's blob can be unusable is a named error or a "no" with its reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)

from coopflower.blob import pack_arrays, unpack_arrays
from coopflower.client import protocol as P
from coopflower.client import stages as S
from coopflower.client.mod import AppReplyError, CoopModError, coop_mod
from coopflower.ledger.backend import connect
from coopflower.ledger.contract import CoopLedger, TaskParams
from coopflower.ledger.eip712 import (
    SignedRegistration,
    SignedSubmission,
    content_hash,
    recover_registration,
    recover_submission,
    seed_commitment,
)
from coopflower.ledger.rules import counts_as_yes
from coopflower.storage import open_store

pytestmark = pytest.mark.usefixtures("run_identity")  # tests/conftest.py


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


X = torch.tensor(np.random.default_rng(0).normal(size=(64, 4)), dtype=torch.float32)
Y = (X[:, 0] > 0).long()


def app_train(msg: Message, context: Context) -> Message:
    """An app's own train, in the shape of Flower's template."""
    net = _net()
    net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    opt = torch.optim.SGD(net.parameters(), lr=float(msg.content["config"]["lr"]))
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(X), Y)
        loss.backward()
        opt.step()
    return Message(RecordDict({"arrays": ArrayRecord(net.state_dict()),
                               "metrics": MetricRecord({"train_loss": float(loss.detach()),
                                                        "num-examples": len(Y)})}),
                   reply_to=msg)


def app_evaluate(msg: Message, context: Context) -> Message:
    net = _net()
    net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    with torch.no_grad():
        acc = float((net(X).argmax(1) == Y).float().mean())
    return Message(RecordDict({"metrics": MetricRecord({"eval_acc": acc,
                                                        "num-examples": len(Y)})}),
                   reply_to=msg)


@pytest.fixture(scope="module")
def ledger() -> CoopLedger:
    led = CoopLedger.deploy(connect())
    params = TaskParams(spec_hash=bytes(32), k=1, quorum=1, min_accuracy_bps=0)
    led.publish_task(params, params.escrow_per_round())
    return led


def _ctx(tmp: Path, pid: int) -> Context:
    cfg = {"partition-id": pid, "key-file": str(tmp / f"k{pid}.json")}
    return Context(run_id=1, node_id=pid, node_config=cfg, state=RecordDict(), run_config={})


def _coop(ledger: CoopLedger, tmp: Path, stage: str, **extra: Any) -> ConfigRecord:
    return ConfigRecord({"task-id": 1, "chain-id": ledger.chain.chain_id,
                         "contract": ledger.address, "store": str(tmp / "store"), "round": 1,
                         "server-round": 1, S.STAGE: stage, **extra})


def _global() -> ArrayRecord:
    return ArrayRecord(_net().state_dict())


def _train_msg(ledger: CoopLedger, tmp: Path) -> Message:
    content = RecordDict({"arrays": _global(), "config": ConfigRecord({"lr": 0.5}),
                          S.COOP: _coop(ledger, tmp, S.TRAIN)})
    return Message(content, 0, "train")


def _must_not_run(msg: Message, context: Context) -> Message:
    raise AssertionError("the app's handler was called")


def test_plain_messages_pass_through_untouched(tmp_path: Path) -> None:
    seen = []

    def handler(msg: Message, context: Context) -> Message:
        seen.append(set(msg.content.keys()))
        return app_evaluate(msg, context)

    msg = Message(RecordDict({"arrays": _global(), "config": ConfigRecord()}), 0, "evaluate")
    reply = coop_mod(msg, _ctx(tmp_path, 0), handler)
    assert seen == [{"arrays", "config"}] and "eval_acc" in reply.content["metrics"]


def test_register_signs_consent_without_calling_the_app(tmp_path: Path,
                                                        ledger: CoopLedger) -> None:
    msg = Message(RecordDict({S.COOP: _coop(ledger, tmp_path, S.REGISTER,
                                            deposit=str(10**15))}), 0, "evaluate")
    rec = coop_mod(msg, _ctx(tmp_path, 0), _must_not_run).content.config_records[
        P.REGISTRATION]
    signed = SignedRegistration(1, str(rec["address"]), 10**15, bytes(rec["signature"]))
    assert recover_registration(ledger.domain, signed) == rec["address"]


def test_train_submits_exactly_what_the_app_trained(tmp_path: Path,
                                                    ledger: CoopLedger) -> None:
    seen: list[set[str]] = []

    def train(msg: Message, context: Context) -> Message:
        seen.append(set(msg.content.keys()))
        return app_train(msg, context)

    reply = coop_mod(_train_msg(ledger, tmp_path), _ctx(tmp_path, 0), train)
    assert seen == [{"arrays", "config"}]  # the app saw what FedAvg would have sent
    assert not reply.content.array_records  # no arrays travel back: the blob does
    assert reply.content["metrics"]["num-examples"] == len(Y)  # the app's own metrics
    sub = reply.content.config_records[P.SUBMISSION]
    blob = open_store(tmp_path / "store").get(bytes(sub["cid"]))
    assert content_hash(blob) == bytes(sub["content-hash"])
    arrays, meta = unpack_arrays(blob)
    expected = app_train(_train_msg(ledger, tmp_path), _ctx(tmp_path, 0)).content["arrays"]
    for name, arr in expected.items():
        np.testing.assert_array_equal(arrays[name], arr.numpy())
    assert meta["num-examples"] == str(len(Y))
    signed = SignedSubmission(1, 1, str(sub["contributor"]), bytes(sub["cid"]),
                              bytes(sub["content-hash"]), bytes(sub["signature"]),
                              bytes(sub["seed-commit"]))
    assert recover_submission(ledger.domain, signed) == sub["contributor"]
    # the signed commitment opens with the share the node reveals later, and only with it
    ctx = _ctx(tmp_path, 0)
    revealed = coop_mod(Message(RecordDict({S.COOP: _coop(ledger, tmp_path, S.REVEAL)}), 0,
                                "evaluate"), ctx, app_train).content.config_records[P.REVEAL]
    share = bytes(revealed["share"])
    assert seed_commitment(share, str(sub["contributor"])) == bytes(sub["seed-commit"])
    assert seed_commitment(bytes(32), str(sub["contributor"])) != bytes(sub["seed-commit"])


def _replying(arrays: dict[str, np.ndarray] | None, metrics: int = 1,
              ) -> Callable[[Message, Context], Message]:
    def train(msg: Message, context: Context) -> Message:
        content = RecordDict({f"m{i}": MetricRecord({"num-examples": 1})
                              for i in range(metrics)})
        if arrays is not None:
            content["arrays"] = ArrayRecord({k: Array(v)
                                             for k, v in arrays.items()})
        return Message(content, reply_to=msg)
    return train


def _fresh_arrays() -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in _net().state_dict().items()}


@pytest.mark.parametrize(("change", "match"), [
    ("shape", r"array '0.weight' has shape \(8, 5\), the global model's is \(8, 4\)"),
    ("missing", r"arrays do not match the global model: missing \['2.bias'\]"),
    ("nan", r"array '0.weight' holds NaN"),
    ("none", r"replied with 0 array records"),
    ("metrics", r"replied with 2 metric records"),
])
def test_unusable_train_replies_are_named_errors(tmp_path: Path, ledger: CoopLedger,
                                                 change: str, match: str) -> None:
    arrays: dict[str, np.ndarray] | None = _fresh_arrays()
    assert arrays is not None
    if change == "shape":
        arrays["0.weight"] = np.zeros((8, 5), np.float32)
    elif change == "missing":
        del arrays["2.bias"]
    elif change == "nan":
        arrays["0.weight"][0, 0] = np.nan
    elif change == "none":
        arrays = None
    handler = _replying(arrays, metrics=2 if change == "metrics" else 1)
    with pytest.raises(AppReplyError, match=match):
        coop_mod(_train_msg(ledger, tmp_path), _ctx(tmp_path, 0), handler)


def test_app_errors_and_unsupported_options_are_named(tmp_path: Path,
                                                      ledger: CoopLedger) -> None:
    def broken(msg: Message, context: Context) -> Message:
        return Message(Error(code=0, reason="ZeroDivisionError"),
                       reply_to=msg)

    with pytest.raises(AppReplyError, match="the app's train failed: ZeroDivisionError"):
        coop_mod(_train_msg(ledger, tmp_path), _ctx(tmp_path, 0), broken)
    msg = _train_msg(ledger, tmp_path)
    msg.content[S.COOP] = _coop(ledger, tmp_path, S.TRAIN, encryption="elementwise")
    with pytest.raises(CoopModError, match="IVHE encryption"):
        coop_mod(msg, _ctx(tmp_path, 0), app_train)
    msg.content[S.COOP] = _coop(ledger, tmp_path, "train-twice")
    with pytest.raises(P.ProtocolError, match="unknown stage 'train-twice'"):
        coop_mod(msg, _ctx(tmp_path, 0), app_train)


def _verify_msg(ledger: CoopLedger, tmp: Path, cids: list[bytes], hashes: list[bytes],
                metric: str = "eval_acc", min_bps: int = 6000) -> Message:
    names, shapes = S.encode_shapes({k: tuple(a.shape) for k, a in _global().items()})
    coop = _coop(ledger, tmp, S.VERIFY, **{
        "submission-ids": list(range(len(cids))), "cids": cids, "content-hashes": hashes,
        "metric": metric, "min-metric-bps": min_bps, "array-names": names,
        "array-shapes": shapes})
    return Message(RecordDict({S.COOP: coop, "config": ConfigRecord()}), 0, "evaluate")


def _put(tmp: Path, arrays: dict[str, np.ndarray]) -> tuple[bytes, bytes]:
    blob = pack_arrays(arrays)
    return open_store(tmp / "store").put(blob).to_bytes(), content_hash(blob)


def test_verify_scores_each_model_with_the_apps_evaluate(tmp_path: Path,
                                                         ledger: CoopLedger) -> None:
    trained = app_train(_train_msg(ledger, tmp_path), _ctx(tmp_path, 1)).content["arrays"]
    good = _put(tmp_path, {k: v.numpy() for k, v in trained.items()})
    untrained = _put(tmp_path, _fresh_arrays())
    wrong = _fresh_arrays()
    wrong["0.weight"] = np.zeros((8, 5), np.float32)
    bad_shape = _put(tmp_path, wrong)
    nan = _fresh_arrays()
    nan["2.bias"][:] = np.inf  # pack_arrays refuses this: a hostile contributor writes it itself
    from safetensors.numpy import save

    raw = save(nan)
    infinite = (open_store(tmp_path / "store").put(raw).to_bytes(), content_hash(raw))
    tampered = (good[0], bytes(32))
    models = [good, untrained, bad_shape, infinite, tampered]
    reply = coop_mod(_verify_msg(ledger, tmp_path, [m[0] for m in models],
                                 [m[1] for m in models]), _ctx(tmp_path, 2), app_evaluate)
    votes = reply.content.config_records[P.VOTES]
    # approve: the model is sound; whether it is a yes is the chain's threshold on its score
    assert list(votes["approve"]) == [True, True, False, False, False]
    scores = [int(b) for b in votes["accuracy-bps"]]
    assert [counts_as_yes(a, b, 6000) for a, b in zip(votes["approve"], scores, strict=True)] \
        == [True, False, False, False, False]
    reasons = list(votes["reasons"])
    assert reasons[0] == reasons[1] == "" and scores[0] >= 9000 and scores[1] < 6000
    assert "shape (8, 5)" in reasons[2]
    assert "NaN or Inf" in reasons[3]
    assert reasons[4] == "content hash does not match the blob"


def test_the_relayers_threshold_does_not_move_a_vote(tmp_path: Path,
                                                      ledger: CoopLedger) -> None:
    """Attack 7: the relayer's message names a threshold; the verifier signs the same vote
    whatever it says (before, a relayer sending 0 made it sign "accept" on any model)."""
    untrained = _put(tmp_path, _fresh_arrays())
    signed = []
    for told in (0, 6000, 10000):
        reply = coop_mod(_verify_msg(ledger, tmp_path, [untrained[0]], [untrained[1]],
                                     min_bps=told), _ctx(tmp_path, 2), app_evaluate)
        votes = reply.content.config_records[P.VOTES]
        signed.append((list(votes["approve"]), list(votes["accuracy-bps"]),
                       list(votes["signatures"])))
    assert signed[0] == signed[1] == signed[2]



def test_every_signed_vote_is_kept_in_the_nodes_outbox(tmp_path: Path,
                                                       ledger: CoopLedger) -> None:
    """Attack 3's defence starts on the node: each vote it signs is kept beside its key, so its
    watcher can send it if the relayer does not (tests/test_censorship.py)."""
    from coopflower.client.mod import key_path
    from coopflower.client.outbox import load_entries, outbox_path
    from coopflower.ledger.eip712 import recover_vote

    other = _fresh_arrays()
    other["2.bias"] += 0.5
    models = [_put(tmp_path, _fresh_arrays()), _put(tmp_path, other)]
    ctx = _ctx(tmp_path, 2)
    reply = coop_mod(_verify_msg(ledger, tmp_path, [m[0] for m in models],
                                 [m[1] for m in models]), ctx, app_evaluate)
    votes = reply.content.config_records[P.VOTES]
    kept = load_entries(outbox_path(key_path(ctx)))
    assert [(e.vote.submission, e.vote.accept, e.vote.score_bps, e.vote.signature)
            for e in kept] == list(zip([0, 1], votes["approve"], votes["accuracy-bps"],
                                       votes["signatures"], strict=True))
    assert {e.contract for e in kept} == {ledger.address}
    assert all(recover_vote(ledger.domain, e.vote) == votes["verifier"] for e in kept)


def test_verify_without_the_tasks_metric_is_the_verifiers_error(tmp_path: Path,
                                                                 ledger: CoopLedger) -> None:
    model = _put(tmp_path, _fresh_arrays())
    msg = _verify_msg(ledger, tmp_path, [model[0]], [model[1]], metric="accuracy")
    with pytest.raises(AppReplyError, match=r"no metric 'accuracy'.*\['eval_acc', "):
        coop_mod(msg, _ctx(tmp_path, 2), app_evaluate)


def test_shapes_round_trip_and_reject_garbage() -> None:
    shapes = {"a": (2, 3), "b": (), "c": (4,)}
    names, dims = S.encode_shapes(shapes)
    assert S.decode_shapes({"array-names": names, "array-shapes": dims}) == shapes
    with pytest.raises(P.ProtocolError, match="does not match"):
        S.decode_shapes({"array-names": names, "array-shapes": dims[:-1]})
    with pytest.raises(P.ProtocolError, match="trailing"):
        S.decode_shapes({"array-names": names, "array-shapes": [*dims, 1]})
    assert S.metric_bps(0.12345) == 1234 and S.metric_bps(7.0) == 10000
    assert S.metric_bps(float("nan")) == 0 and S.metric_bps(-1) == 0
