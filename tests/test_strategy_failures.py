"""Nodes that fail do not stop the coordinated round: a contributor whose training raises, a
verifier whose handler raises, a verifier relaying forged votes. Real Flower simulation, real
EVM; the contract settles the submissions that lack a quorum as the task's rules say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.simulation import run_simulation

from coopflower.app import client_app
from coopflower.app.server_app import make_server_app
from coopflower.app.settings import AppSettings
from coopflower.client import protocol as P
from coopflower.client import stages as S
from coopflower.client.keys import NodeKey

FORGER = NodeKey(bytes.fromhex("11" * 32), "")


def _pid(context: Context) -> int:
    return int(context.node_config["partition-id"])


def faults(msg: Message, context: Context, call_next: Any) -> Message:
    """A Flower mod before the paper app's own mods: contributor 0 crashes while training,
    verifier 1 crashes, verifier 2 relays votes signed by some other key."""
    stage = S.stage_of(msg.content.config_records)
    if stage == S.TRAIN and _pid(context) == 0:
        raise RuntimeError("contributor 0 crashed while training")
    if stage == S.VERIFY and _pid(context) == 1:
        raise RuntimeError("verifier 1 crashed")
    reply = call_next(msg, context)
    if stage == S.VERIFY and _pid(context) == 2:
        from coopflower.client import duties

        rec = reply.content.config_records[P.VOTES]
        coop = msg.content.config_records[S.COOP]
        sigs = [duties.sign_vote(FORGER, coop, sid, bytes(32), True, 9999)
                for sid in P.get_list(rec, "submission-ids", int)]
        forged = ConfigRecord({**dict(rec), "signatures": sigs})
        reply = Message(RecordDict({**dict(reply.content.items()), P.VOTES: forged}),
                        reply_to=msg)
    return reply


faulty_app = ClientApp(mods=[faults, client_app.paper_mod])
faulty_app.train()(client_app.train)
faulty_app.evaluate()(client_app.evaluate)


def test_failed_nodes_are_recorded_and_the_round_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COOPFLOWER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAY_TMPDIR", "/tmp/coopflower-ray")
    out: dict[str, Any] = {}
    settings = AppSettings(strategy="coordinated", num_rounds=1, store=str(tmp_path / "store"),
                           min_accuracy_bps=0, verifiers=4, quorum=3, central_eval=False)
    run_simulation(make_server_app(settings, lambda s, r: out.update(s=s, r=r)), faulty_app,
                   num_supernodes=5,
                   backend_config={"client_resources": {"num_cpus": 1},  # type: ignore[arg-type]
                                   "init_args": {"num_cpus": 2}})
    strategy = out["s"]
    (report,) = strategy.reports
    train_failed = {f.node_id for f in report.failures if f.phase == "train"}
    crashed = {f.node_id for f in report.failures if f.phase == "verify" and "crashed" in f.reason}
    forged = {f.node_id for f in report.failures
              if f.phase == "verify" and f.reason.startswith("bad vote")}
    assert len(train_failed) == len(crashed) == len(forged) == 1, report.failures
    assert "contributor 0 crashed" in str(report.failures)
    assert len(report.submissions) == 4  # the other four contributors
    failed_address = strategy.addresses[train_failed.pop()].lower()
    assert failed_address not in {c.lower() for c, *_ in report.submissions.values()}

    ledger, task = strategy.ledger, strategy.task_id
    node_of = {a.lower(): n for n, a in strategy.addresses.items()}
    statuses = []
    for sid, (_, _, status, yes, cast) in report.submissions.items():
        # k=4 of 5 nodes: every node but the contributor verifies each submission
        verifiers = {node_of[v.lower()] for v in ledger.assigned_verifiers_on_chain(task, 1, sid)}
        bad = len(verifiers & (crashed | forged))
        assert cast == 4 - bad and yes == cast
        assert status == ("NO_QUORUM" if cast < 3 else "ACCEPTED")  # quorum 3
        statuses.append(status)
    assert sorted(statuses) == ["ACCEPTED", "ACCEPTED", "NO_QUORUM", "NO_QUORUM"]
    assert ledger.round(task, 1).state == 3  # settled after the voting deadline
