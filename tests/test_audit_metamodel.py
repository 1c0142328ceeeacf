"""Issue 11, attack 10 (bogus MetaModel) and the audit's negative paths, each through a real
chain (the embedded EVM and anvil: the ``chain`` fixture) and a real store.

Before: the audit checked only that the MetaModel blob matched its recorded hash, so an
initiator that recorded random bytes, the rejected model's CID or an average that left out an
accepted model had a clean audit. Now the MetaModel blob records its provenance (aggregation
and inputs, written by the strategy's aggregate stage), the audit checks the inputs against the
contract's settlement and recomputes a deterministic aggregation bit for bit, and each bogus
MetaModel is a named discrepancy (exit code 1)."""

from __future__ import annotations

import dataclasses
import io
import re
import secrets
from pathlib import Path
from typing import Any

import pytest

from coopflower.audit import AuditError, RoundAudit, audit_ledger, collect_history, replay
from coopflower.audit.provenance import WEIGHTED_AVERAGE, Provenance
from coopflower.blob import pack_arrays, unpack_arrays
from coopflower.ledger import Chain, content_hash
from coopflower.ledger.nodes import ChainNode
from coopflower.strategy.aggregate import AcceptedModel, weighted_average
from tests.fixtures_audit import AuditTask, new_task, strategy_aggregate
from tests.fixtures_chain import anvil_node  # noqa: F401

BOGUS = ("honest", "random bytes", "rejected CID", "subset, all claimed", "subset, honestly",
         "with the rejected", "foreign input")
FOREIGN = b"\x01\x55\x12\x20" + bytes(range(32))  # a CID no submission of the task has


def _average(at: AuditTask, cids: list[bytes], claimed: list[bytes]) -> tuple[bytes, bytes]:
    """A dishonest initiator's aggregate: the weighted average of ``cids`` only, stored with a
    provenance that claims ``claimed`` as its inputs."""
    models = []
    for cid in cids:
        arrays, meta = unpack_arrays(at.store.get(cid))
        models.append(AcceptedModel(cid, "", "table4", int(meta["num-examples"]), arrays))
    agg = weighted_average(models)
    assert agg is not None
    blob = pack_arrays(agg, Provenance(WEIGHTED_AVERAGE, tuple(claimed)).metadata())
    return at.store.put(blob).to_bytes(), content_hash(blob)


def _bogus(at: AuditTask, kind: str, subs: list[Any]) -> tuple[bytes, bytes]:
    """What the initiator records for a round whose submissions 0 and 2 were accepted."""
    c0, c1, c2 = (s.cid for s in subs)
    if kind == "honest":
        return strategy_aggregate(at, 0, subs, [0, 2])
    if kind == "random bytes":
        junk = secrets.token_bytes(300)
        return at.store.put(junk).to_bytes(), content_hash(junk)
    if kind == "rejected CID":
        return subs[1].cid, subs[1].content_hash
    if kind == "subset, all claimed":
        return _average(at, [c0], [c0, c2])
    if kind == "subset, honestly":
        return _average(at, [c0], [c0])
    if kind == "with the rejected":
        return _average(at, [c0, c1, c2], [c0, c1, c2])
    return _average(at, [c0, c2], [c0, FOREIGN, c2])


