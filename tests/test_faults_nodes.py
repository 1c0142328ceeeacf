"""Issue 13, faults of the nodes in a real run (Flower's simulation engine, the embedded EVM and
store, the small app of ``tests/plugin_misfits.py`` with ``coop_mod``): a contributor and a
verifier that crash mid-round, by raising or by their process dying, and a verifier that never
answers. The run goes on with the others; ``coopflower audit`` replays every round clean; the
contract's money adds up (``tests.fixtures_faults.money_adds_up``): the crashed contributor is
not paid, a verifier that did not vote is penalised, nothing is paid twice, and closing the task
releases every deposit. (``test_strategy_failures`` covers the raising nodes' report entries in
the paper app; these add the money and the audit, the dying process and the silent node.)"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from flwr.app import Context, Message
from flwr.serverapp.strategy import FedAvg

from coopflower.audit import audit_ledger
from coopflower.client import stages as S
from coopflower.strategy import CoordinatedStrategy, TaskConfig
from tests.fixtures_faults import money_adds_up, simulate

pytestmark = pytest.mark.slow

NODES, CONTRIBUTOR, VERIFIER = 5, 0, 1


def _fault(kind: str, stage: str, marker: Path) -> Any:
    """A Flower mod before ``coop_mod``: node CONTRIBUTOR in train and node VERIFIER in verify
    raise, exit their process (``os._exit``, as a crash or the OOM killer would), or, for
    ``silent``, the VERIFIER sleeps through its verify and never answers in time. Each fault
    fires once (a marker file), so the node is back in the next round."""

    def mod(msg: Message, context: Context, call_next: Any) -> Message:
        pid = int(context.node_config["partition-id"])
        here = S.stage_of(msg.content.config_records)
        me = CONTRIBUTOR if here == S.TRAIN else VERIFIER
        if here == stage and pid == me and not (marker / f"{here}-{pid}").exists():
            (marker / f"{here}-{pid}").touch()
            if kind == "raises":
                raise RuntimeError(f"node {pid} crashed in {here}")
            if kind == "dies":
                os._exit(3)
            time.sleep(12)  # silent: twice the strategy's verify timeout
        return call_next(msg, context)

    return mod


def _run(tmp_path: Path, mods: list[Any], rounds: int,
         verify_timeout: float | None = None) -> CoordinatedStrategy:
    out = simulate(tmp_path, lambda: CoordinatedStrategy(
        FedAvg(fraction_train=1.0), store=str(tmp_path / "store"), progress=None,
        task=TaskConfig(k=3, quorum=2, metric="eval_acc", min_metric=0.5, vote_blocks=5),
        verify_timeout=verify_timeout), rounds, NODES, mods)
    assert "result" in out, f"the ServerApp did not finish: {out.get('error')!r}"
    return out["s"]


def _check_after(s: CoordinatedStrategy) -> dict[str, int]:
    """Audit clean, task closed, deposits released, money adds up; returns the totals."""
    ledger, task = s.ledger, int(s.task_id or 0)
    audits = audit_ledger(ledger, s.open_store(), task, stream=None)
    assert [a.round for a in audits] == [r.chain_round for r in s.reports]
    assert all(a.ok for a in audits), [a.problems for a in audits]
    info = ledger.task(task)
    assert info.closed and info.escrow == 0
    totals = money_adds_up(ledger)
    assert totals["held"] == sum(ledger.balance_of(a) for a in
                                 {*ledger.participants(task), ledger.chain.address})
    return totals


def _penalized(s: CoordinatedStrategy, rnd: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in s.ledger.events("Penalized", task_id=int(s.task_id or 0)):
        if int(e.args["round"]) == rnd:
            out[str(e.args["account"]).lower()] = out.get(str(e.args["account"]).lower(), 0) + 1
    return out


@pytest.mark.parametrize("kind", ["raises", "dies"])
def test_a_contributor_crashing_in_train_is_left_out_unpaid(tmp_path: Path, kind: str) -> None:
    """Raising: exactly that contributor is out of round 1 and back in round 2. Dying: Flower's
    simulation engine runs the virtual nodes on a pool of Ray actors and drops a dead actor
    without replacing it, so the other nodes' messages queued on it fail too
    (``ActorDiedError``): each is a named failure, the round goes on with the rest."""
    (tmp_path / "m").mkdir()
    s = _run(tmp_path, [_fault(kind, S.TRAIN, tmp_path / "m")], rounds=2)
    first, second = s.reports
    failed = {f.node_id: f.reason for f in first.failures if f.phase == "train"}
    print(f"{kind} in train: {sorted(failed.values())[0][:160]!r}")
    assert failed and (len(failed) == 1 if kind == "raises" else
                       all("ActorDiedError" in r for r in failed.values())), failed
    crashed = {s.addresses[n].lower() for n in failed}
    assert len(first.submissions) == NODES - len(failed)  # the round went on with the others
    assert not crashed & {c.lower() for c, *_ in first.submissions.values()}
    if kind == "raises":
        assert first.accepted == NODES - 1 and second.accepted == NODES  # back in round 2
    _check_after(s)
    reward = s.ledger.task(int(s.task_id or 0)).params.reward
    paid = [e for e in s.ledger.events("Paid", task_id=int(s.task_id or 0))
            if str(e.args["account"]).lower() in crashed and int(e.args["round"]) == 1]
    assert all(int(e.args["amount"]) != reward for e in paid)  # fees only, no reward


@pytest.mark.parametrize("kind", ["raises", "dies", "silent"])
def test_a_verifier_crashing_or_silent_in_verify_pays_for_its_votes(
        tmp_path: Path, kind: str) -> None:
    """Every vote a failed verifier owed is missing: its submissions settle on the others'
    votes (quorum 2 of k = 3) after the voting deadline, and the contract takes one no-vote
    penalty per missing vote from its deposit into the escrow."""
    (tmp_path / "m").mkdir()
    rounds = 2 if kind == "raises" else 1
    s = _run(tmp_path, [_fault(kind, S.VERIFY, tmp_path / "m")], rounds=rounds,
             verify_timeout=6 if kind == "silent" else None)
    first = s.reports[0]
    failed = {f.node_id: f.reason for f in first.failures if f.phase == "verify"}
    print(f"{kind} in verify: {sorted(failed.values())[0][:160]!r}")
    assert failed, first.failures
    if kind == "silent":
        assert list(failed.values()) == ["no reply (timeout)"]
    elif kind == "raises":
        assert len(failed) == 1
    else:
        assert all("ActorDiedError" in r for r in failed.values()), failed
    out = {s.addresses[n].lower() for n in failed}
    assert len(first.submissions) == NODES
    missed: dict[str, int] = {}
    for sid, (_, _, status, _yes, cast) in first.submissions.items():
        owed = out & {v.lower() for v in s.ledger.assigned_verifiers_on_chain(s.task_id, 1, sid)}
        for v in owed:
            missed[v] = missed.get(v, 0) + 1
        assert cast == 3 - len(owed), (sid, cast, owed)
        assert status == ("ACCEPTED" if cast >= 2 else "NO_QUORUM"), (sid, status)
    assert missed and first.votes == 3 * NODES - sum(missed.values())
    assert _penalized(s, 1) == missed  # one no-vote penalty per missing vote
    if kind == "raises":
        assert s.reports[1].votes == 3 * NODES and not _penalized(s, 2)
    _check_after(s)