@pytest.fixture(scope="module")
def bogus(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One task, a round per kind of MetaModel in ``BOGUS`` (the first honest); each round's
    submission 1 rejected, 0 and 2 accepted; the audit of the task."""
    at = new_task(chain, tmp_path_factory.mktemp("bogus"), rounds=len(BOGUS))
    subs_of = {}
    for i, kind in enumerate(BOGUS):
        rnd, subs, accepted = at.round(i + 1)
        assert accepted == [0, 2]
        at.ledger.record_metamodel(at.task, rnd, *_bogus(at, kind, subs))
        subs_of[kind] = subs
    out = io.StringIO()
    audits = dict(zip(BOGUS, audit_ledger(at.ledger, at.store, stream=out), strict=True))
    return {"at": at, "audits": audits, "subs": subs_of, "text": out.getvalue()}


def _only(ra: RoundAudit) -> str:
    assert len(ra.problems) == 1, ra.problems
    return ra.problems[0]


def test_the_honest_aggregate_is_recomputed_bit_for_bit(bogus: dict[str, Any]) -> None:
    ra = bogus["audits"]["honest"]
    assert ra.ok, ra.problems
    assert ra.metamodel == ("recomputed by coopflower.weighted_average from 2 accepted models: "
                            "equal bit for bit")
    assert "  MetaModel: recomputed by coopflower.weighted_average" in bogus["text"]


def test_random_bytes_as_metamodel_are_named(bogus: dict[str, Any]) -> None:
    ra = bogus["audits"]["random bytes"]
    (cid, _, _), = [rh.meta for rh in collect_history(bogus["at"].ledger)[0].rounds[1:2]]
    problem = _only(ra)
    assert problem.startswith(f"task 1 round 2: MetaModel {cid.hex()} is not a model blob (")
    assert problem.endswith("): nothing shows it follows from the accepted models")


def test_the_rejected_models_cid_as_metamodel_is_named(bogus: dict[str, Any]) -> None:
    sub = bogus["subs"]["rejected CID"][1]
    assert _only(bogus["audits"]["rejected CID"]) == (
        f"task 1 round 3: the recorded MetaModel {sub.cid.hex()} is submission 1's own model "
        "(REJECTED), not an aggregate of the accepted models")


def test_an_average_that_leaves_out_an_accepted_model_is_named(bogus: dict[str, Any]) -> None:
    """Left out behind a provenance that claims both accepted models: the recomputation
    differs; left out openly: the missing accepted submission is named."""
    claimed = _only(bogus["audits"]["subset, all claimed"])
    assert claimed.startswith("task 1 round 4: MetaModel does not follow from the accepted "
                              "models: recomputed by coopflower.weighted_average from 2 of "
                              "them, it differs in ")
    sub = bogus["subs"]["subset, honestly"][2]
    assert _only(bogus["audits"]["subset, honestly"]) == (
        f"task 1 round 5: MetaModel leaves out accepted submission 2 ({sub.cid.hex()})")


def test_an_average_with_the_rejected_model_is_named(bogus: dict[str, Any]) -> None:
    assert _only(bogus["audits"]["with the rejected"]) == (
        "task 1 round 6: MetaModel includes submission 1's model, which was REJECTED")


def test_a_metamodel_with_a_foreign_input_is_named(bogus: dict[str, Any]) -> None:
    assert _only(bogus["audits"]["foreign input"]) == (
        f"task 1 round 7: MetaModel includes {FOREIGN.hex()}, which is no submission of this "
        "round")


def test_negative_paths_from_the_real_chain_seed_payment_signature(
        bogus: dict[str, Any]) -> None:
    """The history read from the chain, then changed as a lying chain node would show it: a
    wrong fixed seed, a payment the rules do not give, a submission signed by someone else."""
    at = bogus["at"]
    (task,) = collect_history(at.ledger)
    rh = task.rounds[0]
    other = rh.submissions[1]
    forged = dataclasses.replace(rh.submissions[0], signature=other.signature)
    payee = rh.submissions[0].contributor
    bad = dataclasses.replace(rh, seed=bytes(32), submissions=(forged, *rh.submissions[1:]),
                              paid={**rh.paid, payee: rh.paid[payee] + 1})
    (ra,) = replay(dataclasses.replace(task, rounds=(bad,)), at.store.get)
    text = "\n".join(ra.problems)
    assert f"task 1 round 1: recorded seed 0x{bytes(32).hex()} is not the one block " in text
    assert (f"task 1 round 1: {payee.lower()} was paid {rh.paid[payee] + 1} wei, the rules "
            f"give {rh.paid[payee]}") in text
    # another's signature over another model recovers to an address that is nobody's
    assert re.search(r"task 1 round 1 submission 0: signed by 0x[0-9a-fA-F]{40}, not by "
                     f"contributor {rh.submissions[0].contributor}", text), text
    with pytest.raises(AuditError, match=r"^task 7 was never published on 0x"):
        collect_history(at.ledger, 7)


def test_an_aggregation_the_audit_does_not_recompute_is_stated(chain: Chain,
                                                               tmp_path: Path) -> None:
    """A MetaModel whose provenance names a stateful inner strategy: its inputs are checked
    (exactly the accepted models), and the round says plainly that it was not recomputed."""
    at = new_task(chain, tmp_path, rounds=1)
    rnd, subs, _ = at.round(1)
    arrays, _ = unpack_arrays(at.store.get(subs[0].cid))
    prov = Provenance("flwr.serverapp.strategy.fedadam.FedAdam", (subs[0].cid, subs[2].cid))
    blob = pack_arrays(arrays, prov.metadata())
    at.ledger.record_metamodel(at.task, rnd, at.store.put(blob).to_bytes(), content_hash(blob))
    (ra,) = audit_ledger(at.ledger, at.store, stream=None)
    assert ra.ok, ra.problems
    assert ra.metamodel.startswith("not recomputed: flwr.serverapp.strategy.fedadam.FedAdam is "
                                   "not an aggregation the audit recomputes")


@pytest.mark.usefixtures("run_identity")  # tests/conftest.py: Messages need a run id
@pytest.mark.parametrize("weights", ["equal", "declared"])
def test_the_inner_fedavgs_aggregate_is_recomputed_bit_for_bit(chain: Chain, tmp_path: Path,
                                                                weights: str) -> None:
    """The wrapped strategy's path: the inner FedAvg aggregates the accepted models on replies
    carrying the contributors' claims, weighed by the task's rule (equal, or the claims
    capped); the audit recomputes it with Flower's own ``aggregate_arrayrecords`` under the
    rule the blob records, bit for bit."""
    from flwr.app import Message, MetricRecord, RecordDict
    from flwr.serverapp.strategy import FedAvg

    at = new_task(chain, tmp_path, rounds=1)
    rnd, subs, accepted = at.round(1)
    replies = [Message(RecordDict({"metrics": MetricRecord({"num-examples": 100 + 50 * i})}),
                       1, "train") for i in range(3)]
    meta = strategy_aggregate(at, rnd, subs, accepted, inner=FedAvg(), replies=replies,
                              weights=weights)
    at.ledger.record_metamodel(at.task, rnd, *meta)
    (ra,) = audit_ledger(at.ledger, at.store, stream=None)
    assert ra.ok, ra.problems
    assert ra.metamodel == ("recomputed by flwr.serverapp.strategy.fedavg.FedAvg from 2 "
                            "accepted models: equal bit for bit")


def test_a_fusion_metamodel_is_checked_against_the_accepted_extractors(chain: Chain,
                                                                        tmp_path: Path) -> None:
    """Fusion II through the aggregate stage: the audit finds the two accepted models' feature
    extractors in the MetaModel, bit for bit, and says it takes the fusion network on trust.
    A MetaModel that fuses the rejected model instead, behind a provenance claiming the
    accepted two, is named: the extractor that is no accepted model, and the one missing."""
    from functools import partial

    import numpy as np

    from coopflower.fusion import FusionConfig, make_fusion_aggregate
    from coopflower.models import build_model

    rng = np.random.default_rng(0)
    fuse = make_fusion_aggregate(
        rng.random((40, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 40), "II",
        FusionConfig(epochs_stage1=1, epochs_stage2=1, val_fraction=0.0),
        factories={"table4": partial(build_model, "table4")}, heads="out")
    at = new_task(chain, tmp_path, rounds=2)
    rnd, subs, accepted = at.round(1)
    at.ledger.record_metamodel(at.task, rnd, *strategy_aggregate(at, rnd, subs, accepted,
                                                                 fuse=fuse))
    rnd, subs, _ = at.round(2)
    models = []
    for sub in subs[:2]:  # accepted submission 0 and the rejected 1
        arrays, meta = unpack_arrays(at.store.get(sub.cid))
        models.append(AcceptedModel(sub.cid, "", "table4", 1, arrays))
    fused = fuse(models, None)
    assert fused is not None
    blob = pack_arrays(fused, Provenance("coopflower.fusion:II",
                                         (subs[0].cid, subs[2].cid)).metadata())
    at.ledger.record_metamodel(at.task, rnd, at.store.put(blob).to_bytes(), content_hash(blob))
    honest, bad = audit_ledger(at.ledger, at.store, stream=None)
    assert honest.ok, honest.problems
    assert honest.metamodel == (
        "fusion II: checked that it holds exactly the 2 accepted models' feature extractors, "
        "bit for bit; the fusion network, trained on the initiator's own data, is taken on trust")
    assert bad.problems == [
        "task 1 round 2: MetaModel's private model 1 (table4) is none of the accepted models",
        f"task 1 round 2: MetaModel holds no feature extractor of accepted model "
        f"{subs[2].cid.hex()}"]


@pytest.mark.node
def test_exit_codes_through_json_rpc(anvil_node: ChainNode, tmp_path: Path) -> None:  # noqa: F811
    """``coopflower audit`` against anvil: 0 for a clean task, 1 for a task whose MetaModel is
    random bytes (the finding printed), 2 for a task that does not exist."""
    from coopflower.audit import run_audit
    from coopflower.ledger import connect

    at = new_task(connect(anvil_node.url, private_key=anvil_node.private_keys[0]), tmp_path)
    for kind in ("honest", "random bytes"):
        rnd, subs, _ = at.round(len(kind))
        at.ledger.record_metamodel(at.task, rnd, *_bogus(at, kind, subs))
    out = io.StringIO()
    code = run_audit(anvil_node.url, at.ledger.address, str(tmp_path / "store"), at.task, out)
    assert code == 1 and "is not a model blob" in out.getvalue(), out.getvalue()
    assert "2 rounds replayed, 1 discrepancies" in out.getvalue()
    clean = new_task(at.ledger.chain, tmp_path, rounds=1)
    rnd, subs, _ = clean.round(1)
    clean.ledger.record_metamodel(clean.task, rnd, *_bogus(clean, "honest", subs))
    assert run_audit(anvil_node.url, clean.ledger.address, str(tmp_path / "store"), 1) == 0
    out = io.StringIO()
    assert run_audit(anvil_node.url, clean.ledger.address, None, 9, out) == 2
    assert out.getvalue().startswith("audit failed: task 9 was never published on 0x")
